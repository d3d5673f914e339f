//! The terminal server: TLS connections, one session each, frames read
//! with a bound, every limit of docs/terminal-protocol.md "Limits", and the
//! operations served by the same `Bank` use-cases as the HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kassa_service::accounts::OpenAccount;
use kassa_service::auth::Tokens;
use kassa_service::money::{Idempotency, TransferForm};
use kassa_service::terminals::CLOCK_RESERVE_STEP;
use kassa_service::{Bank, Caller, Role, ServiceError, ServiceResult};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::clock::{LamportClock, OutOfRange};
use crate::codec::{
    self, ClockField, FRAME_MAX_BYTES, FrameError, Login, PROTOCOL_VERSIONS, PageRequest, Payee, Request,
};
use crate::session::{SessionState, Who};

/// The server's limits (`[terminal]` in kassa.toml).
#[derive(Clone, Debug)]
pub struct TerminalSettings {
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_sessions: usize,
    pub requests_per_s: u32,
    pub request_burst: u32,
}

impl Default for TerminalSettings {
    fn default() -> TerminalSettings {
        TerminalSettings {
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_sessions: 1024,
            requests_per_s: 50,
            request_burst: 100,
        }
    }
}

/// The server's logical clock and its high-water mark in the database:
/// every value the clock takes is below a mark already stored, so a
/// restarted server (which starts from the stored mark) is above every
/// clock it ever sent or journaled.
#[derive(Debug)]
pub struct ClockKeeper {
    clock: LamportClock,
    reserved: AtomicU64,
    writing: tokio::sync::Mutex<()>,
    bank: Bank,
}

impl ClockKeeper {
    pub async fn start(bank: Bank) -> ServiceResult<ClockKeeper> {
        let mark = u64::try_from(bank.terminal_clock_mark().await?).unwrap_or(0);
        let keeper = ClockKeeper {
            clock: LamportClock::starting_at(mark),
            reserved: AtomicU64::new(mark),
            writing: tokio::sync::Mutex::new(()),
            bank,
        };
        keeper.cover(mark.saturating_add(1)).await?;
        Ok(keeper)
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Makes sure `value` is below the stored mark, raising it a step ahead
    /// when it is not: one write per 2²⁰ ticks, not one per tick.
    async fn cover(&self, value: u64) -> ServiceResult<()> {
        if value < self.reserved.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _writing = self.writing.lock().await;
        if value < self.reserved.load(Ordering::SeqCst) {
            return Ok(());
        }
        let step = u64::try_from(CLOCK_RESERVE_STEP).unwrap_or(1 << 20);
        let wanted = i64::try_from(value.saturating_add(step)).unwrap_or(i64::MAX);
        let stored = self.bank.reserve_terminal_clock(wanted).await?;
        self.reserved.store(u64::try_from(stored).unwrap_or(0), Ordering::SeqCst);
        Ok(())
    }

    pub async fn receive(&self, received: ClockField) -> ServiceResult<(u64, Result<(), OutOfRange>)> {
        let outcome = self.clock.receive(received);
        self.cover(outcome.0).await?;
        Ok(outcome)
    }

    pub async fn send(&self) -> ServiceResult<u64> {
        let value = self.clock.send();
        self.cover(value).await?;
        Ok(value)
    }
}

/// The terminal server, shared by all its connections.
#[derive(Debug)]
pub struct TerminalServer {
    bank: Bank,
    clock: ClockKeeper,
    settings: TerminalSettings,
    sessions: Arc<Semaphore>,
}

impl TerminalServer {
    pub async fn start(bank: Bank, settings: TerminalSettings) -> ServiceResult<Arc<TerminalServer>> {
        let clock = ClockKeeper::start(bank.clone()).await?;
        let sessions = Arc::new(Semaphore::new(settings.max_sessions));
        Ok(Arc::new(TerminalServer { bank, clock, settings, sessions }))
    }

    pub fn clock(&self) -> u64 {
        self.clock.now()
    }

    /// Accepts connections until `shutdown` turns true, then lets each
    /// session finish the frame it is serving and closes it.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        acceptor: TlsAcceptor,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let server = Arc::clone(&self);
                        let acceptor = acceptor.clone();
                        let shutdown = shutdown.clone();
                        connections.spawn(async move { server.connection(tcp, peer, acceptor, shutdown).await });
                    }
                    Err(error) => {
                        // Out of file descriptors, say: wait a little rather
                        // than spin.
                        tracing::warn!(%error, "terminal accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
            connections.abort_all();
        }
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        acceptor: TlsAcceptor,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = tcp.set_nodelay(true);
        let permit = Arc::clone(&self.sessions).try_acquire_owned();
        let stream = match tokio::time::timeout(self.settings.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => stream,
            // Not TLS (a plaintext client), a failed or a silent handshake:
            // nothing was said, nothing is answered.
            Ok(Err(_)) | Err(_) => return,
        };
        let (reader, mut writer) = tokio::io::split(stream);
        if permit.is_err() {
            if let Ok(clock) = self.clock.send().await {
                let line = codec::reply_error(None, clock, "server_busy", "too many sessions; try again later", None);
                let _ = writer.write_all(&line).await;
            }
            let _ = writer.shutdown().await;
            return;
        }
        let mut session = Session::new(peer);
        let reader = BufReader::with_capacity(FRAME_MAX_BYTES, reader);
        self.session(&mut session, reader, &mut writer, shutdown).await;
        let _ = writer.shutdown().await;
        drop(permit);
    }

    async fn session<R, W>(
        &self,
        session: &mut Session,
        mut reader: BufReader<R>,
        writer: &mut W,
        mut shutdown: watch::Receiver<bool>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut line = Vec::with_capacity(1024);
        let mut bucket = Bucket::new(self.settings.requests_per_s, self.settings.request_burst);
        loop {
            let read = tokio::select! {
                read = tokio::time::timeout(self.settings.idle_timeout, read_line(&mut reader, &mut line)) => read,
                _ = shutdown.changed() => return,
            };
            let reply = match read {
                Err(_) => {
                    // Whoever walked away from the terminal is signed out:
                    // the next person must not find their session.
                    if let Some(signed) = session.signed.take() {
                        let _ = self.bank.logout(&signed.caller, false).await;
                    }
                    let _ = self.error_line(None, "idle_timeout", "the session was idle too long", None, writer).await;
                    return;
                }
                Ok(Err(_)) | Ok(Ok(Line::End)) => return,
                Ok(Ok(Line::TooLong)) => {
                    let _ = self.error_line(None, "frame_too_large", "a frame is at most 16 KiB", None, writer).await;
                    return;
                }
                Ok(Ok(Line::Frame)) => match bucket.take() {
                    Ok(()) => self.frame(session, &line).await,
                    Err(wait) => {
                        let frame = codec::decode(&line);
                        let extra = Map::from_iter([(
                            "retry_after_ms".to_owned(),
                            Value::from(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
                        )]);
                        match self.clock.receive(frame.clock).await {
                            Ok(_) => self.refusal(frame.id, "too_many_requests", "slow down", Some(extra)).await,
                            Err(error) => Err(error),
                        }
                    }
                },
            };
            match reply {
                Ok(bytes) => {
                    if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    // The clock could not be made durable: no reply can
                    // carry an honest clock, so the session ends.
                    tracing::error!(error = %error, "terminal clock could not be reserved; closing the session");
                    return;
                }
            }
        }
    }

    async fn error_line<W: AsyncWrite + Unpin>(
        &self,
        id: Option<u64>,
        code: &str,
        message: &str,
        extra: Option<Map<String, Value>>,
        writer: &mut W,
    ) -> std::io::Result<()> {
        let Ok(bytes) = self.refusal(id, code, message, extra).await else { return Ok(()) };
        writer.write_all(&bytes).await?;
        writer.flush().await
    }

    async fn refusal(
        &self,
        id: Option<u64>,
        code: &str,
        message: &str,
        extra: Option<Map<String, Value>>,
    ) -> ServiceResult<Vec<u8>> {
        let clock = self.clock.send().await?;
        Ok(codec::reply_error(id, clock, code, message, extra))
    }

    /// Serves one frame: receive (the clock), admit (the session's state),
    /// execute (the bank), send (the clock again).
    async fn frame(&self, session: &mut Session, line: &[u8]) -> ServiceResult<Vec<u8>> {
        let frame = codec::decode(line);
        let (received, verdict) = self.clock.receive(frame.clock).await?;
        let outcome = match (verdict, frame.request) {
            (Err(OutOfRange), _) => Err(Refusal::new(
                "clock_out_of_range",
                "the clock is more than 2^32 ahead of the server's; nothing was done",
            )),
            (Ok(()), Err(error)) => Err(Refusal::from(error)),
            (Ok(()), Ok(request)) => match session.state.admit(&request) {
                Err(error) => Err(Refusal::from(error)),
                Ok(()) => {
                    let clock = i64::try_from(received).ok();
                    self.execute(session, request, frame.id, clock).await
                }
            },
        };
        let clock = self.clock.send().await?;
        Ok(match outcome {
            Ok(body) => codec::reply_ok(frame.id, clock, body),
            Err(refusal) => codec::reply_error(frame.id, clock, refusal.code, &refusal.message, refusal.extra),
        })
    }

    async fn execute(
        &self,
        session: &mut Session,
        request: Request,
        id: Option<u64>,
        clock: Option<i64>,
    ) -> Result<Value, Refusal> {
        let anonymous = Caller { clock, ..Caller::anonymous(session.origin()) };
        match request {
            Request::Ping => Ok(json!({})),
            Request::Hello { protocol_version, client, terminal } => {
                if !PROTOCOL_VERSIONS.contains(&protocol_version) {
                    return Err(Refusal::new("upgrade_required", "this server speaks protocol version 1")
                        .with("supported", json!(PROTOCOL_VERSIONS)));
                }
                let terminal = match terminal {
                    Some((terminal_id, key)) => Some(self.bank.authenticate_terminal(terminal_id, &key).await?),
                    None => None,
                };
                session.state.greeted(terminal.as_ref().map(|t| t.id));
                session.client = client.map(|c| c.chars().filter(|c| !c.is_control()).take(64).collect());
                Ok(json!({
                    "bank": self.bank.settings().bank.name,
                    "protocol_version": protocol_version,
                    "server_clock": self.clock.now(),
                    "terminal": terminal.map(|t| json!({"id": t.id, "name": t.name})),
                }))
            }
            Request::Login(login) => {
                let (signed, staff_login) = match login {
                    Login::Card { card_number, pin } => {
                        let terminal = session.state.terminal.ok_or_else(terminal_required)?;
                        let login = self.bank.card_login(&anonymous, terminal, &card_number, &pin).await?;
                        (Signed::new(login.caller, login.tokens, login.card_account), None)
                    }
                    Login::Phone { phone, password } => {
                        (self.password_login(&anonymous, &phone, &password, None).await?, None)
                    }
                    Login::Staff { login, password, totp } => {
                        let signed = self.password_login(&anonymous, &login, &password, totp.as_deref()).await?;
                        (signed, Some(login.trim().to_lowercase()))
                    }
                };
                self.signed_in(session, signed, staff_login).await
            }
            Request::Resume { session_token } => {
                let caller = self.bank.authenticate(&session_token, &session.origin()).await?;
                let session_id = caller.user.as_ref().map(|user| user.session_id.clone()).unwrap_or_default();
                let card_account = match self.bank.terminal_session(&session_id).await? {
                    Some((terminal, card_account)) if card_account.is_some() => {
                        if terminal != session.state.terminal {
                            return Err(Refusal::new("invalid_token", "a card session resumes at its own terminal"));
                        }
                        card_account
                    }
                    _ => None,
                };
                // A resumed session has no refresh token: it ends with its
                // access token.
                let tokens = Tokens {
                    access_token: session_token,
                    refresh_token: String::new(),
                    token_type: "Bearer",
                    expires_in: 0,
                    password_change_required: false,
                };
                let signed = Signed::new(caller, tokens, card_account);
                self.signed_in(session, signed, None).await
            }
            Request::Logout => {
                if let Some(mut signed) = session.signed.take() {
                    let caller = self.current(&mut signed, clock).await?;
                    self.bank.logout(&caller, false).await?;
                }
                session.state.signed_out();
                Ok(json!({}))
            }
            other => {
                let Some(signed) = session.signed.as_mut() else {
                    return Err(Refusal::new("unauthorized", "sign in first"));
                };
                let caller = match self.current(signed, clock).await {
                    Ok(caller) => caller,
                    Err(refusal) => {
                        // Revoked elsewhere (logout everywhere, a password
                        // change, a blocked customer): the session is over.
                        session.signed = None;
                        session.state.signed_out();
                        return Err(refusal);
                    }
                };
                self.operation(session, &caller, other, id).await
            }
        }
    }

    async fn password_login(
        &self,
        from: &Caller,
        login: &str,
        password: &str,
        totp: Option<&str>,
    ) -> Result<Signed, Refusal> {
        let tokens = self.bank.login_from(from, login, password, totp).await?;
        if tokens.password_change_required {
            return Err(Refusal::new(
                "password_change_required",
                "change your password first (in the web cabinet or POST /api/v1/auth/password)",
            ));
        }
        let caller = self.bank.authenticate(&tokens.access_token, &from.origin).await?;
        Ok(Signed::new(caller, tokens, None))
    }

    /// Marks the session signed in and answers with who it is: a
    /// customer's first name and initial, a staff member's login (or, on
    /// `resume`, their role).
    async fn signed_in(
        &self,
        session: &mut Session,
        mut signed: Signed,
        staff_login: Option<String>,
    ) -> Result<Value, Refusal> {
        let user = signed.caller.user.clone().ok_or_else(|| Refusal::new("unauthorized", "sign in first"))?;
        let (who, name, account) = if user.role == Role::Customer {
            let me = self.bank.me(&signed.caller).await?;
            let account = match self.session_account(&mut signed, None).await {
                Ok(id) => Some(self.balance(&signed.caller, id).await?),
                Err(_) => None,
            };
            let initial: String = me.last_name.chars().take(1).collect();
            (Who::Customer, format!("{} {initial}.", me.first_name), account)
        } else {
            (Who::Staff, staff_login.unwrap_or_else(|| user.role.as_str().to_owned()), None)
        };
        let reply = json!({
            "role": user.role.as_str(),
            "name": name,
            "session_token": signed.access_token,
            "expires_in": signed.expires_in,
            "account": account,
        });
        session.signed = Some(signed);
        session.state.signed_in(who);
        Ok(reply)
    }

    /// The session's caller now: the token checked again (a revocation on
    /// any node ends the session), renewed with the refresh token when it
    /// has run out.
    async fn current(&self, signed: &mut Signed, clock: Option<i64>) -> Result<Caller, Refusal> {
        let origin = signed.caller.origin.clone();
        let mut caller = match self.bank.authenticate(&signed.access_token, &origin).await {
            Ok(caller) => caller,
            Err(ServiceError::Unauthorized(..)) if !signed.refresh_token.is_empty() => {
                let tokens = self.bank.refresh(&origin, &signed.refresh_token).await?;
                signed.access_token = tokens.access_token;
                signed.refresh_token = tokens.refresh_token;
                self.bank.authenticate(&signed.access_token, &origin).await?
            }
            Err(error) => return Err(error.into()),
        };
        caller.clock = clock;
        Ok(caller)
    }

    /// The account an operation acts on: the one named (the caller's own,
    /// or the card's after a card login) or the session's own.
    async fn session_account(&self, signed: &mut Signed, named: Option<&str>) -> Result<i64, Refusal> {
        if let Some(reference) = named {
            let id = self.bank.account_id_by_reference(&signed.caller, "account", reference).await?;
            if signed.card_account.is_some_and(|card| card != id) {
                return Err(Refusal::new("forbidden", "a card session uses only the card's account"));
            }
            return Ok(id);
        }
        if let Some(card) = signed.card_account {
            return Ok(card);
        }
        if let Some(id) = signed.account {
            return Ok(id);
        }
        let id = self.bank.default_account(&signed.caller).await?;
        signed.account = Some(id);
        Ok(id)
    }

    async fn balance(&self, caller: &Caller, account: i64) -> Result<Value, Refusal> {
        let view = self.bank.account(caller, account).await?;
        Ok(json!({
            "account": view.number,
            "card": view.card.as_ref().map(|card| card.number_masked.clone()),
            "kind": view.kind,
            "balance": view.balance,
            "available": view.available,
            "currency": view.currency,
        }))
    }

    async fn operation(
        &self,
        session: &mut Session,
        caller: &Caller,
        request: Request,
        id: Option<u64>,
    ) -> Result<Value, Refusal> {
        let Some(signed) = session.signed.as_mut() else {
            return Err(Refusal::new("unauthorized", "sign in first"));
        };
        signed.caller = caller.clone();
        let idempotency = |op: &str| {
            let session_id = caller.user.as_ref().map(|user| user.session_id.as_str()).unwrap_or("");
            id.map(|id| Idempotency { key: format!("{session_id}:{id}"), route: format!("TERMINAL {op}") })
        };
        match request {
            Request::Balance { account } => {
                let account = self.session_account(signed, account.as_deref()).await?;
                self.balance(caller, account).await
            }
            Request::Accounts => {
                let page = self.bank.accounts(caller, None, None, Some(codec::PAGE_MAX)).await?;
                let items: Vec<Value> = page
                    .items
                    .iter()
                    .filter(|view| signed.card_account.is_none_or(|card| card == view.id))
                    .map(|view| {
                        json!({
                            "account": view.number,
                            "card": view.card.as_ref().map(|card| card.number_masked.clone()),
                            "kind": view.kind, "balance": view.balance, "available": view.available,
                            "currency": view.currency, "status": view.status, "is_default": view.is_default,
                        })
                    })
                    .collect();
                Ok(json!({"items": items}))
            }
            Request::Deposit { account, amount } => {
                let terminal = session.state.terminal.ok_or_else(terminal_required)?;
                let account = self.session_account(signed, account.as_deref()).await?;
                let transfer =
                    self.bank.terminal_cash(caller, terminal, account, true, &amount, idempotency("deposit")).await?;
                let mut reply = self.balance(caller, account).await?;
                reply["transfer"] = transfer;
                Ok(reply)
            }
            Request::Withdraw { account, amount } => {
                let terminal = session.state.terminal.ok_or_else(terminal_required)?;
                let account = self.session_account(signed, account.as_deref()).await?;
                let transfer =
                    self.bank.terminal_cash(caller, terminal, account, false, &amount, idempotency("withdraw")).await?;
                let mut reply = self.balance(caller, account).await?;
                reply["transfer"] = transfer;
                Ok(reply)
            }
            Request::Transfer { account, to, amount, description } => {
                let from = self.session_account(signed, account.as_deref()).await?;
                // An account's currency never changes: read once a session.
                let currency = match signed.currencies.iter().find(|(id, _)| *id == from) {
                    Some((_, currency)) => currency.clone(),
                    None => {
                        let currency = self.bank.account(caller, from).await?.currency;
                        signed.currencies.push((from, currency.clone()));
                        currency
                    }
                };
                let (to_account, to_phone) = match to {
                    Payee::Account(account) => (Some(account), None),
                    Payee::Phone(phone) => (None, Some(phone)),
                };
                let form = TransferForm {
                    from_account: Some(from.to_string()),
                    to_account,
                    to_phone,
                    amount: Some(amount),
                    currency: Some(currency),
                    description,
                };
                let transfer = self.bank.transfer(caller, form, idempotency("transfer")).await?;
                Ok(json!({"transfer": transfer}))
            }
            Request::History { account, page } => {
                let account = self.session_account(signed, account.as_deref()).await?;
                let bank = &self.bank;
                fitted(page, |cursor, limit| async move {
                    Ok(serde_json::to_value(bank.history(caller, account, cursor.as_deref(), Some(limit)).await?)
                        .unwrap_or_default())
                })
                .await
            }
            Request::Customers { query, page } => {
                let bank = &self.bank;
                let query = query.as_deref();
                fitted(page, |cursor, limit| async move {
                    let page = bank.search_customers(caller, query, cursor.as_deref(), Some(limit)).await?;
                    let items: Vec<Value> = page
                        .items
                        .iter()
                        .map(|c| {
                            json!({"id": c.id, "first_name": c.first_name, "last_name": c.last_name,
                                   "phone": c.phone, "status": c.status})
                        })
                        .collect();
                    Ok(json!({"items": items, "next_cursor": page.next_cursor}))
                })
                .await
            }
            Request::Transactions { account, kind, page } => {
                let account = match account {
                    Some(reference) => Some(self.bank.account_id_by_reference(caller, "account", &reference).await?),
                    None => None,
                };
                let bank = &self.bank;
                let kind = kind.as_deref();
                fitted(page, |cursor, limit| async move {
                    Ok(serde_json::to_value(
                        bank.transactions(caller, account, kind, cursor.as_deref(), Some(limit)).await?,
                    )
                    .unwrap_or_default())
                })
                .await
            }
            Request::OpenAccount { customer_id, kind, currency, holder_name } => {
                // At the desk the customer signs the product's documents on
                // paper; the teller's terminal records that they did.
                let consents = self
                    .bank
                    .products()
                    .await?
                    .into_iter()
                    .find(|product| product.kind == kind && product.active)
                    .map(|product| product.consents)
                    .unwrap_or_default();
                let form = OpenAccount {
                    kind: Some(kind),
                    currency: Some(currency),
                    holder_name,
                    consents: Some(consents),
                    ..OpenAccount::default()
                };
                let view = self.bank.open_account(caller, Some(customer_id), form).await?;
                Ok(json!({"account": view}))
            }
            Request::CloseAccount { account } => {
                let id = self.bank.account_id_by_reference(caller, "account", &account).await?;
                let view = self.bank.set_account_status(caller, id, "closed").await?;
                Ok(json!({"account": view}))
            }
            Request::Hello { .. } | Request::Login(_) | Request::Resume { .. } | Request::Logout | Request::Ping => {
                Err(Refusal::new("op_unknown", "no such operation"))
            }
        }
    }
}

/// The reply a list operation gives must fit a frame: a page that does not
/// is read again with half the items, down to one.
const REPLY_BUDGET_BYTES: usize = FRAME_MAX_BYTES - 512;

async fn fitted<F, Fut>(page: PageRequest, read: F) -> Result<Value, Refusal>
where
    F: Fn(Option<String>, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Value, Refusal>>,
{
    let mut limit = page.limit;
    loop {
        let value = read(page.cursor.clone(), limit).await?;
        let size = serde_json::to_vec(&value).map_or(usize::MAX, |bytes| bytes.len());
        if size <= REPLY_BUDGET_BYTES {
            return Ok(value);
        }
        if limit == 1 {
            return Err(Refusal::new("reply_too_large", "this item does not fit in a frame"));
        }
        limit /= 2;
    }
}

fn terminal_required() -> Refusal {
    Refusal::new("terminal_required", "card logins and cash need a registered terminal")
}

/// What a connection knows about itself.
#[derive(Debug)]
struct Session {
    peer: SocketAddr,
    state: SessionState,
    client: Option<String>,
    signed: Option<Signed>,
}

impl Session {
    fn new(peer: SocketAddr) -> Session {
        Session { peer, state: SessionState::default(), client: None, signed: None }
    }

    /// The journal's origin: the registered terminal, or the address (the
    /// same key the HTTP API's sign-in throttle uses for an address).
    fn origin(&self) -> String {
        match self.state.terminal {
            Some(terminal) => format!("terminal:{terminal}"),
            None => self.peer.ip().to_string(),
        }
    }
}

#[derive(Clone, Debug)]
struct Signed {
    caller: Caller,
    access_token: String,
    refresh_token: String,
    expires_in: i64,
    card_account: Option<i64>,
    /// The session's own account, once looked up.
    account: Option<i64>,
    /// The currencies of the accounts this session paid from.
    currencies: Vec<(i64, String)>,
}

impl Signed {
    fn new(caller: Caller, tokens: Tokens, card_account: Option<i64>) -> Signed {
        Signed {
            caller,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            expires_in: tokens.expires_in,
            card_account,
            account: None,
            currencies: Vec::new(),
        }
    }
}

/// An error reply's content.
#[derive(Debug)]
struct Refusal {
    code: &'static str,
    message: String,
    extra: Option<Map<String, Value>>,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into(), extra: None }
    }

    fn with(mut self, key: &str, value: Value) -> Refusal {
        self.extra.get_or_insert_with(Map::new).insert(key.to_owned(), value);
        self
    }
}

impl From<FrameError> for Refusal {
    fn from(error: FrameError) -> Refusal {
        let extra = error.extra();
        Refusal { code: error.code, message: error.message, extra }
    }
}

impl From<ServiceError> for Refusal {
    fn from(error: ServiceError) -> Refusal {
        match &error {
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "terminal request failed");
            }
            ServiceError::Unavailable(detail) => tracing::warn!(%detail, "terminal request: database unavailable"),
            _ => {}
        }
        let refusal = Refusal::new(error.code(), error.to_string());
        match &error {
            ServiceError::Invalid(problems) => refusal.with(
                "fields",
                Value::Array(
                    problems.iter().map(|p| json!({"field": p.field, "code": p.code, "detail": p.detail})).collect(),
                ),
            ),
            ServiceError::Throttled { retry_after_s } => refusal.with("retry_after_s", json!(retry_after_s)),
            _ => refusal,
        }
    }
}

/// A per-session token bucket: `rate` requests a second, bursts of
/// `burst`.
#[derive(Debug)]
struct Bucket {
    tokens_milli: u64,
    burst_milli: u64,
    rate: u64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        let burst_milli = u64::from(burst.max(1)) * 1000;
        Bucket { tokens_milli: burst_milli, burst_milli, rate: u64::from(rate.max(1)), last: Instant::now() }
    }

    /// Takes one request's token, or says how long until one is there.
    fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let elapsed_ms = u64::try_from(now.duration_since(self.last).as_millis()).unwrap_or(u64::MAX);
        self.last = now;
        self.tokens_milli =
            self.tokens_milli.saturating_add(elapsed_ms.saturating_mul(self.rate)).min(self.burst_milli);
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            return Ok(());
        }
        let missing = 1000 - self.tokens_milli;
        Err(Duration::from_millis(missing.div_ceil(self.rate)))
    }
}

enum Line {
    Frame,
    TooLong,
    End,
}

/// Reads one line of at most [`FRAME_MAX_BYTES`] (line end included) into
/// `line`, without its line end.
async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, line: &mut Vec<u8>) -> std::io::Result<Line> {
    line.clear();
    let limit = u64::try_from(FRAME_MAX_BYTES).unwrap_or(u64::MAX);
    let read = (&mut *reader).take(limit).read_until(b'\n', line).await?;
    if read == 0 {
        return Ok(Line::End);
    }
    if line.last() != Some(&b'\n') {
        // Either the limit was reached without a line end, or the peer
        // closed in the middle of a frame.
        return Ok(if line.len() >= FRAME_MAX_BYTES { Line::TooLong } else { Line::End });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Line::Frame)
}
