//! `kassa check`: proves from the database that the books balance.

use std::process::ExitCode;

use anyhow::Context as _;
use kassa_store::{CheckReport, DatabaseUrl};

use crate::DatabaseArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Checking must never create what it checks: a mistyped path or an
    // empty database is an error, not an empty ledger that balances.
    ensure_ledger_exists(&args.database.url()).await?;
    let store = args.database.open(2).await?;
    let report = CheckReport::from_inputs(store.check_inputs().await?);
    print!("{}", render(&report, store.backend()));
    Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The human report: what was checked, the totals per currency, and every
/// violation on its own line.
pub fn render(report: &CheckReport, backend: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "kassa check ({backend}): {} accounts, {} transfers", report.accounts, report.transfers);
    for (currency, totals) in &report.currencies {
        let verdict = if totals.posted_sum == 0 && totals.debits_pending == totals.credits_pending {
            "ok"
        } else {
            "NOT BALANCED"
        };
        let _ = writeln!(
            out,
            "  {currency}: {} accounts, balances sum to {}, pending {} / {} — {verdict}",
            totals.accounts, totals.posted_sum, totals.debits_pending, totals.credits_pending
        );
    }
    let checks = [
        "each currency sums to zero",
        "each cached balance equals the sum of its transfers",
        "no customer account is below its credit limit",
        "no transfer is unbalanced",
        "each history chain starts at the account's newest transfer",
        "each history link leads to an earlier transfer of the same account",
    ];
    for check in checks {
        let _ = writeln!(out, "  checked: {check}");
    }
    if !report.bank_overdrafts.is_empty() {
        let _ = writeln!(
            out,
            "  reported: {} account(s) held past their credit limit by the bank's own interest or fee debits: {:?}",
            report.bank_overdrafts.len(),
            report.bank_overdrafts.iter().map(|id| id.0).collect::<Vec<_>>()
        );
    }
    if report.is_ok() {
        let _ = writeln!(out, "OK: the books balance.");
    } else {
        let _ = writeln!(out, "FAILED: {} violation(s):", report.violations.len());
        for violation in &report.violations {
            let _ = writeln!(out, "  - {violation}");
        }
    }
    out
}

/// Refuses a database that holds no Kassa ledger, without creating or
/// migrating anything.
async fn ensure_ledger_exists(url: &str) -> anyhow::Result<()> {
    let has_ledger = match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite(path) => {
            if !path.is_file() {
                anyhow::bail!("there is no database at {}", path.display());
            }
            let connection = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("opening {}", path.display()))?;
            connection
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'transfers')",
                    [],
                    |row| row.get::<_, bool>(0),
                )
                .with_context(|| format!("reading {}", path.display()))?
        }
        DatabaseUrl::Postgres(url) => {
            let (client, connection) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.context("connecting to PostgreSQL")?;
            tokio::spawn(connection);
            client
                .query_one("SELECT to_regclass('transfers') IS NOT NULL", &[])
                .await
                .context("reading the PostgreSQL catalog")?
                .try_get::<_, bool>(0)?
        }
    };
    if !has_ledger {
        anyhow::bail!("this database holds no Kassa ledger (no transfers table); nothing to check");
    }
    Ok(())
}
