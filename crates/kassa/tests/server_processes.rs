//! Real `kassa serve` processes, driven over HTTP on 127.0.0.1.
//!
//! What only separate processes can show: a session revoked on one node
//! stops working on another within a second (each keeps a half-second
//! session cache); fifty retries of one idempotent transfer spread over two
//! nodes move money once; `kassa audit verify` names an event altered or
//! deleted by hand in the database; and with every log at TRACE no password,
//! TOTP secret or token reaches the log, an error body or the journal.
//!
//! Every child writes to files (a chatty child can never block on a full
//! pipe), is bounded in time, and is killed when its handle is dropped, so a
//! failing test leaves no server behind.

#![allow(clippy::expect_used, clippy::panic, reason = "a test fails by panicking, with the reason in the message")]

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kassa_service::crypto::totp;
use kassa_testkit::postgres::TempPostgres;
use reqwest::Method;
use serde_json::{Value, json};

use common::process::{Finished, FirstAdmin, Server, read, report, run_kassa, totp_secret_of};

/// The most one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The most a whole test may take; past it the test fails (and its children
/// are killed as their handles drop).
const TEST_DEADLINE: Duration = Duration::from_secs(120);
/// The promise under test: a revocation reaches every node within a second.
const REVOCATION_MAX: Duration = Duration::from_secs(1);
/// How long to keep polling before giving up on a revocation altogether, so
/// that a failure says how late it was rather than only "late".
const REVOCATION_GIVE_UP: Duration = Duration::from_secs(5);

const PASSWORD: &str = "correct horse battery";

// ----------------------------------------------------------- databases

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
}

/// A database for one test: a file in the data directory, or a fresh
/// PostgreSQL database (dropped with the guard).
struct Database {
    engine: Engine,
    /// The arguments `kassa serve`, `kassa audit verify` and friends take.
    args: Vec<String>,
    url: String,
    _postgres: Option<TempPostgres>,
}

impl Database {
    /// `None` when PostgreSQL is wanted but absent outside CI (the skip is
    /// announced loudly by `TempPostgres`).
    async fn create(engine: Engine, data_dir: &Path) -> Option<Database> {
        let dir = data_dir.display().to_string();
        match engine {
            Engine::Sqlite => {
                let url = format!("sqlite://{}", data_dir.join("kassa.db").display());
                Some(Database { engine, args: vec!["--data-dir".into(), dir], url, _postgres: None })
            }
            Engine::Postgres => {
                let postgres = TempPostgres::create().await?;
                let url = postgres.url().to_owned();
                let args = vec!["--data-dir".into(), dir, "--database-url".into(), url.clone()];
                Some(Database { engine, args, url, _postgres: Some(postgres) })
            }
        }
    }

    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    async fn connect(&self) -> Raw {
        match self.engine {
            Engine::Sqlite => {
                let path = self.url.strip_prefix("sqlite://").expect("a sqlite:// URL");
                let connection = rusqlite::Connection::open(path).expect("the SQLite database opens");
                connection.busy_timeout(Duration::from_secs(10)).expect("a busy timeout");
                Raw::Sqlite(connection)
            }
            Engine::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("PostgreSQL connects");
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Raw::Postgres(client)
            }
        }
    }
}

/// A plain connection to the bank's database, behind the server's back:
/// what an intruder with database access (or a curious operator) has.
enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Raw {
    async fn execute(&self, sql: &str) {
        match self {
            Raw::Sqlite(connection) => {
                connection.execute_batch(sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
            }
            Raw::Postgres(client) => {
                client.batch_execute(sql).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
            }
        }
    }

    /// Rows of integers.
    async fn ints(&self, sql: &str) -> Vec<Vec<i64>> {
        match self {
            Raw::Sqlite(connection) => {
                let mut statement = connection.prepare(sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
                let columns = statement.column_count();
                let rows = statement
                    .query_map([], |row| (0..columns).map(|i| row.get::<_, i64>(i)).collect::<Result<Vec<_>, _>>())
                    .unwrap_or_else(|error| panic!("{sql}: {error}"));
                rows.collect::<Result<Vec<_>, _>>().unwrap_or_else(|error| panic!("{sql}: {error}"))
            }
            Raw::Postgres(client) => client
                .query(sql, &[])
                .await
                .unwrap_or_else(|error| panic!("{sql}: {error}"))
                .iter()
                .map(|row| (0..row.len()).map(|i| row.get::<_, i64>(i)).collect())
                .collect(),
        }
    }

    async fn tables(&self) -> Vec<String> {
        match self {
            Raw::Sqlite(connection) => {
                let mut statement =
                    connection.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").expect("sqlite_master");
                let names = statement.query_map([], |row| row.get::<_, String>(0)).expect("table names");
                names.collect::<Result<Vec<_>, _>>().expect("table names")
            }
            Raw::Postgres(client) => client
                .query(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                    &[],
                )
                .await
                .expect("table names")
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect(),
        }
    }

    /// Every row of a table, each as one line of text holding every column
    /// (blobs as hex and as lossy UTF-8, so that text hidden in one is seen).
    async fn rows_as_text(&self, table: &str) -> Vec<String> {
        match self {
            Raw::Sqlite(connection) => {
                let sql = format!("SELECT * FROM \"{table}\"");
                let mut statement = connection.prepare(&sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
                let columns = statement.column_count();
                let rows = statement
                    .query_map([], |row| {
                        let mut line = Vec::with_capacity(columns);
                        for i in 0..columns {
                            line.push(match row.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                                rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                                rusqlite::types::ValueRef::Real(x) => x.to_string(),
                                rusqlite::types::ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
                                rusqlite::types::ValueRef::Blob(bytes) => {
                                    format!("{} {}", hex(bytes), String::from_utf8_lossy(bytes))
                                }
                            });
                        }
                        Ok(line.join(" | "))
                    })
                    .unwrap_or_else(|error| panic!("{sql}: {error}"));
                rows.collect::<Result<Vec<_>, _>>().unwrap_or_else(|error| panic!("{sql}: {error}"))
            }
            Raw::Postgres(client) => {
                let sql = format!("SELECT row_to_json(t)::text FROM \"{table}\" t");
                client
                    .query(&sql, &[])
                    .await
                    .unwrap_or_else(|error| panic!("{sql}: {error}"))
                    .iter()
                    .map(|row| row.get::<_, String>(0))
                    .collect()
            }
        }
    }
}

/// A log line without its colours (the text format colours its output even
/// into a file), so that a value is never split by an escape sequence.
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- HTTP

struct Answer {
    status: u16,
    body: Value,
    text: String,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    fn field(&self, name: &str) -> String {
        self.body[name].as_str().unwrap_or_else(|| panic!("no {name} in {}", self.text)).to_owned()
    }
}

/// An HTTP client that keeps every error body it receives, so a test can
/// check afterwards that none of them carried a secret.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    error_bodies: Arc<Mutex<Vec<String>>>,
}

impl Http {
    fn new() -> Http {
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).no_proxy().build().expect("an HTTP client");
        Http { client, error_bodies: Arc::default() }
    }

    async fn answer(&self, what: &str, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap_or_else(|error| panic!("{what}: no answer: {error}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|error| panic!("{what}: reading the body: {error}"));
        if status >= 400 {
            self.error_bodies.lock().expect("the error list").push(format!("{what} -> {status}: {text}"));
        }
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, body, text }
    }

    async fn send(&self, method: Method, url: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        let what = format!("{method} {url}");
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.answer(&what, request).await
    }

    /// Sends `bytes` as they are, with the given content type (if any).
    async fn raw(&self, url: &str, content_type: Option<&str>, bytes: &[u8]) -> Answer {
        let mut request = self.client.post(url).body(bytes.to_vec());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.answer(&format!("POST {url} (raw)"), request).await
    }

    async fn get(&self, server: &Server, path: &str, token: &str) -> Answer {
        self.send(Method::GET, &server.url(path), Some(token), None).await
    }

    async fn post(&self, server: &Server, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.send(Method::POST, &server.url(path), token, Some(body)).await
    }

    fn error_bodies(&self) -> Vec<String> {
        self.error_bodies.lock().expect("the error list").clone()
    }
}

struct Tokens {
    access: String,
    refresh: String,
}

impl Tokens {
    fn of(answer: &Answer) -> Tokens {
        Tokens { access: answer.field("access_token"), refresh: answer.field("refresh_token") }
    }
}

struct Customer {
    id: i64,
    phone: String,
    tokens: Tokens,
}

fn registration(n: u32, password: &str) -> Value {
    json!({
        "first_name": "Anna", "last_name": "Ivanova", "phone": format!("+3752911100{n:02}"),
        "email": format!("c{n}@example.com"), "password": password,
        "passport_number": format!("MP12345{n:02}"), "personal_id": format!("30101{n:02}A001PB5"),
    })
}

async fn register(http: &Http, server: &Server, n: u32, password: &str) -> Customer {
    let answer = http.post(server, "/api/v1/auth/register", None, &registration(n, password)).await;
    assert_eq!(answer.status, 201, "register {n} on {}: {}\n{}", server.name, answer.text, server.describe());
    Customer {
        id: answer.body["customer"]["id"].as_i64().expect("a customer id"),
        phone: answer.body["customer"]["phone"].as_str().expect("a phone").to_owned(),
        tokens: Tokens::of(&answer),
    }
}

async fn login(http: &Http, server: &Server, login: &str, password: &str, code: Option<&str>) -> Answer {
    http.post(server, "/api/v1/auth/login", None, &json!({"login": login, "password": password, "totp": code})).await
}

async fn login_ok(http: &Http, server: &Server, who: &str, password: &str, code: Option<&str>) -> Tokens {
    let answer = login(http, server, who, password, code).await;
    assert_eq!(answer.status, 200, "login {who} on {}: {}\n{}", server.name, answer.text, server.describe());
    Tokens::of(&answer)
}

fn unix_now_s() -> i64 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is past 1970").as_secs();
    i64::try_from(seconds).expect("seconds fit an i64")
}

fn totp_code(base32_secret: &str) -> String {
    totp::code_at(&totp::base32_decode(base32_secret), unix_now_s())
}

/// Signs the first admin in on `server` (a TOTP code can be used once per
/// user and 30-second step, so each test does this once).
async fn admin_tokens(http: &Http, server: &Server, admin: &FirstAdmin) -> Tokens {
    login_ok(http, server, "admin", &admin.password, Some(&totp_code(&admin.totp_secret))).await
}

fn open_form() -> Value {
    json!({"kind": "current", "currency": "BYN", "consents": [{"document": "terms", "version": "2026-01"}]})
}

/// Opens a BYN current account; returns its id and number.
async fn open_account(http: &Http, server: &Server, token: &str) -> (i64, String) {
    let answer = http.post(server, "/api/v1/accounts", Some(token), &open_form()).await;
    assert_eq!(answer.status, 201, "open account on {}: {}", server.name, answer.text);
    (answer.body["id"].as_i64().expect("an account id"), answer.field("number"))
}

async fn deposit(http: &Http, server: &Server, staff_token: &str, number: &str, amount: &str) {
    let form = json!({"account": number, "amount": amount, "currency": "BYN"});
    let answer = http.post(server, "/api/v1/staff/cash/deposits", Some(staff_token), &form).await;
    assert_eq!(answer.status, 201, "deposit on {}: {}", server.name, answer.text);
}

async fn balance(http: &Http, server: &Server, token: &str, account: i64) -> String {
    let answer = http.get(server, &format!("/api/v1/accounts/{account}"), token).await;
    assert_eq!(answer.status, 200, "account {account} on {}: {}", server.name, answer.text);
    answer.field("balance")
}

async fn history(http: &Http, server: &Server, token: &str, account: i64) -> Vec<Value> {
    let answer = http.get(server, &format!("/api/v1/accounts/{account}/transactions?limit=200"), token).await;
    assert_eq!(answer.status, 200, "history of {account} on {}: {}", server.name, answer.text);
    answer.body["items"].as_array().expect("items").clone()
}

fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Runs a test body under [`TEST_DEADLINE`].
async fn bounded(test: impl Future<Output = ()>) {
    if tokio::time::timeout(TEST_DEADLINE, test).await.is_err() {
        panic!("the test did not finish within {} s", TEST_DEADLINE.as_secs());
    }
}

// ------------------------------------------------ two nodes, one database

/// Two `kassa serve` processes on one fresh PostgreSQL database, as two
/// nodes would run: separate data directories, one shared token-signing
/// key (`KASSA_TOKEN_KEY_FILE`). A starts first and creates the first admin.
struct TwoNodes {
    a: Server,
    b: Server,
    database: Database,
    dir: tempfile::TempDir,
}

async fn two_nodes() -> Option<TwoNodes> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Each node gets its own data directory below; the database's own
    // `--data-dir` argument is not used here.
    let database = Database::create(Engine::Postgres, &dir.path().join("unused")).await?;
    let key = dir.path().join("token.key");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&key).expect("a token key file");
    writeln!(file, "{}{}{}{}", random_hex(), random_hex(), random_hex(), random_hex()).expect("the token key written");
    drop(file);
    let key = key.display().to_string();
    // The nodes of one database share the card key too (a node with another
    // one refuses to start); the token key's file serves as one here.
    let env = [("KASSA_TOKEN_KEY_FILE", key.as_str()), ("KASSA_CARD_KEY_FILE", key.as_str())];
    let node = |name: &str| {
        let data_dir = dir.path().join(name).display().to_string();
        vec!["--data-dir".to_owned(), data_dir, "--database-url".to_owned(), database.url.clone()]
    };
    let args_a = node("node-a");
    let a = Server::start(dir.path(), "node-a", &args_a.iter().map(String::as_str).collect::<Vec<_>>(), &env).await;
    let args_b = node("node-b");
    let b = Server::start(dir.path(), "node-b", &args_b.iter().map(String::as_str).collect::<Vec<_>>(), &env).await;
    assert!(a.admin.is_some(), "node A, started first, creates the first admin:\n{}", a.describe());
    assert!(b.admin.is_none(), "node B found the admin A created:\n{}", b.describe());
    Some(TwoNodes { a, b, database, dir })
}

/// Polls B with a revoked access token until it answers 401; returns how
/// long after `since` that was.
async fn refused_on(http: &Http, server: &Server, token: &str, since: Instant, what: &str) -> Duration {
    loop {
        let answer = http.get(server, "/api/v1/me", token).await;
        let elapsed = since.elapsed();
        if answer.status == 401 {
            assert_eq!(answer.code(), "session_revoked", "{what}: {}", answer.text);
            return elapsed;
        }
        assert_eq!(answer.status, 200, "{what}: {} answered {}", server.name, answer.text);
        if elapsed > REVOCATION_GIVE_UP {
            panic!(
                "{what}: {} still accepts the revoked token {} ms after the revocation:\n{}",
                server.name,
                elapsed.as_millis(),
                server.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn assert_works_on(http: &Http, server: &Server, token: &str, what: &str) {
    let answer = http.get(server, "/api/v1/me", token).await;
    assert_eq!(answer.status, 200, "{what}: {} refused a live token: {}", server.name, answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_a_second_process_within_a_second() {
    bounded(async {
        let Some(nodes) = two_nodes().await else { return };
        let (a, b) = (&nodes.a, &nodes.b);
        let http = Http::new();
        let customer = register(&http, a, 1, PASSWORD).await;
        assert_works_on(&http, b, &customer.tokens.access, "a token signed by A, used on B").await;
        let mut measured = Vec::new();

        // 1. Logout on A ends the session on B.
        let session = &customer.tokens.access;
        assert_works_on(&http, b, session, "before logout").await;
        let out = http.post(a, "/api/v1/auth/logout", Some(session), &json!({})).await;
        assert_eq!(out.status, 204, "logout on A: {}", out.text);
        let since = Instant::now();
        measured.push(("logout", refused_on(&http, b, session, since, "after logout on A").await));

        // 2. A password change on A ends the customer's other sessions on B
        // (the session that changed it lives on).
        let other = login_ok(&http, a, &customer.phone, PASSWORD, None).await;
        let changing = login_ok(&http, a, &customer.phone, PASSWORD, None).await;
        assert_works_on(&http, b, &other.access, "before the password change").await;
        let new_password = "a brand new passphrase 7";
        let changed = http
            .post(
                a,
                "/api/v1/auth/password",
                Some(&changing.access),
                &json!({"current_password": PASSWORD, "new_password": new_password}),
            )
            .await;
        assert_eq!(changed.status, 204, "password change on A: {}", changed.text);
        let since = Instant::now();
        measured
            .push(("password change", refused_on(&http, b, &other.access, since, "after the password change").await));
        assert_works_on(&http, b, &changing.access, "the session that changed the password").await;

        // 3. A manager (here the admin) blocking the customer on A ends
        // every session of theirs on B.
        let admin = admin_tokens(&http, a, &a.admin()).await;
        let last = login_ok(&http, a, &customer.phone, new_password, None).await;
        assert_works_on(&http, b, &last.access, "before the block").await;
        let blocked = http
            .send(
                Method::PUT,
                &a.url(&format!("/api/v1/staff/customers/{}/status", customer.id)),
                Some(&admin.access),
                Some(&json!({"status": "blocked"})),
            )
            .await;
        assert_eq!(blocked.status, 200, "block on A: {}", blocked.text);
        let since = Instant::now();
        measured.push(("block", refused_on(&http, b, &last.access, since, "after the block").await));
        let again = login(&http, b, &customer.phone, new_password, None).await;
        assert_ne!(again.status, 200, "a blocked customer signed in on B: {}", again.text);

        let figures: Vec<String> =
            measured.iter().map(|(what, elapsed)| format!("{what} {} ms", elapsed.as_millis())).collect();
        report(&format!("revocation reached process B after: {}", figures.join(", ")));
        for (what, elapsed) in &measured {
            assert!(
                *elapsed <= REVOCATION_MAX,
                "revocation by {what} reached B only after {} ms (at most {} ms allowed)",
                elapsed.as_millis(),
                REVOCATION_MAX.as_millis()
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transfer_for_fifty_concurrent_retries_on_two_processes() {
    bounded(async {
        const RETRIES: usize = 50;
        let Some(nodes) = two_nodes().await else { return };
        let (a, b) = (&nodes.a, &nodes.b);
        let http = Http::new();
        let payer = register(&http, a, 1, PASSWORD).await;
        let payee = register(&http, b, 2, PASSWORD).await;
        let (from, from_number) = open_account(&http, a, &payer.tokens.access).await;
        let (to, _) = open_account(&http, b, &payee.tokens.access).await;
        let admin = admin_tokens(&http, a, &a.admin()).await;
        deposit(&http, a, &admin.access, &from_number, "100.00").await;

        let key = format!("retry-{}", random_hex());
        let form = json!({"from_account": from.to_string(), "to_phone": payee.phone, "amount": "7.35",
            "currency": "BYN", "description": "paid once"});
        let gate = Arc::new(tokio::sync::Barrier::new(RETRIES));
        let mut handles = Vec::new();
        for i in 0..RETRIES {
            let (node, url) =
                if i % 2 == 0 { ("A", a.url("/api/v1/transfers")) } else { ("B", b.url("/api/v1/transfers")) };
            let request =
                http.client.post(url).bearer_auth(&payer.tokens.access).header("Idempotency-Key", &key).json(&form);
            let (gate, http) = (Arc::clone(&gate), http.clone());
            handles.push(tokio::spawn(async move {
                gate.wait().await;
                (node, http.answer(&format!("retry {i} on {node}"), request).await)
            }));
        }
        let mut answers = Vec::new();
        for handle in handles {
            answers.push(handle.await.expect("a retry task"));
        }
        let failed: Vec<String> = answers
            .iter()
            .filter(|(_, answer)| answer.status != 201)
            .map(|(node, answer)| format!("{node}: {} {}", answer.status, answer.text))
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {RETRIES} retries were not 201:\n{}\n{}\n{}",
            failed.len(),
            failed.join("\n"),
            a.describe(),
            b.describe()
        );
        let ids: BTreeSet<&str> = answers.iter().map(|(_, answer)| answer.body["id"].as_str().unwrap_or("")).collect();
        assert_eq!(ids.len(), 1, "the retries named different transfers: {ids:?}");
        let id = (*ids.first().expect("one id")).to_owned();
        assert!(!id.is_empty(), "no transfer id in {}", answers[0].1.text);
        let bodies: BTreeSet<String> = answers.iter().map(|(_, answer)| answer.body.to_string()).collect();
        assert_eq!(bodies.len(), 1, "the retries were answered differently: {bodies:#?}");

        for node in [a, b] {
            assert_eq!(balance(&http, node, &payer.tokens.access, from).await, "92.65", "payer on {}", node.name);
            assert_eq!(balance(&http, node, &payee.tokens.access, to).await, "7.35", "payee on {}", node.name);
        }
        let received = history(&http, b, &payee.tokens.access, to).await;
        assert_eq!(received.len(), 1, "the payee's history: {received:#?}");
        assert_eq!(received[0]["id"], id.as_str(), "the payee's history: {received:#?}");
        assert_eq!(received[0]["amount"], "7.35", "the payee's history: {received:#?}");
        let paid = history(&http, a, &payer.tokens.access, from).await;
        let debits = paid.iter().filter(|item| item["id"] == id.as_str()).count();
        assert_eq!((paid.len(), debits), (2, 1), "the payer's history (deposit, then one transfer): {paid:#?}");

        let mut changed = form.clone();
        changed["amount"] = json!("8.00");
        for node in [b, a] {
            let request = http
                .client
                .post(node.url("/api/v1/transfers"))
                .bearer_auth(&payer.tokens.access)
                .header("Idempotency-Key", &key)
                .json(&changed);
            let reused = http.answer(&format!("changed body on {}", node.name), request).await;
            assert_eq!(
                (reused.status, reused.code()),
                (422, "idempotency_key_reused"),
                "the same key with another amount on {}: {}",
                node.name,
                reused.text
            );
        }
        assert_eq!(balance(&http, a, &payer.tokens.access, from).await, "92.65", "after the refused reuse");

        let check = run_kassa(nodes.dir.path(), "check", &["check", "--database-url", &nodes.database.url]).await;
        assert!(check.status.success(), "kassa check after the retries:\n{}", check.describe());
    })
    .await;
}

// --------------------------------------------------------------- audit

fn tampered_lines(verify: &Finished) -> Vec<&str> {
    verify.stdout.lines().filter(|line| line.starts_with("TAMPERED: ")).collect()
}

async fn verify(dir: &Path, database: &Database, name: &str) -> Finished {
    let mut args = vec!["audit", "verify"];
    args.extend(database.args());
    run_kassa(dir, name, &args).await
}

async fn assert_intact(dir: &Path, database: &Database, name: &str) {
    let verified = verify(dir, database, name).await;
    assert!(verified.status.success(), "the journal should verify:\n{}", verified.describe());
    assert!(verified.stdout.contains("ok: "), "{}", verified.describe());
    assert!(tampered_lines(&verified).is_empty(), "{}", verified.describe());
}

async fn assert_tampered(dir: &Path, database: &Database, name: &str, expected: &[&str]) -> Finished {
    let verified = verify(dir, database, name).await;
    assert_eq!(verified.status.code(), Some(1), "kassa audit verify must exit 1:\n{}", verified.describe());
    let lines = tampered_lines(&verified);
    assert!(
        lines.iter().any(|line| expected.iter().all(|part| line.contains(part))),
        "no TAMPERED line names {expected:?}:\n{}",
        verified.describe()
    );
    verified
}

async fn audit_verify_names_tampering(engine: Engine) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data_dir = dir.path().join("data");
    let Some(database) = Database::create(engine, &data_dir).await else { return };

    // Some history over HTTP: registrations, an account, a deposit, a
    // transfer, a sign-in and a sign-out.
    let server = Server::start(dir.path(), "serve", &database.args(), &[]).await;
    let http = Http::new();
    let payer = register(&http, &server, 1, PASSWORD).await;
    let payee = register(&http, &server, 2, PASSWORD).await;
    let (from, number) = open_account(&http, &server, &payer.tokens.access).await;
    open_account(&http, &server, &payee.tokens.access).await;
    let admin = admin_tokens(&http, &server, &server.admin()).await;
    deposit(&http, &server, &admin.access, &number, "50.00").await;
    let sent = http
        .post(
            &server,
            "/api/v1/transfers",
            Some(&payer.tokens.access),
            &json!({"from_account": from.to_string(), "to_phone": payee.phone, "amount": "12.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(sent.status, 201, "transfer: {}", sent.text);
    // Recipient lookups are journaled too, refusals included: enough of
    // them that each of a PostgreSQL process's eight round-robin chains
    // holds several events. Past 20 an hour they are refused (429).
    let lookup = format!("/api/v1/recipients?phone={}&currency=BYN", payee.phone.replace('+', "%2B"));
    for n in 0..32 {
        let found = http.get(&server, &lookup, &payer.tokens.access).await;
        let expected = if n < 20 { 200 } else { 429 };
        assert_eq!(found.status, expected, "recipient lookup {n}: {}", found.text);
    }
    let out = http.post(&server, "/api/v1/auth/logout", Some(&admin.access), &json!({})).await;
    assert_eq!(out.status, 204, "logout: {}", out.text);
    let stopped = server.stop().await;
    assert!(stopped.status.success(), "kassa serve after SIGTERM:\n{}", stopped.describe());
    assert!(stopped.stdout.lines().any(|line| line.trim() == "stopped"), "{}", stopped.describe());

    assert_intact(dir.path(), &database, "verify-clean").await;

    let raw = database.connect().await;
    let chains = raw
        .ints(
            "SELECT chain_id, COUNT(*), MIN(chain_seq), MAX(chain_seq) FROM audit_events GROUP BY chain_id \
             ORDER BY COUNT(*) DESC, chain_id",
        )
        .await;
    let chain = chains.first().unwrap_or_else(|| panic!("no audit events at all"));
    let (chain_id, events, first_seq, head_seq) = (chain[0], chain[1], chain[2], chain[3]);
    assert!(events >= 4 && first_seq == 1 && head_seq == events, "the server's fullest chain: {chains:?}");
    let event_at = async |seq: i64| -> i64 {
        let rows =
            raw.ints(&format!("SELECT id FROM audit_events WHERE chain_id = {chain_id} AND chain_seq = {seq}")).await;
        rows.first().map(|row| row[0]).unwrap_or_else(|| panic!("no event #{seq} in chain {chain_id}"))
    };
    let middle_seq = events / 2;
    let middle = event_at(middle_seq).await;
    let head = event_at(head_seq).await;
    let after_middle = event_at(middle_seq + 1).await;

    // An altered event is named by its id and position, and only it.
    raw.execute(&format!("CREATE TEMP TABLE saved_middle AS SELECT * FROM audit_events WHERE id = {middle}")).await;
    raw.execute(&format!(
        "UPDATE audit_events SET detail = '{{\"amount_minor\":1}}', outcome = 'ok' WHERE id = {middle}"
    ))
    .await;
    let altered = assert_tampered(
        dir.path(),
        &database,
        "verify-altered",
        &[&format!("event {middle} (chain {chain_id} #{middle_seq})"), "altered"],
    )
    .await;
    assert_eq!(tampered_lines(&altered).len(), 1, "only the altered event is named:\n{}", altered.describe());
    raw.execute(&format!(
        "UPDATE audit_events SET detail = (SELECT detail FROM saved_middle), \
         outcome = (SELECT outcome FROM saved_middle) WHERE id = {middle}"
    ))
    .await;
    assert_intact(dir.path(), &database, "verify-restored-1").await;

    // The newest event deleted: the anchored head names the missing #.
    raw.execute(&format!("CREATE TEMP TABLE saved_head AS SELECT * FROM audit_events WHERE id = {head}")).await;
    raw.execute(&format!("DELETE FROM audit_events WHERE id = {head}")).await;
    assert_tampered(
        dir.path(),
        &database,
        "verify-head-deleted",
        &[&format!("chain {chain_id} #{head_seq}"), &format!("#{head_seq}..#{head_seq}"), "deleted"],
    )
    .await;
    raw.execute("INSERT INTO audit_events SELECT * FROM saved_head").await;
    assert_intact(dir.path(), &database, "verify-restored-2").await;

    // A middle event deleted: the event after the gap names it.
    raw.execute(&format!("DELETE FROM audit_events WHERE id = {middle}")).await;
    assert_tampered(
        dir.path(),
        &database,
        "verify-middle-deleted",
        &[
            &format!("event {after_middle} (chain {chain_id} #{})", middle_seq + 1),
            &format!("#{middle_seq}..#{middle_seq}"),
            "deleted",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_an_altered_and_a_deleted_event() {
    bounded(audit_verify_names_tampering(Engine::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_an_altered_and_a_deleted_event_on_postgres() {
    bounded(audit_verify_names_tampering(Engine::Postgres)).await;
}

// ------------------------------------------------------------- secrets

/// A secret the test handed the server or was given by it, and where it may
/// legitimately be stored.
struct Secret {
    what: String,
    value: String,
    /// Passwords and tokens are never stored as they are (only hashes);
    /// a TOTP secret has to be, so the database scan skips it.
    never_stored: bool,
}

#[derive(Default)]
struct Secrets(Vec<Secret>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, value: &str, never_stored: bool) {
        assert!(value.len() >= 12, "a sentinel too short to search for: {value:?}");
        self.0.push(Secret { what: what.into(), value: value.to_owned(), never_stored });
    }

    /// A token, and its signature alone (the part that makes it valid).
    fn token(&mut self, what: &str, token: &str) {
        self.add(what, token, true);
        if let Some(signature) = token.rsplit('.').next().filter(|part| part.len() >= 16) {
            self.add(format!("{what} (signature)"), signature, true);
        }
    }

    fn tokens(&mut self, what: &str, tokens: &Tokens) {
        self.token(&format!("{what} access token"), &tokens.access);
        self.token(&format!("{what} refresh token"), &tokens.refresh);
    }

    /// Every place in `haystack` (one entry per line, row or body) that
    /// holds a secret.
    fn find_in(&self, place: &str, haystack: &[String], only_never_stored: bool, found: &mut Vec<String>) {
        for secret in &self.0 {
            if only_never_stored && !secret.never_stored {
                continue;
            }
            for entry in haystack.iter().filter(|entry| entry.contains(&secret.value)) {
                let shown: String = entry.chars().take(400).collect();
                found.push(format!("{} found in {place}: {shown}", secret.what));
            }
        }
    }
}

async fn no_secret_leaks(engine: Engine) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data_dir = dir.path().join("data");
    let Some(database) = Database::create(engine, &data_dir).await else { return };
    // Text logs on one engine and JSON on the other, so both formats are
    // searched; everything at TRACE, dependencies included.
    let format = if engine == Engine::Sqlite { "text" } else { "json" };
    let env = [("KASSA_LOG", "trace"), ("KASSA_LOG_FORMAT", format)];
    let server = Server::start(dir.path(), "serve", &database.args(), &env).await;
    let http = Http::new();
    let mut secrets = Secrets::default();
    let sentinel = |what: &str| format!("Sentinel-{what}-{}", random_hex());

    let first_admin = server.admin();
    secrets.add("the first admin's password", &first_admin.password, true);
    secrets.add("the first admin's TOTP secret", &first_admin.totp_secret, false);
    let admin = admin_tokens(&http, &server, &first_admin).await;
    secrets.tokens("the admin's", &admin);

    // A staff user with TOTP, created over the admin API.
    let staff_password = sentinel("Staff");
    secrets.add("the teller's password", &staff_password, true);
    let created = http
        .post(
            &server,
            "/api/v1/admin/staff",
            Some(&admin.access),
            &json!({"login": "sentinel-teller", "role": "teller", "password": staff_password, "totp": true}),
        )
        .await;
    assert_eq!(created.status, 201, "create a staff user: {}", created.text);
    let staff_totp = totp_secret_of(&created.field("totp_uri")).expect("a TOTP secret in the new user's URI");
    secrets.add("the teller's TOTP secret", &staff_totp, false);
    let teller = login_ok(&http, &server, "sentinel-teller", &staff_password, Some(&totp_code(&staff_totp))).await;
    secrets.tokens("the teller's", &teller);

    // A customer: registration, a wrong password, sign-in, refresh
    // rotation, a reused refresh token, password changes.
    let first_password = sentinel("Pass");
    secrets.add("the customer's first password", &first_password, true);
    let customer = register(&http, &server, 7, &first_password).await;
    secrets.tokens("the registration's", &customer.tokens);
    let wrong_password = sentinel("Wrong");
    secrets.add("a wrong password", &wrong_password, true);
    let wrong = login(&http, &server, &customer.phone, &wrong_password, None).await;
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"), "{}", wrong.text);
    let signed_in = login_ok(&http, &server, &customer.phone, &first_password, None).await;
    secrets.tokens("the sign-in's", &signed_in);
    let rotated =
        http.post(&server, "/api/v1/auth/refresh", None, &json!({"refresh_token": customer.tokens.refresh})).await;
    assert_eq!(rotated.status, 200, "refresh: {}", rotated.text);
    let rotated = Tokens::of(&rotated);
    secrets.tokens("the rotated", &rotated);
    let reused =
        http.post(&server, "/api/v1/auth/refresh", None, &json!({"refresh_token": customer.tokens.refresh})).await;
    assert_eq!((reused.status, reused.code()), (401, "refresh_token_reused"), "{}", reused.text);
    let revoked = http.get(&server, "/api/v1/me", &rotated.access).await;
    assert_eq!(revoked.status, 401, "the rotated token after the reuse: {}", revoked.text);
    let wrong_current = sentinel("WrongCurrent");
    secrets.add("a wrong current password", &wrong_current, true);
    let refused = http
        .post(
            &server,
            "/api/v1/auth/password",
            Some(&signed_in.access),
            &json!({"current_password": wrong_current, "new_password": sentinel("Unused")}),
        )
        .await;
    assert_eq!(refused.status, 422, "a password change with a wrong current password: {}", refused.text);
    let second_password = sentinel("NewPass");
    secrets.add("the customer's new password", &second_password, true);
    let changed = http
        .post(
            &server,
            "/api/v1/auth/password",
            Some(&signed_in.access),
            &json!({"current_password": first_password, "new_password": second_password}),
        )
        .await;
    assert_eq!(changed.status, 204, "password change: {}", changed.text);
    let again = login_ok(&http, &server, &customer.phone, &second_password, None).await;
    secrets.tokens("the second sign-in's", &again);

    // Some money, so the journal has more than sign-ins in it.
    let (_, number) = open_account(&http, &server, &again.access).await;
    deposit(&http, &server, &teller.access, &number, "10.00").await;

    // Bad input carrying passwords: truncated JSON, a wrong type next to a
    // password, no content type, and a password in a bad registration.
    let malformed = [sentinel("Truncated"), sentinel("TypeError"), sentinel("NoType"), sentinel("BadRegistration")];
    for (i, password) in malformed.iter().enumerate() {
        secrets.add(format!("a password in malformed body {i}"), password, true);
    }
    let login_url = server.url("/api/v1/auth/login");
    let truncated = format!("{{\"login\": \"{}\", \"password\": \"{}\"", customer.phone, malformed[0]);
    let answer = http.raw(&login_url, Some("application/json"), truncated.as_bytes()).await;
    assert_eq!(answer.status, 422, "truncated JSON: {}", answer.text);
    let wrong_type =
        format!("{{\"password\": \"{}\", \"login\": {{\"phone\": \"{}\"}}}}", malformed[1], customer.phone);
    let answer = http.raw(&login_url, Some("application/json"), wrong_type.as_bytes()).await;
    assert_eq!(answer.status, 422, "a wrong type: {}", answer.text);
    let untyped = format!("{{\"login\": \"{}\", \"password\": \"{}\"}}", customer.phone, malformed[2]);
    let answer = http.raw(&login_url, None, untyped.as_bytes()).await;
    assert_eq!(answer.status, 415, "no content type: {}", answer.text);
    let mut bad_registration = registration(8, &malformed[3]);
    bad_registration["phone"] = json!("not a phone");
    bad_registration["email"] = json!(["not", "a", "string"]);
    let answer = http.post(&server, "/api/v1/auth/register", None, &bad_registration).await;
    assert_eq!(answer.status, 422, "a bad registration: {}", answer.text);
    bad_registration["email"] = json!("c8@example.com");
    let answer = http.post(&server, "/api/v1/auth/register", None, &bad_registration).await;
    assert_eq!(answer.status, 422, "a registration with a bad phone: {}", answer.text);

    // A sign-out, and the dead token presented again.
    let out = http.post(&server, "/api/v1/auth/logout", Some(&again.access), &json!({})).await;
    assert_eq!(out.status, 204, "logout: {}", out.text);
    let after = http.get(&server, "/api/v1/me", &again.access).await;
    assert_eq!(after.status, 401, "after logout: {}", after.text);

    let stopped = server.stop().await;
    assert!(stopped.status.success(), "kassa serve after SIGTERM:\n{}", stopped.describe());
    assert!(stopped.stdout.lines().any(|line| line.trim() == "stopped"), "{}", stopped.describe());

    // The search must be able to fail: the log holds TRACE/DEBUG lines for
    // the requests, the error bodies were collected, the journal has rows.
    let log: Vec<String> = stopped.stderr.lines().map(without_ansi).collect();
    assert!(
        log.iter().any(|line| line.contains("/auth/login")) && log.len() > 20,
        "the log at TRACE should show the requests:\n{}",
        stopped.describe()
    );
    let error_bodies = http.error_bodies();
    assert!(error_bodies.len() >= 9, "too few error bodies collected: {error_bodies:#?}");
    let raw = database.connect().await;
    let journal = raw.rows_as_text("audit_events").await;
    assert!(
        journal.iter().any(|row| row.contains("auth.login")) && journal.len() >= 10,
        "the journal should hold the sign-ins: {journal:#?}"
    );

    let mut found = Vec::new();
    secrets.find_in("the server's log (stderr)", &log, false, &mut found);
    secrets.find_in("an error body", &error_bodies, false, &mut found);
    secrets.find_in("the audit journal", &journal, false, &mut found);
    // The first admin's password and TOTP URI are printed once on stdout,
    // by design; nothing else secret may be.
    let stdout: Vec<String> = stopped
        .stdout
        .lines()
        .filter(|line| !line.starts_with("First admin created:") && !line.contains("otpauth://"))
        .map(str::to_owned)
        .collect();
    secrets.find_in("stdout", &stdout, false, &mut found);
    // The search itself must work: it finds the admin's password where it
    // is printed on purpose.
    let mut control = Vec::new();
    let printed: Vec<String> = stopped.stdout.lines().map(str::to_owned).collect();
    secrets.find_in("stdout", &printed, false, &mut control);
    assert!(
        control.iter().any(|hit| hit.starts_with("the first admin's password found")),
        "the search does not find the admin's password in stdout: {control:?}\n{}",
        stopped.describe()
    );
    for table in raw.tables().await {
        let rows = raw.rows_as_text(&table).await;
        secrets.find_in(&format!("the database table {table}"), &rows, true, &mut found);
    }
    report(&format!(
        "{engine:?}: searched {} log lines, {} error bodies, {} journal rows for {} secrets",
        log.len(),
        error_bodies.len(),
        journal.len(),
        secrets.0.len()
    ));
    assert!(found.is_empty(), "{engine:?}: secrets leaked:\n{}", found.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_error_bodies_or_the_journal() {
    bounded(no_secret_leaks(Engine::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_error_bodies_or_the_journal_on_postgres() {
    bounded(no_secret_leaks(Engine::Postgres)).await;
}

/// A client that sends a password as a JSON number (a numeric password,
/// serialised by a sloppy client) gets a 422; the answer must not quote the
/// password back. serde_json's "invalid type" message quotes the value it
/// found, and the problem document's `detail` carries that message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_sent_as_a_json_number_is_not_echoed_in_the_error_body() {
    bounded(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data_dir = dir.path().join("data");
        let Some(database) = Database::create(Engine::Sqlite, &data_dir).await else { return };
        let server = Server::start(dir.path(), "serve", &database.args(), &[]).await;
        let http = Http::new();
        let customer = register(&http, &server, 1, PASSWORD).await;
        let password = format!("{}", 700_000_000_000_000_u64 + rand::random::<u64>() % 100_000_000_000_000);
        let mut registration = registration(2, PASSWORD);
        registration["password"] = json!(password.parse::<u64>().expect("digits"));
        let attempts = [
            ("/api/v1/auth/login", json!({"login": customer.phone, "password": registration["password"]})),
            ("/api/v1/auth/register", registration.clone()),
        ];
        let mut leaks = Vec::new();
        for (path, body) in &attempts {
            let answer = http.post(&server, path, None, body).await;
            assert_eq!(answer.status, 422, "{path} with a numeric password: {}", answer.text);
            if answer.text.contains(&password) {
                leaks.push(format!("POST {path} -> {}: {}", answer.status, answer.text));
            }
        }
        assert!(leaks.is_empty(), "the password sent came back in the error body:\n{}", leaks.join("\n"));
    })
    .await;
}

// ------------------------------------------------------------------ HTTPS

/// `kassa serve --https` serves the API over TLS with the certificate it
/// generated in the data directory, which verifies against the generated
/// local CA (and only for the names it was made for); the same port gives
/// a plain-HTTP client no HTTP answer; SIGTERM still drains and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_api_with_the_generated_certificate() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls::pki_types::ServerName;

    bounded(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data_dir = dir.path().join("data");
        let Some(database) = Database::create(Engine::Sqlite, &data_dir).await else { return };
        let mut args = database.args();
        args.push("--https");
        let server = Server::start(dir.path(), "https", &args, &[]).await;
        assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.describe());
        let address = server.base.trim_start_matches("https://").to_owned();

        let connector = ca_connector(&data_dir);

        let tcp = tokio::net::TcpStream::connect(&address).await.expect("the HTTPS port accepts");
        let name = ServerName::try_from("localhost").expect("a server name");
        let mut tls = connector.connect(name, tcp).await.expect("the certificate verifies against tls/ca.pem");
        tls.write_all(b"GET /api/v1/bank HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("the request is sent");
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.expect("the answer is read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"name\""), "the bank's identity: {answer}");

        // A name the certificate was not made for does not verify.
        let tcp = tokio::net::TcpStream::connect(&address).await.expect("the HTTPS port accepts");
        let name = ServerName::try_from("bank.example.com").expect("a server name");
        assert!(connector.connect(name, tcp).await.is_err(), "a certificate for another name must not verify");

        // Plain HTTP on the TLS port gets no HTTP answer.
        let mut plain = tokio::net::TcpStream::connect(&address).await.expect("the HTTPS port accepts");
        plain.write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("the request is sent");
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut bytes)).await;
        assert!(!bytes.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&bytes));

        let stopped = server.stop().await;
        assert!(stopped.status.success(), "kassa serve --https after SIGTERM:\n{}", stopped.describe());
    })
    .await;
}

/// A TLS client that trusts the data directory's local CA (`tls/ca.pem`).
fn ca_connector(data_dir: &Path) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data_dir.join("tls").join("ca.pem")).expect("tls/ca.pem is readable") {
        roots.add(cert.expect("a PEM certificate")).expect("the CA certificate is accepted");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

// ------------------------------------------------------------ terminals

/// One terminal connection: frames out, replies in, the reply's clock.
struct TerminalLine {
    stream: tokio::io::BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl TerminalLine {
    async fn connect(data_dir: &Path, address: &str) -> TerminalLine {
        use tokio_rustls::rustls::pki_types::ServerName;
        let tcp = tokio::net::TcpStream::connect(address).await.expect("the terminal port accepts");
        let name = ServerName::try_from("localhost").expect("a server name");
        let tls = ca_connector(data_dir).connect(name, tcp).await.expect("the certificate verifies against tls/ca.pem");
        TerminalLine { stream: tokio::io::BufReader::new(tls), next_id: 1 }
    }

    async fn call(&mut self, clock: u64, op: &str, mut fields: Value) -> Value {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        fields["id"] = json!(self.next_id);
        fields["clock"] = json!(clock);
        fields["op"] = json!(op);
        self.next_id += 1;
        let mut line = serde_json::to_vec(&fields).expect("a frame");
        line.push(b'\n');
        self.stream.get_mut().write_all(&line).await.expect("the frame is sent");
        let mut reply = String::new();
        self.stream.read_line(&mut reply).await.expect("a reply");
        serde_json::from_str(&reply).unwrap_or_else(|_| panic!("not JSON: {reply:?}"))
    }
}

/// The terminal's logical clock survives `kill -9`: the restarted server
/// starts above every clock it sent, including one pushed far ahead by a
/// client just before the kill. And `kassa terminal add` registers a
/// terminal that can then say hello.
async fn terminal_clock_survives_sigkill(engine: Engine) {
    bounded(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data_dir = dir.path().join("data");
        let Some(database) = Database::create(engine, &data_dir).await else { return };
        let mut add = vec!["terminal", "add", "--name", "Lobby ATM"];
        add.extend(database.args());
        let added = run_kassa(dir.path(), "terminal add", &add).await;
        assert!(added.status.success(), "{}", added.describe());
        let field =
            |name: &str| added.stdout.lines().find_map(|line| line.strip_prefix(name)).map(str::to_owned).expect(name);
        let (terminal_id, key) = (field("id: ").parse::<i64>().expect("an id"), field("key: "));

        let server = Server::start(dir.path(), "first", &database.args(), &[]).await;
        let (address, started_at) = (server.terminal.clone(), server.clock);
        let mut line = TerminalLine::connect(&data_dir, &address).await;
        let hello = line
            .call(0, "hello", json!({"protocol_version": 1, "terminal_id": terminal_id, "terminal_key": key}))
            .await;
        assert_eq!(hello["terminal"]["name"], "Lobby ATM", "{hello}");
        assert!(hello["clock"].as_u64().expect("a clock") > started_at, "{hello}");
        let mut sent = 0;
        for _ in 0..50 {
            sent = line.call(0, "ping", json!({})).await["clock"].as_u64().expect("a clock");
        }
        // Far ahead (but within 2^32): the server must reserve beyond it
        // before it answers.
        let far = sent + (1 << 31);
        let reply = line.call(far, "ping", json!({})).await;
        let highest = reply["clock"].as_u64().expect("a clock");
        assert!(highest > far, "{reply}");
        let mut killed = server;
        killed.kill();

        let server = Server::start(dir.path(), "second", &database.args(), &[]).await;
        let (address, restarted_at) = (server.terminal.clone(), server.clock);
        assert!(restarted_at > highest, "restarted at {restarted_at}, but {highest} was sent before the kill");
        let mut line = TerminalLine::connect(&data_dir, &address).await;
        let reply = line.call(0, "ping", json!({})).await;
        assert!(reply["clock"].as_u64().expect("a clock") > highest, "{reply}");
        report(&format!("terminal clock ({engine:?}): sent {highest} before kill -9, restarted at {restarted_at}"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_clock_survives_sigkill() {
    terminal_clock_survives_sigkill(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_clock_survives_sigkill_on_postgres() {
    terminal_clock_survives_sigkill(Engine::Postgres).await;
}

// ------------------------------------------------------------ SIGTERM drain

/// SIGTERM while requests are being served: each is answered in full, and
/// then the server exits 0. Registrations are the requests (each hashes a
/// password with argon2id, so they are still running when the signal
/// comes); the test also checks that at least one answer did arrive after
/// the signal, so that it tested requests in flight and not finished ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_requests_in_flight() {
    bounded(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data_dir = dir.path().join("data");
        let Some(database) = Database::create(Engine::Sqlite, &data_dir).await else { return };
        let server = Server::start(dir.path(), "drain", &database.args(), &[]).await;
        let url = server.url("/api/v1/auth/register");
        let client = reqwest::Client::new();
        let mut in_flight = Vec::new();
        for n in 1..=8 {
            let (client, url, body) = (client.clone(), url.clone(), registration(n, PASSWORD));
            in_flight.push(tokio::spawn(async move {
                let answer = client.post(url).json(&body).send().await;
                (answer.map(|response| response.status().as_u16()), Instant::now())
            }));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        let signalled = Instant::now();
        let stopped = server.stop().await;
        let mut after_signal = 0;
        for request in in_flight {
            let (status, at) = request.await.expect("the request task");
            assert_eq!(status.ok(), Some(201), "a request in flight was not answered:\n{}", stopped.describe());
            if at > signalled {
                after_signal += 1;
            }
        }
        assert!(stopped.status.success(), "kassa serve after SIGTERM:\n{}", stopped.describe());
        assert!(stopped.stdout.lines().any(|line| line.trim() == "stopped"), "{}", stopped.describe());
        report(&format!("SIGTERM drain: {after_signal} of 8 registrations answered after the signal"));
        assert!(after_signal > 0, "every request had finished before SIGTERM; the test proved nothing");
    })
    .await;
}

// ------------------------------------------------------ zero-config start

/// `kassa serve` with no flags but the listen address, in an empty
/// directory: it creates `./kassa-data` (0700) with a SQLite database, the
/// TLS certificate and key, and the first admin, whose password it prints
/// once and writes to `admin-password` (0600); a second start prints no
/// password. `--demo` then seeds customers who can sign in and have money
/// and history to look at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_start_then_demo() {
    use std::os::unix::fs::PermissionsExt as _;

    bounded(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server = Server::start(dir.path(), "zero", &[], &[]).await;
        let admin = server.admin();
        let data = dir.path().join("kassa-data");
        let mode = |path: &Path| std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode(&data), 0o700, "kassa-data");
        assert_eq!(mode(&data.join("admin-password")), 0o600, "admin-password");
        assert_eq!(read(&data.join("admin-password")).trim(), admin.password, "the printed password is the file's");
        for file in ["tls/cert.pem", "tls/key.pem", "tls/ca.pem"] {
            assert!(data.join(file).is_file(), "{file} was not created");
        }
        let http = Http::new();
        let tokens = admin_tokens(&http, &server, &admin).await;
        let me = http.get(&server, "/api/v1/admin/settings", &tokens.access).await;
        assert_eq!(me.status, 200, "the admin signs in with the printed password and TOTP: {}", me.text);
        let stopped = server.stop().await;
        assert!(stopped.status.success(), "{}", stopped.describe());

        let again = Server::start(dir.path(), "zero-again", &["--demo"], &[]).await;
        let out = read(&again.stdout);
        assert!(!out.contains("First admin created"), "the password is printed only once:\n{out}");
        assert!(out.contains("Sign in as a customer"), "--demo says how to sign in:\n{out}");
        let anna = login_ok(&http, &again, "+375291111111", "demo-Password-2026", None).await;
        let accounts = http.get(&again, "/api/v1/accounts", &anna.access).await;
        let first = &accounts.body["items"][0];
        assert!(first["balance"].as_str().is_some_and(|b| b != "0.00"), "Anna has money: {}", accounts.text);
        let id = first["id"].as_i64().expect("an account id");
        assert!(!history(&http, &again, &anna.access, id).await.is_empty(), "Anna has history");
        let stopped = again.stop().await;
        assert!(stopped.status.success(), "{}", stopped.describe());
    })
    .await;
}
