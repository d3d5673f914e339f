//! Running the `kassa` binary from tests as an operator would: against a
//! data directory or URL given on the command line, never one inherited
//! from the environment.

use std::path::Path;
use std::process::{Command, Output};

/// `binary args…` run from `cwd`, with `KASSA_DATABASE_URL` and
/// `KASSA_DATA_DIR` removed from its environment.
pub fn command(binary: &str, cwd: &Path) -> Command {
    let mut command = Command::new(binary);
    command.current_dir(cwd).env_remove("KASSA_DATABASE_URL").env_remove("KASSA_DATA_DIR");
    command
}

/// `binary` with `args` then `--data-dir dir`, run from `dir`.
pub fn with_data_dir<I, S>(binary: &str, dir: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = command(binary, dir);
    command.args(args).arg("--data-dir").arg(dir);
    command
}

/// Runs the command to its end on a blocking thread; panics (failing the
/// test) when it cannot be started.
#[allow(clippy::panic, reason = "test support: a binary that does not start fails the test")]
pub async fn output(mut command: Command) -> Output {
    match tokio::task::spawn_blocking(move || command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => panic!("the kassa binary does not run: {error}"),
        Err(error) => panic!("the command's thread failed: {error}"),
    }
}

/// Exit code, stdout and stderr, for an assertion's message.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
