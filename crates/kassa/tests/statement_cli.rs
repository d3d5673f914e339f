//! `kassa statement` as an operator runs it: the binary against a data
//! directory that the library filled with transfers at chosen bank times,
//! in JSON on stdout and as CSV and XLSX files; bad input exits 1 with the
//! code; every export is journaled with origin `cli`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, with the reason in the message"
)]

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use kassa_core::ledger::{NewTransfer, TransferKind, TransferOp};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_ledger::{Ledger, LedgerConfig};
use kassa_service::{Bank, BankIdentity, Caller, Role, SecretBytes, Settings, SignedIn};
use kassa_store::LedgerStore;
use kassa_store::sql::Database;
use kassa_testkit::cli::{self, describe};

const KASSA: &str = env!("CARGO_BIN_EXE_kassa");

/// 2026-03-01T00:00 in Minsk (UTC+3 all year), in µs since the epoch.
const MARCH_1_MINSK_US: i64 = 1_772_312_400_000_000;
const HOUR_US: i64 = 3_600_000_000;

/// A moment of March 2026 in the bank's zone (Europe/Minsk, the default).
fn march(day: i64, hour: i64, minute: i64) -> i64 {
    MARCH_1_MINSK_US + (day - 1) * 24 * HOUR_US + hour * HOUR_US + minute * 60_000_000
}

async fn run(dir: &Path, args: &[&str]) -> Output {
    let mut command = cli::with_data_dir(KASSA, dir, ["statement"]);
    command.args(args);
    cli::output(command).await
}

/// `kassa statement` of the account for 10–11 March into a file.
async fn export(dir: &Path, number: &str, format: &str, path: &Path) -> Output {
    let path = path.to_str().unwrap();
    run(dir, &["--account", number, "--from", "2026-03-10", "--to", "2026-03-11", "--format", format, "--output", path])
        .await
}

fn transfer(id: u8, debit: i64, credit: i64, minor: i64, kind: TransferKind, description: &str) -> NewTransfer {
    NewTransfer {
        kind,
        description: description.to_owned(),
        ..NewTransfer::single(
            TransferId::from_bytes([id; 16]),
            AccountId(debit),
            AccountId(credit),
            Amount::from_minor(minor),
            Currency::from_code("BYN").unwrap(),
        )
    }
}

/// A customer account with, on 2026-03-10: a deposit of 50.00, a hold of
/// 10.00 posted for 7.00; and on 2026-03-11 a deposit of 1.00. Returns
/// the account's number.
async fn populate(dir: &Path) -> String {
    let store = kassa_store_sqlite::SqliteStore::open(dir.join("kassa.db")).await.unwrap();
    let (ledger_store, db): (Arc<dyn LedgerStore>, Arc<dyn Database>) = (Arc::new(store.clone()), Arc::new(store));
    let ledger = Ledger::start(Arc::clone(&ledger_store), LedgerConfig::default());
    let mut settings = Settings::new(BankIdentity::default(), SecretBytes(vec![7; 32]));
    settings.argon2_memory_kib = 1024;
    let bank = Bank::start(db, ledger, settings).await.unwrap();
    let registration = serde_json::json!({
        "first_name": "Anna", "last_name": "Ivanova", "phone": "+375291234567", "email": "a@example.com",
        "password": "correct horse battery", "passport_number": "MP1234567", "personal_id": "3010101A001PB5",
    });
    let registered =
        bank.register(&Caller::anonymous("127.0.0.1"), serde_json::from_value(registration).unwrap()).await.unwrap();
    let customer = Caller {
        user: Some(SignedIn {
            id: registered.customer.id,
            role: Role::Customer,
            session_id: "s".into(),
            restricted: false,
        }),
        origin: "127.0.0.1".into(),
        clock: None,
    };
    let form = serde_json::json!({"kind": "current", "currency": "BYN", "consents": [{"document": "terms", "version": "2026-01"}]});
    let account = bank.open_account(&customer, None, serde_json::from_value(form).unwrap()).await.unwrap();
    let rows = kassa_store::sql::read(&**bank.database(), |tx| {
        tx.query("SELECT account_id FROM system_accounts WHERE kind = 'cash' AND currency = 'BYN'", &[])
    })
    .await
    .unwrap();
    let cash = rows[0].int(0).unwrap();
    let mut hold = transfer(2, account.id, cash, 10_00, TransferKind::Withdrawal, "hold");
    hold.op = TransferOp::Pending { timeout_s: None };
    let mut post = transfer(3, account.id, cash, 7_00, TransferKind::Withdrawal, "ATM, \"Main St\"");
    post.op = TransferOp::Post { pending_id: TransferId::from_bytes([2; 16]) };
    let steps = [
        (march(10, 9, 0), transfer(1, cash, account.id, 50_00, TransferKind::Deposit, "salary")),
        (march(10, 12, 0), hold),
        (march(10, 23, 59), post),
        (march(11, 8, 0), transfer(4, cash, account.id, 1_00, TransferKind::Deposit, "next day")),
    ];
    for (at_us, step) in steps {
        let outcome = ledger_store.apply(vec![vec![step]], at_us).await.unwrap();
        assert!(outcome[0][0].is_ok(), "{outcome:?}");
    }
    account.number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kassa_statement_exports_json_csv_and_xlsx() {
    let dir = tempfile::tempdir().unwrap();
    let number = populate(dir.path()).await;

    let json = run(dir.path(), &["--account", &number, "--from", "2026-03-10", "--to", "2026-03-10"]).await;
    assert_eq!(json.status.code(), Some(0), "{}", describe(&json));
    let statement: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    assert_eq!(statement["account"]["number"], number.as_str());
    assert_eq!(statement["opening_balance"], "0.00");
    assert_eq!(statement["closing_balance"], "43.00");
    assert_eq!(statement["total_credits"], "50.00");
    assert_eq!(statement["total_debits"], "7.00");
    // The hold is not a line: only what moved the posted balance is.
    let lines: Vec<(&str, &str, &str)> = statement["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["description"].as_str().unwrap(), i["debit"].as_str().unwrap(), i["credit"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, [("salary", "", "50.00"), ("ATM, \"Main St\"", "7.00", "")]);
    assert_eq!(statement["items"][1]["at"], "2026-03-10T23:59:00+03:00");
    assert_eq!(statement["items"][1]["counterparty_name"], "cash desk");
    let stderr = String::from_utf8_lossy(&json.stderr);
    assert!(stderr.contains("2 transfers"), "{}", describe(&json));

    let csv_path = dir.path().join("march.csv");
    let csv = run(
        dir.path(),
        &["--account", &number, "--from", "2026-03-10", "--to", "2026-03-11", "--format", "csv", "--output"],
    )
    .await;
    assert_eq!(csv.status.code(), Some(2), "--output needs a file: {}", describe(&csv));
    let csv = export(dir.path(), &number, "csv", &csv_path).await;
    assert_eq!(csv.status.code(), Some(0), "{}", describe(&csv));
    assert!(csv.stdout.is_empty(), "{}", describe(&csv));
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let records: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(records.len(), 1 + 1 + 3 + 2 + 1, "{text}");
    assert!(records[1].starts_with("2026-03-10,,opening_balance,Opening balance,"), "{text}");
    assert!(records[3].contains(",\"ATM, \"\"Main St\"\"\","), "{text}");
    assert!(records[3].starts_with("2026-03-10 23:59:00,"), "{text}");
    assert!(records[5].starts_with("2026-03-11,,totals,Totals,,,7.00,51.00,,BYN"), "{text}");
    assert!(records[6].starts_with("2026-03-11,,closing_balance,Closing balance,,,,,44.00,BYN"), "{text}");

    let xlsx_path = dir.path().join("march.xlsx");
    let xlsx = export(dir.path(), &number, "xlsx", &xlsx_path).await;
    assert_eq!(xlsx.status.code(), Some(0), "{}", describe(&xlsx));
    use calamine::{Data, Reader as _, Xlsx};
    let mut workbook: Xlsx<_> = calamine::open_workbook(&xlsx_path).unwrap();
    let range = workbook.worksheet_range("Statement").unwrap();
    let rows: Vec<&[Data]> = range.rows().collect();
    assert_eq!(rows.len(), 1 + 1 + 3 + 2);
    assert!(matches!(rows[3][0], Data::DateTime(_)), "{:?}", rows[3]);
    assert_eq!(rows[5][2], Data::String("totals".into()));
    assert_eq!(rows[5][7], Data::Float(51.0));
    assert_eq!(rows[6][8], Data::Float(44.0));

    // Bad input: exit 1 with the code.
    for (args, code) in [
        (vec!["--account", number.as_str(), "--from", "2026-03-32", "--to", "2026-03-10"], "date_invalid"),
        (vec!["--account", number.as_str(), "--from", "2026-03-11", "--to", "2026-03-10"], "range_invalid"),
        (vec!["--account", "999999", "--from", "2026-03-10", "--to", "2026-03-10"], "account_not_found"),
    ] {
        let refused = run(dir.path(), &args).await;
        assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
        assert!(String::from_utf8_lossy(&refused.stderr).contains(code), "{code}: {}", describe(&refused));
    }

    // Every export is in the journal, as the command line's.
    let connection = rusqlite::Connection::open(dir.path().join("kassa.db")).unwrap();
    let (count, actors): (i64, String) = connection
        .query_row(
            "SELECT count(*), group_concat(DISTINCT actor) FROM audit_events \
             WHERE action = 'statement.export' AND origin = 'cli'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((count, actors.as_str()), (3, "system"));
}
