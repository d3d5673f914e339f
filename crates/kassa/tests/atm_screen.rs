//! The ATM screen driven as a person would, through ratatui's `TestBackend`:
//! keys go into the screen's state machine, requests go to a bank, and the
//! rendered buffer is read back. The bank here is a fake that keeps its own
//! Lamport clock and a balance; `atm_real.rs` drives the same story against
//! a real `kassa serve`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "a test fails by panicking")]

#[path = "../src/atm/mod.rs"]
#[allow(dead_code, unreachable_pub)]
mod atm;

#[path = "atm_common/story.rs"]
mod story;

use atm::Bank;
use atm::wire::{LamportClock, Reply, Tick, TickKind, WireError};
use serde_json::{Map, Value, json};

const CARD: &str = "4000001234567899";
const PIN: &str = "4729";
const PASSWORD: &str = "hunter2-Correct";

/// A bank with one card and one account, holding `balance_minor` BYN cents.
struct FakeBank {
    clock: LamportClock,
    server: LamportClock,
    balance_minor: i64,
    signed_in: Option<&'static str>,
    ticks: Vec<Tick>,
    /// Every request as received, to check nothing unexpected was sent.
    requests: Vec<(String, Map<String, Value>)>,
}

impl FakeBank {
    fn new(balance_minor: i64) -> FakeBank {
        FakeBank {
            clock: LamportClock::default(),
            server: LamportClock::default(),
            balance_minor,
            signed_in: None,
            ticks: Vec::new(),
            requests: Vec::new(),
        }
    }

    fn money(minor: i64) -> String {
        format!("{}.{:02}", minor / 100, minor % 100)
    }

    fn answer(&mut self, op: &str, fields: &Map<String, Value>) -> Value {
        let text = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let refuse = |code: &str, message: &str| json!({"ok": false, "error": {"code": code, "message": message}});
        let account = || json!({"account": "BY20KASA30120000000000000007", "balance": "", "currency": "BYN"});
        match op {
            "hello" => {
                json!({"ok": true, "bank": "Fake Bank", "protocol_version": 1, "server_clock": self.server.now(),
                "terminal": {"id": 1, "name": "Lobby ATM"}})
            }
            "login" if text("card_number") == CARD && text("pin") == PIN => {
                self.signed_in = Some("customer");
                let mut account = account();
                account["balance"] = json!(Self::money(self.balance_minor));
                json!({"ok": true, "role": "customer", "name": "Ivan P.", "session_token": "t", "expires_in": 900, "account": account})
            }
            "login" if !text("card_number").is_empty() => {
                json!({"ok": false, "error": {"code": "pin_wrong", "message": "wrong PIN", "tries_left": 2}})
            }
            "login" => refuse("invalid_credentials", "invalid credentials"),
            _ if self.signed_in.is_none() => refuse("unauthorized", "sign in first"),
            "balance" => json!({"ok": true, "account": "BY20KASA30120000000000000007", "kind": "debit_card",
                "balance": Self::money(self.balance_minor), "available": Self::money(self.balance_minor), "currency": "BYN"}),
            "withdraw" => {
                let amount = text("amount");
                let (whole, fraction) = amount.split_once('.').unwrap_or((&amount, ""));
                let minor = whole.parse::<i64>().unwrap() * 100 + format!("{fraction:0<2}").parse::<i64>().unwrap();
                if minor > self.balance_minor {
                    let message = format!("insufficient funds: {} available", Self::money(self.balance_minor));
                    return refuse("insufficient_funds", &message);
                }
                self.balance_minor -= minor;
                json!({"ok": true, "transfer": {"id": "0190-aa", "state": "posted", "kind": "cash_withdrawal",
                    "amount": Self::money(minor), "currency": "BYN", "debit_account": "BY20KASA30120000000000000007",
                    "credit_account": "ATM cash"}, "balance": Self::money(self.balance_minor),
                    "available": Self::money(self.balance_minor), "currency": "BYN"})
            }
            "history" => {
                // Two pages of one item each.
                let (description, next) = match fields.get("cursor") {
                    None => ("first page", json!("c2")),
                    Some(_) => ("second page", Value::Null),
                };
                json!({"ok": true, "items": [{"id": "0190-ab", "state": "posted", "kind": "transfer", "amount": "1.00",
                    "currency": "BYN", "debit_account": 7, "credit_account": 9, "description": description,
                    "created_at": "2026-11-23T01:00:00Z", "direction": "debit", "balance_after": "49.00"}],
                    "next_cursor": next})
            }
            "logout" => {
                self.signed_in = None;
                json!({"ok": true})
            }
            _ => refuse("op_unknown", "no such operation"),
        }
    }
}

impl Bank for FakeBank {
    async fn call(&mut self, op: &str, fields: Map<String, Value>) -> Result<Reply, WireError> {
        self.requests.push((op.to_owned(), fields.clone()));
        let before = self.clock.now();
        let sent = self.clock.tick_send();
        self.ticks.push(Tick { kind: TickKind::Send, op: op.into(), remote: None, before, after: sent });
        // The server: receive, then tick before sending the reply.
        self.server.tick_receive(sent);
        let mut reply = self.answer(op, &fields);
        reply["id"] = json!(self.requests.len());
        reply["clock"] = json!(self.server.tick_send());
        let reply = Reply::parse(reply.to_string().as_bytes(), sent)?;
        let before = self.clock.now();
        let after = self.clock.tick_receive(reply.clock);
        self.ticks.push(Tick { kind: TickKind::Receive, op: op.into(), remote: Some(reply.clock), before, after });
        Ok(reply)
    }

    fn take_ticks(&mut self) -> Vec<Tick> {
        std::mem::take(&mut self.ticks)
    }
}

#[tokio::test]
async fn login_withdraw_overdraft_logout_on_the_screen() {
    let mut bank = FakeBank::new(5_000);
    let secrets = story::Secrets { card: CARD.into(), pin: PIN.into() };
    let screens = story::card_story(&mut bank, &secrets, "12.50", "1000", true).await;
    assert!(screens.last().unwrap().contains("Welcome to Fake Bank"));
    assert_eq!(bank.balance_minor, 5_000 - 1_250, "one withdrawal, the overdraft moved nothing");
    // The fake's clocks are the client's: every receipt shows request → reply.
    assert!(screens.iter().any(|screen| screen.contains("Clock: request")));
}

#[tokio::test]
async fn amount_entry_refuses_bad_amounts_before_sending() {
    let mut bank = FakeBank::new(5_000);
    let mut app = atm::ui::App::new(false);
    let secrets = story::Secrets { card: CARD.into(), pin: PIN.into() };
    story::sign_in_by_card(&mut app, &mut bank, &secrets).await;
    let sent_before = bank.requests.len();
    // "Withdraw cash" is the third entry of a terminal's customer menu.
    story::press(&mut app, &mut bank, "3").await;
    // A second point is not accepted as typed; a third decimal is refused on Enter.
    story::press(&mut app, &mut bank, "1.2.34").await;
    let screen = story::render(&app);
    assert!(screen.contains("Amount: 1.234_"), "{screen}");
    story::enter(&mut app, &mut bank).await;
    let screen = story::render(&app);
    assert!(screen.contains("At most 2 digits after the point."), "{screen}");
    for _ in 0..5 {
        story::key(&mut app, &mut bank, atm::ui::Key::Backspace).await;
    }
    story::press(&mut app, &mut bank, "0").await;
    story::enter(&mut app, &mut bank).await;
    assert!(story::render(&app).contains("The amount must be more than zero."));
    story::key(&mut app, &mut bank, atm::ui::Key::Backspace).await;
    story::enter(&mut app, &mut bank).await;
    assert!(story::render(&app).contains("Please enter the amount."));
    assert_eq!(bank.requests.len(), sent_before, "nothing invalid was sent");
}

#[tokio::test]
async fn a_wrong_pin_says_how_many_tries_are_left_and_is_masked() {
    let mut bank = FakeBank::new(100);
    let mut app = atm::ui::App::new(true);
    story::start(&mut app, &mut bank).await;
    story::enter(&mut app, &mut bank).await;
    story::press(&mut app, &mut bank, "1").await;
    story::press(&mut app, &mut bank, CARD).await;
    story::enter(&mut app, &mut bank).await;
    story::press(&mut app, &mut bank, "9999").await;
    let screen = story::render(&app);
    assert!(screen.contains("PIN: ••••_"), "{screen}");
    assert!(!screen.contains("9999"), "{screen}");
    story::enter(&mut app, &mut bank).await;
    let screen = story::render(&app);
    assert!(screen.contains("Wrong PIN. 2 tries left. [pin_wrong]"), "{screen}");
    // The clock panel shows both ticks of each exchange.
    assert!(screen.contains("Lamport clock"), "{screen}");
    assert!(screen.contains("send login: 4 -> 5"), "{screen}");
    assert!(screen.contains("recv login: max(5, 7) + 1 = 8"), "{screen}");
}

#[tokio::test]
async fn phone_login_refusal_and_the_password_is_never_drawn() {
    let mut bank = FakeBank::new(100);
    let mut app = atm::ui::App::new(false);
    story::start(&mut app, &mut bank).await;
    story::enter(&mut app, &mut bank).await;
    story::press(&mut app, &mut bank, "2").await;
    story::press(&mut app, &mut bank, "+375291234567").await;
    story::enter(&mut app, &mut bank).await;
    story::press(&mut app, &mut bank, PASSWORD).await;
    let screen = story::render(&app);
    assert!(screen.contains(&"•".repeat(PASSWORD.len())), "{screen}");
    assert!(!screen.contains(PASSWORD), "{screen}");
    story::enter(&mut app, &mut bank).await;
    let screen = story::render(&app);
    assert!(screen.contains("The login or password is not right. [invalid_credentials]"), "{screen}");
    assert_eq!(bank.requests.last().unwrap().1.get("password"), Some(&json!(PASSWORD)));
}

#[tokio::test]
async fn a_script_prints_one_line_per_reply_and_stops_at_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let script = format!(
        "# a comment\nlogin card {CARD} pin-file {}\nbalance\nwithdraw 12.50\nwithdraw 1000\nbalance\n",
        pin_file.display()
    );
    let run = |keep_going: bool, json: bool| {
        let script = script.clone();
        async move {
            let mut bank = FakeBank::new(5_000);
            let mut out = Vec::new();
            let options = atm::script::Options { json, keep_going, show_clock: !json };
            let code = atm::script::run(&mut bank, script.as_bytes(), &mut out, &options).await.unwrap();
            (code, String::from_utf8(out).unwrap(), bank)
        }
    };
    let (code, out, bank) = run(false, false).await;
    assert_eq!(code, std::process::ExitCode::FAILURE);
    assert!(!out.contains(PIN), "{out}");
    let ops: Vec<&str> = bank.requests.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(ops, ["hello", "login", "balance", "withdraw", "withdraw"], "a hello first; stopped after the refusal");
    assert!(
        out.contains("[1 → 3] hello: bank Fake Bank, protocol 1, server clock 2, terminal Lobby ATM (#1)"),
        "{out}"
    );
    assert!(
        out.contains("login: signed in as Ivan P. (customer), account BY20KASA30120000000000000007 balance 50.00 BYN"),
        "{out}"
    );
    assert!(out.contains("balance: account BY20KASA30120000000000000007: balance 50.00 BYN, available 50.00"), "{out}");
    assert!(out.contains("withdraw: transfer 0190-aa cash_withdrawal 12.50 BYN (posted), balance 37.50 BYN"), "{out}");
    assert!(out.contains("withdraw: refused: Insufficient funds: there is not enough money in the account for this. (insufficient funds: 37.50 available) [insufficient_funds]"), "{out}");
    assert!(out.contains("clock: send withdraw: "), "{out}");

    let (code, out, bank) = run(true, true).await;
    assert_eq!(code, std::process::ExitCode::FAILURE, "a refusal still fails the run");
    assert_eq!(bank.requests.len(), 6, "--keep-going ran the last balance too");
    let oks: Vec<bool> =
        out.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()["ok"].as_bool().unwrap()).collect();
    assert_eq!(oks, [true, true, true, true, false, true]);

    let mut bank = FakeBank::new(0);
    let mut out = Vec::new();
    let options = atm::script::Options::default();
    let code = atm::script::run(&mut bank, "hello\nfly away\nbalance\n".as_bytes(), &mut out, &options).await.unwrap();
    assert_eq!(code, std::process::ExitCode::FAILURE);
    assert!(String::from_utf8(out).unwrap().contains("line 2: unknown command `fly`"));
    assert_eq!(bank.requests.len(), 1, "nothing after the bad line");
}

#[tokio::test]
async fn history_pages_on_the_screen() {
    let mut bank = FakeBank::new(5_000);
    let mut app = atm::ui::App::new(false);
    let secrets = story::Secrets { card: CARD.into(), pin: PIN.into() };
    story::sign_in_by_card(&mut app, &mut bank, &secrets).await;
    story::press(&mut app, &mut bank, "5").await;
    let screen = story::render(&app);
    assert!(screen.contains("2026-11-23T01:00:00Z -1.00 BYN balance after 49.00 first page"), "{screen}");
    assert!(screen.contains("n: next page"), "{screen}");
    story::press(&mut app, &mut bank, "n").await;
    let screen = story::render(&app);
    assert!(screen.contains("second page"), "{screen}");
    assert!(!screen.contains("n: next page"), "{screen}");
    let (op, fields) = bank.requests.last().unwrap();
    assert_eq!((op.as_str(), fields.get("cursor")), ("history", Some(&json!("c2"))));
    story::enter(&mut app, &mut bank).await;
    assert!(story::render(&app).contains("choose an operation"));
}
