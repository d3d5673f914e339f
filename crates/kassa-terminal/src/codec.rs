//! The wire format, pure: a line in, a typed [`Frame`] out, and replies
//! built as JSON lines. No IO and no async, so it can be fuzzed and tested
//! alone (docs/terminal-protocol.md "Frames").

use serde_json::{Map, Value};

/// The largest frame, in bytes, including its line end.
pub const FRAME_MAX_BYTES: usize = 16 * 1024;
/// The protocol versions this server speaks.
pub const PROTOCOL_VERSIONS: [u64; 1] = [1];
/// Frame ids are JSON-safe integers.
pub const ID_MAX: u64 = (1 << 53) - 1;
/// The longest page a list operation returns.
pub const PAGE_MAX: u32 = 50;
/// The page a list operation returns when no `limit` is given.
pub const PAGE_DEFAULT: u32 = 10;

/// The `clock` field of a frame, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockField {
    /// Missing, not an integer, or negative: counts as a receive of 0.
    Invalid,
    Value(u64),
    /// A number too large for 64 bits (2⁷⁰, 1e30): always out of range.
    TooLarge,
}

/// A decoded frame: its envelope and what it asks for, or why it cannot
/// be served. The envelope is read even from a frame whose body is bad, so
/// the error reply can name the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<u64>,
    pub clock: ClockField,
    pub request: Result<Request, FrameError>,
}

/// A refusal of a frame before any work: a stable code (the HTTP API's
/// where one exists), a message for people and the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl FrameError {
    pub fn new(code: &'static str, message: impl Into<String>) -> FrameError {
        FrameError { code, message: message.into(), field: None }
    }

    fn field(code: &'static str, field: &str, message: impl Into<String>) -> FrameError {
        FrameError { code, message: message.into(), field: Some(field.to_owned()) }
    }

    /// What the error reply carries besides code and message: the field,
    /// as the HTTP API's validation problems name it.
    pub fn extra(&self) -> Option<Map<String, Value>> {
        self.field.as_ref().map(|field| {
            Map::from_iter([(
                "fields".to_owned(),
                serde_json::json!([{"field": field, "code": self.code, "detail": self.message}]),
            )])
        })
    }
}

/// How a customer signs in.
#[derive(Clone, PartialEq, Eq)]
pub enum Login {
    Card { card_number: String, pin: String },
    Phone { phone: String, password: String },
    Staff { login: String, password: String, totp: Option<String> },
}

impl std::fmt::Debug for Login {
    // PINs and passwords never reach a log, even through a Debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Login::Card { .. } => f.write_str("Login::Card { .. }"),
            Login::Phone { phone, .. } => f.debug_struct("Login::Phone").field("phone", phone).finish_non_exhaustive(),
            Login::Staff { login, .. } => f.debug_struct("Login::Staff").field("login", login).finish_non_exhaustive(),
        }
    }
}

/// Where a customer's transfer goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payee {
    Account(String),
    Phone(String),
}

/// A page request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: u32,
}

/// One operation, with its fields checked for presence and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Hello { protocol_version: u64, client: Option<String>, terminal: Option<(i64, String)> },
    Login(Login),
    Resume { session_token: String },
    Balance { account: Option<String> },
    Accounts,
    Deposit { account: Option<String>, amount: String },
    Withdraw { account: Option<String>, amount: String },
    Transfer { account: Option<String>, to: Payee, amount: String, description: Option<String> },
    History { account: Option<String>, page: PageRequest },
    Logout,
    Ping,
    Customers { query: Option<String>, page: PageRequest },
    OpenAccount { customer_id: i64, kind: String, currency: String, holder_name: Option<String> },
    CloseAccount { account: String },
    Transactions { account: Option<String>, kind: Option<String>, page: PageRequest },
}

/// Who may send an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Before or without sign-in: `hello`, `login`, `resume`, `ping`.
    Anyone,
    /// A signed-in customer.
    Customer,
    /// Signed-in staff.
    Staff,
    /// Anyone signed in (`logout`).
    SignedIn,
}

impl Request {
    pub fn op(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Login(_) => "login",
            Request::Resume { .. } => "resume",
            Request::Balance { .. } => "balance",
            Request::Accounts => "accounts",
            Request::Deposit { .. } => "deposit",
            Request::Withdraw { .. } => "withdraw",
            Request::Transfer { .. } => "transfer",
            Request::History { .. } => "history",
            Request::Logout => "logout",
            Request::Ping => "ping",
            Request::Customers { .. } => "customers",
            Request::OpenAccount { .. } => "open_account",
            Request::CloseAccount { .. } => "close_account",
            Request::Transactions { .. } => "transactions",
        }
    }

    pub fn audience(&self) -> Audience {
        match self {
            Request::Hello { .. } | Request::Login(_) | Request::Resume { .. } | Request::Ping => Audience::Anyone,
            Request::Balance { .. }
            | Request::Accounts
            | Request::Deposit { .. }
            | Request::Withdraw { .. }
            | Request::Transfer { .. }
            | Request::History { .. } => Audience::Customer,
            Request::Customers { .. }
            | Request::OpenAccount { .. }
            | Request::CloseAccount { .. }
            | Request::Transactions { .. } => Audience::Staff,
            Request::Logout => Audience::SignedIn,
        }
    }

    /// Whether the operation moves money (and is therefore keyed by the
    /// session and the frame id).
    pub fn moves_money(&self) -> bool {
        matches!(self, Request::Deposit { .. } | Request::Withdraw { .. } | Request::Transfer { .. })
    }
}

/// Decodes one line (without its line end). Never panics, whatever the
/// bytes.
pub fn decode(line: &[u8]) -> Frame {
    let object = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(object)) => object,
        _ => {
            return Frame {
                id: None,
                clock: ClockField::Invalid,
                request: Err(FrameError::new("body_not_json", "a frame is one JSON object on one line")),
            };
        }
    };
    let id = object.get("id").and_then(Value::as_u64).filter(|id| *id <= ID_MAX);
    let clock = read_clock(object.get("clock"));
    let request = if object.get("id").is_some() && id.is_none() {
        Err(FrameError::field("body_invalid_field", "id", "id must be an integer from 0 to 2^53 - 1"))
    } else if id.is_none() {
        Err(FrameError::field("field_required", "id", "every request carries an id"))
    } else {
        parse_request(&object)
    };
    Frame { id, clock, request }
}

fn read_clock(value: Option<&Value>) -> ClockField {
    let Some(Value::Number(number)) = value else { return ClockField::Invalid };
    if let Some(clock) = number.as_u64() {
        return ClockField::Value(clock);
    }
    if number.is_i64() {
        return ClockField::Invalid;
    }
    // A float: serde_json reads integers beyond 64 bits (2⁷⁰) as floats.
    match number.as_f64() {
        Some(float) if float.is_finite() && float >= 18_446_744_073_709_551_616.0 => ClockField::TooLarge,
        _ => ClockField::Invalid,
    }
}

fn parse_request(object: &Map<String, Value>) -> Result<Request, FrameError> {
    if let Some(field) = nul_in(object) {
        return Err(FrameError::field("nul_character", &field, "a string holds a NUL character"));
    }
    let fields = Fields(object);
    let op = match object.get("op") {
        None => return Err(FrameError::field("op_missing", "op", "the frame has no op")),
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return Err(FrameError::field("body_invalid_field", "op", "op must be a string")),
    };
    Ok(match op {
        "hello" => {
            let protocol_version = fields.required_u64("protocol_version")?;
            let client = fields.text("client")?;
            let terminal = match (fields.int("terminal_id")?, fields.text("terminal_key")?) {
                (Some(id), Some(key)) => Some((id, key)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(FrameError::field(
                        "field_required",
                        "terminal_key",
                        "terminal_key goes with terminal_id",
                    ));
                }
                (None, Some(_)) => {
                    return Err(FrameError::field(
                        "field_required",
                        "terminal_id",
                        "terminal_id goes with terminal_key",
                    ));
                }
            };
            Request::Hello { protocol_version, client, terminal }
        }
        "login" => Request::Login(parse_login(&fields)?),
        "resume" => Request::Resume { session_token: fields.required_text("session_token")? },
        "balance" => Request::Balance { account: fields.text("account")? },
        "accounts" => Request::Accounts,
        "deposit" => Request::Deposit { account: fields.text("account")?, amount: fields.amount()? },
        "withdraw" => Request::Withdraw { account: fields.text("account")?, amount: fields.amount()? },
        "transfer" => {
            let to = match (fields.text("to_account")?, fields.text("to_phone")?) {
                (Some(account), None) => Payee::Account(account),
                (None, Some(phone)) => Payee::Phone(phone),
                (Some(_), Some(_)) => {
                    return Err(FrameError::field(
                        "payee_ambiguous",
                        "to_phone",
                        "give to_account or to_phone, not both",
                    ));
                }
                (None, None) => {
                    return Err(FrameError::field("field_required", "to_account", "give to_account or to_phone"));
                }
            };
            Request::Transfer {
                account: fields.text("account")?,
                to,
                amount: fields.amount()?,
                description: fields.text("description")?,
            }
        }
        "history" => Request::History { account: fields.text("account")?, page: fields.page()? },
        "logout" => Request::Logout,
        "ping" => Request::Ping,
        "customers" => Request::Customers { query: fields.text("query")?, page: fields.page()? },
        "open_account" => Request::OpenAccount {
            customer_id: fields.int("customer_id")?.ok_or_else(|| required("customer_id"))?,
            kind: fields.required_text("kind")?,
            currency: fields.required_text("currency")?,
            holder_name: fields.text("holder_name")?,
        },
        "close_account" => Request::CloseAccount { account: fields.required_text("account")? },
        "transactions" => {
            Request::Transactions { account: fields.text("account")?, kind: fields.text("kind")?, page: fields.page()? }
        }
        _ => return Err(FrameError::field("op_unknown", "op", "no such operation")),
    })
}

fn parse_login(fields: &Fields<'_>) -> Result<Login, FrameError> {
    if let Some(card_number) = fields.text("card_number")? {
        return Ok(Login::Card { card_number, pin: fields.required_text("pin")? });
    }
    if let Some(phone) = fields.text("phone")? {
        return Ok(Login::Phone { phone, password: fields.required_text("password")? });
    }
    if let Some(login) = fields.text("staff_login")? {
        return Ok(Login::Staff { login, password: fields.required_text("password")?, totp: fields.text("totp")? });
    }
    Err(FrameError::field(
        "field_required",
        "phone",
        "sign in with card_number + pin, phone + password or staff_login + password",
    ))
}

/// The first field holding a string with a NUL character, at any depth.
fn nul_in(object: &Map<String, Value>) -> Option<String> {
    fn holds_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(holds_nul),
            Value::Object(object) => object.iter().any(|(key, value)| key.contains('\0') || holds_nul(value)),
            _ => false,
        }
    }
    // The name is echoed in the reply: cut to 64 characters, so a 16 KiB
    // key cannot make a reply over the frame limit.
    object
        .iter()
        .find(|(key, value)| key.contains('\0') || holds_nul(value))
        .map(|(key, _)| key.chars().filter(|c| *c != '\0').take(64).collect())
}

fn required(field: &str) -> FrameError {
    FrameError::field("field_required", field, format!("{field} is required"))
}

fn wrong_type(field: &str, expected: &str) -> FrameError {
    FrameError::field("body_invalid_field", field, format!("{field} must be {expected}"))
}

struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// An optional string; `null` counts as absent.
    fn text(&self, field: &str) -> Result<Option<String>, FrameError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(wrong_type(field, "a string")),
        }
    }

    fn required_text(&self, field: &str) -> Result<String, FrameError> {
        self.text(field)?.ok_or_else(|| required(field))
    }

    fn int(&self, field: &str) -> Result<Option<i64>, FrameError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => {
                number.as_i64().filter(|value| *value >= 0).map(Some).ok_or_else(|| wrong_type(field, "a whole number"))
            }
            Some(_) => Err(wrong_type(field, "a whole number")),
        }
    }

    fn required_u64(&self, field: &str) -> Result<u64, FrameError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Err(required(field)),
            Some(Value::Number(number)) => number.as_u64().ok_or_else(|| wrong_type(field, "a whole number")),
            Some(_) => Err(wrong_type(field, "a whole number")),
        }
    }

    /// Amounts are decimal strings: a JSON number would pass through a
    /// float on many clients, so it is refused rather than guessed at.
    fn amount(&self) -> Result<String, FrameError> {
        match self.0.get("amount") {
            None | Some(Value::Null) => Err(required("amount")),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(wrong_type("amount", "a decimal string such as \"10.50\"")),
        }
    }

    fn page(&self) -> Result<PageRequest, FrameError> {
        let limit = match self.0.get("limit") {
            None | Some(Value::Null) => PAGE_DEFAULT,
            Some(Value::Number(number)) => number
                .as_u64()
                .filter(|limit| (1..=u64::from(PAGE_MAX)).contains(limit))
                .and_then(|limit| u32::try_from(limit).ok())
                .ok_or_else(|| FrameError::field("limit_out_of_range", "limit", "limit must be between 1 and 50"))?,
            Some(_) => return Err(wrong_type("limit", "a whole number")),
        };
        Ok(PageRequest { cursor: self.text("cursor")?, limit })
    }
}

/// A success reply: the envelope and the operation's fields.
pub fn reply_ok(id: Option<u64>, clock: u64, body: Value) -> Vec<u8> {
    let mut object = Map::new();
    object.insert("id".into(), id.map_or(Value::Null, Value::from));
    object.insert("clock".into(), Value::from(clock));
    object.insert("ok".into(), Value::Bool(true));
    if let Value::Object(fields) = body {
        for (key, value) in fields {
            if !matches!(key.as_str(), "id" | "clock" | "ok") {
                object.insert(key, value);
            }
        }
    }
    line(Value::Object(object))
}

/// An error reply: `{id, clock, ok: false, error: {code, message, …}}`,
/// with `extra` fields (such as `fields` or `retry_after_s`) inside `error`.
pub fn reply_error(
    id: Option<u64>,
    clock: u64,
    code: &str,
    message: &str,
    extra: Option<Map<String, Value>>,
) -> Vec<u8> {
    let mut error = Map::new();
    error.insert("code".into(), Value::from(code));
    error.insert("message".into(), Value::from(message));
    if let Some(extra) = extra {
        for (key, value) in extra {
            if !matches!(key.as_str(), "code" | "message") {
                error.insert(key, value);
            }
        }
    }
    let mut object = Map::new();
    object.insert("id".into(), id.map_or(Value::Null, Value::from));
    object.insert("clock".into(), Value::from(clock));
    object.insert("ok".into(), Value::Bool(false));
    object.insert("error".into(), Value::Object(error));
    line(Value::Object(object))
}

fn line(value: Value) -> Vec<u8> {
    // Serializing a Value with string keys cannot fail.
    let mut bytes = serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Request, FrameError> {
        decode(text.as_bytes()).request
    }

    #[test]
    fn reads_the_envelope_even_of_a_bad_frame() {
        let frame = decode(br#"{"id":7,"clock":12,"op":"fly"}"#);
        assert_eq!((frame.id, frame.clock), (Some(7), ClockField::Value(12)));
        assert_eq!(frame.request.map_err(|e| e.code), Err("op_unknown"));
    }

    #[test]
    fn clocks_that_are_not_counts_are_a_receive_of_zero_and_huge_ones_are_out_of_range() {
        for (text, expected) in [
            (r#"{"id":1,"op":"ping"}"#, ClockField::Invalid),
            (r#"{"id":1,"clock":-5,"op":"ping"}"#, ClockField::Invalid),
            (r#"{"id":1,"clock":"9","op":"ping"}"#, ClockField::Invalid),
            (r#"{"id":1,"clock":1.5,"op":"ping"}"#, ClockField::Invalid),
            (r#"{"id":1,"clock":9223372036854775808,"op":"ping"}"#, ClockField::Value(1 << 63)),
            (r#"{"id":1,"clock":1180591620717411303424,"op":"ping"}"#, ClockField::TooLarge),
            (r#"{"id":1,"clock":1e30,"op":"ping"}"#, ClockField::TooLarge),
        ] {
            assert_eq!(decode(text.as_bytes()).clock, expected, "{text}");
        }
    }

    #[test]
    fn bad_frames_get_stable_codes() {
        for (text, code) in [
            ("not json", "body_not_json"),
            ("[1,2]", "body_not_json"),
            (r#"{"clock":1,"op":"ping"}"#, "field_required"),
            (r#"{"id":-1,"op":"ping"}"#, "body_invalid_field"),
            (r#"{"id":9007199254740992,"op":"ping"}"#, "body_invalid_field"),
            (r#"{"id":1}"#, "op_missing"),
            (r#"{"id":1,"op":5}"#, "body_invalid_field"),
            (r#"{"id":1,"op":"withdraw"}"#, "field_required"),
            (r#"{"id":1,"op":"withdraw","amount":10}"#, "body_invalid_field"),
            (r#"{"id":1,"op":"balance","account":42}"#, "body_invalid_field"),
            (r#"{"id":1,"op":"login","phone":"+1\u0000"}"#, "nul_character"),
            (r#"{"id":1,"op":"login","\u0000":"x"}"#, "nul_character"),
            (r#"{"id":1,"op":"login"}"#, "field_required"),
            (r#"{"id":1,"op":"transfer","amount":"1","to_account":"a","to_phone":"b"}"#, "payee_ambiguous"),
            (r#"{"id":1,"op":"history","limit":0}"#, "limit_out_of_range"),
            (r#"{"id":1,"op":"history","limit":51}"#, "limit_out_of_range"),
            (r#"{"id":1,"op":"hello"}"#, "field_required"),
            (r#"{"id":1,"op":"hello","protocol_version":1,"terminal_id":3}"#, "field_required"),
            (
                r#"{"id":1,"op":"open_account","customer_id":-3,"kind":"current","currency":"BYN"}"#,
                "body_invalid_field",
            ),
        ] {
            assert_eq!(request(text).map_err(|e| e.code), Err(code), "{text}");
        }
    }

    #[test]
    fn good_frames_decode_to_their_operations() {
        assert_eq!(
            request(r#"{"id":1,"clock":0,"op":"hello","protocol_version":1,"terminal_id":4,"terminal_key":"k"}"#),
            Ok(Request::Hello { protocol_version: 1, client: None, terminal: Some((4, "k".into())) })
        );
        assert_eq!(
            request(r#"{"id":2,"op":"login","card_number":"4000","pin":"1234"}"#),
            Ok(Request::Login(Login::Card { card_number: "4000".into(), pin: "1234".into() }))
        );
        assert_eq!(
            request(r#"{"id":3,"op":"transfer","to_phone":"+375291112233","amount":"5.00","extra":true}"#),
            Ok(Request::Transfer {
                account: None,
                to: Payee::Phone("+375291112233".into()),
                amount: "5.00".into(),
                description: None
            })
        );
        assert_eq!(
            request(r#"{"id":4,"op":"history","cursor":"77","limit":5}"#),
            Ok(Request::History { account: None, page: PageRequest { cursor: Some("77".into()), limit: 5 } })
        );
    }

    #[test]
    fn a_field_name_echoed_in_an_error_is_cut_short() {
        let key = "k".repeat(16_000);
        let frame = format!(r#"{{"id":1,"op":"ping","{key}\u0000":1}}"#);
        let error = decode(frame.as_bytes()).request.unwrap_err();
        assert_eq!((error.code, error.field.map(|f| f.len())), ("nul_character", Some(64)));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let login = Login::Card { card_number: "4000123412341234".into(), pin: "4321".into() };
        let staff = Login::Staff { login: "admin".into(), password: "hunter22".into(), totp: Some("123456".into()) };
        let printed = format!("{login:?} {staff:?}");
        assert!(!printed.contains("4321") && !printed.contains("hunter22") && !printed.contains("123456"), "{printed}");
    }

    #[test]
    fn replies_carry_the_envelope_and_end_the_line() {
        let ok = reply_ok(Some(3), 10, serde_json::json!({"balance": "1.00", "ok": false}));
        assert_eq!(ok, b"{\"balance\":\"1.00\",\"clock\":10,\"id\":3,\"ok\":true}\n".to_vec());
        let error = reply_error(None, 11, "body_not_json", "a frame is one JSON object", None);
        let value: Value = serde_json::from_slice(&error).unwrap();
        assert_eq!(value["error"]["code"], "body_not_json");
        assert_eq!(value["id"], Value::Null);
    }
}
