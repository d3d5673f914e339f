//! The server's configuration, in layers: defaults in code, then a TOML file
//! (`--config FILE`, else `./kassa.toml` when it exists), then `KASSA_*`
//! environment variables, then command-line flags. The flags are applied by
//! the caller, by assigning the public fields after [`Config::load`] and
//! before [`Config::validate`].
//!
//! Every setting is documented, with its default, in [`DEFAULT_TOML`], which
//! `kassa config default` prints; a test keeps that text equal to
//! `Config::default()` so the two never drift apart.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context as _, anyhow, bail};
use kassa_service::settings::{BankIdentity, SecretBytes, Settings};

/// The file read when no `--config` is given, relative to the working
/// directory; its absence is not an error.
pub const DEFAULT_CONFIG_FILE: &str = "kassa.toml";

/// Country profiles the server knows (validation rules, IBAN format).
pub const KNOWN_COUNTRIES: &[&str] = &["BY", "UA"];

/// The bounds on an access token's lifetime. The upper bound is the
/// "at most 15 minutes" rule: a stolen access token cannot be revoked, so
/// its life must be short; the lower bound keeps clients from refreshing
/// in a loop.
pub const ACCESS_TOKEN_TTL_MIN_S: i64 = 60;
pub const ACCESS_TOKEN_TTL_MAX_S: i64 = 15 * 60;
/// The longest a session (and its refresh tokens) may live: one year.
pub const SESSION_TTL_MAX_S: i64 = 365 * 24 * 3600;
/// Bounds on the largest request body the HTTP server accepts.
pub const REQUEST_BODY_MIN_BYTES: usize = 1024;
pub const REQUEST_BODY_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The most accounts a bank may let one customer hold.
pub const ACCOUNTS_PER_CUSTOMER_LIMIT: u32 = 1000;
/// Bounds of `[notifications]`: the worker's idle sleep, a round's size,
/// one send's limit, a claim's lease (a day) and the tries per message.
pub const NOTIFY_POLL_MIN_MS: u64 = 10;
pub const NOTIFY_POLL_MAX_MS: u64 = 3_600_000;
pub const NOTIFY_BATCH_MAX: u32 = 1000;
pub const NOTIFY_TIMEOUT_MAX_MS: u64 = 600_000;
pub const NOTIFY_LEASE_MAX_MS: u64 = 86_400_000;
pub const NOTIFY_ATTEMPTS_MAX: u32 = 10_000;

#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The data directory: SQLite database, TLS material, secrets.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`; `None` means
    /// `sqlite://<data_dir>/kassa.db` (see [`Config::database_url`]).
    pub database_url: Option<String>,
    /// The HTTP (API and web pages) listen address.
    pub listen: String,
    /// The terminal (ATM) protocol listen address; always TLS.
    pub terminal_listen: String,
    /// Serve HTTPS with `<data_dir>/tls/cert.pem` instead of plain HTTP.
    pub https: bool,
    /// The server sits behind a reverse proxy that terminates TLS.
    pub behind_proxy: bool,
    /// IP addresses whose `X-Forwarded-For` header is believed.
    pub trusted_proxies: Vec<String>,
    pub bank: BankSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub log: LogSection,
    pub cards: kassa_service::cards::CardSettings,
    pub approvals: kassa_service::approvals::ApprovalSettings,
    pub fx: kassa_service::fx::FxSettings,
    pub interest: kassa_service::interest::InterestSettings,
    pub notifications: kassa_service::notify::NotifySettings,
    pub terminal: TerminalSection,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./kassa-data"),
            database_url: None,
            listen: "127.0.0.1:8080".into(),
            terminal_listen: "127.0.0.1:7443".into(),
            https: false,
            behind_proxy: false,
            trusted_proxies: Vec::new(),
            bank: BankSection::default(),
            auth: AuthSection::default(),
            limits: LimitsSection::default(),
            log: LogSection::default(),
            cards: Default::default(),
            approvals: Default::default(),
            fx: Default::default(),
            interest: Default::default(),
            notifications: Default::default(),
            terminal: TerminalSection::default(),
        }
    }
}

/// Written by hand so that the database URL's password never reaches a log.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            data_dir,
            database_url,
            listen,
            terminal_listen,
            https,
            behind_proxy,
            trusted_proxies,
            bank,
            auth,
            limits,
            log,
            cards,
            approvals,
            fx,
            interest,
            notifications,
            terminal,
        } = self;
        f.debug_struct("Config")
            .field("data_dir", data_dir)
            .field("database_url", &database_url.as_deref().map(redact_url))
            .field("listen", listen)
            .field("terminal_listen", terminal_listen)
            .field("https", https)
            .field("behind_proxy", behind_proxy)
            .field("trusted_proxies", trusted_proxies)
            .field("bank", bank)
            .field("auth", auth)
            .field("limits", limits)
            .field("log", log)
            .field("cards", cards)
            .field("approvals", approvals)
            .field("fx", fx)
            .field("interest", interest)
            .field("notifications", notifications)
            .field("terminal", terminal)
            .finish()
    }
}

/// The bank's identity; converts into [`BankIdentity`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BankSection {
    pub name: String,
    pub address: String,
    pub phone: String,
    pub country: String,
    pub timezone: String,
    pub bank_code: String,
}

impl Default for BankSection {
    fn default() -> BankSection {
        BankSection::from(BankIdentity::default())
    }
}

impl From<BankIdentity> for BankSection {
    fn from(bank: BankIdentity) -> BankSection {
        let BankIdentity { name, address, phone, country, timezone, bank_code } = bank;
        BankSection { name, address, phone, country, timezone, bank_code }
    }
}

impl From<BankSection> for BankIdentity {
    fn from(bank: BankSection) -> BankIdentity {
        let BankSection { name, address, phone, country, timezone, bank_code } = bank;
        BankIdentity { name, address, phone, country, timezone, bank_code }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub access_token_ttl_s: i64,
    pub session_ttl_s: i64,
    /// The token-signing key's file; `None` means `<data_dir>/secrets/token.key`,
    /// created on first start.
    pub token_key_file: Option<PathBuf>,
    /// The card key's file (PIN hashes, CVVs); `None` means
    /// `<data_dir>/secrets/card.key`, created on first start.
    pub card_key_file: Option<PathBuf>,
    pub login_failures_free: u32,
    pub login_throttle_max_s: i64,
    pub address_failures_max: u32,
    pub address_window_s: i64,
}

impl Default for AuthSection {
    fn default() -> AuthSection {
        AuthSection {
            access_token_ttl_s: 900,
            session_ttl_s: 30 * 24 * 3600,
            token_key_file: None,
            card_key_file: None,
            login_failures_free: 5,
            login_throttle_max_s: 900,
            address_failures_max: 100,
            address_window_s: 600,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub accounts_per_customer_max: u32,
    pub request_body_max_bytes: usize,
}

impl Default for LimitsSection {
    fn default() -> LimitsSection {
        LimitsSection { accounts_per_customer_max: 8, request_body_max_bytes: 64 * 1024 }
    }
}

/// The terminal (ATM) protocol's limits (docs/terminal-protocol.md
/// "Limits").
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TerminalSection {
    pub idle_timeout_s: u64,
    pub handshake_timeout_s: u64,
    pub max_sessions: u32,
    pub requests_per_s: u32,
    pub request_burst: u32,
}

impl Default for TerminalSection {
    fn default() -> TerminalSection {
        TerminalSection {
            idle_timeout_s: 60,
            handshake_timeout_s: 10,
            max_sessions: 1024,
            requests_per_s: 50,
            request_burst: 100,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A `tracing` filter: a level (`info`) or directives (`kassa=debug,info`).
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> LogSection {
        LogSection { level: "info".into(), format: LogFormat::Text }
    }
}

/// How log lines are written: for people, or one JSON object per line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = anyhow::Error;

    fn from_str(value: &str) -> anyhow::Result<LogFormat> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => bail!("expected \"text\" or \"json\", got {value:?}"),
        }
    }
}

/// Every `KASSA_*` variable the configuration reads, in the order applied.
/// The `_FILE` forms are handled separately (see [`SECRET_FILES`]).
const ENV_NAMES: &[&str] = &[
    "KASSA_DATA_DIR",
    "KASSA_DATABASE_URL",
    "KASSA_LISTEN",
    "KASSA_TERMINAL_LISTEN",
    "KASSA_TERMINAL_IDLE_TIMEOUT_S",
    "KASSA_TERMINAL_MAX_SESSIONS",
    "KASSA_HTTPS",
    "KASSA_BEHIND_PROXY",
    "KASSA_TRUSTED_PROXIES",
    "KASSA_BANK_NAME",
    "KASSA_BANK_ADDRESS",
    "KASSA_BANK_PHONE",
    "KASSA_BANK_COUNTRY",
    "KASSA_BANK_TIMEZONE",
    "KASSA_BANK_CODE",
    "KASSA_ACCESS_TOKEN_TTL_S",
    "KASSA_SESSION_TTL_S",
    "KASSA_LOGIN_FAILURES_FREE",
    "KASSA_LOGIN_THROTTLE_MAX_S",
    "KASSA_ADDRESS_FAILURES_MAX",
    "KASSA_ADDRESS_WINDOW_S",
    "KASSA_ACCOUNTS_PER_CUSTOMER_MAX",
    "KASSA_REQUEST_BODY_MAX_BYTES",
    "KASSA_LOG_LEVEL",
    "KASSA_LOG_FORMAT",
];

/// Secrets that may come from a file named by a `_FILE` variable, so they
/// need not sit in the process environment. `KASSA_DATABASE_URL_FILE` names a
/// file holding the URL; `KASSA_TOKEN_KEY_FILE` names the token-signing key's
/// file, which is read later by `DataDir::token_key` (the key is binary-ish
/// and has its own format rules there).
const SECRET_FILES: &[&str] = &["KASSA_DATABASE_URL_FILE", "KASSA_TOKEN_KEY_FILE", "KASSA_CARD_KEY_FILE"];

impl Config {
    /// Reads the layers below the command line: defaults, then the file
    /// (`path` if given, which must exist; else `./kassa.toml` if it exists),
    /// then the `KASSA_*` variables in `env`. `env` is a parameter so that
    /// tests need not touch the process environment; the server passes
    /// [`process_env`]. Variables starting `KASSA_` that name no setting are
    /// ignored (other tools share the prefix). Does not validate: apply the
    /// flags, then call [`Config::validate`].
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Config> {
        let mut config = match path {
            Some(path) => Config::from_file(path)?,
            None => {
                let path = Path::new(DEFAULT_CONFIG_FILE);
                if path.exists() { Config::from_file(path)? } else { Config::default() }
            }
        };
        config.apply_env(env)?;
        Ok(config)
    }

    /// Parses one configuration file over the defaults.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("in the configuration file {}", path.display()))
    }

    /// Parses TOML text over the defaults; unknown keys are refused, so a
    /// misspelt setting is an error rather than silently ignored.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        // toml's message names the key and quotes the line; keep it whole.
        toml::from_str(text).map_err(|error| anyhow!("{error}"))
    }

    /// Applies the `KASSA_*` layer over `self`.
    pub fn apply_env(&mut self, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<()> {
        // An empty variable counts as unset, as `KASSA_X=` in a compose file
        // or a shell usually means "not configured here".
        let env: HashMap<String, String> =
            env.into_iter().filter(|(key, value)| key.starts_with("KASSA_") && !value.is_empty()).collect();
        for name in ENV_NAMES {
            if let Some(value) = env.get(*name) {
                self.set_from_env(name, value.clone()).with_context(|| format!("environment variable {name}"))?;
            }
        }
        if let Some(file) = env.get("KASSA_DATABASE_URL_FILE") {
            if env.contains_key("KASSA_DATABASE_URL") {
                bail!("both KASSA_DATABASE_URL and KASSA_DATABASE_URL_FILE are set; set only one");
            }
            let url = read_secret_file(Path::new(file)).context("environment variable KASSA_DATABASE_URL_FILE")?;
            if url.is_empty() {
                bail!("environment variable KASSA_DATABASE_URL_FILE: {file} is empty");
            }
            self.database_url = Some(url);
        }
        if let Some(file) = env.get("KASSA_TOKEN_KEY_FILE") {
            self.auth.token_key_file = Some(PathBuf::from(file));
        }
        if let Some(file) = env.get("KASSA_CARD_KEY_FILE") {
            self.auth.card_key_file = Some(PathBuf::from(file));
        }
        Ok(())
    }

    /// Sets the one setting an environment variable names (one of
    /// [`ENV_NAMES`]).
    fn set_from_env(&mut self, name: &str, value: String) -> anyhow::Result<()> {
        match name {
            "KASSA_DATA_DIR" => self.data_dir = PathBuf::from(value),
            "KASSA_DATABASE_URL" => self.database_url = Some(value),
            "KASSA_LISTEN" => self.listen = value,
            "KASSA_TERMINAL_LISTEN" => self.terminal_listen = value,
            "KASSA_HTTPS" => self.https = parse_bool(&value)?,
            "KASSA_BEHIND_PROXY" => self.behind_proxy = parse_bool(&value)?,
            "KASSA_TRUSTED_PROXIES" => self.trusted_proxies = parse_list(&value),
            "KASSA_BANK_NAME" => self.bank.name = value,
            "KASSA_BANK_ADDRESS" => self.bank.address = value,
            "KASSA_BANK_PHONE" => self.bank.phone = value,
            "KASSA_BANK_COUNTRY" => self.bank.country = value,
            "KASSA_BANK_TIMEZONE" => self.bank.timezone = value,
            "KASSA_BANK_CODE" => self.bank.bank_code = value,
            "KASSA_ACCESS_TOKEN_TTL_S" => self.auth.access_token_ttl_s = parse_number(&value)?,
            "KASSA_SESSION_TTL_S" => self.auth.session_ttl_s = parse_number(&value)?,
            "KASSA_LOGIN_FAILURES_FREE" => self.auth.login_failures_free = parse_number(&value)?,
            "KASSA_LOGIN_THROTTLE_MAX_S" => self.auth.login_throttle_max_s = parse_number(&value)?,
            "KASSA_ADDRESS_FAILURES_MAX" => self.auth.address_failures_max = parse_number(&value)?,
            "KASSA_ADDRESS_WINDOW_S" => self.auth.address_window_s = parse_number(&value)?,
            "KASSA_ACCOUNTS_PER_CUSTOMER_MAX" => self.limits.accounts_per_customer_max = parse_number(&value)?,
            "KASSA_REQUEST_BODY_MAX_BYTES" => self.limits.request_body_max_bytes = parse_number(&value)?,
            "KASSA_LOG_LEVEL" => self.log.level = value,
            "KASSA_LOG_FORMAT" => self.log.format = value.parse()?,
            "KASSA_TERMINAL_IDLE_TIMEOUT_S" => self.terminal.idle_timeout_s = parse_number(&value)?,
            "KASSA_TERMINAL_MAX_SESSIONS" => self.terminal.max_sessions = parse_number(&value)?,
            _ => bail!("{name} is not a setting"),
        }
        Ok(())
    }

    /// Checks the rules no single field's type can express. Errors name the
    /// setting as it is spelt in the file.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.data_dir.as_os_str().is_empty() {
            bail!("data_dir: must not be empty");
        }
        kassa_store::DatabaseUrl::parse(&self.database_url()).context("database_url")?;

        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|_| anyhow!("listen: {:?} is not an address like 127.0.0.1:8080", self.listen))?;
        self.terminal_listen.parse::<SocketAddr>().map_err(|_| {
            anyhow!("terminal_listen: {:?} is not an address like 127.0.0.1:7443", self.terminal_listen)
        })?;
        // Plain HTTP carries passwords and tokens in the clear, so it is only
        // served where nobody else can listen, unless TLS ends at a proxy.
        if !listen.ip().is_loopback() && !self.https && !self.behind_proxy {
            bail!(
                "listen: {listen} is not a loopback address; serving plain HTTP there would expose passwords. \
                 Set https = true (KASSA_HTTPS) or, if a reverse proxy terminates TLS, behind_proxy = true \
                 (--behind-proxy)"
            );
        }
        let terminal = &self.terminal;
        if !(1..=86_400).contains(&terminal.idle_timeout_s) {
            bail!("terminal.idle_timeout_s: must be between 1 and 86400");
        }
        if !(1..=600).contains(&terminal.handshake_timeout_s) {
            bail!("terminal.handshake_timeout_s: must be between 1 and 600");
        }
        if !(1..=100_000).contains(&terminal.max_sessions) {
            bail!("terminal.max_sessions: must be between 1 and 100000");
        }
        if !(1..=100_000).contains(&terminal.requests_per_s) || terminal.request_burst < 1 {
            bail!("terminal.requests_per_s: must be between 1 and 100000, and request_burst at least 1");
        }
        for proxy in &self.trusted_proxies {
            proxy.parse::<IpAddr>().map_err(|_| anyhow!("trusted_proxies: {proxy:?} is not an IP address"))?;
        }

        let bank = &self.bank;
        if bank.name.trim().is_empty() {
            bail!("bank.name: must not be empty");
        }
        if !KNOWN_COUNTRIES.contains(&bank.country.as_str()) {
            bail!(
                "bank.country: {:?} is not a known country profile (known: {})",
                bank.country,
                KNOWN_COUNTRIES.join(", ")
            );
        }
        if bank.timezone.trim().is_empty() {
            bail!("bank.timezone: must not be empty (an IANA zone such as Europe/Minsk)");
        }
        if bank.bank_code.len() != 4 || !bank.bank_code.bytes().all(|b| b.is_ascii_uppercase()) {
            bail!("bank.bank_code: {:?} must be four upper-case letters A-Z (such as KASA)", bank.bank_code);
        }

        self.cards.validate().map_err(|error| anyhow!("cards.{error}"))?;

        let auth = &self.auth;
        if !(ACCESS_TOKEN_TTL_MIN_S..=ACCESS_TOKEN_TTL_MAX_S).contains(&auth.access_token_ttl_s) {
            bail!(
                "auth.access_token_ttl_s: {} is outside {ACCESS_TOKEN_TTL_MIN_S}..={ACCESS_TOKEN_TTL_MAX_S} \
                 (an access token lives at most 15 minutes)",
                auth.access_token_ttl_s
            );
        }
        if !(auth.access_token_ttl_s..=SESSION_TTL_MAX_S).contains(&auth.session_ttl_s) {
            bail!(
                "auth.session_ttl_s: {} is outside {}..={SESSION_TTL_MAX_S} (at least the access token's lifetime, \
                 at most a year)",
                auth.session_ttl_s,
                auth.access_token_ttl_s
            );
        }
        if auth.login_failures_free == 0 {
            bail!("auth.login_failures_free: must be at least 1");
        }
        if auth.login_throttle_max_s < 1 {
            bail!("auth.login_throttle_max_s: must be at least 1");
        }
        if auth.address_failures_max == 0 {
            bail!("auth.address_failures_max: must be at least 1");
        }
        if auth.address_window_s < 1 {
            bail!("auth.address_window_s: must be at least 1");
        }

        let limits = &self.limits;
        if !(1..=ACCOUNTS_PER_CUSTOMER_LIMIT).contains(&limits.accounts_per_customer_max) {
            bail!(
                "limits.accounts_per_customer_max: {} is outside 1..={ACCOUNTS_PER_CUSTOMER_LIMIT}",
                limits.accounts_per_customer_max
            );
        }
        if !(REQUEST_BODY_MIN_BYTES..=REQUEST_BODY_MAX_BYTES).contains(&limits.request_body_max_bytes) {
            bail!(
                "limits.request_body_max_bytes: {} is outside {REQUEST_BODY_MIN_BYTES}..={REQUEST_BODY_MAX_BYTES}",
                limits.request_body_max_bytes
            );
        }

        if kassa_service::interest::parse_run_at(&self.interest.run_at).is_none() {
            bail!(
                "interest.run_at: {:?} is not a time HH:MM (00:00..23:59) in the bank's time zone",
                self.interest.run_at
            );
        }

        self.validate_notifications()?;

        if self.log.level.trim().is_empty() {
            bail!("log.level: must not be empty (such as info, or kassa=debug,info)");
        }
        Ok(())
    }

    /// `[notifications]`: values with which the worker could never deliver,
    /// or would spin.
    fn validate_notifications(&self) -> anyhow::Result<()> {
        use kassa_service::notify::{EmailGateway, SmsGateway};
        let n = &self.notifications;
        if !(NOTIFY_POLL_MIN_MS..=NOTIFY_POLL_MAX_MS).contains(&n.poll_ms) {
            bail!("notifications.poll_ms: {} is outside {NOTIFY_POLL_MIN_MS}..={NOTIFY_POLL_MAX_MS}", n.poll_ms);
        }
        if !(1..=NOTIFY_BATCH_MAX).contains(&n.batch) {
            bail!("notifications.batch: {} is outside 1..={NOTIFY_BATCH_MAX}", n.batch);
        }
        if !(1..=NOTIFY_TIMEOUT_MAX_MS).contains(&n.send_timeout_ms) {
            bail!("notifications.send_timeout_ms: {} is outside 1..={NOTIFY_TIMEOUT_MAX_MS}", n.send_timeout_ms);
        }
        // A send never starts unless it fits in what is left of the lease,
        // so a lease no longer than one send's limit would never send.
        if n.send_timeout_ms >= n.lease_ms {
            bail!(
                "notifications.send_timeout_ms: {} must be below notifications.lease_ms ({}), or no message is ever sent",
                n.send_timeout_ms,
                n.lease_ms
            );
        }
        if n.lease_ms > NOTIFY_LEASE_MAX_MS {
            bail!("notifications.lease_ms: {} is above {NOTIFY_LEASE_MAX_MS} (a day)", n.lease_ms);
        }
        if !(1..=NOTIFY_ATTEMPTS_MAX).contains(&n.max_attempts) {
            bail!("notifications.max_attempts: {} is outside 1..={NOTIFY_ATTEMPTS_MAX}", n.max_attempts);
        }
        if n.backoff_base_ms == 0 {
            bail!("notifications.backoff_base_ms: must be at least 1");
        }
        if n.backoff_max_ms < n.backoff_base_ms {
            bail!(
                "notifications.backoff_max_ms: {} is below notifications.backoff_base_ms ({})",
                n.backoff_max_ms,
                n.backoff_base_ms
            );
        }
        if n.sms == SmsGateway::HttpSms {
            let url = n.http_sms.url.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bail!("notifications.http_sms.url: {url:?} is not an http(s) URL (sms = \"http_sms\" needs one)");
            }
            if n.http_sms.from.trim().is_empty() {
                bail!("notifications.http_sms.from: must not be empty when sms = \"http_sms\"");
            }
        }
        if n.email == EmailGateway::Smtp {
            if n.smtp.host.trim().is_empty() {
                bail!("notifications.smtp.host: must not be empty when email = \"smtp\"");
            }
            if n.smtp.port == 0 {
                bail!("notifications.smtp.port: must not be 0");
            }
            if !n.smtp.from.contains('@') {
                bail!("notifications.smtp.from: {:?} is not an address like Kassa <bank@example.com>", n.smtp.from);
            }
        }
        Ok(())
    }

    /// The database URL: the configured one, else the SQLite file in the
    /// data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("kassa.db").display()),
        }
    }

    /// The token key's file as configured, if any (else `DataDir` uses its
    /// default and creates it).
    pub fn token_key_file(&self) -> Option<&Path> {
        self.auth.token_key_file.as_deref()
    }

    /// The card key's file as configured, if any.
    pub fn card_key_file(&self) -> Option<&Path> {
        self.auth.card_key_file.as_deref()
    }

    /// What the services need, given the token-signing key's bytes.
    pub fn settings(&self, token_key: Vec<u8>) -> Settings {
        let mut settings = Settings::new(self.bank.clone().into(), SecretBytes(token_key));
        settings.access_token_ttl_s = self.auth.access_token_ttl_s;
        settings.session_ttl_s = self.auth.session_ttl_s;
        settings.accounts_per_customer_max = self.limits.accounts_per_customer_max;
        settings.login_failures_free = self.auth.login_failures_free;
        settings.login_throttle_max_s = self.auth.login_throttle_max_s;
        settings.address_failures_max = self.auth.address_failures_max;
        settings.address_window_s = self.auth.address_window_s;
        settings.cards = self.cards.clone();
        settings.approvals = self.approvals.clone();
        settings.fx = self.fx.clone();
        settings.interest = self.interest.clone();
        settings.notifications = kassa_service::notify::NotifySettings {
            data_dir: Some(self.data_dir.clone()),
            ..self.notifications.clone()
        };
        settings
    }
}

/// The process environment's `KASSA_*` variables, for [`Config::load`].
/// Unlike `std::env::vars` this does not panic on a non-UTF-8 variable:
/// other variables are skipped, and a `KASSA_*` one is an error.
pub fn process_env() -> anyhow::Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str().filter(|key| key.starts_with("KASSA_")) else { continue };
        let value = value.into_string().map_err(|_| anyhow!("environment variable {key}: not valid UTF-8"))?;
        vars.push((key.to_owned(), value));
    }
    Ok(vars)
}

/// Reads a secret from a file, dropping the trailing newline editors and
/// `echo` add (and nothing else: spaces may be part of a secret).
pub fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn parse_bool(value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => bail!("expected true or false, got {value:?}"),
    }
}

fn parse_number<T>(value: &str) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    value.trim().parse().map_err(|error| anyhow!("not a number ({value:?}: {error})"))
}

/// A comma-separated list; blanks around items and empty items are dropped.
fn parse_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// A URL fit for logs: the user and password (`user:pw@`) and the query
/// (which may carry `password=`) are replaced by `…`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => format!("…@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _query)) => format!("{path}?…"),
        None => tail.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{tail}"),
        None => format!("{host}{tail}"),
    }
}

/// The documented example printed by `kassa config default`. Every line that
/// sets a value sets its default; a test parses it and compares it with
/// `Config::default()`.
pub const DEFAULT_TOML: &str = r#"# Kassa configuration: every setting with its default.
#
# The layers, each overriding the one before: the defaults below, this file
# (--config FILE, else ./kassa.toml when it exists), KASSA_* environment
# variables (named beside each setting; an empty one counts as unset), then
# command-line flags.
# Unknown keys are errors, so a misspelt setting cannot pass unnoticed.
#
# Secrets can be kept out of the environment with the _FILE form: the
# variable names a file whose content (less a trailing newline) is the value.
#   KASSA_DATABASE_URL_FILE  a file holding the database URL (with its password)
#   KASSA_TOKEN_KEY_FILE     the token-signing key's file (same as auth.token_key_file)
#   KASSA_CARD_KEY_FILE      the card key's file (same as auth.card_key_file)

# The data directory: SQLite database, tls/ (local CA and certificate chain),
# secrets/, and the first admin's password. KASSA_DATA_DIR, --data-dir.
data_dir = "./kassa-data"

# sqlite://PATH or postgres://USER:PASSWORD@HOST/DB. Unset means
# sqlite://<data_dir>/kassa.db. KASSA_DATABASE_URL, --database-url.
# database_url = "postgres://kassa@localhost/kassa"

# HTTP (API and web pages). Plain HTTP is served on loopback only; another
# address needs https = true or behind_proxy = true. KASSA_LISTEN, --listen.
listen = "127.0.0.1:8080"

# The terminal (ATM) protocol, always over TLS.
# KASSA_TERMINAL_LISTEN, --terminal-listen.
terminal_listen = "127.0.0.1:7443"

# Serve HTTPS with <data_dir>/tls/cert.pem instead of plain HTTP. KASSA_HTTPS.
https = false

# A reverse proxy in front terminates TLS. KASSA_BEHIND_PROXY, --behind-proxy.
behind_proxy = false

# IP addresses whose X-Forwarded-For header is believed.
# KASSA_TRUSTED_PROXIES, comma-separated.
trusted_proxies = []

[bank]
# Shown on pages, statements and to ATMs. KASSA_BANK_NAME.
name = "Kassa Bank"
# KASSA_BANK_ADDRESS.
address = "1 Main Street, Minsk"
# KASSA_BANK_PHONE.
phone = "+375170000000"
# The country profile (BY or UA): validation rules, IBAN format. KASSA_BANK_COUNTRY.
country = "BY"
# An IANA zone; "today" for daily limits and statement dates. KASSA_BANK_TIMEZONE.
timezone = "Europe/Minsk"
# Four upper-case letters inside the bank's IBANs. KASSA_BANK_CODE.
bank_code = "KASA"

[auth]
# Lifetime of an access token, 60..=900 seconds. KASSA_ACCESS_TOKEN_TTL_S.
access_token_ttl_s = 900
# Lifetime of a session and its refresh tokens (30 days). KASSA_SESSION_TTL_S.
session_ttl_s = 2592000
# The token-signing key (at least 32 bytes, hex or raw). Unset means
# <data_dir>/secrets/token.key, created on first start. Every node sharing a
# database needs the same key. KASSA_TOKEN_KEY_FILE.
# token_key_file = "/run/secrets/kassa-token.key"
# The card key (PIN hashes and CVVs are derived from it; at least 32 bytes).
# Unset means <data_dir>/secrets/card.key, created on first start. Every node
# sharing a database needs the same key: a node with another key refuses to
# start. KASSA_CARD_KEY_FILE.
# card_key_file = "/run/secrets/kassa-card.key"
# Failed sign-ins per login before answers are throttled. KASSA_LOGIN_FAILURES_FREE.
login_failures_free = 5
# The longest a login is throttled, in seconds. KASSA_LOGIN_THROTTLE_MAX_S.
login_throttle_max_s = 900
# Failed sign-ins per client address within address_window_s.
# KASSA_ADDRESS_FAILURES_MAX, KASSA_ADDRESS_WINDOW_S.
address_failures_max = 100
address_window_s = 600

[limits]
# Open accounts one customer may hold. KASSA_ACCOUNTS_PER_CUSTOMER_MAX.
accounts_per_customer_max = 8
# The largest HTTP request body, in bytes. KASSA_REQUEST_BODY_MAX_BYTES.
request_body_max_bytes = 65536

[log]
# A tracing filter: a level or directives such as "kassa=debug,info". KASSA_LOG_LEVEL.
level = "info"
# "text" for people, "json" for one object per line. KASSA_LOG_FORMAT.
format = "text"

[cards]
# The first digits of every new card number (the issuer identification
# number), 1–8 digits; the rest are random, the last a Luhn check digit.
issuer_prefix = "458522"
# How long a new card is valid: its valid-to month is this many months after
# the month it is issued in (1–120).
validity_months = 36
# The card key (PIN hashes, CVVs) is not a setting: `kassa serve` keeps it in
# <data_dir>/secrets/card.key (created on first start, 0600, hex); every node
# sharing a database needs the same file.


[approvals]
# Four-eyes thresholds and request lifetime; daily limits.
# Thresholds are minor units of the operation's currency; an operation
# strictly above its threshold waits for a second staff member, its money
# held. A cash withdrawal above this (5000.00 in a 2-decimal currency):
cash_withdrawal_over = 500000
# A staff-initiated transfer above this:
staff_transfer_over = 500000
# A credit limit set above this (1000.00):
credit_limit_over = 100000
# How long a request waits for a checker before it expires (1 day), seconds.
expiry_s = 86400
# How often overdue requests are expired and their holds released, seconds.
sweep_every_s = 60
# The least role that may approve or reject: teller, manager or admin.
approver_role = "manager"

[fx]
# Exchange rates: staleness, quotes, fee.
# A rate older than this (by its as_of time) refuses quotes and exchanges
# instead of trading at stale prices, in seconds.
rate_max_age_s = 86400
# How long a quote (POST /exchange-quotes) locks its rate, in seconds.
quote_ttl_s = 30
# The exchange fee in basis points (1/100 of a percent) of the amount
# exchanged, paid from the same account to fee income; 0 for none.
fee_basis_points = 0
# A JSON rates file read every rates_poll_s seconds; empty for none. Its form:
# {"rates": [{"base": "USD", "quote": "BYN", "buy": "3.20", "sell": "3.25",
# "unit": 1, "as_of": "2026-01-31T09:00:00Z"}]}; unit defaults to 1 and as_of
# to the file's modification time. A rate is recorded only when it changes.
rates_file = ""
rates_poll_s = 60


[interest]
# The interest job's schedule (see docs/interest.md). Run it by hand with
# `kassa jobs run interest [--as-of YYYY-MM-DD]`.
# Run the job every day at run_at for the day before.
enabled = true
# HH:MM (00:00..23:59) in the bank's time zone; anything else is refused
# at start.
run_at = "01:00"
# Let a run accrue days that are not over yet (today and later) on today's
# balance. For tests and demos only; keep false in production.
future_days_allowed = false


[notifications]
# Outbox delivery and gateways (docs/notifications.md). The outbox is always
# written; this node delivers it when enabled (any number of nodes may).
enabled = true
# Gateways: sms = "log" | "http_sms"; email = "log" | "smtp". "log" writes
# the tracing log and <data_dir>/notifications.log.
sms = "log"
email = "log"
# The worker's sleep when idle (10..=3600000); events and messages handled
# per round (1..=1000).
poll_ms = 1000
batch = 16
# A claimed message is this node's alone for lease_ms (at most a day); one
# send may take at most send_timeout_ms (1..=600000), which must be below
# lease_ms (a send that could outlive its lease waits, so it would never go).
lease_ms = 60000
send_timeout_ms = 10000
# Tries (1..=10000) before a message is dead-lettered (GET /api/v1/admin/outbox?state=dead);
# retry n waits backoff_base_ms * 2^(n-1) (base at least 1), at most
# backoff_max_ms (not below the base).
max_attempts = 8
backoff_base_ms = 2000
backoff_max_ms = 3600000

[notifications.smtp]
# tls = "tls" (port 465), "starttls" (587), or "none" (loopback hosts only).
# Empty username: no authentication. Message-ID is the message's id.
# With email = "smtp", host must not be empty, port not 0, from an address.
host = "localhost"
port = 465
tls = "tls"
username = ""
password = ""
from = "Kassa <noreply@kassa.invalid>"

[notifications.http_sms]
# A form POST (To, From, Body) with Basic Auth, in the style of Twilio's
# API; the headers Idempotency-Key and X-Message-Id carry the message id.
# With sms = "http_sms", url must be http(s) and from must not be empty.
# url = "https://api.twilio.com/2010-04-01/Accounts/<sid>/Messages.json"
url = ""
username = ""
password = ""
from = ""

[terminal]
# The terminal (ATM) protocol's limits (docs/terminal-protocol.md). Its
# address is terminal_listen above.
# A session with no frame for this long is signed out and closed.
# KASSA_TERMINAL_IDLE_TIMEOUT_S.
idle_timeout_s = 60
# A TLS handshake that takes longer is dropped.
handshake_timeout_s = 10
# Sessions at once; the next connection gets server_busy.
# KASSA_TERMINAL_MAX_SESSIONS.
max_sessions = 1024
# Requests per second per session, and the burst allowed above it.
requests_per_s = 50
request_burst = 100
"#;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn error_text(result: anyhow::Result<impl fmt::Debug>) -> String {
        format!("{:#}", result.expect_err("expected an error"))
    }

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let config = Config::default();
        assert_eq!(config.data_dir, PathBuf::from("./kassa-data"));
        assert_eq!(config.database_url(), format!("sqlite://{}", Path::new("./kassa-data/kassa.db").display()));
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.terminal_listen, "127.0.0.1:7443");
        assert!(!config.https && !config.behind_proxy && config.trusted_proxies.is_empty());
        assert_eq!(BankIdentity::from(config.bank.clone()), BankIdentity::default());
        assert_eq!(config.auth.access_token_ttl_s, 900);
        assert_eq!(config.auth.session_ttl_s, 2_592_000);
        assert_eq!(config.limits.request_body_max_bytes, 65536);
        assert_eq!(config.log.format, LogFormat::Text);
        config.validate().unwrap();
    }

    #[test]
    fn default_toml_parses_to_the_defaults() {
        assert_eq!(Config::from_toml(DEFAULT_TOML).unwrap(), Config::default());
    }

    #[test]
    fn default_toml_commented_examples_are_valid() {
        let text = DEFAULT_TOML
            .replace("# database_url = ", "database_url = ")
            .replace("# token_key_file = ", "token_key_file = ")
            .replace("# card_key_file = ", "card_key_file = ");
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.database_url.as_deref(), Some("postgres://kassa@localhost/kassa"));
        assert_eq!(config.token_key_file(), Some(Path::new("/run/secrets/kassa-token.key")));
        assert_eq!(config.card_key_file(), Some(Path::new("/run/secrets/kassa-card.key")));
    }

    #[test]
    fn default_toml_names_every_environment_variable() {
        for name in ENV_NAMES {
            assert!(DEFAULT_TOML.contains(name), "{name} is not documented");
        }
        for name in SECRET_FILES {
            assert!(DEFAULT_TOML.contains(name), "{name} is not documented");
        }
    }

    #[test]
    fn every_environment_variable_sets_something() {
        // "2" differs from every default, and is refused where it is no
        // valid value; either way the variable was not ignored.
        for name in ENV_NAMES {
            let mut config = Config::default();
            match config.apply_env(env(&[(name, "2")])) {
                Ok(()) => assert_ne!(config, Config::default(), "{name} changes nothing"),
                Err(error) => assert!(!format!("{error:#}").contains("is not a setting"), "{name}: {error:#}"),
            }
        }
    }

    #[test]
    fn settings_carry_the_configured_values() {
        let mut config = Config::default();
        config.auth.access_token_ttl_s = 300;
        config.limits.accounts_per_customer_max = 3;
        config.bank.name = "Test Bank".into();
        let settings = config.settings(vec![7; 32]);
        assert_eq!(settings.access_token_ttl_s, 300);
        assert_eq!(settings.accounts_per_customer_max, 3);
        assert_eq!(settings.bank.name, "Test Bank");
        assert_eq!(settings.token_key, SecretBytes(vec![7; 32]));
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "kassa.toml",
            "listen = \"0.0.0.0:80\"\nhttps = true\n[bank]\nname = \"Other Bank\"\n[auth]\naccess_token_ttl_s = 600\n",
        );
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(config.listen, "0.0.0.0:80");
        assert!(config.https);
        assert_eq!(config.bank.name, "Other Bank");
        assert_eq!(config.bank.country, "BY");
        assert_eq!(config.auth.access_token_ttl_s, 600);
        assert_eq!(config.auth.session_ttl_s, 2_592_000);
        config.validate().unwrap();
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let message = error_text(Config::load(Some(&dir.path().join("nope.toml")), env(&[])));
        assert!(message.contains("nope.toml"), "{message}");
    }

    #[test]
    fn unknown_and_mistyped_keys_in_the_file_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.toml", "[auth]\naccess_token_ttl = 600\n");
        let message = error_text(Config::load(Some(&path), env(&[])));
        assert!(message.contains("access_token_ttl") && message.contains("a.toml"), "{message}");

        let path = write(&dir, "b.toml", "[limits]\naccounts_per_customer_max = \"eight\"\n");
        let message = error_text(Config::load(Some(&path), env(&[])));
        assert!(message.contains("accounts_per_customer_max"), "{message}");
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "kassa.toml", "listen = \"127.0.0.1:1\"\n[log]\nformat = \"json\"\n");
        let config = Config::load(
            Some(&path),
            env(&[
                ("KASSA_LISTEN", "127.0.0.1:9000"),
                ("KASSA_DATA_DIR", "/var/lib/kassa"),
                ("KASSA_BEHIND_PROXY", "true"),
                ("KASSA_TRUSTED_PROXIES", "10.0.0.1, ::1,"),
                ("KASSA_ACCESS_TOKEN_TTL_S", "120"),
                ("KASSA_BANK_COUNTRY", "UA"),
                ("KASSA_LOG_FORMAT", "text"),
                ("KASSA_SOMETHING_ELSE", "ignored"),
                ("KASSA_DATABASE_URL", ""),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/kassa"));
        assert_eq!(config.database_url(), format!("sqlite://{}", Path::new("/var/lib/kassa/kassa.db").display()));
        assert!(config.behind_proxy);
        assert_eq!(config.trusted_proxies, vec!["10.0.0.1".to_owned(), "::1".to_owned()]);
        assert_eq!(config.auth.access_token_ttl_s, 120);
        assert_eq!(config.bank.country, "UA");
        assert_eq!(config.log.format, LogFormat::Text);
        config.validate().unwrap();
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let url_file = write(&dir, "db-url", "postgres://kassa:s3cret@db/kassa\n");
        let config = Config::load(
            Some(&write(&dir, "kassa.toml", "")),
            env(&[
                ("KASSA_DATABASE_URL_FILE", url_file.to_str().unwrap()),
                ("KASSA_TOKEN_KEY_FILE", "/run/secrets/key"),
                ("KASSA_CARD_KEY_FILE", "/run/secrets/card"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database_url(), "postgres://kassa:s3cret@db/kassa");
        assert_eq!(config.token_key_file(), Some(Path::new("/run/secrets/key")));
        assert_eq!(config.card_key_file(), Some(Path::new("/run/secrets/card")));

        let message = error_text(Config::load(
            Some(&write(&dir, "k2.toml", "")),
            env(&[("KASSA_DATABASE_URL_FILE", dir.path().join("missing").to_str().unwrap())]),
        ));
        assert!(message.contains("KASSA_DATABASE_URL_FILE") && message.contains("missing"), "{message}");

        let message = error_text(Config::load(
            Some(&write(&dir, "k3.toml", "")),
            env(&[("KASSA_DATABASE_URL_FILE", url_file.to_str().unwrap()), ("KASSA_DATABASE_URL", "sqlite://x")]),
        ));
        assert!(message.contains("both"), "{message}");
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "kassa.toml", "");
        for (key, value, expected) in [
            ("KASSA_ACCESS_TOKEN_TTL_S", "fifteen", "not a number"),
            ("KASSA_ACCOUNTS_PER_CUSTOMER_MAX", "-1", "not a number"),
            ("KASSA_HTTPS", "maybe", "expected true or false"),
            ("KASSA_LOG_FORMAT", "xml", "\"json\""),
        ] {
            let message = error_text(Config::load(Some(&path), env(&[(key, value)])));
            assert!(message.contains(key) && message.contains(expected), "{key}: {message}");
        }
    }

    #[test]
    fn validation_refuses_a_long_access_token_life() {
        let mut config = Config::default();
        config.auth.access_token_ttl_s = 901;
        let message = error_text(config.validate());
        assert!(message.contains("auth.access_token_ttl_s"), "{message}");
        config.auth.access_token_ttl_s = 59;
        assert!(config.validate().is_err());
        config.auth.access_token_ttl_s = 60;
        config.validate().unwrap();
    }

    #[test]
    fn validation_refuses_plain_http_off_loopback() {
        let mut config = Config::default();
        config.listen = "0.0.0.0:8080".into();
        let message = error_text(config.validate());
        assert!(message.contains("listen") && message.contains("behind_proxy"), "{message}");
        config.behind_proxy = true;
        config.validate().unwrap();
        config.behind_proxy = false;
        config.https = true;
        config.validate().unwrap();
        config.listen = "[::1]:8080".into();
        config.https = false;
        config.validate().unwrap();
    }

    #[test]
    fn validation_refuses_other_bad_values() {
        type Break = fn(&mut Config);
        let cases: [(&str, Break); 7] = [
            ("bank.bank_code", |c| c.bank.bank_code = "kasa".into()),
            ("bank.bank_code", |c| c.bank.bank_code = "KASSA".into()),
            ("bank.country", |c| c.bank.country = "XX".into()),
            ("terminal_listen", |c| c.terminal_listen = "localhost".into()),
            ("trusted_proxies", |c| c.trusted_proxies = vec!["proxy.example".into()]),
            ("database_url", |c| c.database_url = Some("mysql://db/kassa".into())),
            ("limits.request_body_max_bytes", |c| c.limits.request_body_max_bytes = 0),
        ];
        for (key, break_it) in cases {
            let mut config = Config::default();
            break_it(&mut config);
            let message = error_text(config.validate());
            assert!(message.starts_with(key), "{key}: {message}");
        }
    }

    #[test]
    fn validation_refuses_a_bad_interest_run_at() {
        for bad in ["1:00", "24:00", "01:60", "0100", "", "01:00:00", "aa:bb", "-1:00"] {
            let mut config = Config::default();
            config.interest.run_at = bad.into();
            let message = error_text(config.validate());
            assert!(message.starts_with("interest.run_at"), "{bad:?}: {message}");
        }
        for good in ["00:00", "23:59", "07:30"] {
            let mut config = Config::default();
            config.interest.run_at = good.into();
            config.validate().unwrap();
        }
        // From the file, too: the schedule is refused at load, not turned off.
        let message = error_text(Config::from_toml("[interest]\nrun_at = \"25:00\"\n").and_then(|c| c.validate()));
        assert!(message.contains("interest.run_at"), "{message}");
    }

    #[test]
    fn validation_refuses_nonsense_notification_settings() {
        use kassa_service::notify::{EmailGateway, SmsGateway};
        type Break = fn(&mut Config);
        let cases: [(&str, Break); 14] = [
            ("notifications.send_timeout_ms", |c| {
                c.notifications.lease_ms = 1_000;
                c.notifications.send_timeout_ms = 1_000;
            }),
            ("notifications.send_timeout_ms", |c| c.notifications.send_timeout_ms = 120_000),
            ("notifications.send_timeout_ms", |c| c.notifications.send_timeout_ms = 0),
            ("notifications.lease_ms", |c| c.notifications.lease_ms = 100_000_000),
            ("notifications.poll_ms", |c| c.notifications.poll_ms = 0),
            ("notifications.batch", |c| c.notifications.batch = 0),
            ("notifications.max_attempts", |c| c.notifications.max_attempts = 0),
            ("notifications.backoff_base_ms", |c| c.notifications.backoff_base_ms = 0),
            ("notifications.backoff_max_ms", |c| c.notifications.backoff_max_ms = 1_000),
            ("notifications.http_sms.url", |c| c.notifications.sms = SmsGateway::HttpSms),
            ("notifications.http_sms.from", |c| {
                c.notifications.sms = SmsGateway::HttpSms;
                c.notifications.http_sms.url = "https://sms.example/send".into();
            }),
            ("notifications.smtp.host", |c| {
                c.notifications.email = EmailGateway::Smtp;
                c.notifications.smtp.host = " ".into();
            }),
            ("notifications.smtp.port", |c| {
                c.notifications.email = EmailGateway::Smtp;
                c.notifications.smtp.port = 0;
            }),
            ("notifications.smtp.from", |c| {
                c.notifications.email = EmailGateway::Smtp;
                c.notifications.smtp.from = "Kassa".into();
            }),
        ];
        for (key, break_it) in cases {
            let mut config = Config::default();
            break_it(&mut config);
            let message = error_text(config.validate());
            assert!(message.starts_with(key), "{key}: {message}");
        }
        // The same settings made sane are accepted.
        let mut config = Config::default();
        config.notifications.sms = SmsGateway::HttpSms;
        config.notifications.http_sms.url = "https://sms.example/send".into();
        config.notifications.http_sms.from = "Kassa".into();
        config.notifications.email = EmailGateway::Smtp;
        config.notifications.lease_ms = 1_500;
        config.notifications.send_timeout_ms = 1_000;
        config.validate().unwrap();
    }

    #[test]
    fn debug_hides_the_database_password() {
        let config = Config {
            database_url: Some("postgres://kassa:s3cret@db.internal:5432/kassa?password=other".into()),
            ..Config::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("other"), "{debug}");
        assert!(debug.contains("postgres://…@db.internal:5432/kassa?…"), "{debug}");
        assert_eq!(redact_url("sqlite://./kassa-data/kassa.db"), "sqlite://./kassa-data/kassa.db");
    }
}
