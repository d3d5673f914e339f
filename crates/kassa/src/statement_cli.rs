//! `kassa statement --account NUMBER --from DATE --to DATE --format csv|xlsx|json`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub serve: crate::serve::ServeArgs,
}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("statements are not built yet")
}
