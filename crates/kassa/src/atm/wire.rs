//! The terminal protocol's client side (docs/terminal-protocol.md): one TLS
//! connection, one JSON object per line, a Lamport clock, frame ids 1, 2, 3…
//! for the life of a session, and a reconnect-and-resume that re-sends the
//! interrupted frame with the same id so the server answers it once.
//!
//! It knows nothing of screens or scripts, so `kassa bench --terminal` and
//! the tests can use it as it is.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The protocol version this client speaks.
pub const PROTOCOL_VERSION: u64 = 1;
/// The largest frame either side may send, line end included.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// How long the TCP connect and the TLS handshake may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a reply may take; a server that says nothing for this long is
/// treated as a dropped connection.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times an interrupted call is re-sent on a new connection.
const RECONNECT_ATTEMPTS: u32 = 3;
/// How many replies to other frames are skipped while waiting for one.
const MAX_STRAY_REPLIES: u32 = 16;
/// How many clock ticks are kept for [`Client::take_ticks`]; a client that
/// never takes them (a benchmark) keeps only the latest.
const TICKS_KEPT: usize = 1024;

/// What went wrong talking to the server (not a refusal: those are
/// [`Reply`]s with `ok: false`).
#[derive(Debug)]
pub enum WireError {
    /// The TCP connection or the TLS handshake failed, or the connection dropped.
    Io(io::Error),
    /// The server's certificate is not the one pinned for this address.
    PinMismatch { address: String, pinned: String, presented: String, store: PathBuf },
    /// The trust configuration could not be read or written.
    Trust(String),
    /// The server sent a line over 16 KiB.
    FrameTooLarge,
    /// The server sent something that is not a reply of this protocol.
    BadReply(String),
    /// The request itself cannot be sent (too large once encoded).
    RequestTooLarge(usize),
    /// The server closed the connection.
    Closed,
    /// The server had closed the idle connection before this frame was sent.
    IdleClosed,
    /// No reply within the reply timeout.
    Timeout,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(error) => write!(f, "connection failed: {error}"),
            WireError::PinMismatch { address, pinned, presented, store } => write!(
                f,
                "the server at {address} presented a certificate with SHA-256 {presented}, but {pinned} is pinned for \
                 it in {}; this may be an impostor. If the bank really changed its certificate, delete that line \
                 or pass --ca-cert",
                store.display()
            ),
            WireError::Trust(message) => write!(f, "{message}"),
            WireError::FrameTooLarge => write!(f, "the server sent a frame over 16 KiB"),
            WireError::BadReply(message) => write!(f, "the server sent an invalid reply: {message}"),
            WireError::RequestTooLarge(bytes) => write!(f, "the request is {bytes} bytes, over the 16 KiB frame limit"),
            WireError::Closed => write!(f, "the server closed the connection"),
            WireError::IdleClosed => write!(f, "the server closed the connection for idleness"),
            WireError::Timeout => write!(f, "no reply from the server within {} s", REPLY_TIMEOUT.as_secs()),
        }
    }
}

impl std::error::Error for WireError {}

impl From<io::Error> for WireError {
    fn from(error: io::Error) -> Self {
        WireError::Io(error)
    }
}

impl WireError {
    /// Whether a new connection might succeed where this one failed.
    fn is_connection_loss(&self) -> bool {
        matches!(self, WireError::Io(_) | WireError::Closed | WireError::IdleClosed | WireError::Timeout)
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum TrustConfig {
    /// A chain to this CA certificate (PEM), for the host name or IP connected to.
    Ca(PathBuf),
    /// Trust on first use: the SHA-256 of the server's certificate is pinned
    /// per `host:port` in this file, and a different one is refused.
    Pinned(PathBuf),
}

impl TrustConfig {
    /// `--ca-cert` if given, else `<data-dir>/tls/ca.pem` if it exists,
    /// else pinning in the user's config directory.
    pub fn resolve(ca_cert: Option<&Path>, data_dir: &Path) -> Result<TrustConfig, WireError> {
        if let Some(ca) = ca_cert {
            return Ok(TrustConfig::Ca(ca.to_path_buf()));
        }
        let local = data_dir.join("tls").join("ca.pem");
        if local.is_file() {
            return Ok(TrustConfig::Ca(local));
        }
        known_terminals_path().map(TrustConfig::Pinned)
    }
}

/// `$XDG_CONFIG_HOME/kassa/known_terminals`, else `~/.config/kassa/known_terminals`.
pub fn known_terminals_path() -> Result<PathBuf, WireError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|value| !value.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|value| !value.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(WireError::Trust(
                    "no CA certificate (--ca-cert or <data-dir>/tls/ca.pem) and neither XDG_CONFIG_HOME nor HOME is \
                     set to keep pinned certificates in"
                        .into(),
                ));
            }
        },
    };
    Ok(base.join("kassa").join("known_terminals"))
}

/// Who the client says it is in `hello`.
#[derive(Clone, Default)]
pub struct Hello {
    /// A name for the server's journal.
    pub client: String,
    /// A registered terminal's id and key.
    pub terminal: Option<(u64, String)>,
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The terminal key is a secret.
        f.debug_struct("Hello")
            .field("client", &self.client)
            .field("terminal_id", &self.terminal.as_ref().map(|(id, _)| id))
            .finish()
    }
}

/// A refusal: the `error` object of a reply with `ok: false`.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: String,
    pub message: String,
    /// The whole `error` object (`fields`, `tries_left`, …).
    pub detail: Map<String, Value>,
}

/// One reply: its id, the server's clock at sending, and the body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub id: Option<u64>,
    pub clock: u64,
    /// The reply's fields other than `id`, `clock` and `ok` when it is a success.
    pub body: Result<Map<String, Value>, Refusal>,
    /// The reply exactly as received, for `--json`.
    pub raw: Value,
    /// The clock this client sent the request with.
    pub request_clock: u64,
}

#[allow(dead_code, reason = "the client's API, for kassa bench --terminal and the tests")]
impl Reply {
    pub fn is_ok(&self) -> bool {
        self.body.is_ok()
    }

    /// A field of a successful reply.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.body.as_ref().ok().and_then(|body| body.get(name))
    }

    /// Parses a reply line; the fields every reply carries must be there.
    pub fn parse(line: &[u8], request_clock: u64) -> Result<Reply, WireError> {
        let raw: Value = serde_json::from_slice(line).map_err(|error| WireError::BadReply(error.to_string()))?;
        let Value::Object(mut object) = raw.clone() else {
            return Err(WireError::BadReply("a reply is not a JSON object".into()));
        };
        let id = object.remove("id").and_then(|id| id.as_u64());
        // A reply without a clock counts as a receive of 0, as the server treats requests.
        let clock = object.remove("clock").and_then(|clock| clock.as_u64()).unwrap_or(0);
        let ok = match object.remove("ok") {
            Some(Value::Bool(ok)) => ok,
            _ => return Err(WireError::BadReply("a reply has no boolean `ok`".into())),
        };
        let body = if ok {
            Ok(object)
        } else {
            let detail = match object.remove("error") {
                Some(Value::Object(error)) => error,
                _ => Map::new(),
            };
            let text = |name: &str| detail.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
            let mut detail_all = detail.clone();
            // Fields beside `error` (`retry_after_s`, `supported`) belong to the refusal too.
            for (key, value) in object {
                detail_all.entry(key).or_insert(value);
            }
            Err(Refusal { code: text("code"), message: text("message"), detail: detail_all })
        };
        Ok(Reply { id, clock, body, raw, request_clock })
    }
}

/// Which way a clock tick went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickKind {
    Send,
    Receive,
}

/// One tick of the client's Lamport clock, for `--show-clock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub kind: TickKind,
    pub op: String,
    /// The clock carried by the received frame (receives only).
    pub remote: Option<u64>,
    pub before: u64,
    pub after: u64,
}

impl fmt::Display for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.remote) {
            (TickKind::Send, _) => write!(f, "send {}: {} -> {}", self.op, self.before, self.after),
            (TickKind::Receive, remote) => {
                write!(f, "recv {}: max({}, {}) + 1 = {}", self.op, self.before, remote.unwrap_or(0), self.after)
            }
        }
    }
}

/// A Lamport clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LamportClock(u64);

impl LamportClock {
    pub fn now(self) -> u64 {
        self.0
    }

    /// Before sending: one tick; the frame carries the result.
    pub fn tick_send(&mut self) -> u64 {
        self.0 = self.0.saturating_add(1);
        self.0
    }

    /// On receiving a frame with `remote`: `max(own, remote) + 1`.
    pub fn tick_receive(&mut self, remote: u64) -> u64 {
        self.0 = self.0.max(remote).saturating_add(1);
        self.0
    }
}

type Stream = BufReader<TlsStream<TcpStream>>;

/// A connection to the terminal port, with the session it carries.
pub struct Client {
    address: String,
    trust: TrustConfig,
    hello: Hello,
    stream: Option<Stream>,
    clock: LamportClock,
    next_id: u64,
    session_token: Option<String>,
    greeted: bool,
    ticks: VecDeque<Tick>,
    /// How many times the connection was re-established.
    pub reconnects: u32,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The session token is a secret.
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("clock", &self.clock)
            .field("next_id", &self.next_id)
            .field("signed_in", &self.session_token.is_some())
            .finish()
    }
}

#[allow(dead_code, reason = "the client's API, for kassa bench --terminal and the tests")]
impl Client {
    /// Opens a TLS connection to `address` (`HOST:PORT`); says nothing yet.
    pub async fn connect(address: &str, trust: TrustConfig, hello: Hello) -> Result<Client, WireError> {
        let stream = open(address, &trust).await?;
        Ok(Client {
            address: address.to_owned(),
            trust,
            hello,
            stream: Some(stream),
            clock: LamportClock::default(),
            next_id: 1,
            session_token: None,
            greeted: false,
            ticks: VecDeque::new(),
            reconnects: 0,
        })
    }

    /// The client's Lamport clock now.
    pub fn clock(&self) -> u64 {
        self.clock.now()
    }

    pub fn is_greeted(&self) -> bool {
        self.greeted
    }

    pub fn is_signed_in(&self) -> bool {
        self.session_token.is_some()
    }

    /// The clock ticks since the last call, oldest first.
    pub fn take_ticks(&mut self) -> Vec<Tick> {
        self.ticks.drain(..).collect()
    }

    /// Sends `hello` with this client's identity.
    pub async fn hello(&mut self) -> Result<Reply, WireError> {
        self.call("hello", Map::new()).await
    }

    fn hello_fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("protocol_version".into(), json!(PROTOCOL_VERSION));
        if !self.hello.client.is_empty() {
            fields.insert("client".into(), json!(self.hello.client));
        }
        if let Some((id, key)) = &self.hello.terminal {
            fields.insert("terminal_id".into(), json!(id));
            fields.insert("terminal_key".into(), json!(key));
        }
        fields
    }

    /// Sends one request with the next frame id and waits for its reply. If
    /// the connection drops while a session is signed in, it reconnects,
    /// says `hello` and `resume`, and sends the same frame again (same id),
    /// which the server answers without doing it twice.
    /// A `hello` with no fields gets this client's own (version, terminal).
    pub async fn call(&mut self, op: &str, fields: Map<String, Value>) -> Result<Reply, WireError> {
        let fields = if op == "hello" && fields.is_empty() { self.hello_fields() } else { fields };
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        let mut attempt = 0;
        if self.stream.is_none() {
            // The last connection was lost; this frame was never sent on it.
            self.reconnect(op).await?;
        }
        loop {
            let result = self.exchange(id, op, &fields).await;
            match result {
                Err(error) if error.is_connection_loss() && attempt < RECONNECT_ATTEMPTS => {
                    attempt += 1;
                    self.stream = None;
                    // A frame the server may have carried out is sent again only
                    // within a signed-in session, where its id makes it happen
                    // once; a sign-in is not (a wrong PIN would count twice),
                    // unless the server had closed the connection before it.
                    let unsent = matches!(error, WireError::IdleClosed);
                    if op == "logout" || (self.session_token.is_none() && !unsent) {
                        return Err(error);
                    }
                    self.reconnect(op).await?;
                }
                Err(error) => {
                    if error.is_connection_loss() {
                        self.stream = None;
                    }
                    return Err(error);
                }
                Ok(reply) => {
                    self.note(op, &reply);
                    return Ok(reply);
                }
            }
        }
    }

    /// Keeps what a reply says about the session.
    fn note(&mut self, op: &str, reply: &Reply) {
        match (op, &reply.body) {
            ("hello", Ok(_)) => self.greeted = true,
            ("login" | "resume", Ok(body)) => {
                if let Some(token) = body.get("session_token").and_then(Value::as_str) {
                    self.session_token = Some(token.to_owned());
                }
            }
            ("logout", Ok(_)) => self.session_token = None,
            ("resume", Err(_)) => self.session_token = None,
            (_, Err(refusal)) if refusal.code == "invalid_token" => self.session_token = None,
            _ => {}
        }
    }

    /// A new connection, then `hello` and (in a session) `resume`, each
    /// with new frame ids; `op` is the frame to be sent again after them.
    async fn reconnect(&mut self, op: &str) -> Result<(), WireError> {
        self.stream = Some(open(&self.address, &self.trust).await?);
        self.reconnects = self.reconnects.saturating_add(1);
        self.greeted = false;
        let mut steps = Vec::new();
        if op != "hello" {
            steps.push(("hello", self.hello_fields()));
        }
        if let Some(token) = self.session_token.clone()
            && op != "resume"
        {
            steps.push(("resume", Map::from_iter([("session_token".into(), json!(token))])));
        }
        for (step, fields) in steps {
            let id = self.next_id;
            self.next_id = self.next_id.saturating_add(1);
            let reply = self.exchange(id, step, &fields).await?;
            self.note(step, &reply);
            if let Err(refusal) = reply.body {
                return Err(WireError::BadReply(format!("{step} after reconnecting was refused: {}", refusal.code)));
            }
        }
        Ok(())
    }

    /// One frame out, one reply in, on the current connection.
    async fn exchange(&mut self, id: u64, op: &str, fields: &Map<String, Value>) -> Result<Reply, WireError> {
        let stream = self.stream.as_mut().ok_or(WireError::Closed)?;
        let before = self.clock.now();
        let clock = self.clock.tick_send();
        let mut frame = fields.clone();
        frame.insert("id".into(), json!(id));
        frame.insert("clock".into(), json!(clock));
        frame.insert("op".into(), json!(op));
        let mut line =
            serde_json::to_vec(&Value::Object(frame)).map_err(|error| WireError::BadReply(error.to_string()))?;
        line.push(b'\n');
        if line.len() > MAX_FRAME_BYTES {
            return Err(WireError::RequestTooLarge(line.len()));
        }
        record(&mut self.ticks, Tick { kind: TickKind::Send, op: op.to_owned(), remote: None, before, after: clock });
        stream.get_mut().write_all(&line).await?;
        stream.get_mut().flush().await?;
        let mut strays = 0;
        loop {
            let line = match tokio::time::timeout(REPLY_TIMEOUT, read_line(stream)).await {
                Ok(line) => line?,
                Err(_) => return Err(WireError::Timeout),
            };
            let reply = Reply::parse(&line, clock)?;
            let before = self.clock.now();
            let after = self.clock.tick_receive(reply.clock);
            record(
                &mut self.ticks,
                Tick { kind: TickKind::Receive, op: op.to_owned(), remote: Some(reply.clock), before, after },
            );
            // An idle session's goodbye, read only now that we speak again: the
            // connection is gone, and a signed-in session can be resumed.
            if reply.id.is_none() && reply.body.as_ref().is_err_and(|refusal| refusal.code == "idle_timeout") {
                return Err(WireError::IdleClosed);
            }
            // A reply to another frame (one sent before a reconnect) is not this one's.
            if reply.id.is_none_or(|reply_id| reply_id == id) {
                return Ok(reply);
            }
            strays += 1;
            if strays > MAX_STRAY_REPLIES {
                return Err(WireError::BadReply(format!(
                    "{strays} replies to other frames while waiting for frame {id}"
                )));
            }
        }
    }
}

/// Keeps a tick, dropping the oldest past [`TICKS_KEPT`].
fn record(ticks: &mut VecDeque<Tick>, tick: Tick) {
    if ticks.len() == TICKS_KEPT {
        ticks.pop_front();
    }
    ticks.push_back(tick);
}

/// Reads one line of at most [`MAX_FRAME_BYTES`], without its line end.
async fn read_line(stream: &mut Stream) -> Result<Vec<u8>, WireError> {
    let mut line = Vec::new();
    loop {
        let buffer = match stream.fill_buf().await {
            Ok(buffer) => buffer,
            // A peer that goes away without a TLS close_notify shows as an unexpected end.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
            Err(error) => return Err(WireError::Io(error)),
        };
        if buffer.is_empty() {
            return Err(WireError::Closed);
        }
        let (taken, done) = match buffer.iter().position(|&byte| byte == b'\n') {
            Some(end) => (end + 1, true),
            None => (buffer.len(), false),
        };
        if line.len() + taken > MAX_FRAME_BYTES {
            return Err(WireError::FrameTooLarge);
        }
        line.extend_from_slice(&buffer[..taken]);
        stream.consume(taken);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

/// The host part of `HOST:PORT` (brackets of an IPv6 address removed).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn open(address: &str, trust: &TrustConfig) -> Result<Stream, WireError> {
    let server_name = ServerName::try_from(host_of(address).to_owned())
        .map_err(|_| WireError::Trust(format!("{address} is not HOST:PORT with a valid host name or IP")))?;
    let (config, pin) = client_config(address, trust)?;
    let connector = TlsConnector::from(config);
    let connecting = async {
        let tcp = TcpStream::connect(address).await?;
        let _ = tcp.set_nodelay(true);
        connector.connect(server_name, tcp).await
    };
    let result = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(result) => result,
        Err(_) => return Err(WireError::Io(io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"))),
    };
    match (result, pin) {
        (Ok(stream), Some(pin)) => {
            pin.remember()?;
            Ok(BufReader::new(stream))
        }
        (Ok(stream), None) => Ok(BufReader::new(stream)),
        (Err(error), Some(pin)) => Err(pin.mismatch().unwrap_or(WireError::Io(error))),
        (Err(error), None) => Err(WireError::Io(error)),
    }
}

fn client_config(
    address: &str,
    trust: &TrustConfig,
) -> Result<(Arc<ClientConfig>, Option<Arc<PinVerifier>>), WireError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| WireError::Trust(format!("TLS protocol versions: {error}")))?;
    match trust {
        TrustConfig::Ca(path) => {
            let mut roots = RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|error| WireError::Trust(format!("reading the CA certificate {}: {error}", path.display())))?;
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|error| WireError::Trust(format!("the CA certificate {}: {error}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(WireError::Trust(format!("{} holds no certificate", path.display())));
            }
            Ok((Arc::new(builder.with_root_certificates(roots).with_no_client_auth()), None))
        }
        TrustConfig::Pinned(store) => {
            let pinned = read_pin(store, address)?;
            let verifier = Arc::new(PinVerifier {
                address: address.to_owned(),
                store: store.clone(),
                pinned,
                presented: Mutex::new(None),
                provider: provider(),
            });
            let config = builder.dangerous().with_custom_certificate_verifier(verifier.clone()).with_no_client_auth();
            Ok((Arc::new(config), Some(verifier)))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The pinned fingerprint for `address`, if any. Lines are
/// `HOST:PORT sha256:HEX`; `#` starts a comment.
fn read_pin(store: &Path, address: &str) -> Result<Option<String>, WireError> {
    let text = match std::fs::read_to_string(store) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(WireError::Trust(format!("reading {}: {error}", store.display()))),
    };
    Ok(text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some(host), Some(pin)) if host == address => pin.strip_prefix("sha256:").map(str::to_owned),
            _ => None,
        }
    }))
}

/// Trust on first use: accepts the first certificate an address presents
/// (the handshake signature is still checked against it), then only that one.
#[derive(Debug)]
struct PinVerifier {
    address: String,
    store: PathBuf,
    pinned: Option<String>,
    /// The fingerprint the server presented in this handshake.
    presented: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    fn presented(&self) -> Option<String> {
        self.presented.lock().ok().and_then(|presented| presented.clone())
    }

    fn mismatch(&self) -> Option<WireError> {
        let (pinned, presented) = (self.pinned.clone()?, self.presented()?);
        (pinned != presented).then(|| WireError::PinMismatch {
            address: self.address.clone(),
            pinned,
            presented,
            store: self.store.clone(),
        })
    }

    /// Writes a first-seen fingerprint to the store.
    fn remember(&self) -> Result<(), WireError> {
        let Some(presented) = self.presented() else { return Ok(()) };
        if self.pinned.is_some() {
            return Ok(());
        }
        let fail = |error: io::Error| {
            WireError::Trust(format!("pinning the certificate in {}: {error}", self.store.display()))
        };
        if let Some(dir) = self.store.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.store).map_err(fail)?;
        use std::io::Write as _;
        writeln!(file, "{} sha256:{presented}", self.address).map_err(fail)?;
        eprintln!(
            "note: trusting {} on first use (certificate SHA-256 {presented}), pinned in {}",
            self.address,
            self.store.display()
        );
        Ok(())
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = hex(&Sha256::digest(end_entity.as_ref()));
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(presented.clone());
        }
        match &self.pinned {
            Some(pinned) if *pinned != presented => {
                Err(rustls::Error::General(format!("certificate SHA-256 {presented} is not the pinned {pinned}")))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

    use super::*;

    #[test]
    fn lamport_ticks() {
        let mut clock = LamportClock::default();
        assert_eq!(clock.tick_send(), 1);
        assert_eq!(clock.tick_receive(10), 11);
        assert_eq!(clock.tick_receive(3), 12);
        assert_eq!(clock.tick_send(), 13);
        let mut top = LamportClock(u64::MAX);
        assert_eq!(top.tick_send(), u64::MAX);
    }

    #[test]
    fn parses_replies() {
        let ok = Reply::parse(br#"{"id":7,"clock":1042,"ok":true,"balance":"120.50"}"#, 5).unwrap();
        assert_eq!((ok.id, ok.clock, ok.request_clock), (Some(7), 1042, 5));
        assert_eq!(ok.field("balance"), Some(&json!("120.50")));
        let refused = Reply::parse(
            br#"{"id":8,"clock":1044,"ok":false,"error":{"code":"insufficient_funds","message":"no"},"retry_after_s":3}"#,
            6,
        )
        .unwrap();
        let refusal = refused.body.unwrap_err();
        assert_eq!(refusal.code, "insufficient_funds");
        assert_eq!(refusal.detail.get("retry_after_s"), Some(&json!(3)));
        assert!(matches!(Reply::parse(b"[1]", 1), Err(WireError::BadReply(_))));
        assert!(matches!(Reply::parse(br#"{"id":1,"clock":1}"#, 1), Err(WireError::BadReply(_))));
        assert!(matches!(Reply::parse(b"not json", 1), Err(WireError::BadReply(_))));
    }

    #[test]
    fn hosts_and_pins() {
        assert_eq!(host_of("127.0.0.1:7443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7443"), "::1");
        assert_eq!(host_of("bank.example:7443"), "bank.example");
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("known_terminals");
        assert_eq!(read_pin(&store, "a:1").unwrap(), None);
        std::fs::write(&store, "# comment\na:1 sha256:abcd\nb:2 sha256:ef01\n").unwrap();
        assert_eq!(read_pin(&store, "b:2").unwrap().as_deref(), Some("ef01"));
        assert_eq!(read_pin(&store, "c:3").unwrap(), None);
    }
}
