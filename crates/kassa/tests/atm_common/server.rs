//! A real `kassa serve` on loopback (SQLite in a temporary data directory,
//! free ports), a registered terminal, and a customer with a debit card and
//! a PIN, for the ATM client's tests. Every child writes to files, is
//! bounded in time and is killed when its handle drops.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

pub const KASSA: &str = env!("CARGO_BIN_EXE_kassa");
/// How long a server may take to say it is open on a loaded two-core machine.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a one-shot command (`kassa terminal add`, `kassa atm --script`) may run.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

pub const PASSWORD: &str = "correct horse battery";
pub const PIN: &str = "4729";

/// Whether `text` shows `pin` as a word of its own. A PIN is four digits,
/// which a transfer id (hex) or a clock may hold by chance; as a word it
/// is what a leak would look like.
pub fn shows_pin(text: &str, pin: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| word == pin)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A `kassa` command without any inherited `KASSA_*` setting, run in `dir`.
pub fn kassa(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(KASSA);
    command.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_none_or(|key| key.starts_with("KASSA_")) {
            command.env_remove(&key);
        }
    }
    // Pinned certificates go to the test's own directory, never the user's.
    command.env("XDG_CONFIG_HOME", dir.join("config"));
    command.envs(env.iter().map(|(key, value)| (OsStr::new(key), OsStr::new(value))));
    command
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to its end (killed past [`COMMAND_DEADLINE`]), with
/// `stdin` as its standard input.
pub async fn run(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&Path>) -> Finished {
    let (stdout, stderr) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.err")));
    let mut command = kassa(dir, args, env);
    command
        .stdin(match stdin {
            Some(path) => Stdio::from(std::fs::File::open(path).expect("the stdin file")),
            None => Stdio::null(),
        })
        .stdout(std::fs::File::create(&stdout).expect("a stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("a stderr file"));
    let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
    let deadline = Instant::now() + COMMAND_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} still running after {} s:\n{}\n{}",
                COMMAND_DEADLINE.as_secs(),
                read(&stdout),
                read(&stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Finished { code: status.code(), stdout: read(&stdout), stderr: read(&stderr) }
}

/// A running `kassa serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT` of the terminal port.
    pub terminal: String,
    pub admin_password: String,
    pub admin_totp_secret: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    pub async fn start(dir: &Path) -> Server {
        let data_dir = dir.join("data");
        let (stdout, stderr) = (dir.join("serve.out"), dir.join("serve.err"));
        let data = data_dir.to_str().expect("a UTF-8 path");
        let child = kassa(
            dir,
            &["serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--terminal-listen", "127.0.0.1:0"],
            &[],
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("a stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("a stderr file"))
        .spawn()
        .expect("kassa serve starts");
        let mut server = Server {
            child,
            dir: dir.to_path_buf(),
            data_dir,
            stdout,
            stderr,
            base: String::new(),
            terminal: String::new(),
            admin_password: String::new(),
            admin_totp_secret: String::new(),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let out = read(&server.stdout);
            let base = out
                .lines()
                .find_map(|line| line.split_once(" is open: ").map(|(_, rest)| rest))
                .and_then(|rest| rest.split_once("/api/v1").map(|(base, _)| base.to_owned()));
            let terminal = out.lines().find_map(|line| {
                line.split_once("Terminals (ATM protocol over TLS): ")
                    .and_then(|(_, rest)| rest.split([',', ' ']).next())
                    .map(str::to_owned)
            });
            if let (Some(base), Some(terminal)) = (base, terminal) {
                server.base = base;
                server.terminal = terminal;
                server.admin_password = out
                    .lines()
                    .find_map(|line| line.strip_prefix("First admin created: login `admin`, password "))
                    .expect("the first admin's password")
                    .trim()
                    .to_owned();
                server.admin_totp_secret = out
                    .lines()
                    .find_map(|line| line.split_once("secret=").map(|(_, rest)| rest.split('&').next().unwrap_or("")))
                    .expect("the first admin's TOTP secret")
                    .to_owned();
                return server;
            }
            if let Some(status) = server.child.try_wait().expect("the child can be polled") {
                panic!("kassa serve exited ({status}):\n{}", server.describe());
            }
            assert!(Instant::now() < deadline, "kassa serve not open:\n{}", server.describe());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn describe(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", read(&self.stdout), read(&self.stderr))
    }

    pub fn ca(&self) -> PathBuf {
        self.data_dir.join("tls").join("ca.pem")
    }

    /// Registers a terminal; returns its id and the path of its key file.
    pub async fn add_terminal(&self, name: &str) -> (u64, PathBuf) {
        let key = self.dir.join(format!("{}.key", name.replace(' ', "-")));
        let data = self.data_dir.to_str().expect("a UTF-8 path");
        let added = run(
            &self.dir,
            "terminal-add",
            &["terminal", "add", "--data-dir", data, "--name", name, "--key-file", key.to_str().expect("UTF-8")],
            &[],
            None,
        )
        .await;
        assert_eq!(added.code, Some(0), "kassa terminal add: {added:?}");
        let id = added
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("id: "))
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or_else(|| panic!("no id in {}", added.stdout));
        (id, key)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("a client");
        let mut request = client.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|error| panic!("POST {path}: {error}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("a client");
        let response = client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The first admin's current TOTP code.
    pub fn admin_totp(&self) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
        kassa_service::crypto::totp::code_at(
            &kassa_service::crypto::totp::base32_decode(&self.admin_totp_secret),
            i64::try_from(now).expect("seconds fit"),
        )
    }
}

/// A registered customer with a debit card whose PIN is set.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: i64,
    pub phone: String,
    pub token: String,
    pub account_id: i64,
    /// The account number (as the protocol names accounts).
    pub account: String,
    pub card: String,
}

/// Registers customer `n` and opens a BYN debit card with [`PIN`].
pub async fn customer_with_card(server: &Server, n: u32) -> Customer {
    let form = json!({
        "first_name": "Anna", "last_name": "Ivanova", "phone": format!("+3752911100{n:02}"),
        "email": format!("c{n}@example.com"), "password": PASSWORD,
        "passport_number": format!("MP12345{n:02}"), "personal_id": format!("30101{n:02}A001PB5"),
    });
    let (status, body) = server.post("/api/v1/auth/register", None, &form).await;
    assert_eq!(status, 201, "register: {body}\n{}", server.describe());
    let token = body["access_token"].as_str().expect("a token").to_owned();
    let id = body["customer"]["id"].as_i64().expect("a customer id");
    let phone = body["customer"]["phone"].as_str().expect("a phone").to_owned();
    let consents = json!([{"document": "terms", "version": "2026-01"}, {"document": "cards", "version": "2026-01"}]);
    let (status, account) = server
        .post("/api/v1/accounts", Some(&token), &json!({"kind": "debit_card", "currency": "BYN", "consents": consents}))
        .await;
    assert_eq!(status, 201, "open a card: {account}");
    let account_id = account["id"].as_i64().expect("an account id");
    let number = account["number"].as_str().expect("an account number").to_owned();
    let (status, revealed) = server
        .post(&format!("/api/v1/accounts/{account_id}/card/reveal"), Some(&token), &json!({"password": PASSWORD}))
        .await;
    assert_eq!(status, 200, "reveal: {revealed}");
    let card = revealed["number"].as_str().expect("a card number").to_owned();
    let (status, body) = server
        .post(
            &format!("/api/v1/accounts/{account_id}/card/pin"),
            Some(&token),
            &json!({"password": PASSWORD, "pin": PIN}),
        )
        .await;
    assert!((200..300).contains(&status), "set the PIN: {status} {body}");
    Customer { id, phone, token, account_id, account: number, card }
}

/// The account's balance as the HTTP API shows it.
pub async fn http_balance(server: &Server, customer: &Customer) -> String {
    let (status, body) = server.get(&format!("/api/v1/accounts/{}", customer.account_id), &customer.token).await;
    assert_eq!(status, 200, "{body}");
    body["balance"].as_str().expect("a balance").to_owned()
}
