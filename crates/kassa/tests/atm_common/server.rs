//! A real `kassa serve` on loopback (SQLite in a temporary data directory,
//! free ports), a registered terminal, and a customer with a debit card and
//! a PIN, for the ATM client's tests. Every child writes to files, is
//! bounded in time and is killed when its handle drops.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::http::Http;
use crate::common::process::{self, OneShot};
pub use crate::common::process::{Finished, FirstAdmin};

/// How long a server may take to say it is open on a loaded two-core machine.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a one-shot command (`kassa terminal add`, `kassa atm --script`) may run.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);
/// The most one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub const PASSWORD: &str = "correct horse battery";
pub const PIN: &str = "4729";

/// Whether `text` shows `pin` as a word of its own. A PIN is four digits,
/// which a transfer id (hex) or a clock may hold by chance; as a word it
/// is what a leak would look like.
pub fn shows_pin(text: &str, pin: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| word == pin)
}

/// Runs a `kassa` command to its end (killed past [`COMMAND_DEADLINE`]),
/// with `stdin` as its standard input.
pub async fn run(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&Path>) -> Finished {
    OneShot::new(dir, name, args).env(env).stdin(stdin).deadline(COMMAND_DEADLINE).run().await
}

/// A running `kassa serve` on SQLite in `DIR/data`, killed when dropped.
pub struct Server {
    process: process::Server,
    pub data_dir: PathBuf,
    pub admin: FirstAdmin,
    http: Http,
}

impl Deref for Server {
    type Target = process::Server;

    fn deref(&self) -> &process::Server {
        &self.process
    }
}

impl Server {
    pub async fn start(dir: &Path) -> Server {
        let data_dir = dir.join("data");
        let data = data_dir.to_str().expect("a UTF-8 path");
        let process = process::Server::start_within(dir, "serve", &["--data-dir", data], &[], START_DEADLINE).await;
        let admin = process.admin();
        let http = Http::new(&process.base, REQUEST_TIMEOUT);
        Server { process, data_dir, admin, http }
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
        assert_eq!(added.code(), Some(0), "kassa terminal add: {added:?}");
        let id = added
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("id: "))
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or_else(|| panic!("no id in {}", added.stdout));
        (id, key)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.http.post(path, token, body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.http.get(path, token).await
    }

    /// The first admin's current TOTP code.
    pub fn admin_totp(&self) -> String {
        self.admin.totp()
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
