//! `kassa jobs run interest [--as-of DATE]`: scheduled jobs run by hand.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a job now.
    #[command(subcommand)]
    Run(Job),
}

#[derive(Debug, clap::Subcommand)]
pub enum Job {
    /// Accrue interest up to a day and post what is due (idempotent per account and day).
    Interest(crate::serve::ServeArgs),
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(Job::Interest(_args)) => anyhow::bail!("the interest job is not built yet"),
    }
}
