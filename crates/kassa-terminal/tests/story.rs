//! Story tests of the terminal protocol over real TLS connections to a
//! server on loopback, on SQLite and PostgreSQL: every customer and staff
//! operation, card + PIN at a registered terminal and its refusal
//! elsewhere, what the HTTP API and the terminal see of each other, the
//! clocks, retries, and the journal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::too_many_lines, missing_docs)]

mod support;
use support::*;

use kassa_terminal::TerminalSettings;

async fn a_customer_at_a_registered_terminal(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let terminals = serve_terminals(&app.bank, TerminalSettings::default()).await;
    let (terminal, key) = register_terminal(&app, "Lobby ATM").await;
    let (anna, card, card_account) = card_customer(&app, 1, "1234", "100.00").await;
    let bob = app.register(2).await;
    let bob_account = app.open_account(&bob.token).await;

    // A wrong key is refused; the right one names the terminal.
    let mut stranger = Term::connect(&terminals).await;
    stranger
        .refused(
            "hello",
            json!({"protocol_version": 1, "terminal_id": terminal, "terminal_key": "nope"}),
            "terminal_unknown",
        )
        .await;
    stranger.refused("hello", json!({"protocol_version": 2}), "upgrade_required").await;

    let mut atm = Term::connect(&terminals).await;
    atm.refused("balance", json!({}), "hello_required").await;
    let hello = atm.hello(Some((terminal, &key))).await;
    assert_eq!(hello["terminal"]["name"], "Lobby ATM", "{engine:?}: {hello}");
    assert_eq!(hello["protocol_version"], 1);
    assert!(hello["bank"].as_str().is_some_and(|name| !name.is_empty()));
    atm.refused("balance", json!({}), "unauthorized").await;

    let wrong = atm.refused("login", json!({"card_number": card, "pin": "9999"}), "pin_wrong").await;
    assert!(!wrong.to_string().contains("9999"), "the PIN is never echoed: {wrong}");
    let login = atm.ok("login", json!({"card_number": card, "pin": "1234"})).await;
    assert_eq!(login["role"], "customer");
    assert_eq!(login["account"]["balance"], "100.00", "{login}");
    let token = login["session_token"].as_str().unwrap().to_owned();

    assert_eq!(atm.ok("balance", json!({})).await["available"], "100.00");
    let deposit = atm.ok("deposit", json!({"amount": "20.00"})).await;
    assert_eq!((deposit["balance"].as_str(), deposit["transfer"]["kind"].as_str()), (Some("120.00"), Some("deposit")));
    let withdrawal = atm.ok("withdraw", json!({"amount": "30.00"})).await;
    assert_eq!(withdrawal["balance"], "90.00", "{withdrawal}");
    let overdraft = atm.refused("withdraw", json!({"amount": "1000.00"}), "insufficient_funds").await;
    assert!(overdraft["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    atm.refused("withdraw", json!({"amount": "1.001"}), "amount_too_many_decimals").await;
    for amount in ["-5", "0", "ten", ""] {
        let reply = atm.call("withdraw", json!({"amount": amount})).await;
        let code = reply["error"]["code"].as_str().unwrap_or("");
        assert!(code.starts_with("amount_") || code == "field_required", "{amount:?}: {reply}");
    }
    let paid = atm.ok("transfer", json!({"to_phone": bob.phone, "amount": "10.00"})).await;
    assert_eq!(paid["transfer"]["amount"], "10.00");
    assert_eq!(app.balance(&bob.token, id_of(&bob_account)).await, "10.00", "{engine:?}: the API sees the payment");
    assert_eq!(app.balance(&anna.token, card_account).await, "80.00", "{engine:?}: the API sees the terminal's work");

    // A card session uses only the card's account.
    atm.refused("balance", json!({"account": bob_account["number"]}), "account_not_found").await;

    // The other way round: a payment over HTTP shows at the terminal.
    let by_api = app
        .post(
            "/api/v1/transfers",
            Some(&bob.token),
            json!({"from_account": id_of(&bob_account).to_string(), "to_account": card, "amount": "5.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(by_api.status, 201, "{}", by_api.body);
    assert_eq!(atm.ok("balance", json!({})).await["balance"], "85.00");

    // History, newest first, paged.
    let first = atm.ok("history", json!({"limit": 2})).await;
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{first}");
    assert_eq!((items[0]["amount"].as_str(), items[0]["direction"].as_str()), (Some("5.00"), Some("credit")));
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = atm.ok("history", json!({"limit": 50, "cursor": cursor})).await;
    let kinds: Vec<&str> = second["items"].as_array().unwrap().iter().filter_map(|i| i["kind"].as_str()).collect();
    assert_eq!(kinds, ["withdrawal", "deposit", "deposit"], "{second}");
    assert_eq!(second["next_cursor"], Value::Null);
    let accounts = atm.ok("accounts", json!({})).await;
    assert_eq!(accounts["items"].as_array().unwrap().len(), 1, "a card session sees the card's account: {accounts}");

    // A retried frame moves money once: on the same connection, and after
    // a reconnect with `resume`; the same id with other content is refused.
    let retry_id = 1000;
    let once = atm.call_as(retry_id, "withdraw", json!({"amount": "7.00"})).await;
    let twice = atm.call_as(retry_id, "withdraw", json!({"amount": "7.00"})).await;
    assert_eq!(once["transfer"]["id"], twice["transfer"]["id"], "{engine:?}: {once} / {twice}");
    drop(atm);
    let mut again = Term::connect(&terminals).await;
    again.hello(Some((terminal, &key))).await;
    let resumed = again.ok("resume", json!({"session_token": token})).await;
    assert_eq!(resumed["account"]["balance"], "78.00", "{engine:?}: {resumed}");
    let thrice = again.call_as(retry_id, "withdraw", json!({"amount": "7.00"})).await;
    assert_eq!(thrice["transfer"]["id"], once["transfer"]["id"], "{thrice}");
    let other = again.call_as(retry_id, "withdraw", json!({"amount": "8.00"})).await;
    assert_eq!(other["error"]["code"], "idempotency_key_reused", "{other}");
    assert_eq!(app.balance(&anna.token, card_account).await, "78.00", "{engine:?}: one withdrawal of 7.00");

    // A card session does not resume at another terminal or without one.
    let mut elsewhere = Term::connect(&terminals).await;
    elsewhere.hello(None).await;
    elsewhere.refused("resume", json!({"session_token": token}), "invalid_token").await;

    // The journal carries the clock of each terminal event.
    let audit = app.get("/api/v1/staff/audit?action=terminal.withdrawal&limit=50", &app.manager).await;
    let events = audit.body["items"].as_array().unwrap();
    let outcomes: Vec<&str> = events.iter().filter_map(|event| event["outcome"].as_str()).collect();
    assert_eq!(
        outcomes,
        ["id_reused_with_different_content", "replayed", "replayed", "ok", "insufficient_funds", "ok"],
        "{engine:?}: {}",
        audit.body
    );
    let clocks: Vec<i64> = events.iter().filter_map(|event| event["clock"].as_i64()).collect();
    assert_eq!(clocks.len(), events.len(), "every terminal event has its clock: {}", audit.body);
    assert!(clocks.windows(2).all(|pair| pair[0] > pair[1]), "clocks rise with the journal: {clocks:?}");
    assert!(events.iter().all(|event| event["origin"] == format!("terminal:{terminal}")), "{}", audit.body);
    let logins = app.get("/api/v1/staff/audit?action=auth.card_login&limit=5", &app.manager).await;
    assert!(logins.body["items"][0]["clock"].as_i64().is_some(), "{}", logins.body);

    // The terminal's own cash account took the cash: 20 in, 30 + 7 out.
    let cash = terminal_cash(&app, terminal).await;
    assert_eq!(cash, 1700, "{engine:?}: the terminal's cash account (minor units)");

    again.ok("logout", json!({})).await;
    again.refused("balance", json!({}), "unauthorized").await;

    // A disabled terminal can no longer say hello; enabled, it can again.
    let path = format!("/api/v1/admin/terminals/{terminal}/status");
    let disabled = app.send(Method::PUT, &path, Some(&app.admin), Some(json!({"status": "disabled"}))).await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    let listed = app.get("/api/v1/admin/terminals", &app.admin).await;
    assert_eq!(listed.body["items"][0]["status"], "disabled", "{}", listed.body);
    assert!(!listed.body.to_string().contains(&key), "the key is never shown again: {}", listed.body);
    let mut off = Term::connect(&terminals).await;
    off.refused(
        "hello",
        json!({"protocol_version": 1, "terminal_id": terminal, "terminal_key": key}),
        "terminal_unknown",
    )
    .await;
    let teller_tries = app.get("/api/v1/admin/terminals", &app.teller).await;
    assert_eq!(teller_tries.status, 403, "{}", teller_tries.body);
    app.send(Method::PUT, &path, Some(&app.admin), Some(json!({"status": "active"}))).await;
    off.hello(Some((terminal, &key))).await;
    let mut after = Term::connect(&terminals).await;
    after.hello(Some((terminal, &key))).await;
    after.refused("resume", json!({"session_token": token}), "session_revoked").await;
}
on_both_engines!(a_customer_at_a_registered_terminal);

/// What a terminal's BYN cash account paid out less what it took in, in
/// minor units (the cash that left the machine).
async fn terminal_cash(app: &App, terminal: i64) -> i64 {
    use kassa_store::sql::{self, Value as SqlValue};
    sql::read(&**app.bank.database(), move |tx| {
        let row = tx.query_one(
            "SELECT a.credits_posted - a.debits_posted FROM terminal_cash c JOIN accounts a ON a.id = c.account_id \
             WHERE c.terminal_id = $1 AND c.currency = 'BYN'",
            &[SqlValue::Int(terminal)],
        )?;
        row.int(0)
    })
    .await
    .unwrap()
}

async fn cards_need_a_registered_terminal_passwords_do_not(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let terminals = serve_terminals(&app.bank, TerminalSettings::default()).await;
    let (anna, card, card_account) = card_customer(&app, 1, "1234", "50.00").await;
    let bob = app.register(2).await;
    let bob_account = app.open_account(&bob.token).await;

    let mut home = Term::connect(&terminals).await;
    home.hello(None).await;
    for _ in 0..4 {
        home.refused("login", json!({"card_number": card, "pin": "0000"}), "terminal_required").await;
    }
    let login = home.ok("login", json!({"phone": anna.phone, "password": PASSWORD})).await;
    assert_eq!(login["account"]["balance"], "50.00", "the default account: {login}");
    home.refused("withdraw", json!({"amount": "1.00"}), "terminal_required").await;
    home.refused("deposit", json!({"amount": "1.00"}), "terminal_required").await;
    home.ok("transfer", json!({"to_account": bob_account["number"], "amount": "2.50", "description": "lunch"})).await;
    assert_eq!(app.balance(&bob.token, id_of(&bob_account)).await, "2.50");
    home.ok("logout", json!({})).await;

    // Those refusals never counted against the card: three wrong PINs at a
    // registered terminal block it, and not before.
    let (terminal, key) = register_terminal(&app, "Branch ATM").await;
    let mut atm = Term::connect(&terminals).await;
    atm.hello(Some((terminal, &key))).await;
    atm.refused("login", json!({"card_number": card, "pin": "0000"}), "pin_wrong").await;
    atm.refused("login", json!({"card_number": card, "pin": "0001"}), "pin_wrong").await;
    atm.refused("login", json!({"card_number": card, "pin": "0002"}), "pin_blocked").await;
    atm.refused("login", json!({"card_number": card, "pin": "1234"}), "pin_blocked").await;
    let view = app.account(&anna.token, card_account).await;
    assert_eq!(view["card"]["pin_blocked"], true, "{view}");

    // A revocation anywhere ends a terminal session: sign out everywhere
    // over HTTP, and the terminal's next request is refused.
    let mut phone = Term::connect(&terminals).await;
    phone.hello(None).await;
    phone.ok("login", json!({"phone": bob.phone, "password": PASSWORD})).await;
    phone.ok("balance", json!({})).await;
    let out = app.post("/api/v1/auth/logout-all", Some(&bob.token), json!({})).await;
    assert_eq!(out.status, 204, "{}", out.body);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    phone.refused("balance", json!({}), "session_revoked").await;
    phone.refused("balance", json!({}), "unauthorized").await;

    // Wrong passwords are throttled with the HTTP API's counters: failures
    // over the terminal block the HTTP sign-in too.
    let mut guesser = Term::connect(&terminals).await;
    guesser.hello(None).await;
    let mut throttled = false;
    for _ in 0..8 {
        let reply = guesser.call("login", json!({"phone": anna.phone, "password": "wrong password!"})).await;
        match reply["error"]["code"].as_str() {
            Some("invalid_credentials") => {}
            Some("too_many_attempts") => {
                assert!(reply["error"]["retry_after_s"].as_i64().is_some_and(|s| s > 0), "{reply}");
                throttled = true;
                break;
            }
            _ => panic!("{reply}"),
        }
    }
    assert!(throttled, "{engine:?}: wrong passwords over the terminal were never throttled");
    let by_http = app.login(&anna.phone, PASSWORD, None).await;
    assert_eq!((by_http.status, by_http.code()), (429, "too_many_attempts"), "{}", by_http.body);
}
on_both_engines!(cards_need_a_registered_terminal_passwords_do_not);

async fn staff_at_a_terminal(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let terminals = serve_terminals(&app.bank, TerminalSettings::default()).await;
    let anna = app.register(1).await;
    let funded = app.open_account(&anna.token).await;
    app.deposit(&funded, "12.00").await;

    let mut desk = Term::connect(&terminals).await;
    desk.hello(None).await;
    desk.refused("login", json!({"staff_login": "teller", "password": "wrong"}), "invalid_credentials").await;
    let login = desk.ok("login", json!({"staff_login": "teller", "password": TELLER_PASSWORD})).await;
    assert_eq!((login["role"].as_str(), &login["account"]), (Some("teller"), &Value::Null));
    desk.refused("balance", json!({}), "customers_only").await;

    let found = desk.ok("customers", json!({"query": "Petrov"})).await;
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["id"], anna.id);
    let opened = desk.ok("open_account", json!({"customer_id": anna.id, "kind": "savings", "currency": "BYN"})).await;
    assert_eq!(
        (opened["account"]["kind"].as_str(), opened["account"]["owner"].as_i64()),
        (Some("savings"), Some(anna.id))
    );
    let number = opened["account"]["number"].as_str().unwrap().to_owned();
    desk.refused(
        "open_account",
        json!({"customer_id": 999_999, "kind": "current", "currency": "BYN"}),
        "customer_not_found",
    )
    .await;
    let seen = app.get("/api/v1/accounts", &anna.token).await;
    assert_eq!(seen.body["items"].as_array().unwrap().len(), 2, "the customer sees the new account: {}", seen.body);

    let all = desk.ok("transactions", json!({"limit": 1})).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert!(all["next_cursor"].is_string(), "{all}");
    let mine = desk.ok("transactions", json!({"account": funded["number"]})).await;
    assert_eq!(mine["items"][0]["amount"], "12.00", "{mine}");
    desk.refused("close_account", json!({"account": number}), "forbidden").await;
    desk.ok("logout", json!({})).await;

    let mut office = Term::connect(&terminals).await;
    office.hello(None).await;
    office.ok("login", json!({"staff_login": "manager", "password": MANAGER_PASSWORD})).await;
    office.refused("close_account", json!({"account": funded["number"]}), "account_not_empty").await;
    let closed = office.ok("close_account", json!({"account": number})).await;
    assert_eq!(closed["account"]["status"], "closed");
    office.refused("close_account", json!({"account": "no such account"}), "account_number_invalid").await;
    office.refused("close_account", json!({"account": "999999"}), "account_not_found").await;
}
on_both_engines!(staff_at_a_terminal);
