//! Notifications: the outbox written in the change's own transaction, the
//! delivery worker (lease, retries, backoff, dead letters) and its gateways
//! (log, SMTP, HTTP SMS).
//!
//! The flow, each step its own transaction:
//!
//! 1. A service journals an event whose action [`wants`] a notification;
//!    the journal (kassa-store `audit::append`, and the PostgreSQL ledger
//!    batch) writes an `outbox_events` row beside the event when its
//!    outcome is `ok`. A change that did not commit left no row.
//! 2. The worker fans each such row out into `outbox_messages`: one per
//!    (event, channel, customer) the customer's preferences ask for, with
//!    an id derived from those three ([`message_id`]), inserted with
//!    `ON CONFLICT DO NOTHING`: a crash between fan-out and send makes no
//!    new ids.
//! 3. It claims due messages with a lease (`lease_owner`, `lease_until_us`;
//!    PostgreSQL also skips rows another node has locked), so two nodes
//!    never work on one message at the same time, sends them, and marks
//!    them delivered, or schedules a retry with exponential backoff, or
//!    after `max_attempts` dead-letters them for an admin to see and retry.
//!
//! Delivery is at least once: a node killed after sending and before
//! marking sends the same message (same id) again after the lease expires.
//! Receivers drop repeats by the id (e-mail `Message-ID`, HTTP headers
//! `Idempotency-Key` and `X-Message-Id`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kassa_core::money::{Amount, Currency};
use kassa_store::now_us;
use kassa_store::sql::{self, Tx, Value};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::people::rfc3339;
use crate::{Bank, Caller, Page, Role, ServiceError, ServiceResult};

/// The journal actions that may interest the customers they concern.
///
/// `approval.approve` is not one: an approved cash withdrawal or staff
/// transfer journals its own `cash.withdrawal` / `staff.transfer` when it
/// runs, which notifies; notifying the approval too would say it twice.
pub const NOTIFYING_ACTIONS: &[&str] = &[
    "transfer.create",
    "staff.transfer",
    "cash.deposit",
    "cash.withdrawal",
    "terminal.deposit",
    "terminal.withdrawal",
    "exchange.create",
    "application.approve",
    "application.reject",
    "interest.post",
    "auth.login",
];

/// Whether a journaled action (when its outcome is `ok`) may interest the
/// customers it concerns, so the journal also writes an outbox row for it.
pub fn wants(action: &str) -> bool {
    NOTIFYING_ACTIONS.contains(&action)
}

/// Where SMS messages go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsGateway {
    /// The log and `<data dir>/notifications.log`.
    #[default]
    Log,
    /// A form POST with Basic Auth, in the style of Twilio's API.
    HttpSms,
}

/// Where e-mail goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailGateway {
    /// The log and `<data dir>/notifications.log`.
    #[default]
    Log,
    Smtp,
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    #[default]
    Tls,
    /// STARTTLS, required (port 587).
    Starttls,
    /// No TLS: only for a relay on a loopback address (tests, a local MTA).
    None,
}

/// `[notifications.smtp]`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Empty: no authentication.
    pub username: String,
    pub password: String,
    pub from: String,
}

impl Default for SmtpSettings {
    fn default() -> SmtpSettings {
        SmtpSettings {
            host: "localhost".into(),
            port: 465,
            tls: SmtpTls::Tls,
            username: String::new(),
            password: String::new(),
            from: "Kassa <noreply@kassa.invalid>".into(),
        }
    }
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("from", &self.from)
            .finish()
    }
}

/// `[notifications.http_sms]`.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSmsSettings {
    /// The gateway's URL, such as
    /// `https://api.twilio.com/2010-04-01/Accounts/<sid>/Messages.json`.
    pub url: String,
    /// Basic Auth user (Twilio: the account SID).
    pub username: String,
    /// Basic Auth password (Twilio: the auth token).
    pub password: String,
    /// The sender number or name (`From`).
    pub from: String,
}

impl std::fmt::Debug for HttpSmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSmsSettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("from", &self.from)
            .finish()
    }
}

/// Settings: the `[notifications]` section of kassa.toml.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Run the delivery worker on this node (the outbox is written anyway).
    pub enabled: bool,
    pub sms: SmsGateway,
    pub email: EmailGateway,
    /// How long the worker sleeps when there is nothing to do.
    pub poll_ms: u64,
    /// Events fanned out and messages claimed per round.
    pub batch: u32,
    /// How long a claimed message is this node's alone.
    pub lease_ms: u64,
    /// One send's time limit (kept below the lease).
    pub send_timeout_ms: u64,
    /// Tries before a message is dead-lettered.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles, up to the maximum.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub smtp: SmtpSettings,
    pub http_sms: HttpSmsSettings,
    /// The data directory (for `notifications.log`); set by `kassa serve`,
    /// not read from kassa.toml.
    #[serde(skip)]
    pub data_dir: Option<PathBuf>,
}

impl Default for NotifySettings {
    fn default() -> NotifySettings {
        NotifySettings {
            enabled: true,
            sms: SmsGateway::Log,
            email: EmailGateway::Log,
            poll_ms: 1_000,
            batch: 16,
            lease_ms: 60_000,
            send_timeout_ms: 10_000,
            max_attempts: 8,
            backoff_base_ms: 2_000,
            backoff_max_ms: 3_600_000,
            smtp: SmtpSettings::default(),
            http_sms: HttpSmsSettings::default(),
            data_dir: None,
        }
    }
}

/// The delay before the try after `attempts` failed ones:
/// `base * 2^(attempts - 1)`, at most `max`.
pub fn backoff_ms(settings: &NotifySettings, attempts: u32) -> u64 {
    let shift = attempts.saturating_sub(1).min(40);
    settings.backoff_base_ms.saturating_mul(1_u64 << shift).min(settings.backoff_max_ms)
}

/// A message's id, derived from (event, channel, customer) so the same
/// notification always gets the same id.
pub fn message_id(event_id: i64, channel: &str, customer_id: i64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"kassa outbox message v1");
    hasher.update(event_id.to_be_bytes());
    hasher.update((channel.len() as u64).to_be_bytes());
    hasher.update(channel.as_bytes());
    hasher.update(customer_id.to_be_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
    format!("kassa-{hex}")
}

/// Starts the delivery worker, unless the settings turn it off.
pub fn spawn(bank: &crate::Bank) -> Vec<tokio::task::JoinHandle<()>> {
    if !bank.settings.notifications.enabled {
        return Vec::new();
    }
    let bank = bank.clone();
    vec![tokio::spawn(async move {
        let node = match crate::crypto::random_bytes(8) {
            Ok(bytes) => format!("node-{}", bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>()),
            Err(_) => format!("node-{}", std::process::id()),
        };
        let worker = match Worker::new(&bank, node) {
            Ok(worker) => worker,
            Err(error) => {
                tracing::error!(%error, "notifications: the worker could not start");
                return;
            }
        };
        let poll = Duration::from_millis(bank.settings.notifications.poll_ms.max(10));
        loop {
            match worker.round().await {
                Ok(round) if round.busy() => {}
                Ok(_) => tokio::time::sleep(poll).await,
                Err(error) => {
                    tracing::warn!(%error, "notifications: a delivery round failed");
                    tokio::time::sleep(poll).await;
                }
            }
        }
    })]
}

/// What one round of the worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub fanned_out: usize,
    pub delivered: usize,
    pub failed: usize,
}

impl Round {
    fn busy(&self) -> bool {
        self.fanned_out + self.delivered + self.failed > 0
    }
}

/// A claimed message.
#[derive(Clone, Debug)]
struct Outgoing {
    id: String,
    channel: String,
    recipient: String,
    subject: String,
    body: String,
    attempts: i64,
}

/// The delivery worker of one node.
#[derive(Debug)]
pub struct Worker {
    bank: Bank,
    node: String,
    http: reqwest::Client,
}

impl Worker {
    pub fn new(bank: &Bank, node: String) -> ServiceResult<Worker> {
        let settings = &bank.settings.notifications;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.send_timeout_ms))
            .build()
            .map_err(|error| ServiceError::Internal(format!("the HTTP client: {error}")))?;
        Ok(Worker { bank: bank.clone(), node, http })
    }

    /// Fans out waiting events, then claims and sends due messages.
    pub async fn round(&self) -> ServiceResult<Round> {
        let settings = &self.bank.settings.notifications;
        let batch = i64::from(settings.batch.max(1));
        // A read first: an idle worker takes no write lock.
        let (events, due) = sql::read(&*self.bank.db, |tx| {
            let now = now_us();
            let row = tx.query_one(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox_events WHERE fanned_out_at_us IS NULL LIMIT 1) e), \
                 (SELECT count(*) FROM (SELECT 1 FROM outbox_messages WHERE state = 'pending' AND next_attempt_us <= $1 \
                 AND (lease_until_us IS NULL OR lease_until_us < $1) LIMIT 1) m)",
                &[Value::Int(now)],
            )?;
            Ok::<_, ServiceError>((row.int(0)?, row.int(1)?))
        })
        .await?;
        if events == 0 && due == 0 {
            return Ok(Round::default());
        }
        let bank_name = self.bank.settings.bank.name.clone();
        let fanned_out = sql::write(&*self.bank.db, move |tx| fan_out(tx, &bank_name, now_us(), batch)).await?;
        let lease_us = i64::try_from(settings.lease_ms).unwrap_or(i64::MAX / 4).saturating_mul(1_000);
        let node = self.node.clone();
        let claimed = sql::write(&*self.bank.db, move |tx| claim(tx, &node, now_us(), lease_us, batch)).await?;
        let mut round = Round { fanned_out, ..Round::default() };
        let timeout_us = i64::try_from(settings.send_timeout_ms).unwrap_or(i64::MAX / 4).saturating_mul(1_000);
        for (message, lease_until_us) in claimed {
            // A send that could outlive the lease is left for the next claim.
            if now_us().saturating_add(timeout_us) > lease_until_us {
                break;
            }
            let sent = tokio::time::timeout(Duration::from_millis(settings.send_timeout_ms), self.send(&message))
                .await
                .unwrap_or_else(|_| Err("the send timed out".into()));
            let id = message.id.clone();
            match sent {
                Ok(()) => {
                    sql::write(&*self.bank.db, move |tx| {
                        tx.execute(
                            "UPDATE outbox_messages SET state = 'delivered', delivered_at_us = $2, lease_owner = NULL, \
                             lease_until_us = NULL, last_error = NULL WHERE id = $1 AND state = 'pending'",
                            &[Value::from(&id), Value::Int(now_us())],
                        )?;
                        Ok::<_, ServiceError>(())
                    })
                    .await?;
                    round.delivered += 1;
                }
                Err(error) => {
                    tracing::warn!(message = %message.id, channel = %message.channel, attempts = message.attempts,
                        %error, "notifications: a send failed");
                    let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
                    let dead = attempts >= settings.max_attempts;
                    let delay_us =
                        i64::try_from(backoff_ms(settings, attempts)).unwrap_or(i64::MAX / 4).saturating_mul(1_000);
                    let error: String = error.chars().take(500).collect();
                    sql::write(&*self.bank.db, move |tx| {
                        let now = now_us();
                        if dead {
                            tx.execute(
                                "UPDATE outbox_messages SET state = 'dead', dead_at_us = $2, lease_owner = NULL, \
                                 lease_until_us = NULL, last_error = $3 WHERE id = $1 AND state = 'pending'",
                                &[Value::from(&id), Value::Int(now), Value::from(&error)],
                            )?;
                        } else {
                            tx.execute(
                                "UPDATE outbox_messages SET next_attempt_us = $2, lease_owner = NULL, \
                                 lease_until_us = NULL, last_error = $3 WHERE id = $1 AND state = 'pending'",
                                &[Value::from(&id), Value::Int(now.saturating_add(delay_us)), Value::from(&error)],
                            )?;
                        }
                        Ok::<_, ServiceError>(())
                    })
                    .await?;
                    if dead {
                        tracing::error!(message = %message.id, "notifications: a message was dead-lettered");
                    }
                    round.failed += 1;
                }
            }
        }
        Ok(round)
    }

    async fn send(&self, message: &Outgoing) -> Result<(), String> {
        let settings = &self.bank.settings.notifications;
        match (message.channel.as_str(), settings.sms, settings.email) {
            ("sms", SmsGateway::HttpSms, _) => self.send_http_sms(message).await,
            ("email", _, EmailGateway::Smtp) => send_smtp(&settings.smtp, settings.send_timeout_ms, message).await,
            _ => send_log(settings.data_dir.as_deref(), message).await,
        }
    }

    async fn send_http_sms(&self, message: &Outgoing) -> Result<(), String> {
        let gateway = &self.bank.settings.notifications.http_sms;
        if gateway.url.is_empty() {
            return Err("notifications.http_sms.url is not set".into());
        }
        let mut request = self
            .http
            .post(&gateway.url)
            .header("Idempotency-Key", &message.id)
            .header("X-Message-Id", &message.id)
            .form(&[("To", &message.recipient), ("From", &gateway.from), ("Body", &message.body)]);
        if !gateway.username.is_empty() {
            request = request.basic_auth(&gateway.username, Some(&gateway.password));
        }
        // The error's text names the URL, never the credentials.
        let response = request.send().await.map_err(|error| format!("the SMS gateway: {error}"))?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(format!("the SMS gateway answered {status}")) }
    }
}

/// The `log` gateway: one line in the log and in `<data dir>/notifications.log`.
async fn send_log(data_dir: Option<&std::path::Path>, message: &Outgoing) -> Result<(), String> {
    tracing::info!(message = %message.id, channel = %message.channel, to = %message.recipient,
        body = %message.body, "notification");
    let Some(dir) = data_dir else { return Ok(()) };
    let line = json!({"id": message.id, "channel": message.channel, "to": message.recipient,
                      "subject": message.subject, "body": message.body, "at": rfc3339(now_us())});
    let mut text = line.to_string();
    text.push('\n');
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("notifications.log"))
        .await
        .map_err(|error| format!("notifications.log: {error}"))?;
    file.write_all(text.as_bytes()).await.map_err(|error| format!("notifications.log: {error}"))?;
    file.flush().await.map_err(|error| format!("notifications.log: {error}"))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|address| address.is_loopback())
}

async fn send_smtp(smtp: &SmtpSettings, timeout_ms: u64, message: &Outgoing) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let builder = match smtp.tls {
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|error| error.to_string())?,
        SmtpTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(|error| error.to_string())?
        }
        SmtpTls::None if is_loopback(&smtp.host) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        SmtpTls::None => return Err("notifications.smtp.tls = \"none\" is only allowed for a loopback host".into()),
    };
    let mut builder = builder.port(smtp.port).timeout(Some(Duration::from_millis(timeout_ms)));
    if !smtp.username.is_empty() {
        builder = builder.credentials(Credentials::new(smtp.username.clone(), smtp.password.clone()));
    }
    let transport = builder.build();
    let email = lettre::Message::builder()
        .message_id(Some(format!("<{}@kassa>", message.id)))
        .from(smtp.from.parse().map_err(|error| format!("notifications.smtp.from: {error}"))?)
        .to(message.recipient.parse().map_err(|error| format!("the recipient's address: {error}"))?)
        .subject(message.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(message.body.clone())
        .map_err(|error| format!("building the e-mail: {error}"))?;
    transport.send(email).await.map(|_| ()).map_err(|error| format!("SMTP: {error}"))
}

/// Claims up to `batch` due messages for `node` until now + lease; each
/// claim counts as an attempt.
fn claim(
    tx: &mut dyn Tx,
    node: &str,
    now: i64,
    lease_us: i64,
    batch: i64,
) -> Result<Vec<(Outgoing, i64)>, ServiceError> {
    let skip_locked = if tx.backend() == "postgres" { " FOR UPDATE SKIP LOCKED" } else { "" };
    let until = now.saturating_add(lease_us);
    let rows = tx.query(
        &format!(
            "UPDATE outbox_messages SET lease_owner = $1, lease_until_us = $2, attempts = attempts + 1 \
             WHERE seq IN (SELECT seq FROM outbox_messages WHERE state = 'pending' AND next_attempt_us <= $3 \
             AND (lease_until_us IS NULL OR lease_until_us < $3) ORDER BY next_attempt_us, seq LIMIT $4{skip_locked}) \
             AND state = 'pending' AND (lease_until_us IS NULL OR lease_until_us < $3) \
             RETURNING id, channel, recipient, subject, body, attempts, seq"
        ),
        &[Value::from(node), Value::Int(until), Value::Int(now), Value::Int(batch)],
    )?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let message = Outgoing {
            id: row.text(0)?,
            channel: row.text(1)?,
            recipient: row.text(2)?,
            subject: row.text(3)?,
            body: row.text(4)?,
            attempts: row.int(5)?,
        };
        claimed.push((row.int(6)?, message));
    }
    claimed.sort_by_key(|(seq, _)| *seq);
    Ok(claimed.into_iter().map(|(_, message)| (message, until)).collect())
}

/// The accounts an event's detail names, by the key naming them.
const ACCOUNT_KEYS: &[&str] = &["from", "to", "account", "from_account", "to_account", "debit", "credit"];

/// A customer an event concerns, with the accounts of theirs it names.
#[derive(Debug, Default)]
struct Concerned {
    accounts: Vec<(&'static str, String)>,
}

/// Turns waiting outbox events into messages (see the module's text).
fn fan_out(tx: &mut dyn Tx, bank_name: &str, now: i64, batch: i64) -> Result<usize, ServiceError> {
    let skip_locked = if tx.backend() == "postgres" { " FOR UPDATE OF o SKIP LOCKED" } else { "" };
    let events = tx.query(
        &format!(
            "SELECT o.id, e.action, e.actor, e.detail, e.at_us FROM outbox_events o \
             LEFT JOIN audit_events e ON e.chain_id = o.chain_id AND e.chain_seq = o.chain_seq \
             WHERE o.fanned_out_at_us IS NULL ORDER BY o.id LIMIT $1{skip_locked}"
        ),
        &[Value::Int(batch)],
    )?;
    let count = events.len();
    for event in events {
        let event_id = event.int(0)?;
        // An event missing from the journal (`kassa audit verify` reports
        // it) notifies no one.
        let Some(action) = event.opt_text(1)? else {
            tracing::warn!(outbox_event = event_id, "notifications: the journal event is missing");
            tx.execute(
                "UPDATE outbox_events SET fanned_out_at_us = $2 WHERE id = $1",
                &[Value::Int(event_id), Value::Int(now)],
            )?;
            continue;
        };
        let actor = event.text(2)?;
        let detail: serde_json::Value = serde_json::from_str(&event.text(3)?).unwrap_or(serde_json::Value::Null);
        let at_us = event.int(4)?;
        let mut concerned: BTreeMap<i64, Concerned> = BTreeMap::new();
        for key in ACCOUNT_KEYS {
            let Some(account) = detail.get(*key).and_then(serde_json::Value::as_i64) else { continue };
            let owner = tx.query_opt(
                "SELECT d.customer_id, a.number FROM account_details d JOIN accounts a ON a.id = d.account_id \
                 WHERE d.account_id = $1",
                &[Value::Int(account)],
            )?;
            if let Some(owner) = owner {
                concerned.entry(owner.int(0)?).or_default().accounts.push((key, owner.text(1)?));
            }
        }
        if let Some(customers) = detail.get("customers").and_then(serde_json::Value::as_array) {
            for customer in customers.iter().filter_map(serde_json::Value::as_i64) {
                concerned.entry(customer).or_default();
            }
        }
        if action == "auth.login"
            && let Some(customer) = actor.strip_prefix("customer:").and_then(|id| id.parse::<i64>().ok())
        {
            concerned.entry(customer).or_default();
        }
        for (customer, about) in concerned {
            let Some(person) = tx.query_opt(
                "SELECT phone, email, notify_sms, notify_email, notify_sms_login, notify_email_login \
                 FROM customers WHERE id = $1",
                &[Value::Int(customer)],
            )?
            else {
                continue;
            };
            // Four opt-in switches: SMS and e-mail, per transaction and per sign-in.
            let (sms_on, email_on) = if action == "auth.login" {
                (person.int(4)?, person.int(5)?)
            } else {
                (person.int(2)?, person.int(3)?)
            };
            if sms_on == 0 && email_on == 0 {
                continue;
            }
            let (subject, body) = compose(bank_name, &action, &detail, &about, at_us);
            let mut channels = Vec::new();
            if sms_on != 0 {
                channels.push(("sms", person.text(0)?));
            }
            let email = person.text(1)?;
            if email_on != 0 && !email.is_empty() {
                channels.push(("email", email));
            }
            for (channel, recipient) in channels {
                tx.execute(
                    "INSERT INTO outbox_messages (id, event_id, channel, customer_id, recipient, subject, body, state, \
                     attempts, next_attempt_us, created_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8) \
                     ON CONFLICT DO NOTHING",
                    &[
                        Value::from(message_id(event_id, channel, customer)),
                        Value::Int(event_id),
                        Value::from(channel),
                        Value::Int(customer),
                        Value::from(recipient),
                        Value::from(&subject),
                        Value::from(&body),
                        Value::Int(now),
                    ],
                )?;
            }
        }
        tx.execute(
            "UPDATE outbox_events SET fanned_out_at_us = $2 WHERE id = $1",
            &[Value::Int(event_id), Value::Int(now)],
        )?;
    }
    Ok(count)
}

/// The last four characters of an account or card number: enough to
/// recognise it, never the whole number.
fn masked(number: &str) -> String {
    let tail: String = number.chars().rev().take(4).collect::<Vec<char>>().into_iter().rev().collect();
    format!("*{tail}")
}

/// A message's subject and text, for one customer. Never a secret: amounts,
/// masked account numbers, the time.
fn compose(bank: &str, action: &str, detail: &serde_json::Value, about: &Concerned, at_us: i64) -> (String, String) {
    let has = |key: &str| about.accounts.iter().any(|(name, _)| *name == key);
    let what = match action {
        "transfer.create" | "staff.transfer" if (has("from") || has("debit")) && (has("to") || has("credit")) => {
            "Transfer between your accounts"
        }
        "transfer.create" | "staff.transfer" if has("from") || has("debit") => "Payment sent",
        "transfer.create" | "staff.transfer" => "Payment received",
        "cash.deposit" => "Cash deposit",
        "cash.withdrawal" => "Cash withdrawal",
        "exchange.create" => "Currency exchange",
        "application.approve" => "Your application was approved",
        "application.reject" => "Your application was declined",
        "interest.post" if detail.get("direction").and_then(serde_json::Value::as_str) == Some("charge") => {
            "Interest charged"
        }
        "interest.post" => "Interest paid",
        "auth.login" => "New sign-in to your account",
        _ => "Account activity",
    };
    let mut body = format!("{bank}: {what}");
    // The amount moved (an exchange names it in the from-account's
    // currency); an application's credit limit is not an amount moved.
    let amount = detail.get("amount_minor").and_then(serde_json::Value::as_i64);
    let currency = detail
        .get(if action == "exchange.create" { "from_currency" } else { "currency" })
        .and_then(serde_json::Value::as_str)
        .and_then(|code| Currency::from_code(code).ok());
    if let (Some(minor), Some(currency)) = (amount, currency)
        && let Ok(amount) = Amount::try_from_minor(minor)
    {
        body.push_str(&format!(" {} {}", amount.format(currency), currency.code()));
    }
    let accounts: Vec<String> = about.accounts.iter().map(|(_, number)| masked(number)).collect();
    if !accounts.is_empty() {
        body.push_str(&format!(", account {}", accounts.join(" -> ")));
    }
    body.push_str(&format!(", {}.", rfc3339(at_us)));
    (format!("{bank}: {what}"), body)
}

/// One message as an admin sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OutboxMessage {
    pub id: String,
    pub channel: String,
    pub customer_id: i64,
    pub recipient: String,
    pub subject: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub dead_at: Option<String>,
}

const MESSAGE_COLUMNS: &str = "id, channel, customer_id, recipient, subject, state, attempts, next_attempt_us, \
                               last_error, created_at_us, delivered_at_us, dead_at_us, seq";

fn message_from_row(row: &kassa_store::sql::Row) -> Result<OutboxMessage, kassa_store::StoreError> {
    Ok(OutboxMessage {
        id: row.text(0)?,
        channel: row.text(1)?,
        customer_id: row.int(2)?,
        recipient: row.text(3)?,
        subject: row.text(4)?,
        state: row.text(5)?,
        attempts: row.int(6)?,
        next_attempt_at: rfc3339(row.int(7)?),
        last_error: row.opt_text(8)?,
        created_at: rfc3339(row.int(9)?),
        delivered_at: row.opt_int(10)?.map(rfc3339),
        dead_at: row.opt_int(11)?.map(rfc3339),
    })
}

impl Bank {
    /// The outbox's messages in one state (`pending`, `delivered`, `dead`),
    /// newest first; admins only.
    pub async fn outbox(
        &self,
        caller: &Caller,
        state: Option<&str>,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> ServiceResult<Page<OutboxMessage>> {
        caller.staff(Role::Admin)?;
        let state = state.unwrap_or("dead").to_owned();
        if !["pending", "delivered", "dead"].contains(&state.as_str()) {
            return Err(ServiceError::invalid("state", "state_invalid", "state is one of pending, delivered, dead"));
        }
        let limit = crate::page_limit(limit)?;
        let before = crate::page_cursor(cursor)?.unwrap_or(i64::MAX);
        sql::read(&*self.db, move |tx| {
            let rows = tx.query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM outbox_messages WHERE state = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3"
                ),
                &[Value::from(&state), Value::Int(before), Value::Int(i64::from(limit) + 1)],
            )?;
            let mut items = Vec::with_capacity(rows.len());
            let mut next_cursor = None;
            for (index, row) in rows.iter().enumerate() {
                if index == usize::try_from(limit).unwrap_or(usize::MAX) {
                    break;
                }
                items.push(message_from_row(row)?);
                next_cursor = Some(row.int(12)?.to_string());
            }
            if rows.len() <= usize::try_from(limit).unwrap_or(usize::MAX) {
                next_cursor = None;
            }
            Ok::<_, ServiceError>(Page { items, next_cursor })
        })
        .await
    }

    /// Puts a dead-lettered message back in the queue, due now, with its
    /// attempts reset; admins only, journaled.
    pub async fn retry_outbox(&self, caller: &Caller, id: &str) -> ServiceResult<OutboxMessage> {
        caller.staff(Role::Admin)?;
        let id = id.to_owned();
        let draft = caller.audit("outbox.retry", format!("outbox:{id}"), json!({}));
        sql::write(&*self.db, move |tx| {
            let now = now_us();
            let row = tx
                .query_opt(
                    &format!("SELECT {MESSAGE_COLUMNS} FROM outbox_messages WHERE id = $1"),
                    &[Value::from(&id)],
                )?
                .ok_or(ServiceError::NotFound("message_not_found", "no such outbox message"))?;
            if message_from_row(&row)?.state != "dead" {
                return Err(ServiceError::Refused(
                    "message_not_dead",
                    "only a dead-lettered message is retried".into(),
                ));
            }
            tx.execute(
                "UPDATE outbox_messages SET state = 'pending', dead_at_us = NULL, attempts = 0, next_attempt_us = $2 \
                 WHERE id = $1",
                &[Value::from(&id), Value::Int(now)],
            )?;
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            let row = tx.query_one(
                &format!("SELECT {MESSAGE_COLUMNS} FROM outbox_messages WHERE id = $1"),
                &[Value::from(&id)],
            )?;
            Ok(message_from_row(&row)?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_and_distinct() {
        assert_eq!(message_id(7, "sms", 3), message_id(7, "sms", 3));
        assert_ne!(message_id(7, "sms", 3), message_id(7, "email", 3));
        assert_ne!(message_id(7, "sms", 3), message_id(8, "sms", 3));
        assert_ne!(message_id(7, "sms", 3), message_id(7, "sms", 4));
        assert_eq!(message_id(1, "sms", 1).len(), 38);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let settings = NotifySettings { backoff_base_ms: 100, backoff_max_ms: 1_000, ..NotifySettings::default() };
        assert_eq!(backoff_ms(&settings, 1), 100);
        assert_eq!(backoff_ms(&settings, 2), 200);
        assert_eq!(backoff_ms(&settings, 4), 800);
        assert_eq!(backoff_ms(&settings, 5), 1_000);
        assert_eq!(backoff_ms(&settings, 200), 1_000);
    }

    #[test]
    fn only_the_listed_actions_notify() {
        assert!(wants("transfer.create"));
        assert!(wants("auth.login"));
        assert!(!wants("customer.register"));
        assert!(!wants("recipient.lookup"));
        // The approved operation notifies by its own action, once.
        assert!(!wants("approval.approve"));
        assert!(wants("cash.withdrawal") && wants("staff.transfer"));
    }

    #[test]
    fn account_numbers_are_masked() {
        assert_eq!(masked("BY20KASS30140000000000000012"), "*0012");
        assert_eq!(masked("12"), "*12");
    }
}
