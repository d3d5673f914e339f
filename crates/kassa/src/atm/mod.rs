//! `kassa atm`: a client for the terminal port (docs/atm.md). Interactive
//! on a terminal (an ATM screen drawn with ratatui), or a line language
//! read from `--script FILE` or from standard input when that is not a
//! terminal.
//!
//! - `wire`: the protocol client (TLS, frames, Lamport clock, resume);
//! - `ui`: the screens, a state machine fed with keys and replies;
//! - `script`: the line language;
//! - here: the arguments, the wording of refusals and amount validation,
//!   shared by both modes.

use std::future::Future;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Map, Value};

pub mod script;
pub mod ui;
pub mod wire;

use wire::{Client, Hello, Reply, Tick, TrustConfig, WireError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bank's terminal port, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub connect: String,
    /// The CA certificate to verify the server against (PEM); default
    /// `<data-dir>/tls/ca.pem`, else trust on first use.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The bank's data directory, for its `tls/ca.pem`.
    #[arg(long, env = "KASSA_DATA_DIR", default_value = "./kassa-data")]
    pub data_dir: PathBuf,
    /// Act as this registered terminal (with --terminal-key-file).
    #[arg(long, requires = "terminal_key_file")]
    pub terminal_id: Option<u64>,
    /// A file holding the registered terminal's key.
    #[arg(long, requires = "terminal_id")]
    pub terminal_key_file: Option<PathBuf>,
    /// Run the commands of this file (`-` for standard input) instead of the screen.
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// In script mode, print each reply as the raw JSON it arrived as.
    #[arg(long)]
    pub json: bool,
    /// In script mode, go on after a refused command (the exit code still says one failed).
    #[arg(long)]
    pub keep_going: bool,
    /// Show every tick of the logical clock (send and receive).
    #[arg(long)]
    pub show_clock: bool,
}

/// What the screens and the script runner need from a bank connection; the
/// real [`Client`] implements it, and tests give a fake.
pub trait Bank {
    fn call(&mut self, op: &str, fields: Map<String, Value>) -> impl Future<Output = Result<Reply, WireError>>;
    /// The clock ticks since the last call.
    fn take_ticks(&mut self) -> Vec<Tick>;
}

impl Bank for Client {
    fn call(&mut self, op: &str, fields: Map<String, Value>) -> impl Future<Output = Result<Reply, WireError>> {
        Client::call(self, op, fields)
    }

    fn take_ticks(&mut self) -> Vec<Tick> {
        Client::take_ticks(self)
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let trust = TrustConfig::resolve(args.ca_cert.as_deref(), &args.data_dir)?;
    let terminal = match (args.terminal_id, &args.terminal_key_file) {
        (Some(id), Some(file)) => {
            let key = std::fs::read_to_string(file)
                .with_context(|| format!("reading the terminal key {}", file.display()))?
                .trim()
                .to_owned();
            if key.is_empty() {
                anyhow::bail!("the terminal key file {} is empty", file.display());
            }
            Some((id, key))
        }
        _ => None,
    };
    let hello = Hello { client: format!("kassa-atm/{}", env!("CARGO_PKG_VERSION")), terminal };
    let interactive = args.script.is_none() && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut client = Client::connect(&args.connect, trust, hello)
        .await
        .with_context(|| format!("connecting to {}", args.connect))?;
    if interactive {
        return ui::run(&mut client, args.show_clock).await;
    }
    let options = script::Options { json: args.json, keep_going: args.keep_going, show_clock: args.show_clock };
    let stdout = std::io::stdout();
    match args.script.as_deref() {
        Some(path) if path.as_os_str() != "-" => {
            let file = std::fs::File::open(path).with_context(|| format!("opening the script {}", path.display()))?;
            script::run(&mut client, std::io::BufReader::new(file), &mut stdout.lock(), &options).await
        }
        _ => script::run(&mut client, std::io::stdin().lock(), &mut stdout.lock(), &options).await,
    }
}

/// What a refusal code means, in words for the person at the machine.
pub fn refusal_text(code: &str) -> &'static str {
    match code {
        "insufficient_funds" => "Insufficient funds: there is not enough money in the account for this.",
        "daily_limit_exceeded" => "This would go over the account's daily limit.",
        "invalid_credentials" => "The login or password is not right.",
        "totp_required" => "A one-time code from your authenticator is needed.",
        "totp_invalid" => "The one-time code is not right.",
        "too_many_attempts" => "Too many failed attempts. Please wait and try again later.",
        "card_not_found" => "This card is not known to the bank.",
        "card_lost" => "This card has been reported lost and cannot be used.",
        "card_expired" => "This card has expired.",
        "pin_wrong" => "Wrong PIN.",
        "pin_blocked" => "The PIN is blocked after too many wrong tries. Please contact the bank.",
        "pin_not_set" => "No PIN has been set for this card yet.",
        "account_blocked" => "The account is blocked.",
        "account_closed" => "The account is closed.",
        "account_not_found" => "No such account.",
        "recipient_not_found" => "No customer with that phone number (or no account in this currency).",
        "currency_mismatch" => "The accounts are in different currencies.",
        "same_account" => "The payer and the recipient are the same account.",
        "amount_invalid" => "The amount is not valid for this currency.",
        "forbidden" => "Your role may not do this.",
        "customers_only" => "Only customers can do this.",
        "terminal_required" => "This needs a registered ATM (card sign-in, cash deposit and withdrawal).",
        "terminal_unknown" => "This ATM is not registered with the bank, or it is disabled.",
        "unauthorized" => "Please sign in first.",
        "invalid_token" => "The session has ended. Please sign in again.",
        "hello_required" => "The connection was not set up (hello first).",
        "upgrade_required" => "This client's protocol version is not supported by the bank.",
        "too_many_requests" => "Too many requests. Please slow down.",
        "server_busy" => "The bank is busy. Please try again later.",
        "idle_timeout" => "The session was idle too long and was closed.",
        "clock_out_of_range" => "The bank refused the request's logical clock.",
        "idempotency_key_reused" => "This request number was already used for something else.",
        "field_required" | "body_invalid_field" | "body_not_json" => "The request was not understood.",
        "internal_error" => "The bank could not do this just now; nothing was changed.",
        _ => "The bank refused the request.",
    }
}

/// A refusal in one line: the words, the tries left or wait if any, and the code.
pub fn describe_refusal(refusal: &wire::Refusal) -> String {
    let mut text = refusal_text(&refusal.code).to_owned();
    if let Some(tries) = refusal.detail.get("tries_left").and_then(Value::as_u64) {
        text.push_str(&format!(" {tries} tries left."));
    }
    if let Some(seconds) = refusal.detail.get("retry_after_s").and_then(Value::as_u64) {
        text.push_str(&format!(" Try again in {seconds} s."));
    }
    // Where the bank's own words add a figure (what is available, how many
    // tries are left when no `tries_left` field says so), show them too.
    let figures = matches!(refusal.code.as_str(), "insufficient_funds" | "daily_limit_exceeded" | "amount_invalid")
        || (refusal.code == "pin_wrong" && !refusal.detail.contains_key("tries_left"));
    if figures && !refusal.message.is_empty() {
        text.push_str(&format!(" ({})", refusal.message));
    }
    format!("{text} [{}]", refusal.code)
}

/// Why an amount typed at the machine is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountProblem {
    Empty,
    NotANumber,
    TooManyDecimals(u32),
    Zero,
    TooLarge,
}

impl AmountProblem {
    pub fn text(self) -> String {
        match self {
            AmountProblem::Empty => "Please enter an amount.".into(),
            AmountProblem::NotANumber => "Use digits and at most one decimal point.".into(),
            AmountProblem::TooManyDecimals(0) => "This currency has no decimals.".into(),
            AmountProblem::TooManyDecimals(decimals) => format!("At most {decimals} digits after the point."),
            AmountProblem::Zero => "The amount must be more than zero.".into(),
            AmountProblem::TooLarge => "The amount is too large.".into(),
        }
    }
}

/// Checks an amount as typed: digits with at most one decimal point, at
/// most `decimals` digits after it, more than zero. Returns it as the
/// protocol's decimal string.
pub fn validate_amount(text: &str, decimals: u32) -> Result<String, AmountProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AmountProblem::Empty);
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (text.contains('.') && fraction.is_empty()) {
        return Err(AmountProblem::NotANumber);
    }
    if fraction.len() > decimals as usize {
        return Err(AmountProblem::TooManyDecimals(decimals));
    }
    // 15 digits before the point keep every amount far inside an i64 of minor units.
    if whole.trim_start_matches('0').len() > 15 {
        return Err(AmountProblem::TooLarge);
    }
    if whole.bytes().chain(fraction.bytes()).all(|byte| byte == b'0') {
        return Err(AmountProblem::Zero);
    }
    Ok(text.to_owned())
}

/// The number of decimals a money string shows (`"120.50"` → 2), which is
/// the currency's exponent on this protocol.
pub fn decimals_of(amount: &str) -> u32 {
    amount.split_once('.').map_or(0, |(_, fraction)| u32::try_from(fraction.len()).unwrap_or(0))
}

/// A short text for a JSON value: strings without quotes, `—` for null.
pub fn plain(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(validate_amount("10", 2), Ok("10".into()));
        assert_eq!(validate_amount("10.5", 2), Ok("10.5".into()));
        assert_eq!(validate_amount("0.01", 2), Ok("0.01".into()));
        assert_eq!(validate_amount("", 2), Err(AmountProblem::Empty));
        assert_eq!(validate_amount("1.234", 2), Err(AmountProblem::TooManyDecimals(2)));
        assert_eq!(validate_amount("1.5", 0), Err(AmountProblem::TooManyDecimals(0)));
        assert_eq!(validate_amount("0.00", 2), Err(AmountProblem::Zero));
        assert_eq!(validate_amount("1.2.3", 2), Err(AmountProblem::NotANumber));
        assert_eq!(validate_amount(".5", 2), Err(AmountProblem::NotANumber));
        assert_eq!(validate_amount("5.", 2), Err(AmountProblem::NotANumber));
        assert_eq!(validate_amount("-5", 2), Err(AmountProblem::NotANumber));
        assert_eq!(validate_amount("1e3", 2), Err(AmountProblem::NotANumber));
        assert_eq!(validate_amount("1234567890123456", 2), Err(AmountProblem::TooLarge));
        assert_eq!(decimals_of("120.50"), 2);
        assert_eq!(decimals_of("120"), 0);
    }
}
