//! `kassa statement --account NUMBER --from DATE --to DATE --format csv|xlsx|json [--output FILE]`.
//!
//! Runs as the bank's `cli` caller (a staff-level read of any customer
//! account), journaled as `statement.export` with origin `cli` like a
//! request over HTTP. The history is read in pages; a progress bar on
//! stderr follows them (it hides itself when stderr is not a terminal).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use kassa_service::Caller;
use kassa_service::statements::{self, StatementQuery};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account's number (IBAN, spaces allowed) or id.
    #[arg(long)]
    pub account: String,
    /// The first day, YYYY-MM-DD in the bank's time zone (included).
    #[arg(long)]
    pub from: String,
    /// The last day, YYYY-MM-DD in the bank's time zone (included).
    #[arg(long)]
    pub to: String,
    /// csv, xlsx or json.
    #[arg(long, default_value = "json")]
    pub format: String,
    /// Where to write the statement (default: standard output).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub serve: crate::serve::ServeArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = crate::serve::load_config(&args.serve)?;
    let (_, bank) = crate::serve::open_bank(&config).await?;
    let query = StatementQuery { from: Some(args.from), to: Some(args.to), format: Some(args.format) };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} reading history {bar:40} {percent}% {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |done: u64, total: u64| {
        if bar.length() != Some(total) {
            bar.set_length(total);
        }
        bar.set_position(done);
    };
    let made = bank.statement_by_number(&Caller::anonymous("cli"), &args.account, &query, &mut progress).await;
    bar.finish_and_clear();
    let (statement, format) = match made {
        Ok(made) => made,
        Err(error) => {
            eprintln!("error: {} ({})", error, error.code());
            if let kassa_service::ServiceError::Invalid(problems) = &error {
                for problem in problems {
                    eprintln!("  {}: {} ({})", problem.field, problem.detail, problem.code);
                }
            }
            return Ok(ExitCode::from(1));
        }
    };
    let body = statements::render(&statement, format).map_err(|error| anyhow::anyhow!("{error}"))?;
    match &args.output {
        Some(path) => std::fs::write(path, &body).with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&body).context("writing the statement")?;
            out.flush().context("writing the statement")?;
        }
    }
    eprintln!(
        "statement of {} from {} to {}: {} transfers, opening {} {}, closing {} {}{}",
        statement.account.number,
        statement.from,
        statement.to,
        statement.count,
        statement.opening_balance,
        statement.account.currency,
        statement.closing_balance,
        statement.account.currency,
        args.output.as_ref().map(|path| format!(", written to {}", path.display())).unwrap_or_default(),
    );
    Ok(ExitCode::SUCCESS)
}
