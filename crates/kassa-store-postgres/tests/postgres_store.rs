//! The PostgreSQL engine against a real server.
//!
//! Each test makes a database of its own with `TempPostgres` and skips (with
//! a loud line on stderr) when no server is reachable outside CI. The tests
//! return `Result` so that a store error fails them with its message, and
//! check outcomes, balances, history, checks and concurrency across several
//! stores on one database, which stands in for several processes.

use std::collections::{HashMap, HashSet};
use std::error::Error;

use kassa_core::ledger::{
    AccountError, AccountKind, AccountStatus, NewAccount, NewTransfer, Transfer, TransferError, TransferKind,
    TransferOp, TransferOutcome, TransferState,
};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_store::{CheckReport, LedgerStore, StoreError, Violation};
use kassa_store_postgres::PostgresStore;
use kassa_testkit::postgres::TempPostgres;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

fn new_account(number: &str, kind: AccountKind, credit_limit: i64) -> NewAccount {
    NewAccount {
        number: number.to_owned(),
        owner: if kind.is_system() { None } else { Some(7) },
        currency: Currency::BYN,
        kind,
        credit_limit: Amount::from_minor(credit_limit),
    }
}

fn transfer(id: u128, debit: AccountId, credit: AccountId, amount: i64, op: TransferOp) -> NewTransfer {
    NewTransfer {
        id: TransferId(id),
        debit_account: debit,
        credit_account: credit,
        amount: Amount::from_minor(amount),
        currency: Currency::BYN,
        kind: match op {
            TransferOp::Reverse { .. } => TransferKind::Reversal,
            _ => TransferKind::Transfer,
        },
        op,
        linked: false,
        bank_debit: false,
        description: format!("test transfer {id}"),
    }
}

fn single(id: u128, debit: AccountId, credit: AccountId, amount: i64) -> NewTransfer {
    transfer(id, debit, credit, amount, TransferOp::Single)
}

/// The transfer an outcome created, or the refusal as an error.
fn created(outcome: &TransferOutcome) -> Result<&Transfer, String> {
    match outcome {
        Ok(created) => Ok(&created.transfer),
        Err(error) => Err(format!("expected a created transfer, got {error:?}")),
    }
}

async fn connect(db: &TempPostgres) -> Result<PostgresStore, StoreError> {
    PostgresStore::connect(db.url(), 4).await
}

/// A direct connection for checks the store has no method for.
async fn raw_client(db: &TempPostgres) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn migrations_are_idempotent_and_safe_to_race() -> TestResult {
    let Some(db) = TempPostgres::create().await else { return Ok(()) };
    // Four stores start at once; the advisory lock makes one of them apply
    // the schema and the others find it applied.
    let mut starting = Vec::new();
    for _ in 0..4 {
        let url = db.url().to_owned();
        starting.push(tokio::spawn(async move { PostgresStore::connect(&url, 1).await }));
    }
    for start in starting {
        start.await??;
    }
    let store = connect(&db).await?;
    assert_eq!(store.backend(), "postgres");
    let client = raw_client(&db).await?;
    let versions: Vec<i64> = client
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=11).collect::<Vec<i64>>(), "each migration recorded exactly once");
    Ok(())
}

#[tokio::test]
async fn connection_errors_are_unavailable_and_hide_the_password() -> TestResult {
    // Port 1 on the loopback refuses at once, so this needs no server.
    let error = PostgresStore::connect("postgres://kassa:hunter2secret@127.0.0.1:1/kassa", 1).await;
    match error {
        Err(StoreError::Unavailable(message)) => assert!(!message.contains("hunter2secret"), "{message}"),
        other => return Err(format!("expected Unavailable, got {other:?}").into()),
    }
    let bad = PostgresStore::connect("postgres://kassa:hunter2secret@127.0.0.1:notaport/kassa", 1).await;
    match bad {
        Err(StoreError::BadUrl(message)) => assert!(!message.contains("hunter2secret"), "{message}"),
        other => return Err(format!("expected BadUrl, got {other:?}").into()),
    }
    Ok(())
}

#[tokio::test]
async fn accounts_are_opened_read_and_changed() -> TestResult {
    let Some(db) = TempPostgres::create().await else { return Ok(()) };
    let store = connect(&db).await?;

    let opened = store.create_account(new_account("ACC-1", AccountKind::Current, 5_000), 42).await?;
    assert_eq!(opened.number, "ACC-1");
    assert_eq!(opened.owner, Some(7));
    assert_eq!(opened.currency, Currency::BYN);
    assert_eq!(opened.kind, AccountKind::Current);
    assert_eq!(opened.status, AccountStatus::Active);
    assert_eq!(opened.credit_limit, Amount::from_minor(5_000));
    assert_eq!(opened.last_seq, None);
    assert_eq!(opened.created_at_us, 42);
    assert_eq!(store.account(opened.id).await?, Some(opened.clone()));
    assert_eq!(store.account_by_number("ACC-1").await?, Some(opened.clone()));
    assert_eq!(store.account(AccountId(999_999)).await?, None);
    assert_eq!(store.account_by_number("nope").await?, None);

    let taken = store.create_account(new_account("ACC-1", AccountKind::Savings, 0), 43).await;
    assert!(matches!(taken, Err(StoreError::Account(AccountError::NumberTaken))), "{taken:?}");
    let invalid = store.create_account(new_account("has space", AccountKind::Savings, 0), 43).await;
    assert!(matches!(invalid, Err(StoreError::Account(AccountError::InvalidNumber))), "{invalid:?}");

    // Bulk opening keeps the input order and is all or nothing.
    let batch: Vec<NewAccount> =
        (0..1_000).map(|n| new_account(&format!("BULK-{n:04}"), AccountKind::Savings, 0)).collect();
    let ids = store.create_accounts(batch, 44).await?;
    assert_eq!(ids.len(), 1_000);
    let read = store.accounts(&ids).await?;
    assert_eq!(read.len(), 1_000);
    let by_id: HashMap<AccountId, String> = read.into_iter().map(|a| (a.id, a.number)).collect();
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(by_id.get(id), Some(&format!("BULK-{n:04}")));
    }
    let clash = vec![new_account("NEW-1", AccountKind::Savings, 0), new_account("BULK-0001", AccountKind::Savings, 0)];
    let clash = store.create_accounts(clash, 45).await;
    assert!(matches!(clash, Err(StoreError::Account(AccountError::NumberTaken))), "{clash:?}");
    assert_eq!(store.account_by_number("NEW-1").await?, None);
    assert_eq!(store.create_accounts(Vec::new(), 45).await?, Vec::new());

    // `accounts` orders by id and leaves out missing ids.
    let some = store.accounts(&[ids[2], AccountId(999_999), ids[1]]).await?;
    assert_eq!(some.iter().map(|a| a.id).collect::<Vec<_>>(), vec![ids[1], ids[2]]);

    // Status changes follow the rules in kassa-core.
    let blocked = store.set_account_status(opened.id, AccountStatus::Blocked).await?;
    assert_eq!(blocked.status, AccountStatus::Blocked);
    let active = store.set_account_status(opened.id, AccountStatus::Active).await?;
    assert_eq!(active.status, AccountStatus::Active);
    let missing = store.set_account_status(AccountId(999_999), AccountStatus::Blocked).await;
    assert!(matches!(missing, Err(StoreError::Account(AccountError::NotFound))), "{missing:?}");

    // Take ACC-1 below zero within its limit of 5000.
    let cash = store.create_account(new_account("CASH", AccountKind::Cash, 0), 46).await?;
    let outcomes = store.apply(vec![vec![single(1, opened.id, cash.id, 3_000)]], 47).await?;
    created(&outcomes[0][0])?;
    let has_balance = store.set_account_status(opened.id, AccountStatus::Closed).await;
    assert!(matches!(has_balance, Err(StoreError::Account(AccountError::HasBalance))), "{has_balance:?}");

    // A limit the current balance already breaks is refused by the schema.
    let too_low = store.set_credit_limit(opened.id, Amount::from_minor(1_000)).await;
    assert!(matches!(too_low, Err(StoreError::Database(_))), "{too_low:?}");
    assert_eq!(store.account(opened.id).await?.map(|a| a.credit_limit), Some(Amount::from_minor(5_000)));
    let lowered = store.set_credit_limit(opened.id, Amount::from_minor(3_000)).await?;
    assert_eq!(lowered.credit_limit, Amount::from_minor(3_000));
    let negative = store.set_credit_limit(opened.id, Amount::from_minor(-1)).await;
    assert!(matches!(negative, Err(StoreError::Account(AccountError::NegativeCreditLimit))), "{negative:?}");
    let missing = store.set_credit_limit(AccountId(999_999), Amount::from_minor(1)).await;
    assert!(matches!(missing, Err(StoreError::Account(AccountError::NotFound))), "{missing:?}");

    // A closed account stays closed and keeps its limit.
    let closed = store.set_account_status(ids[0], AccountStatus::Closed).await?;
    assert_eq!(closed.status, AccountStatus::Closed);
    let reopen = store.set_account_status(ids[0], AccountStatus::Active).await;
    assert!(matches!(reopen, Err(StoreError::Account(AccountError::Closed))), "{reopen:?}");
    let limit = store.set_credit_limit(ids[0], Amount::from_minor(10)).await;
    assert!(matches!(limit, Err(StoreError::Account(AccountError::Closed))), "{limit:?}");
    Ok(())
}

/// Walks an account's whole history page by page.
async fn all_pages(store: &PostgresStore, account: AccountId, page: u32) -> Result<Vec<Transfer>, StoreError> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let batch = store.history(account, cursor, page).await?;
        let Some(last) = batch.last() else { return Ok(all) };
        cursor = Some(last.seq);
        all.extend(batch);
    }
}

#[tokio::test]
async fn ledger_round_trip() -> TestResult {
    let Some(db) = TempPostgres::create().await else { return Ok(()) };
    let store = connect(&db).await?;
    let cash = store.create_account(new_account("CASH", AccountKind::Cash, 0), 1).await?.id;
    let alice = store.create_account(new_account("ALICE", AccountKind::Current, 0), 1).await?.id;
    let bob = store.create_account(new_account("BOB", AccountKind::Current, 0), 1).await?.id;
    let carol = store.create_account(new_account("CAROL", AccountKind::Savings, 0), 1).await?.id;

    // Batch 1: deposits.
    let mut deposit_alice = single(100, cash, alice, 10_000);
    deposit_alice.kind = TransferKind::Deposit;
    let mut deposit_bob = single(101, cash, bob, 5_000);
    deposit_bob.kind = TransferKind::Deposit;
    let first = store.apply(vec![vec![deposit_alice.clone()], vec![deposit_bob]], 1_000_000).await?;
    let deposit_seq = created(&first[1][0])?.seq;

    // Batch 2: a transfer, a pending to post later, a pending voided in the
    // same batch, and a linked chain whose second transfer fails.
    let pay_bob = single(200, alice, bob, 1_000);
    let hold = transfer(201, alice, carol, 2_000, TransferOp::Pending { timeout_s: None });
    let hold_to_void = transfer(202, alice, carol, 700, TransferOp::Pending { timeout_s: Some(3_600) });
    let void = transfer(203, alice, carol, 700, TransferOp::Void { pending_id: TransferId(202) });
    let mut chain_first = single(204, alice, bob, 100);
    chain_first.linked = true;
    let chain_second = single(205, bob, carol, 1_000_000);
    let second = store
        .apply(vec![vec![pay_bob.clone()], vec![hold, hold_to_void, void], vec![chain_first, chain_second]], 2_000_000)
        .await?;
    for outcome in second[0].iter().chain(&second[1]) {
        created(outcome)?;
    }
    assert_eq!(second[2][0], Err(TransferError::LinkedTransferFailed));
    assert!(matches!(second[2][1], Err(TransferError::InsufficientFunds { .. })), "{:?}", second[2][1]);
    assert_eq!(store.transfer(TransferId(204)).await?, None);
    assert_eq!(store.transfer(TransferId(205)).await?, None);

    // Batch 3: post the hold for less, replay a transfer, reverse it.
    let post = transfer(300, alice, carol, 1_500, TransferOp::Post { pending_id: TransferId(201) });
    let reverse = transfer(301, bob, alice, 1_000, TransferOp::Reverse { original_id: TransferId(200) });
    let third = store.apply(vec![vec![post], vec![pay_bob.clone()], vec![reverse]], 3_000_000).await?;
    let replay = third[1][0].as_ref().map_err(|error| format!("replay refused: {error:?}"))?;
    assert!(replay.replayed);
    assert_eq!(Some(&replay.transfer), second[0][0].as_ref().ok().map(|c| &c.transfer));
    for outcome in third[0].iter().chain(&third[2]) {
        created(outcome)?;
    }
    // A changed replay and a second reversal are refused.
    let mut changed = pay_bob.clone();
    changed.amount = Amount::from_minor(999);
    let again = transfer(302, bob, alice, 1_000, TransferOp::Reverse { original_id: TransferId(200) });
    let refused = store.apply(vec![vec![changed], vec![again]], 3_500_000).await?;
    assert_eq!(refused[0][0], Err(TransferError::IdReusedWithDifferentContent));
    assert_eq!(refused[1][0], Err(TransferError::AlreadyReversed));

    // Batch 4: a hold that expires after one second.
    let expiring = transfer(400, alice, carol, 300, TransferOp::Pending { timeout_s: Some(1) });
    let fourth = store.apply(vec![vec![expiring]], 4_000_000).await?;
    let expiring = created(&fourth[0][0])?.clone();
    assert_eq!(expiring.expires_at_us, Some(5_000_000));

    // Balances: alice 10000 - 1000 - 1500 + 1000; the 300 hold is pending.
    let balances: HashMap<AccountId, (i64, i64, i64)> = store
        .accounts(&[cash, alice, bob, carol])
        .await?
        .into_iter()
        .map(|a| (a.id, (a.balances.posted(), a.balances.debits_pending.minor(), a.balances.credits_pending.minor())))
        .collect();
    assert_eq!(balances[&alice], (8_500, 300, 0));
    assert_eq!(balances[&bob], (5_000, 0, 0));
    assert_eq!(balances[&carol], (1_500, 0, 300));
    assert_eq!(balances[&cash], (-15_000, 0, 0));

    // Every created transfer reads back field for field; the two holds that
    // were resolved read back in their final state.
    let final_state =
        HashMap::from([(TransferId(201), TransferState::Posted), (TransferId(202), TransferState::Voided)]);
    for outcome in first.iter().chain(&second).chain(&third).chain(&fourth).flatten() {
        let Ok(created) = outcome else { continue };
        let mut expected = created.transfer.clone();
        if let Some(state) = final_state.get(&expected.id) {
            expected.state = *state;
        }
        assert_eq!(store.transfer(expected.id).await?, Some(expected));
    }
    assert_eq!(store.transfer(TransferId(999)).await?, None);

    // History: newest first, and paging yields every transfer exactly once.
    let history = store.history(alice, None, 1_000).await?;
    let ids: Vec<u128> = history.iter().map(|t| t.id.0).collect();
    assert_eq!(ids, vec![400, 301, 300, 203, 202, 201, 200, 100]);
    assert!(history.windows(2).all(|pair| pair[0].seq > pair[1].seq));
    for page in [1, 2, 3, 7] {
        let paged = all_pages(&store, alice, page).await?;
        assert_eq!(paged, history, "page size {page}");
    }
    let unique: HashSet<TransferId> = history.iter().map(|t| t.id).collect();
    assert_eq!(unique.len(), history.len());
    assert_eq!(store.history(alice, None, 2).await?, history[..2].to_vec());
    assert_eq!(store.history(alice, Some(history[2].seq), 2).await?, history[3..5].to_vec());
    assert_eq!(store.history(alice, None, 0).await?, Vec::new());
    // A cursor that is not one of alice's transfers names no position.
    assert_eq!(store.history(alice, Some(deposit_seq), 10).await?, Vec::new());
    let missing = store.history(AccountId(999_999), None, 10).await;
    assert!(matches!(missing, Err(StoreError::Account(AccountError::NotFound))), "{missing:?}");
    let bob_history: Vec<u128> = store.history(bob, None, 100).await?.iter().map(|t| t.id.0).collect();
    assert_eq!(bob_history, vec![301, 200, 101]);

    // Past balances, before and after each batch.
    assert_eq!(store.balance_at(alice, 999_999).await?, 0);
    assert_eq!(store.balance_at(alice, 1_000_000).await?, 10_000);
    assert_eq!(store.balance_at(alice, 1_999_999).await?, 10_000);
    assert_eq!(store.balance_at(alice, 2_000_000).await?, 9_000);
    assert_eq!(store.balance_at(alice, 3_000_000).await?, 8_500);
    assert_eq!(store.balance_at(alice, i64::MAX).await?, 8_500);
    assert_eq!(store.balance_at(cash, 1_000_000).await?, -15_000);
    let missing = store.balance_at(AccountId(999_999), 0).await;
    assert!(matches!(missing, Err(StoreError::Account(AccountError::NotFound))), "{missing:?}");

    // Only the one-second hold expires, and only once its time has come.
    assert_eq!(store.expired_pending(4_999_999, 10).await?, Vec::new());
    assert_eq!(store.expired_pending(i64::MAX / 2, 10).await?, vec![expiring]);
    assert_eq!(store.expired_pending(i64::MAX / 2, 0).await?, Vec::new());

    // The ledger checks out.
    let inputs = store.check_inputs().await?;
    assert_eq!(inputs.transfers, 9);
    assert_eq!(inputs.accounts.len(), 4);
    let report = CheckReport::from_inputs(inputs);
    assert!(report.is_ok(), "{:?}", report.violations);

    // A balance changed behind the ledger's back is caught.
    let client = raw_client(&db).await?;
    client.execute("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1", &[&alice.0]).await?;
    let report = CheckReport::from_inputs(store.check_inputs().await?);
    assert!(!report.is_ok());
    assert!(
        report.violations.iter().any(|v| matches!(
            v,
            Violation::CachedTotalMismatch { account, field: "credits_posted", .. } if *account == alice
        )),
        "{:?}",
        report.violations
    );
    assert!(report.violations.iter().any(|v| matches!(v, Violation::CurrencyNotZero { .. })));
    Ok(())
}

/// A small deterministic generator, so a failing run can be repeated.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one simulated node saw: transfers it created and shared transfers
/// it found already recorded.
#[derive(Debug, Default)]
struct NodeTally {
    created: u64,
    refused: u64,
    shared_created: u64,
    shared_replayed: u64,
}

const NODES: u64 = 8;
const BATCHES: u64 = 50;
/// Ids at or above this are shared by every node: one creates, the others
/// replay.
const SHARED_BASE: u128 = 1 << 100;

async fn run_node(url: String, node: u64, accounts: Vec<AccountId>) -> Result<NodeTally, StoreError> {
    let store = PostgresStore::connect(&url, 2).await?;
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15 ^ (node + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut tally = NodeTally::default();
    // Node ids start above the funding transfers' and never meet.
    let mut next_id = u128::from(node + 1) << 64;
    for batch in 0..BATCHES {
        let mut requests = Vec::new();
        for _ in 0..=random.below(3) {
            let mut request = Vec::new();
            for _ in 0..=random.below(4) {
                let debit = accounts[usize::try_from(random.below(4)).unwrap_or(0)];
                let mut credit = accounts[usize::try_from(random.below(4)).unwrap_or(0)];
                if credit == debit {
                    credit = accounts[(accounts.iter().position(|a| *a == debit).unwrap_or(0) + 1) % accounts.len()];
                }
                next_id += 1;
                let amount = i64::try_from(random.below(4_000)).unwrap_or(0) + 1;
                let mut new = single(next_id, debit, credit, amount);
                // Some transfers are linked to the next, so that chains fail
                // and are undone as a whole.
                new.linked = random.below(4) == 0;
                request.push(new);
            }
            if let Some(last) = request.last_mut() {
                last.linked = false;
            }
            requests.push(request);
        }
        // Every node sends the same shared transfer in its batch of the same
        // number: exactly one node must create it.
        let shared = single(SHARED_BASE + u128::from(batch), accounts[0], accounts[3], 1);
        requests.push(vec![shared]);
        let outcomes = store.apply(requests, kassa_store::now_us()).await?;
        let (shared_outcome, ordinary) =
            outcomes.split_last().ok_or_else(|| StoreError::Database("no outcomes".into()))?;
        match shared_outcome.first() {
            Some(Ok(created)) if created.replayed => tally.shared_replayed += 1,
            Some(Ok(_)) => tally.shared_created += 1,
            other => return Err(StoreError::Database(format!("shared transfer refused: {other:?}"))),
        }
        for outcome in ordinary.iter().flatten() {
            match outcome {
                Ok(created) if !created.replayed => tally.created += 1,
                Err(TransferError::InsufficientFunds { .. } | TransferError::LinkedTransferFailed) => {
                    tally.refused += 1
                }
                other => return Err(StoreError::Database(format!("unexpected outcome {other:?}"))),
            }
        }
    }
    Ok(tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_nodes_conserve_money() -> TestResult {
    let Some(db) = TempPostgres::create().await else { return Ok(()) };
    let store = connect(&db).await?;
    // The cash account may go negative; the customer accounts may not, except
    // for a small overdraft on B, so many transfers are refused.
    let accounts = store
        .create_accounts(
            vec![
                new_account("CASH", AccountKind::Cash, 0),
                new_account("A", AccountKind::Current, 0),
                new_account("B", AccountKind::CreditCard, 2_000),
                new_account("C", AccountKind::Savings, 0),
            ],
            1,
        )
        .await?;
    let funding: Vec<Vec<NewTransfer>> =
        accounts[1..].iter().enumerate().map(|(n, to)| vec![single(10 + n as u128, accounts[0], *to, 5_000)]).collect();
    store.apply(funding, 2).await?;

    let mut nodes = Vec::new();
    for node in 0..NODES {
        nodes.push(tokio::spawn(run_node(db.url().to_owned(), node, accounts.clone())));
    }
    let mut total = NodeTally::default();
    for node in nodes {
        let tally = node.await??;
        total.created += tally.created;
        total.refused += tally.refused;
        total.shared_created += tally.shared_created;
        total.shared_replayed += tally.shared_replayed;
    }
    assert_eq!(total.shared_created, BATCHES, "{total:?}");
    assert_eq!(total.shared_replayed, BATCHES * (NODES - 1), "{total:?}");
    assert!(total.refused > 0, "the limits were never in play: {total:?}");
    assert!(total.created > 0, "{total:?}");

    let inputs = store.check_inputs().await?;
    assert_eq!(inputs.transfers, 3 + total.created + total.shared_created);
    let report = CheckReport::from_inputs(inputs);
    assert!(report.is_ok(), "{:?}", report.violations);
    for account in store.accounts(&accounts[1..]).await? {
        assert!(account.balances.available() >= -i128::from(account.credit_limit.minor()), "{account:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_conflicting_insert_is_retried_and_answered_by_the_rules() -> TestResult {
    let Some(db) = TempPostgres::create().await else { return Ok(()) };
    let store = connect(&db).await?;
    let ids = store
        .create_accounts(
            vec![
                new_account("P", AccountKind::Cash, 0),
                new_account("Q", AccountKind::Cash, 0),
                new_account("R", AccountKind::Cash, 0),
                new_account("S", AccountKind::Cash, 0),
            ],
            1,
        )
        .await?;
    // Another writer inserts transfer 77 between P and Q and keeps its
    // transaction open; it holds no lock the store needs except the unique
    // index entry for the id.
    let mut other = raw_client(&db).await?;
    let tx = other.transaction().await?;
    tx.execute(
        "INSERT INTO transfers (seq, id, debit_account_id, credit_account_id, amount, currency, kind, op, state, \
             linked, bank_debit, description, created_at_us, debit_balance_after, credit_balance_after, overdraft) \
         VALUES (nextval('transfers_seq'), $1, $2, $3, 5, 'BYN', 'transfer', 'single', 'posted', false, false, '', \
             1, -5, 5, false)",
        &[&uuid::Uuid::from_u128(77), &ids[0].0, &ids[1].0],
    )
    .await?;
    // The store asks for transfer 77 between R and S: it finds no such id,
    // and its insert waits on the other transaction's index entry.
    let url = db.url().to_owned();
    let (r, s) = (ids[2], ids[3]);
    let applying = tokio::spawn(async move {
        let store = PostgresStore::connect(&url, 1).await?;
        store.apply(vec![vec![single(77, r, s, 5)]], 2).await
    });
    let watcher = raw_client(&db).await?;
    let mut waited = false;
    for _ in 0..500 {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await?
            .get(0);
        if waiting > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(waited, "the store's insert never waited on the other writer");
    tx.commit().await?;
    // The unique violation makes the store run the batch again, and this
    // time the rules see the other writer's transfer under the same id.
    let outcomes = applying.await??;
    assert_eq!(outcomes, vec![vec![Err(TransferError::IdReusedWithDifferentContent)]]);
    let stored = store.transfer(TransferId(77)).await?.ok_or("transfer 77 is gone")?;
    assert_eq!((stored.debit_account, stored.credit_account), (ids[0], ids[1]));
    Ok(())
}
