//! The non-interactive mode: one command a line (docs/atm.md, "Scripts").
//!
//! Secrets never appear in a script: a password, PIN or one-time code is
//! named by where to read it (`password-env VAR`, `pin-file PATH`), and the
//! output echoes the operation only, never the request's fields.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde_json::{Map, Value, json};

use super::wire::{Reply, WireError};
use super::{Bank, describe_refusal, plain};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Print each reply as its raw JSON.
    pub json: bool,
    /// Go on after a refused command.
    pub keep_going: bool,
    /// Print each clock tick.
    pub show_clock: bool,
}

/// One parsed line: an operation and its request fields.
#[derive(Clone, PartialEq)]
pub struct Command {
    pub op: String,
    pub fields: Map<String, Value>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The fields may hold a password or PIN.
        f.debug_struct("Command").field("op", &self.op).finish_non_exhaustive()
    }
}

/// Where secrets come from; the process environment and files, or a map in tests.
pub trait Secrets {
    fn env(&self, name: &str) -> Option<String>;
}

#[derive(Debug)]
pub struct ProcessEnv;

impl Secrets for ProcessEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

fn secret(kind: &str, source: &str, name: Option<&str>, secrets: &dyn Secrets) -> Result<String, String> {
    let name = name.ok_or_else(|| format!("`{kind}-{source}` needs a name after it"))?;
    let value = match source {
        "env" => secrets.env(name).ok_or_else(|| format!("the environment variable {name} is not set"))?,
        "file" => std::fs::read_to_string(name).map_err(|error| format!("reading {name}: {error}"))?,
        _ => return Err(format!("write `{kind}-env VAR` or `{kind}-file PATH`")),
    };
    let value = value.trim_end_matches(['\r', '\n']).to_owned();
    if value.is_empty() {
        return Err(format!("the {kind} from {name} is empty"));
    }
    Ok(value)
}

/// Reads `KIND-env VAR` / `KIND-file PATH` from the words.
fn secret_words<'a>(
    words: &mut impl Iterator<Item = &'a str>,
    kind: &str,
    secrets: &dyn Secrets,
) -> Result<String, String> {
    let word = words.next().ok_or_else(|| format!("expected `{kind}-env VAR` or `{kind}-file PATH`"))?;
    let source = word
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('-'))
        .ok_or_else(|| format!("expected `{kind}-env VAR` or `{kind}-file PATH`, not `{word}`"))?;
    secret(kind, source, words.next(), secrets)
}

fn fields(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect()
}

/// Parses one line; `Ok(None)` for a blank line or a `#` comment.
pub fn parse(line: &str, secrets: &dyn Secrets) -> Result<Option<Command>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let Some(op) = words.next() else { return Ok(None) };
    let mut next = |what: &str| words.next().map(str::to_owned).ok_or_else(|| format!("`{op}` needs {what}"));
    let command = |op: &str, fields: Map<String, Value>| Ok(Some(Command { op: op.to_owned(), fields }));
    match op {
        "hello" | "logout" | "ping" | "accounts" => {
            let rest: Vec<&str> = line.split_whitespace().skip(1).collect();
            if !rest.is_empty() {
                return Err(format!("`{op}` takes no arguments"));
            }
            command(op, Map::new())
        }
        "login" => {
            let mut words = line.split_whitespace().skip(1);
            let how = words.next().ok_or("`login` needs `card`, `phone` or `staff`")?;
            let who = words.next().ok_or_else(|| format!("`login {how}` needs a number or login"))?;
            let mut request = match how {
                "card" => {
                    fields(&[("card_number", json!(who)), ("pin", json!(secret_words(&mut words, "pin", secrets)?))])
                }
                "phone" => fields(&[
                    ("phone", json!(who)),
                    ("password", json!(secret_words(&mut words, "password", secrets)?)),
                ]),
                "staff" => fields(&[
                    ("staff_login", json!(who)),
                    ("password", json!(secret_words(&mut words, "password", secrets)?)),
                ]),
                _ => return Err(format!("`login {how}`: write `login card`, `login phone` or `login staff`")),
            };
            if how == "staff" && words.clone().next().is_some() {
                request.insert("totp".into(), json!(secret_words(&mut words, "totp", secrets)?));
            }
            if let Some(extra) = words.next() {
                return Err(format!("`login`: unexpected `{extra}`"));
            }
            command("login", request)
        }
        "balance" | "close_account" => {
            let account = words.next();
            if op == "close_account" && account.is_none() {
                return Err("`close_account` needs an account number".into());
            }
            command(op, account.map(|account| fields(&[("account", json!(account))])).unwrap_or_default())
        }
        "deposit" | "withdraw" => {
            let amount = next("an amount")?;
            let mut request = fields(&[("amount", json!(amount))]);
            if let Some(account) = words.next() {
                request.insert("account".into(), json!(account));
            }
            command(op, request)
        }
        "transfer" => {
            let to = next("`to_phone PHONE` or `to_account ACCOUNT`")?;
            if to != "to_phone" && to != "to_account" {
                return Err(format!("`transfer`: write `to_phone PHONE` or `to_account ACCOUNT`, not `{to}`"));
            }
            let recipient = next("a recipient")?;
            let amount = next("an amount")?;
            let mut request = fields(&[(to.as_str(), json!(recipient)), ("amount", json!(amount))]);
            let description: Vec<&str> = words.collect();
            if !description.is_empty() {
                request.insert("description".into(), json!(description.join(" ")));
            }
            command(op, request)
        }
        "history" | "customers" | "transactions" => {
            // `history [ACCOUNT] [limit N] [cursor C]`, `customers [QUERY…]`, `transactions [ACCOUNT]`.
            let mut request = Map::new();
            let mut query = Vec::new();
            let rest: Vec<&str> = words.collect();
            let mut index = 0;
            while index < rest.len() {
                match (rest[index], rest.get(index + 1)) {
                    ("limit", Some(limit)) => {
                        let limit: u64 =
                            limit.parse().map_err(|_| format!("`limit` must be a number, not `{limit}`"))?;
                        request.insert("limit".into(), json!(limit));
                        index += 2;
                    }
                    ("cursor", Some(cursor)) => {
                        request.insert("cursor".into(), json!(cursor));
                        index += 2;
                    }
                    ("kind", Some(kind)) if op == "transactions" => {
                        request.insert("kind".into(), json!(kind));
                        index += 2;
                    }
                    (word, _) => {
                        query.push(word);
                        index += 1;
                    }
                }
            }
            if !query.is_empty() {
                let key = if op == "customers" { "query" } else { "account" };
                if op != "customers" && query.len() > 1 {
                    return Err(format!("`{op}`: unexpected `{}`", query[1]));
                }
                request.insert(key.into(), json!(query.join(" ")));
            }
            command(op, request)
        }
        "open_account" => {
            let customer = next("a customer id")?;
            let customer: u64 =
                customer.parse().map_err(|_| format!("the customer id must be a number, not `{customer}`"))?;
            let kind = next("a kind (current, savings, debit_card)")?;
            let currency = next("a currency")?;
            let mut request =
                fields(&[("customer_id", json!(customer)), ("kind", json!(kind)), ("currency", json!(currency))]);
            let holder: Vec<&str> = words.collect();
            if !holder.is_empty() {
                request.insert("holder_name".into(), json!(holder.join(" ")));
            }
            command(op, request)
        }
        "send" => {
            // `send OP {JSON fields}`: any request, for testing the server; no secrets here.
            let raw_op = next("an operation")?;
            let rest = line.splitn(3, char::is_whitespace).nth(2).unwrap_or("").trim();
            let request = match rest {
                "" => Map::new(),
                text => match serde_json::from_str(text) {
                    Ok(Value::Object(map)) => map,
                    _ => return Err("`send OP` takes a JSON object after the operation".into()),
                },
            };
            command(&raw_op, request)
        }
        _ => Err(format!("unknown command `{op}`")),
    }
}

/// The human line for a reply: `[request clock → reply clock] op: what happened`.
pub fn describe(op: &str, reply: &Reply) -> Vec<String> {
    let clocks = format!("[{} → {}]", reply.request_clock, reply.clock);
    let body = match &reply.body {
        Err(refusal) => return vec![format!("{clocks} {op}: refused: {}", describe_refusal(refusal))],
        Ok(body) => body,
    };
    let get = |name: &str| plain(body.get(name));
    let mut lines = Vec::new();
    let head = match op {
        "hello" => {
            let terminal = match body.get("terminal") {
                Some(Value::Object(terminal)) => {
                    format!(", terminal {} (#{})", plain(terminal.get("name")), plain(terminal.get("id")))
                }
                _ => String::new(),
            };
            format!(
                "bank {}, protocol {}, server clock {}{terminal}",
                get("bank"),
                get("protocol_version"),
                get("server_clock")
            )
        }
        "login" | "resume" => {
            let account = match body.get("account") {
                Some(Value::Object(account)) => format!(
                    ", account {} balance {} {}",
                    plain(account.get("account")),
                    plain(account.get("balance")),
                    plain(account.get("currency"))
                ),
                _ => String::new(),
            };
            format!("signed in as {} ({}){account}", get("name"), get("role"))
        }
        "balance" => format!(
            "account {}: balance {} {}, available {}",
            get("account"),
            get("balance"),
            get("currency"),
            get("available")
        ),
        "deposit" | "withdraw" | "transfer" => {
            let transfer = body.get("transfer").and_then(Value::as_object);
            let field = |name: &str| plain(transfer.and_then(|transfer| transfer.get(name)));
            let mut text = format!(
                "transfer {} {} {} {} ({})",
                field("id"),
                field("kind"),
                field("amount"),
                field("currency"),
                field("state")
            );
            if body.contains_key("balance") {
                text.push_str(&format!(", balance {} {}", get("balance"), get("currency")));
            }
            text
        }
        "logout" => "signed out".into(),
        "ping" => "pong".into(),
        "open_account" | "close_account" => format!("account {}", describe_object(body.get("account"))),
        _ if body.contains_key("items") => {
            let items = body.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            for item in &items {
                lines.push(format!("  {}", describe_item(op, item)));
            }
            match body.get("next_cursor").and_then(Value::as_str) {
                Some(cursor) => format!("{} items, next cursor {cursor}", items.len()),
                None => format!("{} items", items.len()),
            }
        }
        _ => describe_object(Some(&Value::Object(body.clone()))),
    };
    lines.insert(0, format!("{clocks} {op}: {head}"));
    lines
}

/// `key=value` for the scalar fields of an object.
fn describe_object(value: Option<&Value>) -> String {
    match value {
        Some(Value::Object(object)) => object
            .iter()
            .filter(|(_, value)| !value.is_object() && !value.is_array())
            .map(|(key, value)| format!("{key}={}", plain(Some(value))))
            .collect::<Vec<_>>()
            .join(" "),
        other => plain(other),
    }
}

/// One line for an item of `history`, `customers`, `transactions` or `accounts`.
pub fn describe_item(op: &str, item: &Value) -> String {
    let get = |name: &str| plain(item.get(name));
    match op {
        "history" => {
            let transfer = item.get("transfer").unwrap_or(item);
            let field = |name: &str| plain(transfer.get(name));
            let sign = if get("direction") == "debit" { "-" } else { "+" };
            format!(
                "{} {sign}{} {} balance after {} {}",
                field("created_at"),
                field("amount"),
                field("currency"),
                get("balance_after"),
                field("description")
            )
            .trim_end()
            .to_owned()
        }
        "customers" => {
            format!("#{} {} {} {} {}", get("id"), get("first_name"), get("last_name"), get("phone"), get("status"))
        }
        "transactions" => format!(
            "{} {} {} {} #{} → #{} ({})",
            get("id"),
            get("created_at"),
            get("amount"),
            get("currency"),
            get("debit_account"),
            get("credit_account"),
            get("state")
        ),
        "accounts" => format!(
            "{} {} {} {} ({}{})",
            get("account"),
            get("kind"),
            get("balance"),
            get("currency"),
            get("status"),
            if item.get("is_default") == Some(&Value::Bool(true)) { ", default" } else { "" }
        ),
        _ => describe_object(Some(item)),
    }
}

fn write_line(out: &mut dyn Write, line: &str) -> anyhow::Result<()> {
    writeln!(out, "{line}")?;
    Ok(())
}

/// Runs a script: each line's reply is printed; a refusal stops the script
/// (exit 1) unless `keep_going`. A `hello` is sent first when the script
/// does not start with one. A bad line is a failure like a refusal.
pub async fn run<B: Bank>(
    bank: &mut B,
    input: impl BufRead,
    out: &mut dyn Write,
    options: &Options,
) -> anyhow::Result<ExitCode> {
    let mut greeted = false;
    let mut failed = false;
    for (number, line) in input.lines().enumerate() {
        let line = line?;
        let command = match parse(&line, &ProcessEnv) {
            Ok(None) => continue,
            Ok(Some(command)) => command,
            Err(problem) => {
                write_line(out, &format!("line {}: {problem}", number + 1))?;
                failed = true;
                if options.keep_going {
                    continue;
                }
                break;
            }
        };
        if !greeted && command.op != "hello" {
            let ok = step(bank, "hello", Map::new(), out, options).await?;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        greeted = true;
        let ok = step(bank, &command.op, command.fields, out, options).await?;
        if !ok {
            failed = true;
            if !options.keep_going {
                break;
            }
        }
    }
    out.flush()?;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Sends one command and prints its reply; whether it succeeded.
async fn step<B: Bank>(
    bank: &mut B,
    op: &str,
    fields: Map<String, Value>,
    out: &mut dyn Write,
    options: &Options,
) -> anyhow::Result<bool> {
    let result = bank.call(op, fields).await;
    if options.show_clock {
        for tick in bank.take_ticks() {
            write_line(out, &format!("clock: {tick}"))?;
        }
    }
    match result {
        Ok(reply) => {
            if options.json {
                write_line(out, &reply.raw.to_string())?;
            } else {
                for line in describe(op, &reply) {
                    write_line(out, &line)?;
                }
            }
            Ok(reply.is_ok())
        }
        Err(error @ WireError::PinMismatch { .. }) => Err(error.into()),
        Err(error) => {
            write_line(out, &format!("{op}: {error}"))?;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<&'static str, &'static str>);

    impl Secrets for Fake {
        fn env(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|value| (*value).to_owned())
        }
    }

    #[test]
    fn parses_the_language() {
        let secrets = Fake(HashMap::from([("PW", "s3cret"), ("PIN", "1234"), ("OTP", "123456")]));
        let parse = |line: &str| parse(line, &secrets);
        assert_eq!(parse("  # comment").unwrap(), None);
        assert_eq!(parse("").unwrap(), None);
        let login = parse("login phone +375291234567 password-env PW").unwrap().unwrap();
        assert_eq!(login.op, "login");
        assert_eq!(login.fields.get("password"), Some(&json!("s3cret")));
        assert!(!format!("{login:?}").contains("s3cret"));
        let card = parse("login card 4000001234567899 pin-env PIN").unwrap().unwrap();
        assert_eq!(card.fields.get("pin"), Some(&json!("1234")));
        let staff = parse("login staff admin password-env PW totp-env OTP").unwrap().unwrap();
        assert_eq!(staff.fields.get("totp"), Some(&json!("123456")));
        assert!(parse("login phone +1 password s3cret").is_err(), "a secret in the script text is refused");
        assert!(parse("login phone +1 password-env NOPE").unwrap_err().contains("NOPE"));
        let transfer = parse("transfer to_phone +375291234567 3.00 for lunch").unwrap().unwrap();
        assert_eq!(transfer.fields.get("to_phone"), Some(&json!("+375291234567")));
        assert_eq!(transfer.fields.get("description"), Some(&json!("for lunch")));
        assert!(parse("transfer to +1 3").is_err());
        assert_eq!(parse("deposit 10.00").unwrap().unwrap().fields.get("amount"), Some(&json!("10.00")));
        let history = parse("history limit 5").unwrap().unwrap();
        assert_eq!(history.fields.get("limit"), Some(&json!(5)));
        let customers = parse("customers Ivan Petrov").unwrap().unwrap();
        assert_eq!(customers.fields.get("query"), Some(&json!("Ivan Petrov")));
        let open = parse("open_account 7 debit_card BYN").unwrap().unwrap();
        assert_eq!(open.fields.get("customer_id"), Some(&json!(7)));
        assert!(parse("open_account x current BYN").is_err());
        assert!(parse("logout now").is_err());
        assert!(parse("fly").is_err());
        let raw = parse(r#"send balance {"account": "X"}"#).unwrap().unwrap();
        assert_eq!((raw.op.as_str(), raw.fields.get("account")), ("balance", Some(&json!("X"))));
    }
}
