//! Notifications survive crashes: a real `kassa serve` delivers SMS to an
//! HTTP receiver run by this test while customers pay each other; the
//! server is SIGKILLed at random moments ten times and restarted (and the
//! work each kill left undone is counted in the database, so the kills are
//! known to have interrupted something); at the end, once the outbox has drained, the receiver has seen exactly one id
//! per message the committed events call for (none lost), and every repeat
//! of an id carried the same request (at least once, never a new id).
//! And two servers on one database, never killed, send each message
//! exactly once: the lease keeps a message one node's alone.

#![allow(clippy::expect_used, clippy::panic, reason = "a test fails by panicking, with the reason in the message")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::process::{Server, read, report};
use kassa_testkit::receivers::SmsReceiver;
use serde_json::{Value, json};

const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
const KILLS: usize = 10;
const PASSWORD: &str = "correct horse battery";

/// Starts round `round`'s `kassa serve` with the test's configuration,
/// data directory and database.
async fn start(dir: &Path, round: usize, config: &Path, database: &[String]) -> Server {
    let data = dir.join("data");
    let mut args = vec!["--config", config.to_str().expect("a UTF-8 path"), "--data-dir"];
    args.push(data.to_str().expect("a UTF-8 path"));
    args.extend(database.iter().map(String::as_str));
    Server::start(dir, &format!("serve-{round}"), &args, &[]).await
}

struct Http {
    client: reqwest::Client,
}

impl Http {
    /// Sends a request; `None` when the server is gone (killed).
    async fn post(&self, base: &str, path: &str, token: Option<&str>, body: &Value) -> Option<(u16, Value)> {
        let mut request = self.client.post(format!("{base}{path}")).json(body).timeout(Duration::from_secs(10));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Some((status, body))
    }

    async fn patch_ok(&self, base: &str, path: &str, token: &str, body: &Value) -> Value {
        let request = self.client.patch(format!("{base}{path}")).json(body).bearer_auth(token);
        let response = request.timeout(Duration::from_secs(10)).send().await.expect("the server answers");
        let status = response.status().as_u16();
        let answer = response.json::<Value>().await.unwrap_or(Value::Null);
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
        answer
    }

    async fn post_ok(&self, base: &str, path: &str, token: Option<&str>, body: &Value) -> Value {
        let (status, answer) = self.post(base, path, token, body).await.expect("the server answers");
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
        answer
    }
}

/// The bank's database, read behind the server's back.
enum Db {
    Sqlite(PathBuf),
    Postgres(tokio_postgres::Client),
}

impl Db {
    async fn texts(&self, sql: &str) -> BTreeSet<String> {
        match self {
            Db::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).expect("the database opens");
                connection.busy_timeout(Duration::from_secs(10)).expect("a busy timeout");
                let mut statement = connection.prepare(sql).expect("a query");
                statement
                    .query_map([], |row| row.get::<_, String>(0))
                    .expect("rows")
                    .collect::<Result<BTreeSet<String>, _>>()
                    .expect("rows")
            }
            Db::Postgres(client) => {
                client.query(sql, &[]).await.expect("a query").iter().map(|row| row.get::<_, String>(0)).collect()
            }
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).expect("the database opens");
                connection.busy_timeout(Duration::from_secs(10)).expect("a busy timeout");
                connection.query_row(sql, [], |row| row.get(0)).expect("a count")
            }
            Db::Postgres(client) => client.query_one(sql, &[]).await.expect("a count").get(0),
        }
    }

    /// The SMS ids in the outbox, and what still waits (events not fanned
    /// out, messages not delivered).
    async fn outbox(&self) -> (BTreeSet<String>, i64, i64) {
        let ids = self.texts("SELECT id FROM outbox_messages WHERE channel = 'sms'").await;
        let waiting = self.count("SELECT count(*) FROM outbox_events WHERE fanned_out_at_us IS NULL").await;
        let undelivered = self.count("SELECT count(*) FROM outbox_messages WHERE state <> 'delivered'").await;
        (ids, waiting, undelivered)
    }

    /// The committed transfers and deposits: each transfer calls for two
    /// SMS (payer, payee), each deposit one; every customer opted in to SMS
    /// and e-mail per transaction.
    async fn committed(&self) -> (i64, i64) {
        let count = |action: &'static str| {
            format!("SELECT count(*) FROM audit_events WHERE action = '{action}' AND outcome = 'ok'")
        };
        (self.count(&count("transfer.create")).await, self.count(&count("cash.deposit")).await)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
}

/// What a scenario does to the servers while customers pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One server, SIGKILLed and restarted ten times.
    Kills,
    /// Two servers on one database, never killed: each message is sent
    /// exactly once, so neither node ever worked on another's claim.
    TwoNodes,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_ten_times_loses_no_notification_sqlite() {
    scenario(Engine::Sqlite, Mode::Kills).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_ten_times_loses_no_notification_postgres() {
    scenario(Engine::Postgres, Mode::Kills).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_send_one_message_twice_sqlite() {
    scenario(Engine::Sqlite, Mode::TwoNodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_send_one_message_twice_postgres() {
    scenario(Engine::Postgres, Mode::TwoNodes).await;
}

async fn scenario(engine: Engine, mode: Mode) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let postgres = match engine {
        Engine::Sqlite => None,
        Engine::Postgres => match kassa_testkit::postgres::TempPostgres::create().await {
            Some(postgres) => Some(postgres),
            None => return,
        },
    };
    let database: Vec<String> =
        postgres.as_ref().map(|pg| vec!["--database-url".to_owned(), pg.url().to_owned()]).unwrap_or_default();
    let (receiver, url) = SmsReceiver::start().await.expect("the SMS receiver starts");
    let config = dir.path().join("kassa.toml");
    std::fs::write(
        &config,
        format!(
            "[notifications]\nsms = \"http_sms\"\npoll_ms = 20\nlease_ms = 1500\nsend_timeout_ms = 1000\n\
             max_attempts = 1000\nbackoff_base_ms = 50\nbackoff_max_ms = 200\n\n\
             [notifications.http_sms]\nurl = \"{url}\"\nusername = \"AC1\"\npassword = \"secret\"\nfrom = \"Kassa\"\n"
        ),
    )
    .expect("the config is written");
    let http = Http { client: reqwest::Client::new() };
    let started = Instant::now();

    let mut server = start(dir.path(), 0, &config, &database).await;
    let first_admin = server.admin();
    let admin = http
        .post_ok(
            &server.base,
            "/api/v1/auth/login",
            None,
            &json!({"login": "admin", "password": first_admin.password,
              "totp": first_admin.totp()}),
        )
        .await["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let mut customers = Vec::new();
    for n in 1..=2_u32 {
        let registered = http
            .post_ok(
                &server.base,
                "/api/v1/auth/register",
                None,
                &json!({
                    "first_name": "Anna", "last_name": "Ivanova", "phone": format!("+3752911100{n:02}"),
                    "email": format!("c{n}@example.com"), "password": PASSWORD,
                    "passport_number": format!("MP12345{n:02}"), "personal_id": format!("30101{n:02}A001PB5"),
                }),
            )
            .await;
        let token = registered["access_token"].as_str().expect("a token").to_owned();
        // Notifications are opt-in: both channels, per transaction.
        http.patch_ok(
            &server.base,
            "/api/v1/me/notifications",
            &token,
            &json!({"sms_per_transaction": true, "email_per_transaction": true}),
        )
        .await;
        let account = http
            .post_ok(
                &server.base,
                "/api/v1/accounts",
                Some(&token),
                &json!({"kind": "current", "currency": "BYN",
                  "consents": [{"document": "terms", "version": "2026-01"}]}),
            )
            .await;
        let number = account["number"].as_str().expect("a number").to_owned();
        http.post_ok(
            &server.base,
            "/api/v1/staff/cash/deposits",
            Some(&admin),
            &json!({"account": number, "amount": "1000.00", "currency": "BYN"}),
        )
        .await;
        customers.push((token, account["id"].as_i64().expect("an id"), registered["customer"]["phone"].clone()));
    }

    // Ten rounds: pay back and forth, and SIGKILL the server at a random
    // moment (with the payments and deliveries in flight), then restart.
    let mut seed = u64::from(SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").subsec_nanos()) | 1;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let second = match mode {
        Mode::Kills => None,
        Mode::TwoNodes => Some(start(dir.path(), 100, &config, &database).await),
    };
    let rounds = if mode == Mode::Kills { KILLS } else { 1 };
    // The bank's database, read behind the server's back.
    let db = match &postgres {
        None => Db::Sqlite(dir.path().join("data").join("kassa.db")),
        Some(pg) => {
            let (client, connection) =
                tokio_postgres::connect(pg.url(), tokio_postgres::NoTls).await.expect("PostgreSQL connects");
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Db::Postgres(client)
        }
    };
    // What each kill left undone: outbox events not fanned out and messages
    // not delivered, counted while no server runs.
    let mut interrupted = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let length = if mode == Mode::Kills { 100 + random(500) } else { 1_500 };
        let deadline = Instant::now() + Duration::from_millis(length);
        let mut sent = 0_u32;
        while Instant::now() < deadline {
            let (payer, payee) =
                if sent.is_multiple_of(2) { (&customers[0], &customers[1]) } else { (&customers[1], &customers[0]) };
            let body =
                json!({"from_account": payer.1.to_string(), "to_phone": payee.2, "amount": "0.01", "currency": "BYN"});
            let base = match &second {
                Some(second) if !sent.is_multiple_of(3) => second.base.clone(),
                _ => server.base.clone(),
            };
            let (client, token) = (http.client.clone(), payer.0.clone());
            let pay = async move {
                let _ = client
                    .post(format!("{base}/api/v1/transfers"))
                    .bearer_auth(token)
                    .json(&body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
            };
            if mode == Mode::Kills {
                // Fire and forget, so the kill lands mid-request; whether
                // it committed is read from the journal.
                tokio::spawn(pay);
            } else {
                pay.await;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(5 + random(20))).await;
        }
        if mode == Mode::Kills {
            server.kill();
            let (_, waiting, undelivered) = db.outbox().await;
            interrupted.push(waiting + undelivered);
            server = start(dir.path(), round, &config, &database).await;
        }
    }
    if mode == Mode::Kills {
        // The kills really cut work short: at some of them the outbox still
        // held work (else this test would prove nothing about recovery).
        report(&format!("notify_crash ({engine:?}): work left undone at each kill: {interrupted:?}"));
        assert!(interrupted.iter().sum::<i64>() > 0, "no kill interrupted any notification work: {interrupted:?}");
    }

    // Let the last server drain the outbox.
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let (_, waiting, undelivered) = db.outbox().await;
        if waiting == 0 && undelivered == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox did not drain: {waiting} events, {undelivered} messages");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every client request was sent before the last kill, so nothing more
    // is journaled now.
    let (ids, _, _) = db.outbox().await;
    let (transfers, deposits) = db.committed().await;
    let received = receiver.requests();
    let mut by_id: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for request in &received {
        assert_eq!(request.message_id, request.idempotency_key, "both headers carry the message id");
        by_id.entry(request.message_id.as_str()).or_default().insert(request.body.as_str());
    }
    report(&format!(
        "notify_crash ({engine:?}, {mode:?}): {transfers} transfers and {deposits} deposits committed, {} SMS requests for {} ids \
         ({} repeats) in {:.1?}",
        received.len(),
        by_id.len(),
        received.len() - by_id.len(),
        started.elapsed()
    ));
    assert!(transfers > 0, "some transfers committed");
    let expected = usize::try_from(2 * transfers + deposits).expect("fits");
    assert_eq!(by_id.len(), expected, "distinct ids = messages the committed events call for");
    let got: BTreeSet<String> = by_id.keys().map(|id| (*id).to_owned()).collect();
    assert_eq!(got, ids, "the receiver saw exactly the outbox's messages");
    for (id, forms) in &by_id {
        assert_eq!(forms.len(), 1, "a repeat of {id} carried another request: {forms:?}");
    }
    if mode == Mode::TwoNodes {
        assert_eq!(received.len(), by_id.len(), "without a crash no message is sent twice");
    }
    // E-mail went to the `log` gateway: <data dir>/notifications.log has
    // every e-mail message of the outbox, by id.
    let logged: BTreeSet<String> = read(&dir.path().join("data").join("notifications.log"))
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["channel"] == "email")
        .filter_map(|line| line["id"].as_str().map(str::to_owned))
        .collect();
    let emails = db.texts("SELECT id FROM outbox_messages WHERE channel = 'email'").await;
    assert_eq!(emails.len(), expected, "one e-mail per SMS: every customer opted in to both");
    assert_eq!(logged, emails, "the log gateway wrote every e-mail");
    drop(second);
    drop(server);
    drop(db);
    drop(postgres);
}
