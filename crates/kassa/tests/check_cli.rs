//! `kassa check` as an operator runs it: the binary against a database that
//! the library filled, first intact, then with one cached total altered by
//! hand, and with a URL it must refuse. The exit codes are the contract that
//! scripts and monitoring rely on: 0 for balanced books, 1 for a violation,
//! 2 for a command that could not run.

#![allow(clippy::expect_used, clippy::panic, reason = "a test fails by panicking, with the reason in the message")]

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use kassa_core::ledger::{AccountKind, NewAccount, NewTransfer, TransferKind, TransferOp};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_ledger::{Ledger, LedgerConfig};
use kassa_store::LedgerStore;
use kassa_testkit::cli::{self, describe};
use kassa_testkit::postgres::TempPostgres;

const KASSA: &str = env!("CARGO_BIN_EXE_kassa");

/// Runs `kassa check` with `url`, from `cwd` and with no database settings
/// inherited from the environment, on a blocking thread.
async fn run_check(url: &str, cwd: &Path) -> Output {
    let mut command = cli::command(KASSA, cwd);
    command.args(["check", "--database-url", url]);
    cli::output(command).await
}

fn transfer(id: u128, debit: AccountId, credit: AccountId, minor: i64, kind: TransferKind) -> NewTransfer {
    NewTransfer {
        kind,
        description: "check_cli".to_owned(),
        ..NewTransfer::single(TransferId(id), debit, credit, Amount::from_minor(minor), Currency::EUR)
    }
}

/// Opens a few accounts and moves money among them through the ledger
/// (amounts in cents):
/// deposits, a plain transfer, a linked pair, and a hold that is later
/// posted. Returns a customer account that has transfers on both sides.
async fn populate(store: Arc<dyn LedgerStore>) -> AccountId {
    let ledger = Ledger::start(Arc::clone(&store), LedgerConfig::default());
    let open = |number: &str, kind: AccountKind| NewAccount {
        number: number.to_owned(),
        owner: if kind.is_system() { None } else { Some(1) },
        currency: Currency::EUR,
        kind,
        credit_limit: Amount::ZERO,
    };
    let cash = ledger.create_account(open("CASH", AccountKind::Cash)).await.expect("cash account").id;
    let alice = ledger.create_account(open("ALICE", AccountKind::Current)).await.expect("alice").id;
    let bob = ledger.create_account(open("BOB", AccountKind::Current)).await.expect("bob").id;
    let carol = ledger.create_account(open("CAROL", AccountKind::Savings)).await.expect("carol").id;

    let mut first_leg = transfer(4, alice, bob, 2_500, TransferKind::Transfer);
    first_leg.linked = true;
    let mut hold = transfer(7, bob, carol, 1_000, TransferKind::Transfer);
    hold.op = TransferOp::Pending { timeout_s: None };
    let mut post = transfer(8, bob, carol, 1_000, TransferKind::Transfer);
    post.op = TransferOp::Post { pending_id: TransferId(7) };
    let requests = vec![
        vec![
            transfer(1, cash, alice, 50_000, TransferKind::Deposit),
            transfer(2, cash, bob, 30_000, TransferKind::Deposit),
        ],
        vec![transfer(3, alice, carol, 12_050, TransferKind::Transfer)],
        vec![first_leg, transfer(5, bob, carol, 4_000, TransferKind::Transfer)],
        vec![transfer(6, carol, cash, 2_000, TransferKind::Withdrawal)],
        vec![hold],
        vec![post],
    ];
    for request in requests {
        let outcomes = ledger.submit(request.clone()).await.expect("the ledger answers");
        for outcome in outcomes {
            outcome.unwrap_or_else(|error| panic!("{request:?} was refused: {error}"));
        }
    }
    let report = ledger.check().await.expect("the library check runs");
    assert!(report.is_ok(), "the library itself finds violations: {:?}", report.violations);
    bob
}

/// Asserts that `kassa check` passes, then that it fails naming the account
/// and the rule once `corrupt` has bumped that account's credits by hand.
async fn check_catches_a_corrupted_total<F, Fut>(url: &str, cwd: &Path, account: AccountId, corrupt: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let intact = run_check(url, cwd).await;
    assert_eq!(intact.status.code(), Some(0), "kassa check on intact books:\n{}", describe(&intact));
    let stdout = String::from_utf8_lossy(&intact.stdout);
    assert!(stdout.contains("OK"), "kassa check did not say OK:\n{}", describe(&intact));

    corrupt().await;

    let broken = run_check(url, cwd).await;
    assert_eq!(broken.status.code(), Some(1), "kassa check on altered books:\n{}", describe(&broken));
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert!(
        stdout.contains(&format!("account {account}:")) && stdout.contains("credits_posted"),
        "kassa check did not name account {account} and the credits_posted total:\n{}",
        describe(&broken)
    );
    assert!(
        stdout.contains("sum of its transfers") || stdout.contains("from its transfers"),
        "kassa check did not say which rule broke:\n{}",
        describe(&broken)
    );
}

#[tokio::test]
async fn check_on_sqlite_passes_then_names_a_corrupted_account() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("kassa.db");
    let store = kassa_store_sqlite::SqliteStore::open(&path).await.expect("the SQLite store opens");
    let account = populate(Arc::new(store)).await;
    let url = format!("sqlite://{}", path.display());
    check_catches_a_corrupted_total(&url, dir.path(), account, || async {
        let connection = rusqlite::Connection::open(&path).expect("the database opens");
        let changed = connection
            .execute("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = ?1", [account.0])
            .expect("the update runs");
        assert_eq!(changed, 1);
    })
    .await;
}

#[tokio::test]
async fn check_on_postgres_passes_then_names_a_corrupted_account() {
    let Some(database) = TempPostgres::create().await else { return };
    let store = kassa_store_postgres::PostgresStore::connect(database.url(), 2).await.expect("PostgreSQL opens");
    let account = populate(Arc::new(store)).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    check_catches_a_corrupted_total(database.url(), dir.path(), account, || async {
        let (client, connection) =
            tokio_postgres::connect(database.url(), tokio_postgres::NoTls).await.expect("PostgreSQL connects");
        let driver = tokio::spawn(connection);
        let changed = client
            .execute("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1", &[&account.0])
            .await
            .expect("the update runs");
        assert_eq!(changed, 1);
        drop(client);
        let _ = driver.await;
    })
    .await;
}

#[tokio::test]
async fn check_refuses_an_unsupported_url_with_exit_2() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = run_check("mysql://x", dir.path()).await;
    assert_eq!(output.status.code(), Some(2), "kassa check with a MySQL URL:\n{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unsupported database URL") && stderr.contains("sqlite://") && stderr.contains("postgres://"),
        "the message does not say what is supported:\n{}",
        describe(&output)
    );
    let left_behind: Vec<_> = std::fs::read_dir(dir.path()).expect("the directory lists").collect();
    assert!(left_behind.is_empty(), "a refused URL still created files: {left_behind:?}");
}

/// A mistyped path or a database without a ledger is an error, never an
/// empty ledger that "balances", and checking creates nothing.
#[tokio::test]
async fn check_refuses_a_missing_or_empty_database_with_exit_2() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("no-such-dir").join("kassa.db");
    let output = run_check(&format!("sqlite://{}", missing.display()), dir.path()).await;
    assert_eq!(output.status.code(), Some(2), "kassa check on a missing file:\n{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("there is no database"), "{}", describe(&output));
    assert!(!missing.exists() && !dir.path().join("no-such-dir").exists(), "kassa check created the database");

    let empty = dir.path().join("empty.db");
    rusqlite::Connection::open(&empty)
        .expect("an empty SQLite file")
        .execute_batch("CREATE TABLE t (x)")
        .expect("a table");
    let output = run_check(&format!("sqlite://{}", empty.display()), dir.path()).await;
    assert_eq!(output.status.code(), Some(2), "kassa check on a file without a ledger:\n{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("holds no Kassa ledger"), "{}", describe(&output));
}

/// A history link bent by hand (pointing forward, past the newest transfer)
/// is named as a broken transfer.
#[tokio::test]
async fn check_names_a_broken_history_link() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("kassa.db");
    let url = format!("sqlite://{}", path.display());
    populate(Arc::new(kassa_store_sqlite::SqliteStore::open(&path).await.expect("the store opens"))).await;
    let intact = run_check(&url, dir.path()).await;
    assert_eq!(intact.status.code(), Some(0), "kassa check on intact books:\n{}", describe(&intact));
    let changed = rusqlite::Connection::open(&path)
        .expect("the database opens")
        .execute(
            "UPDATE transfers SET prev_debit_seq = (SELECT MAX(seq) + 1 FROM transfers)
             WHERE seq = (SELECT MAX(seq) FROM transfers WHERE prev_debit_seq IS NOT NULL)",
            [],
        )
        .expect("the update runs");
    assert_eq!(changed, 1);
    let broken = run_check(&url, dir.path()).await;
    assert_eq!(broken.status.code(), Some(1), "kassa check on a bent link:\n{}", describe(&broken));
    assert!(
        String::from_utf8_lossy(&broken.stdout).contains("history link does not lead to an earlier transfer"),
        "kassa check did not name the broken link:\n{}",
        describe(&broken)
    );
}

/// The account's overdraft flag is not evidence: an account below its limit
/// passes only if a recorded bank debit took it there.
#[tokio::test]
async fn check_does_not_trust_a_forged_overdraft_flag() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("kassa.db");
    let url = format!("sqlite://{}", path.display());
    let store: Arc<dyn LedgerStore> =
        Arc::new(kassa_store_sqlite::SqliteStore::open(&path).await.expect("the store opens"));
    let ledger = Ledger::start(Arc::clone(&store), LedgerConfig::default());
    let open = |number: &str, kind: AccountKind, limit: i64| NewAccount {
        number: number.to_owned(),
        owner: if kind.is_system() { None } else { Some(1) },
        currency: Currency::EUR,
        kind,
        credit_limit: Amount::from_minor(limit),
    };
    let cash = ledger.create_account(open("CASH", AccountKind::Cash, 0)).await.expect("cash").id;
    let card = ledger.create_account(open("CARD", AccountKind::CreditCard, 1_000)).await.expect("card").id;
    // Spending 5.00 on credit is within the 10.00 limit.
    ledger.transfer(transfer(1, card, cash, 500, TransferKind::Withdrawal)).await.expect("answered").expect("allowed");
    drop(ledger);
    let intact = run_check(&url, dir.path()).await;
    assert_eq!(intact.status.code(), Some(0), "kassa check on intact books:\n{}", describe(&intact));

    // By hand: the limit goes to zero and the flag claims a bank overdraft.
    let changed = rusqlite::Connection::open(&path)
        .expect("the database opens")
        .execute("UPDATE accounts SET credit_limit = 0, bank_overdraft = 1 WHERE id = ?1", [card.0])
        .expect("the update runs");
    assert_eq!(changed, 1);
    let forged = run_check(&url, dir.path()).await;
    assert_eq!(forged.status.code(), Some(1), "kassa check with a forged flag:\n{}", describe(&forged));
    assert!(
        String::from_utf8_lossy(&forged.stdout).contains(&format!("account {card}: available -500 is below")),
        "kassa check did not name the account below its limit:\n{}",
        describe(&forged)
    );
}
