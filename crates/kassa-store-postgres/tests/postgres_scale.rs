//! Timings at benchmark scale: 100,000 accounts opened in one call, large
//! batches applied, and a check over two million transfers.
//!
//! These take a minute and a few hundred megabytes of disk, so they are
//! ignored by default; run them with
//! `cargo test -p kassa-store-postgres --release --test postgres_scale -- --ignored --nocapture`.

use std::error::Error;
use std::time::{Duration, Instant};

use kassa_core::ledger::{AccountKind, NewAccount, NewTransfer};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_store::{CheckReport, LedgerStore};
use kassa_store_postgres::PostgresStore;
use kassa_testkit::postgres::TempPostgres;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

const ACCOUNTS: usize = 100_000;
const BATCH: usize = 8_190;

fn single(id: u128, debit: AccountId, credit: AccountId) -> NewTransfer {
    NewTransfer::single(TransferId(id), debit, credit, Amount::from_minor(1), Currency::BYN)
}

#[tokio::test]
#[ignore = "takes a minute; run by hand to time the engine at benchmark scale"]
async fn benchmark_scale_timings() -> TestResult {
    let Some(db) = TempPostgres::create().await else { return Ok(()) };
    let store = PostgresStore::connect(db.url(), 2).await?;

    let accounts: Vec<NewAccount> = (0..ACCOUNTS)
        .map(|n| NewAccount {
            number: format!("ACC{n:08}"),
            owner: None,
            currency: Currency::BYN,
            kind: if n == 0 { AccountKind::Cash } else { AccountKind::Current },
            credit_limit: Amount::ZERO,
        })
        .collect();
    let started = Instant::now();
    let ids = store.create_accounts(accounts, 1).await?;
    let opened = started.elapsed();
    eprintln!("create_accounts({ACCOUNTS}): {opened:?}");
    assert_eq!(ids.len(), ACCOUNTS);
    assert!(opened < Duration::from_secs(10), "opening accounts took {opened:?}");

    // Batches of the largest request size, every transfer from the cash
    // account (the hot account) to a customer.
    let mut next_id = 1_u128;
    let started = Instant::now();
    for round in 0..5 {
        let request: Vec<NewTransfer> = (0..BATCH)
            .map(|n| {
                next_id += 1;
                single(next_id, ids[0], ids[1 + (round * BATCH + n) % (ACCOUNTS - 1)])
            })
            .collect();
        let outcomes = store.apply(vec![request], 2 + i64::try_from(round)?).await?;
        assert!(outcomes[0].iter().all(Result::is_ok));
    }
    eprintln!("apply: 5 batches of {BATCH}: {:?}", started.elapsed());

    // Two million transfers written straight into the table, so that the
    // check has benchmark-sized input without minutes of applying.
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO transfers (seq, id, debit_account_id, credit_account_id, amount, currency, kind, op, state, \
                 linked, bank_debit, description, created_at_us, debit_balance_after, credit_balance_after, overdraft) \
             SELECT nextval('transfers_seq'), gen_random_uuid(), {cash}, {cash} + 1 + n % {customers}, 1, 'BYN', \
                 'transfer', 'single', 'posted', false, false, '', 10, 0, 0, false \
             FROM generate_series(1, 2000000) AS n",
            cash = ids[0].0,
            customers = ACCOUNTS - 1,
        ))
        .await?;
    eprintln!("raw insert of 2,000,000 transfers: {:?}", started.elapsed());
    client.batch_execute("ANALYZE").await?;

    let started = Instant::now();
    let inputs = store.check_inputs().await?;
    let checked = started.elapsed();
    eprintln!("check_inputs over {} transfers: {checked:?}", inputs.transfers);
    assert_eq!(inputs.accounts.len(), ACCOUNTS);
    assert_eq!(inputs.transfers, 2_000_000 + 5 * 8_190);
    // The raw rows bypassed the cached totals, so the report must say so.
    assert!(!CheckReport::from_inputs(inputs).is_ok());
    assert!(checked < Duration::from_secs(30), "check_inputs took {checked:?}");
    Ok(())
}
