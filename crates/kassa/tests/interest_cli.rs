//! `kassa jobs run interest` as an operator runs it: the binary against a
//! data directory whose database the library filled with savings accounts.
//! A run posts the month once and says so; a run killed with SIGKILL in the
//! middle, then run again, pays every account exactly once; a day that is
//! not over is refused without the test-only setting.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "a test fails by panicking, with the reason in the message"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_core::ledger::{AccountKind, NewAccount, NewTransfer};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_ledger::{Ledger, LedgerConfig};
use kassa_service::calendar::{self, Day};
use kassa_service::people::Registration;
use kassa_service::{Bank, BankIdentity, Caller, SecretBytes, Settings};
use kassa_store::LedgerStore;
use kassa_store::sql::{self, Database, Value};
use kassa_testkit::cli::{self, describe, output};
use kassa_testkit::frac::{Frac, days_in_year};

const KASSA: &str = env!("CARGO_BIN_EXE_kassa");

fn kassa(dir: &Path, config: Option<&Path>, as_of: &str) -> Command {
    let mut command = cli::with_data_dir(KASSA, dir, ["jobs", "run", "interest"]);
    command.args(["--as-of", as_of]).env("KASSA_LOG", "error");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
}

fn today() -> Day {
    calendar::day_of(&calendar::zone("Europe/Minsk").unwrap(), kassa_store::now_us())
}

/// Opens the data directory's database with the library, registers a
/// customer and opens `n` savings accounts holding `minor` each.
async fn populate(dir: &Path, n: usize, minor: i64) -> Vec<i64> {
    let store = kassa_store_sqlite::SqliteStore::open(dir.join("kassa.db")).await.unwrap();
    let (store, db): (Arc<dyn LedgerStore>, Arc<dyn Database>) = (Arc::new(store.clone()), Arc::new(store));
    let ledger = Ledger::start(store, LedgerConfig::default());
    let mut settings = Settings::new(BankIdentity::default(), SecretBytes(vec![7; 32]));
    settings.argon2_memory_kib = 1024;
    let bank = Bank::start(db, ledger, settings).await.unwrap();
    let form = Registration {
        first_name: Some("Anna".into()),
        last_name: Some("Ivanova".into()),
        phone: Some("+375291110001".into()),
        email: Some("anna@example.com".into()),
        password: Some("correct horse battery".into()),
        passport_number: Some("MP1234501".into()),
        personal_id: Some("3010101A001PB5".into()),
    };
    let customer = bank.register(&Caller::anonymous("test"), form).await.unwrap().customer.id;
    let (product, cash) = sql::read(&**bank.database(), |tx| {
        let product = tx.query_one("SELECT id FROM products WHERE code = 'savings'", &[])?.int(0)?;
        let cash = tx
            .query_one("SELECT account_id FROM system_accounts WHERE kind = 'cash' AND currency = 'BYN'", &[])?
            .int(0)?;
        Ok::<_, kassa_store::StoreError>((product, cash))
    })
    .await
    .unwrap();
    let mut accounts = Vec::new();
    for i in 0..n {
        let account = bank
            .ledger()
            .create_account(NewAccount {
                number: format!("SAVINGS{i}"),
                owner: Some(customer),
                currency: Currency::BYN,
                kind: AccountKind::Savings,
                credit_limit: Amount::ZERO,
            })
            .await
            .unwrap()
            .id
            .0;
        sql::write(&**bank.database(), move |tx| {
            tx.execute(
                "INSERT INTO account_details (account_id, customer_id, product_id, currency, nickname, is_default, \
                 consents, opened_by) VALUES ($1, $2, $3, 'BYN', '', 0, '[]', 'test')",
                &[Value::Int(account), Value::Int(customer), Value::Int(product)],
            )
        })
        .await
        .unwrap();
        let deposit = NewTransfer::single(
            TransferId(1000 + i as u128),
            AccountId(cash),
            AccountId(account),
            Amount::from_minor(minor),
            Currency::BYN,
        );
        bank.ledger().transfer(deposit).await.unwrap().unwrap();
        accounts.push(account);
    }
    accounts
}

/// (count, total minor) of the interest transfers crediting `account`.
fn interest_of(db: &Path, account: i64) -> (i64, i64) {
    let connection = rusqlite::Connection::open(db).unwrap();
    connection
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM transfers WHERE kind = 'interest' AND credit_account_id = ?1",
            [account],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
}

/// floor(balance × 5 % × days / days-in-year), summed exactly per day.
fn expected(minor: i64, from: Day, to: Day) -> i64 {
    let mut sum = Frac::ZERO;
    let mut day = from;
    while day <= to {
        sum = sum + Frac::new(i128::from(minor) * 5, 100 * days_in_year(day.year()));
        day = calendar::next_day(day).unwrap();
    }
    i64::try_from(sum.floor()).unwrap()
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("interest-test.toml");
    std::fs::write(&config, "[interest]\nenabled = false\nfuture_days_allowed = true\n").unwrap();
    (dir, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_posts_the_month_once_and_prints_it() {
    let (dir, config) = setup();
    let accounts = populate(dir.path(), 2, 100_000).await;
    let month_end = today().last_of_month();
    let as_of = month_end.to_string();
    let first = output(kassa(dir.path(), Some(&config), &as_of)).await;
    assert!(first.status.success(), "{}", describe(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    let amount = expected(100_000, today(), month_end);
    let shown = format!("{}.{:02}", amount / 100, amount % 100);
    for account in &accounts {
        let line = format!("posted: account {account} {} pay {shown} BYN", &as_of[..7]);
        assert!(stdout.contains(&line), "{line:?} in\n{}", describe(&first));
        assert_eq!(interest_of(&dir.path().join("kassa.db"), *account), (1, amount));
    }
    let again = output(kassa(dir.path(), Some(&config), &as_of)).await;
    assert!(again.status.success(), "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 day(s) accrued, 0 posting(s)"), "{}", describe(&again));
    for account in &accounts {
        assert_eq!(interest_of(&dir.path().join("kassa.db"), *account), (1, amount));
    }
    // Without the test-only setting a day that is not over is refused.
    let refused = output(kassa(dir.path(), None, &as_of)).await;
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("as_of_not_past"), "{}", describe(&refused));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_half_way_and_run_again_pays_once() {
    let (dir, config) = setup();
    // Enough accounts that the run takes many commits (an accrual chunk, a
    // posting and its record per account): the kill below lands among them,
    // which the test checks rather than assumes.
    let accounts = populate(dir.path(), 200, 250_000).await;
    let db = dir.path().join("kassa.db");
    let month_end = today().last_of_month();
    let as_of = month_end.to_string();
    let watcher = rusqlite::Connection::open(&db).unwrap();
    let accrued =
        || watcher.query_row("SELECT COUNT(*) FROM interest_accruals", [], |row| row.get::<_, i64>(0)).unwrap();
    assert_eq!(accrued(), 0);
    let mut child =
        kassa(dir.path(), Some(&config), &as_of).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Kill it as soon as it has accrued something (the deadline only ends
    // a hung test; the assertions below decide whether the kill was mid-run).
    let started = Instant::now();
    while accrued() == 0 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    // The process is gone: what it committed is final.
    let at_kill = accrued();
    let rerun = output(kassa(dir.path(), Some(&config), &as_of)).await;
    assert!(rerun.status.success(), "killed with {status:?}; rerun: {}", describe(&rerun));
    let total = accrued();
    assert!(0 < at_kill && at_kill < total, "the kill landed mid-run: {at_kill} of {total} accrual rows written");
    let amount = expected(250_000, today(), month_end);
    for account in accounts {
        assert_eq!(interest_of(&db, account), (1, amount), "account {account}");
    }
}
