//! `kassa atm` against a real `kassa serve` on loopback (SQLite; the
//! server's own tests cover PostgreSQL): every customer operation and a
//! staff session in script mode, refusals and exit codes, `--json`, and
//! the ATM screen (through `TestBackend`) with the real protocol client.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "a test fails by panicking")]

#[path = "../src/atm/mod.rs"]
#[allow(dead_code, unreachable_pub)]
mod atm;

mod common;

#[path = "atm_common/server.rs"]
#[allow(dead_code)]
mod server;

#[path = "atm_common/story.rs"]
mod story;

use std::path::PathBuf;

use atm::wire::{Client, Hello, TrustConfig};
use serde_json::{Map, Value, json};
use server::{Customer, PASSWORD, PIN, Server, customer_with_card, http_balance, run, shows_pin};

/// `[a → b]` of each reply line, in order.
fn clocks(output: &str) -> Vec<(u64, u64)> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix('[')?.split_once(']'))
        .filter_map(|(pair, _)| {
            let (sent, got) = pair.split_once(" → ")?;
            Some((sent.parse().ok()?, got.parse().ok()?))
        })
        .collect()
}

fn assert_clocks_increase(output: &str) {
    let pairs = clocks(output);
    assert!(!pairs.is_empty(), "no clocks in:\n{output}");
    for (sent, got) in &pairs {
        assert!(sent < got, "a reply's clock is above its request's: {sent} → {got}\n{output}");
    }
    for pair in pairs.windows(2) {
        assert!(pair[0].1 < pair[1].0, "the clocks only go up: {pair:?}\n{output}");
    }
}

async fn script(
    server: &Server,
    name: &str,
    lines: &[String],
    terminal: Option<&(u64, PathBuf)>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> server::Finished {
    let path = server.dir.join(format!("{name}.atm"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let ca = server.ca();
    let id;
    let mut args = vec!["atm", "--connect", &server.terminal, "--ca-cert", ca.to_str().unwrap()];
    if let Some((terminal_id, key)) = terminal {
        id = terminal_id.to_string();
        args.extend(["--terminal-id", &id, "--terminal-key-file", key.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    args.extend(["--script", path.to_str().unwrap()]);
    let finished = run(&server.dir, name, &args, env, None).await;
    for secret in [PASSWORD, server.admin.password.as_str()] {
        assert!(!finished.stdout.contains(secret) && !finished.stderr.contains(secret), "{name} printed a secret");
    }
    assert!(!shows_pin(&finished.stdout, PIN) && !shows_pin(&finished.stderr, PIN), "{name} printed the PIN");
    finished
}

fn lines(text: &[&str]) -> Vec<String> {
    text.iter().map(|line| (*line).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_customer_does_everything_from_a_registered_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let terminal = server.add_terminal("Lobby ATM").await;
    let anna = customer_with_card(&server, 1).await;
    let boris = customer_with_card(&server, 2).await;
    let env = [("ATM_PIN", PIN)];

    let all = lines(&[
        "# every customer operation",
        "hello",
        &format!("login card {} pin-env ATM_PIN", anna.card),
        "balance",
        "accounts",
        "deposit 50.00",
        "withdraw 12.50",
        &format!("transfer to_phone {} 3.00 rent", boris.phone),
        &format!("transfer to_account {} 1.00", boris.account),
        "history limit 5",
        "ping",
        "logout",
    ]);
    let done = script(&server, "customer", &all, Some(&terminal), &[], &env).await;
    assert_eq!(done.code(), Some(0), "{done:?}");
    let out = &done.stdout;
    // Shown with --nocapture: what a script run looks like.
    eprintln!("{out}");
    assert!(out.contains("hello: bank "), "{out}");
    assert!(out.contains("terminal Lobby ATM"), "{out}");
    assert!(out.contains("login: signed in as Anna I. (customer)"), "{out}");
    assert!(out.contains(&format!("balance: account {}: balance 0.00 BYN", anna.account)), "{out}");
    assert!(out.contains("deposit: transfer ") && out.contains("balance 50.00 BYN"), "{out}");
    assert!(out.contains("withdraw: transfer ") && out.contains("balance 37.50 BYN"), "{out}");
    assert_eq!(out.matches("transfer: transfer ").count(), 2, "{out}");
    assert!(out.contains("history: 4 items"), "{out}");
    assert!(out.contains("logout: signed out"), "{out}");
    assert_clocks_increase(out);
    // The HTTP API sees what the terminal did.
    assert_eq!(http_balance(&server, &anna).await, "33.50");
    assert_eq!(http_balance(&server, &boris).await, "4.00");

    // An overdraft is refused, stops the script, and exits 1.
    let overdraft = lines(&[&format!("login card {} pin-env ATM_PIN", anna.card), "withdraw 1000.00", "balance"]);
    let done = script(&server, "overdraft", &overdraft, Some(&terminal), &[], &env).await;
    assert_eq!(done.code(), Some(1), "{done:?}");
    assert!(done.stdout.contains("withdraw: refused: Insufficient funds"), "{}", done.stdout);
    assert!(done.stdout.contains("[insufficient_funds]"), "{}", done.stdout);
    assert!(!done.stdout.contains("balance: account"), "the script stopped: {}", done.stdout);
    assert_eq!(http_balance(&server, &anna).await, "33.50");

    // A wrong PIN says so, with the tries left.
    let wrong = lines(&[&format!("login card {} pin-env ATM_PIN", anna.card)]);
    let done = script(&server, "wrong-pin", &wrong, Some(&terminal), &[], &[("ATM_PIN", "0000")]).await;
    assert_eq!(done.code(), Some(1), "{done:?}");
    assert!(
        done.stdout.contains("login: refused: Wrong PIN.") && done.stdout.contains("[pin_wrong]"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("2 tries left"), "{}", done.stdout);

    // --json prints the frames as they came, one a line.
    let done = script(&server, "json", &overdraft, Some(&terminal), &["--json", "--keep-going"], &env).await;
    assert_eq!(done.code(), Some(1), "{done:?}");
    let frames: Vec<Value> = done.stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let oks: Vec<bool> = frames.iter().map(|frame| frame["ok"].as_bool().unwrap()).collect();
    assert_eq!(oks, [true, true, false, true], "{}", done.stdout);
    assert_eq!(frames[2]["error"]["code"], json!("insufficient_funds"));
    assert_eq!(frames[3]["balance"], json!("33.50"));
    let ids: Vec<u64> = frames.iter().map(|frame| frame["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_sign_in_works_anywhere_and_cards_need_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let anna = customer_with_card(&server, 1).await;
    let env = [("ATM_PIN", PIN), ("ATM_PW", PASSWORD)];
    let steps = lines(&[
        &format!("login card {} pin-env ATM_PIN", anna.card),
        &format!("login phone {} password-env ATM_PW", anna.phone),
        "balance",
        "withdraw 1.00",
        "history",
        "logout",
        "balance",
    ]);
    let done = script(&server, "phone", &steps, None, &["--keep-going"], &env).await;
    assert_eq!(done.code(), Some(1), "{done:?}");
    let out = &done.stdout;
    assert!(out.contains("login: refused: This needs a registered ATM"), "{out}");
    assert!(out.contains("[terminal_required]"), "{out}");
    assert!(out.contains("login: signed in as Anna I. (customer)"), "{out}");
    assert!(out.contains("balance: account"), "{out}");
    assert!(out.contains("withdraw: refused:") && out.matches("[terminal_required]").count() == 2, "{out}");
    assert!(out.contains("history: 0 items"), "{out}");
    assert!(out.contains("balance: refused: Please sign in first. [unauthorized]"), "{out}");
    assert_clocks_increase(out);

    // The same commands on standard input (not a terminal), without --script.
    let input = server.dir.join("phone.atm");
    let ca = server.ca();
    let args = ["atm", "--connect", &server.terminal, "--ca-cert", ca.to_str().unwrap(), "--keep-going"];
    let piped = run(&server.dir, "phone-stdin", &args, &env, Some(&input)).await;
    assert_eq!(piped.code(), Some(1), "{piped:?}");
    let strip = |text: &str| {
        text.lines().map(|line| line.split_once("] ").map_or(line, |(_, rest)| rest).to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(strip(&piped.stdout)[1..], strip(out)[1..], "the same replies, clocks aside");
    // The bank's clock went on from where the first run left it.
    let last = clocks(out).last().unwrap().1;
    let first = clocks(&piped.stdout)[0].1;
    assert!(first > last, "the second session's first reply ({first}) is after the first's last ({last})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_session_in_a_script() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let anna = customer_with_card(&server, 1).await;
    // An empty account of Anna's for staff to close.
    let (status, spare) = server
        .post(
            "/api/v1/accounts",
            Some(&anna.token),
            &json!({"kind": "current", "currency": "BYN", "consents": [{"document": "terms", "version": "2026-01"}]}),
        )
        .await;
    assert_eq!(status, 201, "{spare}");
    let spare = spare["number"].as_str().unwrap().to_owned();
    let totp = server.admin_totp();
    let env = [("ATM_ADMIN", server.admin.password.as_str()), ("ATM_TOTP", totp.as_str())];
    let steps = lines(&[
        "login staff admin password-env ATM_ADMIN totp-env ATM_TOTP",
        "customers Ivanova",
        &format!("open_account {} current BYN", anna.id),
        &format!("close_account {spare}"),
        "transactions limit 5",
        "balance",
        "logout",
    ]);
    let done = script(&server, "staff", &steps, None, &["--keep-going"], &env).await;
    let out = &done.stdout;
    assert!(!out.contains(&totp), "the one-time code was printed");
    assert!(out.contains("login: signed in as admin (admin)"), "{out}");
    assert!(out.contains("customers: 1 items") && out.contains(&anna.phone), "{out}");
    assert!(out.contains("open_account: account "), "{out}");
    assert!(out.contains("close_account: account ") && out.contains("closed"), "{out}");
    assert!(out.contains("transactions: "), "{out}");
    assert!(out.contains("balance: refused: Only customers can do this. [customers_only]"), "{out}");
    assert!(out.contains("logout: signed out"), "{out}");
    assert_eq!(done.code(), Some(1), "one refusal (balance by staff): {done:?}");
    assert_clocks_increase(out);
}

async fn client(server: &Server, terminal: Option<&(u64, PathBuf)>) -> Client {
    let terminal = terminal.map(|(id, key)| (*id, std::fs::read_to_string(key).unwrap().trim().to_owned()));
    let hello = Hello { client: "atm-test".into(), terminal };
    Client::connect(&server.terminal, TrustConfig::Ca(server.ca()), hello).await.unwrap()
}

async fn fund(server: &Server, terminal: &(u64, PathBuf), customer: &Customer, amount: &str) {
    let mut client = client(server, Some(terminal)).await;
    assert!(client.call("hello", Map::new()).await.unwrap().is_ok());
    let login = Map::from_iter([("card_number".into(), json!(customer.card)), ("pin".into(), json!(PIN))]);
    let reply = client.call("login", login).await.unwrap();
    assert!(reply.is_ok(), "{:?}", reply.body);
    let reply = client.call("deposit", Map::from_iter([("amount".into(), json!(amount))])).await.unwrap();
    assert!(reply.is_ok(), "{:?}", reply.body);
    client.call("logout", Map::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_story_against_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let terminal = server.add_terminal("Screen ATM").await;
    let anna = customer_with_card(&server, 1).await;
    fund(&server, &terminal, &anna, "50.00").await;
    let mut bank = client(&server, Some(&terminal)).await;
    let secrets = story::Secrets { card: anna.card.clone(), pin: PIN.into() };
    let screens = story::card_story(&mut bank, &secrets, "12.50", "1000", true).await;
    assert!(screens[0].contains("Screen ATM"), "{}", screens[0]);
    assert!(screens.iter().any(|screen| screen.contains("Balance:   37.50 BYN")), "{screens:#?}");
    assert_eq!(http_balance(&server, &anna).await, "37.50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_on_first_use_against_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    // No --ca-cert and no data dir: the certificate is pinned on first use.
    let config = dir.path().join("config");
    let steps = lines(&["hello"]);
    let path = dir.path().join("tofu.atm");
    std::fs::write(&path, steps.join("\n")).unwrap();
    let nowhere = dir.path().join("no-data-dir");
    let args = [
        "atm",
        "--connect",
        &server.terminal,
        "--data-dir",
        nowhere.to_str().unwrap(),
        "--script",
        path.to_str().unwrap(),
    ];
    let first = run(dir.path(), "tofu-1", &args, &[], None).await;
    assert_eq!(first.code(), Some(0), "{first:?}");
    assert!(first.stderr.contains("trusting") && first.stderr.contains("on first use"), "{first:?}");
    let pinned = std::fs::read_to_string(config.join("kassa").join("known_terminals")).unwrap();
    assert!(pinned.starts_with(&format!("{} sha256:", server.terminal)), "{pinned}");
    let second = run(dir.path(), "tofu-2", &args, &[], None).await;
    assert_eq!(second.code(), Some(0), "{second:?}");
    assert!(!second.stderr.contains("trusting"), "{second:?}");
    // A pin that does not match is refused with a clear message.
    std::fs::write(
        config.join("kassa").join("known_terminals"),
        format!("{} sha256:{}\n", server.terminal, "0".repeat(64)),
    )
    .unwrap();
    let third = run(dir.path(), "tofu-3", &args, &[], None).await;
    assert_eq!(third.code(), Some(2), "{third:?}");
    assert!(third.stderr.contains("may be an impostor"), "{third:?}");
}

/// A TCP relay in front of the terminal port that, once armed, swallows the
/// next bytes from the server (the reply) and cuts both connections: a
/// connection lost after the bank did the operation and before the ATM
/// heard about it.
struct Relay {
    address: String,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(target: String) -> Relay {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = armed.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else { return };
            let flag = flag.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = tokio::io::copy(&mut client_read, &mut server_write);
                let downstream = async {
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        let read = server_read.read(&mut buffer).await.unwrap_or(0);
                        if read == 0 || flag.swap(false, Ordering::SeqCst) {
                            return;
                        }
                        if client_write.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = upstream => {}
                    () = downstream => {}
                }
                // Dropping the halves closes both connections.
            });
        }
    });
    Relay { address, armed, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_whose_reply_is_lost_is_resent_and_done_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let terminal = server.add_terminal("Flaky ATM").await;
    let anna = customer_with_card(&server, 1).await;
    fund(&server, &terminal, &anna, "50.00").await;
    let relay = relay(server.terminal.clone()).await;
    let key = std::fs::read_to_string(&terminal.1).unwrap().trim().to_owned();
    let hello = Hello { client: "atm-test".into(), terminal: Some((terminal.0, key)) };
    let mut client = Client::connect(&relay.address, TrustConfig::Ca(server.ca()), hello).await.unwrap();
    assert!(client.call("hello", Map::new()).await.unwrap().is_ok());
    let login = Map::from_iter([("card_number".into(), json!(anna.card)), ("pin".into(), json!(PIN))]);
    assert!(client.call("login", login).await.unwrap().is_ok());

    relay.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let reply = client.call("withdraw", Map::from_iter([("amount".into(), json!("20.00"))])).await.unwrap();
    assert_eq!(client.reconnects, 1, "the reply was lost and the client reconnected");
    assert!(reply.is_ok(), "{:?}", reply.body);
    assert_eq!(reply.id, Some(3), "the same frame, answered on the new connection");
    assert_eq!(reply.field("balance"), Some(&json!("30.00")), "{:?}", reply.body);
    assert_eq!(http_balance(&server, &anna).await, "30.00", "the money moved once");
    let (status, history) =
        server.get(&format!("/api/v1/accounts/{}/transactions?limit=50", anna.account_id), &anna.token).await;
    assert_eq!(status, 200, "{history}");
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "the deposit and one withdrawal: {history}");
    assert_eq!(items[0]["id"], reply.field("transfer").unwrap()["id"], "the replayed reply names the one transfer");
    // The session goes on, and the frame numbers with it.
    let balance = client.call("balance", Map::new()).await.unwrap();
    assert_eq!(balance.id, Some(6), "hello and resume took 4 and 5");
    assert_eq!(balance.field("balance"), Some(&json!("30.00")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_session_on_the_screen() {
    use atm::ui::{App, Key};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let anna = customer_with_card(&server, 1).await;
    let (status, spare) = server
        .post(
            "/api/v1/accounts",
            Some(&anna.token),
            &json!({"kind": "current", "currency": "BYN", "consents": [{"document": "terms", "version": "2026-01"}]}),
        )
        .await;
    assert_eq!(status, 201, "{spare}");
    let spare = spare["number"].as_str().unwrap().to_owned();
    // An unregistered client: no card sign-in, no cash.
    let mut bank = client(&server, None).await;
    let mut app = App::new(false);
    let mut screens = Vec::new();
    story::start(&mut app, &mut bank).await;
    story::enter(&mut app, &mut bank).await;
    let choices = story::render(&app);
    assert!(choices.contains("1. Phone and password") && choices.contains("2. Staff"), "{choices}");
    assert!(!choices.contains("Card and PIN"), "{choices}");
    story::press(&mut app, &mut bank, "2").await;
    story::press(&mut app, &mut bank, "admin").await;
    story::enter(&mut app, &mut bank).await;
    story::press(&mut app, &mut bank, &server.admin.password).await;
    story::enter(&mut app, &mut bank).await;
    let totp = server.admin_totp();
    story::press(&mut app, &mut bank, &totp).await;
    screens.push(story::render(&app));
    story::enter(&mut app, &mut bank).await;
    let menu = story::render(&app);
    assert!(menu.contains("1. Customers") && menu.contains("5. Sign out"), "{menu}");
    screens.push(menu);

    story::press(&mut app, &mut bank, "1").await;
    story::press(&mut app, &mut bank, "Ivanova").await;
    story::enter(&mut app, &mut bank).await;
    let found = story::render(&app);
    assert!(found.contains(&anna.phone) && found.contains("Anna Ivanova"), "{found}");
    story::enter(&mut app, &mut bank).await;

    story::press(&mut app, &mut bank, "2").await;
    story::press(&mut app, &mut bank, &anna.id.to_string()).await;
    story::enter(&mut app, &mut bank).await;
    story::press(&mut app, &mut bank, "current").await;
    story::enter(&mut app, &mut bank).await;
    story::press(&mut app, &mut bank, "byn").await;
    story::enter(&mut app, &mut bank).await;
    let opened = story::render(&app);
    assert!(opened.contains("Account opened") && opened.contains("Status:    active"), "{opened}");
    story::enter(&mut app, &mut bank).await;

    story::press(&mut app, &mut bank, "3").await;
    story::press(&mut app, &mut bank, &spare).await;
    story::enter(&mut app, &mut bank).await;
    let closed = story::render(&app);
    assert!(
        closed.contains("Account closed")
            && closed.contains(&format!("Account:   {spare}"))
            && closed.contains("Status:    closed"),
        "{closed}"
    );
    story::key(&mut app, &mut bank, Key::Esc).await;

    story::press(&mut app, &mut bank, "4").await;
    story::enter(&mut app, &mut bank).await;
    let transactions = story::render(&app);
    assert!(transactions.contains("Transactions"), "{transactions}");
    story::enter(&mut app, &mut bank).await;

    story::press(&mut app, &mut bank, "5").await;
    let goodbye = story::render(&app);
    assert!(goodbye.contains("You are signed out"), "{goodbye}");
    screens.extend([found, opened, closed, transactions, goodbye]);
    for screen in &screens {
        assert!(!screen.contains(&server.admin.password), "the password was drawn:\n{screen}");
        assert!(!screen.contains(&totp), "the one-time code was drawn:\n{screen}");
    }
}
