//! Notifications end to end: a local HTTP SMS receiver (kassa-testkit's)
//! and a local SMTP receiver, started here, get every message of the
//! committed operations, each with its id, on the channels each customer
//! opted in to (per transaction, per sign-in; all off for a new customer);
//! failed operations send nothing; exchanges, application decisions and
//! interest postings notify their customer; a gateway that keeps failing
//! dead-letters the message, which an admin sees and retries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    missing_debug_implementations
)]

mod common;
use common::*;

use std::sync::Mutex;
use std::time::Duration;

use kassa_service::notify::{EmailGateway, SmsGateway, SmtpTls};
use kassa_testkit::receivers::SmsReceiver;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One message a receiver got.
#[derive(Clone, Debug)]
struct Got {
    /// `Idempotency-Key` (SMS) or `Message-ID` without `<…@kassa>` (e-mail).
    id: String,
    to: String,
    body: String,
}

/// The e-mail the SMTP receiver got, and the shared SMS receiver.
struct Inbox {
    email: Mutex<Vec<Got>>,
    sms: Arc<SmsReceiver>,
    sms_url: String,
}

impl Inbox {
    async fn new() -> Arc<Inbox> {
        let (sms, sms_url) = SmsReceiver::start().await.unwrap();
        Arc::new(Inbox { email: Mutex::default(), sms, sms_url })
    }

    /// Every SMS so far, each checked as the gateway must send it: Basic
    /// Auth with the configured user and password, the id in both headers,
    /// the configured sender.
    fn sms(&self) -> Vec<Got> {
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("AC123:tok"));
        self.sms
            .requests()
            .into_iter()
            .map(|request| {
                assert_eq!(request.authorization, expected);
                assert_eq!(request.idempotency_key, request.message_id);
                assert_eq!(request.field("From"), "Kassa");
                Got { id: request.idempotency_key.clone(), to: request.field("To"), body: request.field("Body") }
            })
            .collect()
    }

    fn email(&self) -> Vec<Got> {
        self.email.lock().unwrap().clone()
    }
}

/// A minimal SMTP receiver: enough of RFC 5321 for one client.
async fn smtp_receiver(inbox: Arc<Inbox>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let inbox = Arc::clone(&inbox);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 receiver ESMTP\r\n").await.unwrap();
                let mut in_data = false;
                let mut data: Vec<String> = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            let header = |name: &str| {
                                data.iter()
                                    .find_map(|l| {
                                        l.split_once(':')
                                            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                                            .map(|(_, v)| v.trim().to_owned())
                                    })
                                    .unwrap_or_default()
                            };
                            let id = header("Message-ID");
                            let id =
                                id.trim_start_matches('<').trim_end_matches('>').trim_end_matches("@kassa").to_owned();
                            let body_at = data.iter().position(String::is_empty).map_or(data.len(), |at| at + 1);
                            let body = data[body_at..].join("\n");
                            inbox.email.lock().unwrap().push(Got { id, to: header("To"), body });
                            data.clear();
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            data.push(line);
                        }
                        continue;
                    }
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 receiver\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    port
}

async fn notifying_app(engine: Engine, inbox: &Arc<Inbox>, max_attempts: u32, future_days: bool) -> Option<App> {
    let url = inbox.sms_url.clone();
    let port = smtp_receiver(Arc::clone(inbox)).await;
    spawn_app_with(engine, vec![], move |settings| {
        settings.interest.future_days_allowed = future_days;
        let n = &mut settings.notifications;
        n.poll_ms = 20;
        n.backoff_base_ms = 20;
        n.backoff_max_ms = 100;
        n.max_attempts = max_attempts;
        n.sms = SmsGateway::HttpSms;
        n.http_sms.url = url;
        n.http_sms.username = "AC123".into();
        n.http_sms.password = "tok".into();
        n.http_sms.from = "Kassa".into();
        n.email = EmailGateway::Smtp;
        n.smtp.host = "127.0.0.1".into();
        n.smtp.port = port;
        n.smtp.tls = SmtpTls::None;
        n.smtp.from = "Kassa <bank@example.com>".into();
    })
    .await
}

/// Sets a customer's notification switches; returns the preferences.
async fn opt_in(app: &App, token: &str, switches: Value) -> Value {
    let answer = app.send(Method::PATCH, "/api/v1/me/notifications", Some(token), Some(switches)).await;
    assert_eq!(answer.status, 200, "{:?}: {}", app.engine, answer.body);
    answer.body
}

/// Waits (at most 20 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn outbox(app: &App, state: &str) -> Vec<Value> {
    let answer = app.get(&format!("/api/v1/admin/outbox?state={state}&limit=200"), &app.admin).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

async fn every_committed_operation_reaches_both_receivers(engine: Engine) {
    let inbox = Inbox::new().await;
    let Some(app) = notifying_app(engine, &inbox, 5, false).await else { return };
    let payer = app.register(1).await;
    let payee = app.register(2).await;
    let bystander = app.register(3).await;
    let from = app.open_account(&payer.token).await;
    let to = app.open_account(&payee.token).await;
    let idle = app.open_account(&bystander.token).await;
    // Opt-in: a new customer has every switch off.
    let off = json!({"sms_per_transaction": false, "email_per_transaction": false, "sms_on_login": false,
        "email_on_login": false, "on_login": false});
    let prefs = app.get("/api/v1/me/notifications", &bystander.token).await;
    assert_eq!((prefs.status, &prefs.body), (200, &off), "{engine:?}");
    // The payer wants both channels per transaction, and an SMS at sign-in.
    let prefs = opt_in(
        &app,
        &payer.token,
        json!({"sms_per_transaction": true, "email_per_transaction": true,
        "sms_on_login": true}),
    )
    .await;
    assert_eq!((prefs["email_on_login"].as_bool(), prefs["on_login"].as_bool()), (Some(false), Some(true)));
    // The payee uses the first version's three fields: no SMS, e-mail per
    // transaction, and a sign-in notice on the channels that are on (e-mail).
    let prefs = opt_in(
        &app,
        &payee.token,
        json!({"sms_per_transaction": false, "email_per_transaction": true,
        "on_login": true}),
    )
    .await;
    assert_eq!((prefs["sms_on_login"].as_bool(), prefs["email_on_login"].as_bool()), (Some(false), Some(true)));
    assert_eq!(app.get("/api/v1/me", &payee.token).await.body["notifications"], prefs, "{engine:?}");

    app.deposit(&from, "100.00").await; // payer: sms + email
    let paid = app.transfer(&payer.token, id_of(&from), &payee.phone, "30.00").await; // payer: sms + email, payee: email
    assert_eq!(paid.status, 201, "{engine:?}: {}", paid.body);
    // A withdrawal the account cannot cover commits nothing, sends nothing.
    let poor = app
        .post(
            "/api/v1/staff/cash/withdrawals",
            Some(&app.teller),
            json!({"account": from["number"], "amount": "1000.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(poor.code(), "insufficient_funds", "{engine:?}: {}", poor.body);
    app.deposit(&idle, "7.00").await; // bystander: nothing (never opted in)
    app.login_ok(&bystander.phone, PASSWORD, None).await; // bystander: nothing
    app.login_ok(&payee.phone, PASSWORD, None).await; // payee: email
    app.login_ok(&payer.phone, PASSWORD, None).await; // payer: sms

    until("7 messages", || inbox.sms().len() + inbox.email().len() >= 7).await;
    // Everything fanned out before the last sign-in is delivered by now
    // (the worker goes in order), so nothing more may come.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sms, email) = (inbox.sms(), inbox.email());
    assert_eq!(sms.len(), 3, "{engine:?}: {sms:?}");
    assert_eq!(email.len(), 4, "{engine:?}: {email:?}");
    assert!(sms.iter().all(|got| got.to == payer.phone), "{engine:?}: the payee wants no SMS");
    assert!(sms.iter().any(|got| got.body.contains("Cash deposit") && got.body.contains("100.00 BYN")));
    assert!(sms.iter().any(|got| got.body.contains("Payment sent") && got.body.contains("30.00 BYN")));
    assert!(sms.iter().any(|got| got.body.contains("New sign-in")), "{engine:?}: the payer's sign-in SMS");
    assert!(!email.iter().any(|got| got.to.contains("c1@example.com") && got.body.contains("New sign-in")));
    assert!(email.iter().any(|got| got.to.contains("c2@example.com") && got.body.contains("Payment received")));
    assert!(email.iter().any(|got| got.to.contains("c2@example.com") && got.body.contains("New sign-in")));
    let all: Vec<&Got> = sms.iter().chain(&email).collect();
    assert!(all.iter().all(|got| !got.body.contains("withdrawal")), "{engine:?}: a failed withdrawal sent something");
    assert!(
        all.iter().all(|got| got.to != bystander.phone && !got.to.contains("c3@example.com")),
        "{engine:?}: a customer who never opted in got a message"
    );
    // Every message carries an id, the outbox's, and no two share one.
    let ids: std::collections::BTreeSet<&str> = all.iter().map(|got| got.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "{engine:?}: {ids:?}");
    let delivered = outbox(&app, "delivered").await;
    let outbox_ids: std::collections::BTreeSet<&str> = delivered.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, outbox_ids, "{engine:?}");
    assert!(outbox(&app, "pending").await.is_empty());
    // No full account number in any message.
    for number in [from["number"].as_str().unwrap(), to["number"].as_str().unwrap()] {
        assert!(all.iter().all(|got| !got.body.contains(number)), "{engine:?}: {number} in a message");
    }
}
on_both_engines!(every_committed_operation_reaches_both_receivers);

async fn a_failing_gateway_dead_letters_and_an_admin_retries(engine: Engine) {
    let inbox = Inbox::new().await;
    inbox.sms.set_failing(true);
    let Some(app) = notifying_app(engine, &inbox, 2, false).await else { return };
    let customer = app.register(3).await;
    opt_in(&app, &customer.token, json!({"sms_per_transaction": true, "email_per_transaction": true})).await;
    let account = app.open_account(&customer.token).await;
    app.deposit(&account, "5.00").await;

    let mut dead = Vec::new();
    for _ in 0..400 {
        dead = outbox(&app, "dead").await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1, "{engine:?}: the SMS is dead-lettered");
    let message = &dead[0];
    assert_eq!(message["channel"], "sms");
    assert_eq!(message["attempts"], 2);
    assert!(message["last_error"].as_str().unwrap().contains("503"), "{engine:?}: {message}");
    assert!(inbox.sms().is_empty());
    until("the e-mail", || inbox.email().len() == 1).await;

    // Only admins see or retry the outbox; only dead letters are retried.
    let id = message["id"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/admin/outbox", &app.manager).await.status, 403);
    let path = format!("/api/v1/admin/outbox/{id}/retry");
    assert_eq!(app.post(&path, Some(&app.manager), json!({})).await.status, 403);
    assert_eq!(
        app.post("/api/v1/admin/outbox/kassa-nothing/retry", Some(&app.admin), json!({})).await.code(),
        "message_not_found"
    );
    let bad = app.get("/api/v1/admin/outbox?state=lost", &app.admin).await;
    assert_eq!((bad.status, bad.codes().contains(&"state_invalid".to_owned())), (422, true), "{}", bad.body);
    let email_id = inbox.email()[0].id.clone();
    let not_dead = app.post(&format!("/api/v1/admin/outbox/{email_id}/retry"), Some(&app.admin), json!({})).await;
    assert_eq!(not_dead.code(), "message_not_dead", "{engine:?}: {}", not_dead.body);

    inbox.sms.set_failing(false);
    let retried = app.post(&path, Some(&app.admin), json!({})).await;
    assert_eq!((retried.status, retried.body["state"].as_str()), (200, Some("pending")), "{}", retried.body);
    until("the retried SMS", || inbox.sms().len() == 1).await;
    assert_eq!(inbox.sms()[0].id, id, "{engine:?}: the retry keeps the id");
    assert!(outbox(&app, "dead").await.is_empty());
}
on_both_engines!(a_failing_gateway_dead_letters_and_an_admin_retries);

async fn open_in(app: &App, token: &str, kind: &str, currency: &str, documents: &[&str]) -> Value {
    let consents: Vec<Value> = documents.iter().map(|d| json!({"document": d, "version": "2026-01"})).collect();
    let form = json!({"kind": kind, "currency": currency, "consents": consents});
    let answer = app.post("/api/v1/accounts", Some(token), form).await;
    assert_eq!(answer.status, 201, "{:?}: open {kind} {currency}: {}", app.engine, answer.body);
    answer.body
}

async fn apply_for_a_card(app: &App, token: &str) -> i64 {
    let consents = json!([{"document": "terms", "version": "2026-01"}, {"document": "cards", "version": "2026-01"},
        {"document": "credit", "version": "2026-01"}]);
    let answer = app
        .post(
            "/api/v1/applications",
            Some(token),
            json!({"kind": "credit_card", "currency": "BYN", "requested_limit": "500.00", "consents": consents}),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}: apply: {}", app.engine, answer.body);
    answer.body["id"].as_i64().unwrap()
}

/// An exchange, an application's decisions and an interest posting each
/// notify the customer they concern, and no one else.
async fn exchanges_decisions_and_interest_notify_their_customer(engine: Engine) {
    let inbox = Inbox::new().await;
    let Some(app) = notifying_app(engine, &inbox, 5, true).await else { return };
    let both = json!({"sms_per_transaction": true, "email_per_transaction": true});
    // The exchanger: both channels.
    let trader = app.register(1).await;
    opt_in(&app, &trader.token, both.clone()).await;
    let byn = open_in(&app, &trader.token, "current", "BYN", &["terms"]).await;
    let usd = open_in(&app, &trader.token, "current", "USD", &["terms"]).await;
    // The applicant: SMS only. The saver: e-mail only.
    let applicant = app.register(2).await;
    opt_in(&app, &applicant.token, json!({"sms_per_transaction": true})).await;
    let saver = app.register(3).await;
    opt_in(&app, &saver.token, json!({"email_per_transaction": true})).await;
    let savings = open_in(&app, &saver.token, "savings", "BYN", &["terms", "savings"]).await;

    app.deposit(&byn, "100.00").await; // trader: sms + email
    let rate = app
        .send(
            Method::PUT,
            "/api/v1/admin/rates",
            Some(&app.admin),
            Some(json!({"base": "USD", "quote": "BYN", "buy": "3.2", "sell": "3.3"})),
        )
        .await;
    assert_eq!(rate.status, 200, "{engine:?}: {}", rate.body);
    let exchanged = app
        .post(
            "/api/v1/exchanges",
            Some(&trader.token),
            json!({"from_account": id_of(&byn).to_string(), "to_account": id_of(&usd).to_string(), "amount": "33.00"}),
        )
        .await;
    assert_eq!(exchanged.status, 201, "{engine:?}: {}", exchanged.body); // trader: sms + email

    let first = apply_for_a_card(&app, &applicant.token).await;
    let rejected = app
        .post(&format!("/api/v1/staff/applications/{first}/reject"), Some(&app.manager), json!({"reason": "no income"}))
        .await;
    assert_eq!(rejected.status, 200, "{engine:?}: {}", rejected.body); // applicant: sms
    let second = apply_for_a_card(&app, &applicant.token).await;
    let approved = app
        .post(
            &format!("/api/v1/staff/applications/{second}/approve"),
            Some(&app.manager),
            json!({"credit_limit": "300.00"}),
        )
        .await;
    assert_eq!(approved.status, 200, "{engine:?}: {}", approved.body); // applicant: sms

    app.deposit(&savings, "10000.00").await; // saver: email
    let zone = kassa_service::calendar::zone("Europe/Minsk").unwrap();
    let month_end = kassa_service::calendar::day_of(&zone, kassa_store::now_us()).last_of_month();
    let run = app.post("/api/v1/admin/jobs/interest", Some(&app.admin), json!({"as_of": month_end.to_string()})).await;
    assert_eq!(run.status, 200, "{engine:?}: {}", run.body);
    let posted = run.body["postings"].as_array().unwrap().iter().any(|p| p["account"] == savings["id"]);
    assert!(posted, "{engine:?}: the savings account got interest: {}", run.body); // saver: email

    until("8 messages", || inbox.sms().len() + inbox.email().len() >= 8).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sms, email) = (inbox.sms(), inbox.email());
    let to = |list: &[Got], who: &str| {
        list.iter().filter(|got| got.to.contains(who)).map(|got| got.body.clone()).collect::<Vec<_>>()
    };
    let trader_sms = to(&sms, &trader.phone);
    let trader_email = to(&email, "c1@example.com");
    for (channel, got) in [("sms", &trader_sms), ("email", &trader_email)] {
        assert_eq!(got.len(), 2, "{engine:?}: trader {channel}: {got:?}");
        assert!(got.iter().any(|body| body.contains("Currency exchange") && body.contains("33.00 BYN")), "{got:?}");
    }
    let applicant_sms = to(&sms, &applicant.phone);
    assert_eq!(applicant_sms.len(), 2, "{engine:?}: {applicant_sms:?}");
    assert!(applicant_sms.iter().any(|body| body.contains("application was declined")), "{applicant_sms:?}");
    assert!(applicant_sms.iter().any(|body| body.contains("application was approved")), "{applicant_sms:?}");
    // The approved limit is not money moved: no amount in the message.
    assert!(applicant_sms.iter().all(|body| !body.contains("300.00")), "{applicant_sms:?}");
    let saver_email = to(&email, "c3@example.com");
    assert_eq!(saver_email.len(), 2, "{engine:?}: {saver_email:?}");
    assert!(saver_email.iter().any(|body| body.contains("Interest paid")), "{saver_email:?}");
    // Nothing else, to anyone: the applicant has no e-mail on, the saver no SMS.
    assert_eq!((sms.len(), email.len()), (4, 4), "{engine:?}: {sms:?} {email:?}");
}
on_both_engines!(exchanges_decisions_and_interest_notify_their_customer);

/// A withdrawal that waited for a second staff member notifies once, when it
/// runs (as `cash.withdrawal`), not again for the approval.
async fn an_approved_withdrawal_notifies_once(engine: Engine) {
    let inbox = Inbox::new().await;
    let Some(app) = notifying_app(engine, &inbox, 5, false).await else { return };
    let customer = app.register(1).await;
    opt_in(&app, &customer.token, json!({"sms_per_transaction": true})).await;
    let account = app.open_account(&customer.token).await;
    app.deposit(&account, "9000.00").await; // sms
    let asked = app
        .post(
            "/api/v1/staff/cash/withdrawals",
            Some(&app.teller),
            json!({"account": account["number"], "amount": "6000.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(asked.status, 202, "{engine:?}: above the four-eyes threshold: {}", asked.body);
    let approved =
        app.post(&format!("/api/v1/staff/approvals/{}/approve", asked.body["id"]), Some(&app.manager), json!({})).await;
    assert_eq!(approved.status, 200, "{engine:?}: {}", approved.body); // sms, once
    assert_eq!(app.balance(&customer.token, id_of(&account)).await, "3000.00", "{engine:?}: the withdrawal ran");
    app.login_ok(&customer.phone, PASSWORD, None).await; // nothing: sign-in notices are off
    until("2 SMS", || inbox.sms().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bodies: Vec<String> = inbox.sms().into_iter().map(|got| got.body).collect();
    assert_eq!(bodies.len(), 2, "{engine:?}: {bodies:?}");
    assert_eq!(bodies.iter().filter(|body| body.contains("Cash withdrawal 6000.00 BYN")).count(), 1, "{bodies:?}");
    assert!(bodies.iter().all(|body| !body.contains("approved")), "{engine:?}: {bodies:?}");
}
on_both_engines!(an_approved_withdrawal_notifies_once);
