//! `kassa`: the one binary. Each subcommand is a thin shell over the library
//! crates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use kassa_store::LedgerStore;

mod atm;
mod bench;
mod bench_http;
mod bench_terminal;
mod check;
mod config;
mod datadir;
mod demo;
mod dev;
mod jobs;
mod serve;
mod statement_cli;
mod tls;

#[derive(Debug, Parser)]
#[command(name = "kassa", version, about = "A banking and payments server: a double-entry ledger with exact money.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the database is: a data directory (SQLite file inside) or a URL.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// The data directory; the SQLite database is `<DIR>/kassa.db`.
    #[arg(long, env = "KASSA_DATA_DIR", default_value = "./kassa-data")]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`; overrides --data-dir.
    #[arg(long, env = "KASSA_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("kassa.db").display()),
        }
    }

    /// Opens the store the URL names, applying migrations.
    pub async fn open(&self, pool_size: usize) -> anyhow::Result<Arc<dyn LedgerStore>> {
        open_store(&self.url(), pool_size).await
    }
}

/// Opens the engine a database URL names; anything else is refused.
pub async fn open_store(url: &str, pool_size: usize) -> anyhow::Result<Arc<dyn LedgerStore>> {
    Ok(serve::open_both(url, pool_size).await?.0)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bank: the HTTP API and web pages, and the terminal (ATM) port.
    Serve(serve::ServeArgs),
    /// An ATM client for the terminal port: a screen, or a script (docs/atm.md).
    Atm(atm::Args),
    /// Staff users.
    #[command(subcommand)]
    Staff(StaffCommand),
    /// Registered terminals (ATMs).
    #[command(subcommand)]
    Terminal(TerminalCommand),
    /// The audit journal.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Prove from the database that the books balance; exits 1 on any violation.
    Check(check::Args),
    /// Export an account's statement (CSV, XLSX or JSON).
    Statement(statement_cli::Args),
    /// Scheduled jobs (interest), run by hand.
    #[command(subcommand)]
    Jobs(jobs::Command),
    /// Measure durable transfers per second against a plain SQL baseline.
    Bench(bench::Args),
    /// Tools for the project's own tests (crash and multi-process loads).
    #[command(hide = true, subcommand)]
    Dev(dev::Command),
}

#[derive(Debug, Subcommand)]
enum StaffCommand {
    /// Add a staff user: kassa staff add --login L --role teller|manager|admin --password-stdin
    Add(serve::StaffAddArgs),
}

#[derive(Debug, Subcommand)]
enum TerminalCommand {
    /// Register an ATM: kassa terminal add --name N; prints its id and key once.
    Add(serve::TerminalAddArgs),
    /// List the registered terminals.
    List(serve::ServeArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk every hash chain; exits 1 and names the event if one was altered, inserted or deleted.
    Verify(serve::ServeArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a commented kassa.toml with every setting and its default.
    Default,
}

#[allow(clippy::print_stdout)]
fn print_default_config() {
    print!("{}", config::DEFAULT_TOML);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::serve(args).await,
            Command::Atm(args) => atm::run(args).await,
            Command::Staff(StaffCommand::Add(args)) => serve::staff_add(args).await,
            Command::Terminal(TerminalCommand::Add(args)) => serve::terminal_add(args).await,
            Command::Terminal(TerminalCommand::List(args)) => serve::terminal_list(args).await,
            Command::Audit(AuditCommand::Verify(args)) => serve::audit_verify(args).await,
            Command::Config(ConfigCommand::Default) => {
                print_default_config();
                Ok(ExitCode::SUCCESS)
            }
            Command::Check(args) => check::run(args).await,
            Command::Statement(args) => statement_cli::run(args).await,
            Command::Jobs(command) => jobs::run(command).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Dev(command) => dev::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
