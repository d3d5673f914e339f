//! Notifications end to end: a local HTTP SMS receiver and a local SMTP
//! receiver, started here, get every message of the committed operations,
//! each with its id; failed operations send nothing; a gateway that keeps
//! failing dead-letters the message, which an admin sees and retries.

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kassa_service::notify::{EmailGateway, SmsGateway, SmtpTls};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One message a receiver got.
#[derive(Clone, Debug)]
struct Got {
    /// `Idempotency-Key` (SMS) or `Message-ID` without `<…@kassa>` (e-mail).
    id: String,
    to: String,
    body: String,
}

#[derive(Default)]
struct Inbox {
    sms: Mutex<Vec<Got>>,
    email: Mutex<Vec<Got>>,
    /// The SMS receiver answers 503 while this is set.
    failing: AtomicBool,
}

impl Inbox {
    fn sms(&self) -> Vec<Got> {
        self.sms.lock().unwrap().clone()
    }
    fn email(&self) -> Vec<Got> {
        self.email.lock().unwrap().clone()
    }
}

/// An HTTP receiver in the style of Twilio's Messages API.
async fn sms_receiver(inbox: Arc<Inbox>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    let handler = move |headers: HeaderMap, body: String| {
        let inbox = Arc::clone(&inbox);
        async move {
            if inbox.failing.load(Ordering::SeqCst) {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            // Basic Auth with the configured user and password.
            let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("AC123:tok"));
            assert_eq!(header("authorization"), expected);
            assert_eq!(header("idempotency-key"), header("x-message-id"));
            let form: std::collections::HashMap<String, String> =
                form_urlencoded::parse(body.as_bytes()).into_owned().collect();
            assert_eq!(form.get("From").map(String::as_str), Some("Kassa"));
            inbox.sms.lock().unwrap().push(Got {
                id: header("idempotency-key"),
                to: form.get("To").cloned().unwrap_or_default(),
                body: form.get("Body").cloned().unwrap_or_default(),
            });
            StatusCode::CREATED
        }
    };
    let router = axum::Router::new().route("/sms", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}/sms")
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

async fn notifying_app(engine: Engine, inbox: &Arc<Inbox>, max_attempts: u32) -> Option<App> {
    let url = sms_receiver(Arc::clone(inbox)).await;
    let port = smtp_receiver(Arc::clone(inbox)).await;
    spawn_app_with(engine, vec![], move |settings| {
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
    let inbox = Arc::new(Inbox::default());
    let Some(app) = notifying_app(engine, &inbox, 5).await else { return };
    let payer = app.register(1).await;
    let payee = app.register(2).await;
    let from = app.open_account(&payer.token).await;
    let to = app.open_account(&payee.token).await;
    // The payee wants no SMS, but a word at each sign-in.
    let prefs = app
        .send(
            Method::PATCH,
            "/api/v1/me/notifications",
            Some(&payee.token),
            Some(json!({"sms_per_transaction": false, "email_per_transaction": true, "on_login": true})),
        )
        .await;
    assert_eq!(prefs.status, 200, "{engine:?}: {}", prefs.body);

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
    app.login_ok(&payee.phone, PASSWORD, None).await; // payee: 1 (email)

    until("6 messages", || inbox.sms().len() + inbox.email().len() >= 6).await;
    // Everything fanned out before the sign-in is delivered by now (the
    // worker goes in order), so nothing more may come for the withdrawal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sms, email) = (inbox.sms(), inbox.email());
    assert_eq!(sms.len(), 2, "{engine:?}");
    assert_eq!(email.len(), 4, "{engine:?}");
    assert!(sms.iter().all(|got| got.to == payer.phone), "{engine:?}: the payee wants no SMS");
    assert!(sms.iter().any(|got| got.body.contains("Cash deposit") && got.body.contains("100.00 BYN")));
    assert!(sms.iter().any(|got| got.body.contains("Payment sent") && got.body.contains("30.00 BYN")));
    assert!(email.iter().any(|got| got.to.contains("c2@example.com") && got.body.contains("Payment received")));
    assert!(email.iter().any(|got| got.to.contains("c2@example.com") && got.body.contains("New sign-in")));
    let all: Vec<&Got> = sms.iter().chain(&email).collect();
    assert!(all.iter().all(|got| !got.body.contains("withdrawal")), "{engine:?}: a failed withdrawal sent something");
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
    let inbox = Arc::new(Inbox::default());
    inbox.failing.store(true, Ordering::SeqCst);
    let Some(app) = notifying_app(engine, &inbox, 2).await else { return };
    let customer = app.register(3).await;
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

    inbox.failing.store(false, Ordering::SeqCst);
    let retried = app.post(&path, Some(&app.admin), json!({})).await;
    assert_eq!((retried.status, retried.body["state"].as_str()), (200, Some("pending")), "{}", retried.body);
    until("the retried SMS", || inbox.sms().len() == 1).await;
    assert_eq!(inbox.sms()[0].id, id, "{engine:?}: the retry keeps the id");
    assert!(outbox(&app, "dead").await.is_empty());
}
on_both_engines!(a_failing_gateway_dead_letters_and_an_admin_retries);
