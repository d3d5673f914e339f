//! Real `kassa` processes for the binary's tests: a command with a clean
//! environment, a one-shot command bounded in time, and a running
//! `kassa serve` on free loopback ports that is stopped by SIGTERM or killed
//! when its handle drops.
//!
//! Every child writes to files (a chatty child can never block on a full
//! pipe), is bounded in time, and is killed when its handle is dropped, so a
//! failing test leaves no process behind.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kassa_service::crypto::totp;

pub const KASSA: &str = env!("CARGO_BIN_EXE_kassa");
/// How long a server may take to print that it is open: far above what it
/// needs on a loaded two-core machine, far below a hung test.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a server may take to drain and exit after SIGTERM.
pub const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// How long a one-shot command (`kassa audit verify`, `kassa check`) may run.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(30);
/// How often a child is polled while it runs or starts.
const POLL: Duration = Duration::from_millis(50);

/// Writes straight to the process's stderr: the test harness captures
/// `eprintln!`, and measured figures should be seen on every run.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A file's text, or nothing when the child has not written it yet.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The last `lines` lines of `text`, each ending in a newline.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].iter().map(|line| format!("{line}\n")).collect()
}

/// A `kassa` command with a clean environment: no inherited `KASSA_*`
/// setting (a developer's shell may have some), run in `dir` so that no
/// stray `./kassa.toml` is read, with `dir/config` as its configuration
/// home so that pinned certificates go to the test's own directory, never
/// the user's. Standard input is empty.
pub fn kassa(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(KASSA);
    command.args(args).current_dir(dir).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_none_or(|key| key.starts_with("KASSA_")) {
            command.env_remove(&key);
        }
    }
    command.env("XDG_CONFIG_HOME", dir.join("config"));
    command.envs(env.iter().map(|(key, value)| (OsStr::new(key), OsStr::new(value))));
    command
}

/// Sends the child's standard output and error to files.
pub fn into_files(command: &mut Command, stdout: &Path, stderr: &Path) {
    command
        .stdout(std::fs::File::create(stdout).expect("a stdout file"))
        .stderr(std::fs::File::create(stderr).expect("a stderr file"));
}

/// What a stopped server or a finished command left behind.
#[derive(Debug)]
pub struct Finished {
    pub name: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The exit code; `None` when a signal ended the child.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn describe(&self) -> String {
        format!(
            "{}: {}\n--- stdout\n{}--- stderr (tail)\n{}",
            self.name,
            self.status,
            tail(&self.stdout, 40),
            tail(&self.stderr, 30)
        )
    }
}

/// A one-shot `kassa` command: its arguments, environment and standard
/// input, run to its end into `NAME.out` and `NAME.err` in `dir`.
pub struct OneShot<'a> {
    dir: &'a Path,
    name: &'a str,
    args: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    stdin: Option<&'a Path>,
    deadline: Duration,
}

impl<'a> OneShot<'a> {
    pub fn new(dir: &'a Path, name: &'a str, args: &'a [&'a str]) -> OneShot<'a> {
        OneShot { dir, name, args, env: &[], stdin: None, deadline: COMMAND_DEADLINE }
    }

    pub fn env(mut self, env: &'a [(&'a str, &'a str)]) -> OneShot<'a> {
        self.env = env;
        self
    }

    /// A file to read as standard input instead of nothing.
    pub fn stdin(mut self, path: Option<&'a Path>) -> OneShot<'a> {
        self.stdin = path;
        self
    }

    pub fn deadline(mut self, deadline: Duration) -> OneShot<'a> {
        self.deadline = deadline;
        self
    }

    /// Runs the command to its end; past the deadline it is killed and the
    /// test fails.
    pub async fn run(self) -> Finished {
        let OneShot { dir, name, args, env, stdin, deadline } = self;
        let (stdout, stderr) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.err")));
        let mut command = kassa(dir, args, env);
        if let Some(path) = stdin {
            command.stdin(Stdio::from(std::fs::File::open(path).expect("the stdin file")));
        }
        into_files(&mut command, &stdout, &stderr);
        let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let until = Instant::now() + deadline;
        let status = loop {
            if let Some(status) = child.try_wait().expect("the child can be polled") {
                break status;
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} still running after {} s, killed:\n--- stdout\n{}--- stderr\n{}",
                    deadline.as_secs(),
                    read(&stdout),
                    read(&stderr)
                );
            }
            tokio::time::sleep(POLL).await;
        };
        Finished { name: name.to_owned(), status, stdout: read(&stdout), stderr: read(&stderr) }
    }
}

/// Runs a one-shot `kassa` command with no extra environment to its end,
/// killing it past [`COMMAND_DEADLINE`].
pub async fn run_kassa(dir: &Path, name: &str, args: &[&str]) -> Finished {
    OneShot::new(dir, name, args).run().await
}

/// The first admin's credentials, as `kassa serve` prints them once.
#[derive(Clone, Debug)]
pub struct FirstAdmin {
    pub password: String,
    /// Base32, as in the otpauth URI.
    pub totp_secret: String,
}

impl FirstAdmin {
    /// The current TOTP code.
    pub fn totp(&self) -> String {
        totp_now(&self.totp_secret)
    }
}

/// The current TOTP code of a base32 secret.
pub fn totp_now(secret: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is past 1970").as_secs();
    totp::code_at(&totp::base32_decode(secret), i64::try_from(now).expect("seconds fit an i64"))
}

/// The first admin's password and TOTP secret from a first start's stdout.
pub fn first_admin(stdout: &str) -> Option<FirstAdmin> {
    let password = stdout.lines().find_map(|line| {
        line.strip_prefix("First admin created: login `admin`, password ").map(|rest| rest.trim().to_owned())
    })?;
    let totp_secret = stdout
        .lines()
        .find_map(|line| line.split_once("otpauth://").map(|(_, uri)| uri.to_owned()))
        .and_then(|uri| totp_secret_of(&uri))?;
    Some(FirstAdmin { password, totp_secret })
}

/// The base32 secret of an otpauth URI.
pub fn totp_secret_of(uri: &str) -> Option<String> {
    let secret = uri.split_once("secret=")?.1.split('&').next()?;
    (!secret.is_empty()).then(|| secret.to_owned())
}

/// The terminal port's address and logical clock from the line
/// "Terminals (ATM protocol over TLS): ADDR, logical clock at N".
fn terminal_line(stdout: &str) -> Option<(String, u64)> {
    stdout.lines().find_map(|line| {
        let rest = line.strip_prefix("Terminals (ATM protocol over TLS): ")?;
        let (address, clock) = rest.split_once(", logical clock at ")?;
        Some((address.trim().to_owned(), clock.trim().parse().ok()?))
    })
}

/// A running `kassa serve`; killed when dropped.
pub struct Server {
    pub name: String,
    child: Child,
    /// The test's directory the server runs in.
    pub dir: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// `http://127.0.0.1:PORT` (or `https://`).
    pub base: String,
    /// `127.0.0.1:PORT` of the terminal port.
    pub terminal: String,
    /// The terminal server's logical clock when it started.
    pub clock: u64,
    /// Only a start that created the first admin prints one.
    pub admin: Option<FirstAdmin>,
}

impl Server {
    /// Starts `kassa serve --listen 127.0.0.1:0 --terminal-listen
    /// 127.0.0.1:0 ARGS` in `dir` (output to `NAME.out` and `NAME.err`)
    /// and waits until it prints that it is open.
    pub async fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_within(dir, name, args, env, START_DEADLINE).await
    }

    /// [`Server::start`] with its own start deadline.
    pub async fn start_within(
        dir: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        deadline: Duration,
    ) -> Server {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--terminal-listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut command = kassa(dir, &all, env);
        into_files(&mut command, &stdout, &stderr);
        let child = command.spawn().unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let mut server = Server {
            name: name.to_owned(),
            child,
            dir: dir.to_path_buf(),
            stdout,
            stderr,
            base: String::new(),
            terminal: String::new(),
            clock: 0,
            admin: None,
        };
        server.wait_until_open(deadline).await;
        server
    }

    async fn wait_until_open(&mut self, deadline: Duration) {
        let until = Instant::now() + deadline;
        loop {
            let stdout = read(&self.stdout);
            if let Some(base) = stdout
                .lines()
                .find_map(|line| line.split_once(" is open: ").map(|(_, rest)| rest))
                .and_then(|rest| rest.split_once("/api/v1").map(|(base, _)| base.to_owned()))
            {
                assert!(
                    base.starts_with("http://127.0.0.1:") || base.starts_with("https://127.0.0.1:"),
                    "{}: not on loopback: {base}",
                    self.name
                );
                // The terminal port opens before the HTTP one, so its line
                // is printed by the time "is open" is.
                let (terminal, clock) = terminal_line(&stdout)
                    .unwrap_or_else(|| panic!("{}: open without a terminal line:\n{}", self.name, self.describe()));
                self.base = base;
                self.terminal = terminal;
                self.clock = clock;
                self.admin = first_admin(&stdout);
                return;
            }
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                panic!("{} exited ({status}) before it was open:\n{}", self.name, self.describe());
            }
            if Instant::now() >= until {
                panic!("{} was not open after {} s:\n{}", self.name, deadline.as_secs(), self.describe());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The server's name, pid, and the tails of its output, for a failure
    /// message.
    pub fn describe(&self) -> String {
        format!(
            "{} (pid {})\n--- stdout\n{}--- stderr (tail)\n{}",
            self.name,
            self.child.id(),
            tail(&read(&self.stdout), 40),
            tail(&read(&self.stderr), 30)
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The first admin this start created; the test fails if it created none.
    pub fn admin(&self) -> FirstAdmin {
        self.admin.clone().unwrap_or_else(|| panic!("{} created no first admin:\n{}", self.name, self.describe()))
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL reaches the server");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most [`STOP_DEADLINE`]) for the server
    /// to drain and exit.
    pub async fn stop(mut self) -> Finished {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status().expect("kill(1) runs");
        assert!(signalled.success(), "kill -TERM {pid} failed: {signalled}");
        let until = Instant::now() + STOP_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                break status;
            }
            if Instant::now() >= until {
                panic!("{} still running {} s after SIGTERM:\n{}", self.name, STOP_DEADLINE.as_secs(), self.describe());
            }
            tokio::time::sleep(POLL).await;
        };
        Finished { name: self.name.clone(), status, stdout: read(&self.stdout), stderr: read(&self.stderr) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
