//! `kassa jobs run interest [--as-of DATE]`: scheduled jobs run by hand.

use std::process::ExitCode;

use kassa_service::Caller;
use kassa_service::interest::{RunForm, RunReport};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a job now.
    #[command(subcommand)]
    Run(Job),
}

#[derive(Debug, clap::Subcommand)]
pub enum Job {
    /// Accrue interest up to a day and post what is due (idempotent per account and day).
    Interest(InterestArgs),
}

#[derive(Debug, clap::Args)]
pub struct InterestArgs {
    #[command(flatten)]
    pub serve: crate::serve::ServeArgs,
    /// The last day to accrue, YYYY-MM-DD in the bank's zone (default: yesterday).
    #[arg(long)]
    pub as_of: Option<String>,
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(Job::Interest(args)) => interest(args).await,
    }
}

#[allow(clippy::print_stdout)]
async fn interest(args: InterestArgs) -> anyhow::Result<ExitCode> {
    let config = crate::serve::load_config(&args.serve)?;
    let (_data_dir, bank) = crate::serve::open_bank(&config).await?;
    let report = bank
        .run_interest(&Caller::anonymous("cli"), RunForm { as_of: args.as_of })
        .await
        .map_err(|error| anyhow::anyhow!("{error} ({})", error.code()))?;
    print!("{}", render(&report));
    Ok(if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What a run did, one line per posting and per failure.
pub fn render(report: &RunReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "interest run as of {}: {} account(s), {} day(s) accrued, {} posting(s), {} failure(s){}",
        report.as_of,
        report.accounts,
        report.days_accrued,
        report.postings.len(),
        report.failures.len(),
        if report.raced > 0 { format!(", {} left to a concurrent run", report.raced) } else { String::new() }
    );
    for posting in &report.postings {
        let _ = writeln!(
            out,
            "  posted: account {} {} {} {} {}{}{}",
            posting.account,
            posting.month,
            posting.direction,
            posting.amount,
            posting.currency,
            if posting.replayed { " (already in the ledger)" } else { "" },
            if posting.overdraft { " (past the credit limit)" } else { "" },
        );
    }
    for failure in &report.failures {
        let _ = writeln!(
            out,
            "  failed: account {} {}: {} ({})",
            failure.account,
            failure.month.as_deref().unwrap_or("-"),
            failure.detail,
            failure.code
        );
    }
    out
}
