//! Exchange rates (set by admins or polled from a rates file, history
//! kept), quotes that lock a rate for a short while, and exchanges between
//! a customer's own accounts through the bank's FX position accounts.
//!
//! A rate `{base, quote, unit, buy, sell}` says the bank buys `unit` of
//! `base` for `buy` of `quote` and sells them for `sell`. Rates are decimal
//! strings held as integers scaled by 10^8 ([`RATE_SCALE`]); every
//! conversion is integer arithmetic in `i128` with one rounding rule,
//! [`convert`]: the credited amount is rounded *down* to the minor unit of
//! its currency (the bank keeps the fraction), and so is the fee.
//!
//! An exchange is one linked chain in one ledger request, so it happens
//! entirely or not at all: the customer's account pays the FX position
//! account of its currency, the FX position account of the other currency
//! pays the customer's other account, and (with a fee) the first account
//! pays the fee-income account last. The journal entry (`exchange.create`)
//! travels with the chain and records the rate and both amounts; a refused
//! chain leaves only that entry, with the refusal as its outcome.

use kassa_core::AccountId;
use kassa_core::TransferId;
use kassa_core::ledger::{NewTransfer, Transfer, TransferKind};
use kassa_core::money::{Amount, AmountPolicy, Currency};
use kassa_store::StoreError;
use kassa_store::now_us;
use kassa_store::sql::{self, Row, Tx, Value};
use serde_json::json;

use crate::accounts::{resolve_account, system_account};
use crate::country::FieldProblem;
use crate::money::{self, Idempotency, Side, TransferView, check_idempotency_key, derived_id, new_id, transfer_view};
use crate::people::rfc3339;
use crate::{Bank, Caller, Page, Role, ServiceError, ServiceResult, page_cursor, page_limit};

/// Rates are held as integers scaled by this (eight decimal places).
pub const RATE_SCALE: i64 = 100_000_000;
/// The decimal places a rate may have.
const RATE_DECIMALS: usize = 8;
/// The largest rate accepted (per unit): far above any real one, small
/// enough that every conversion of a real amount fits in `i128`.
const RATE_MAX_E8: i64 = 1_000_000_000 * RATE_SCALE;
/// The largest `unit` (per 1,000,000 of the base currency).
const UNIT_MAX: i64 = 1_000_000;

/// Settings: the `[fx]` section of kassa.toml.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FxSettings {
    /// A rate older than this (by its `as_of`) refuses exchanges and quotes.
    pub rate_max_age_s: i64,
    /// How long a quote locks its rate.
    pub quote_ttl_s: i64,
    /// The exchange fee in basis points (1/100 of a percent) of the amount
    /// exchanged, charged in the from-account's currency to fee income;
    /// 0 for none.
    pub fee_basis_points: u32,
    /// A JSON rates file (`{"rates": [{base, quote, buy, sell, unit?,
    /// as_of?}]}`) read every `rates_poll_s`; empty for none. A rate
    /// without `as_of` is as old as the file (its modification time).
    pub rates_file: String,
    pub rates_poll_s: u64,
}

impl Default for FxSettings {
    fn default() -> FxSettings {
        FxSettings {
            rate_max_age_s: 86_400,
            quote_ttl_s: 30,
            fee_basis_points: 0,
            rates_file: String::new(),
            rates_poll_s: 60,
        }
    }
}

/// The largest rates file read, in bytes.
const RATES_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// Starts this feature's background task: polling the rates file, when
/// one is configured.
pub fn spawn(bank: &crate::Bank) -> Vec<tokio::task::JoinHandle<()>> {
    let path = bank.settings.fx.rates_file.trim().to_owned();
    if path.is_empty() {
        return Vec::new();
    }
    let bank = bank.clone();
    let every = std::time::Duration::from_secs(bank.settings.fx.rates_poll_s.max(1));
    vec![tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match bank.poll_rates_file(&path).await {
                Ok(changed) if changed > 0 => tracing::info!(changed, path, "rates read from the rates file"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, path, "the rates file could not be read"),
            }
        }
    })]
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesFile {
    rates: Vec<RateForm>,
}

// ------------------------------------------------------------- the maths

/// Parses a rate: a positive decimal string with at most eight decimal
/// places (`"3.2512"`, `"0.0375"`, `"42"`), exactly, as a count of 10^-8.
pub fn parse_rate(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || whole.len() > 10
        || fraction.len() > RATE_DECIMALS
        || (text.contains('.') && fraction.is_empty())
        || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut scaled: i64 = 0;
    for digit in whole.bytes().chain(fraction.bytes()).chain(std::iter::repeat_n(b'0', RATE_DECIMALS - fraction.len()))
    {
        scaled = scaled.checked_mul(10)?.checked_add(i64::from(digit - b'0'))?;
    }
    (scaled > 0 && scaled <= RATE_MAX_E8).then_some(scaled)
}

/// A rate as a decimal string: at least two decimal places, no trailing
/// zeros beyond them (`3.25`, `0.0375`, `42.00`).
pub fn format_rate(scaled: i64) -> String {
    let whole = scaled / RATE_SCALE;
    let fraction = format!("{:08}", scaled % RATE_SCALE);
    let trimmed = fraction.trim_end_matches('0');
    let shown = if trimmed.len() < 2 { &fraction[..2] } else { trimmed };
    format!("{whole}.{shown}")
}

/// Which way an exchange goes against a rate's pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The customer pays in the base currency: the bank buys it at `buy`.
    BankBuysBase,
    /// The customer pays in the quote currency: the bank sells base at `sell`.
    BankSellsBase,
}

/// Converts `amount_minor` (minor units of a currency with `from_exponent`
/// decimals) at `rate_e8` quote per `unit` base into minor units of the
/// other currency (`to_exponent` decimals), **rounded down** to a whole
/// minor unit: the one rounding rule of exchanges. `None` when a
/// product leaves `i128` or the result leaves `i64`.
///
/// Bank buys base: `credit = amount × rate / unit`;
/// bank sells base: `credit = amount × unit / rate`,
/// each with the scales of both currencies and of the rate applied exactly.
pub fn convert(
    amount_minor: i64,
    from_exponent: u8,
    to_exponent: u8,
    rate_e8: i64,
    unit: i64,
    direction: Direction,
) -> Option<i64> {
    if amount_minor < 0 || rate_e8 <= 0 || unit <= 0 {
        return None;
    }
    let amount = i128::from(amount_minor);
    let to_scale = 10_i128.checked_pow(u32::from(to_exponent))?;
    let from_scale = 10_i128.checked_pow(u32::from(from_exponent))?;
    let (numerator, denominator) = match direction {
        Direction::BankBuysBase => (
            amount.checked_mul(i128::from(rate_e8))?.checked_mul(to_scale)?,
            from_scale.checked_mul(i128::from(RATE_SCALE))?.checked_mul(i128::from(unit))?,
        ),
        Direction::BankSellsBase => (
            amount.checked_mul(i128::from(unit))?.checked_mul(i128::from(RATE_SCALE))?.checked_mul(to_scale)?,
            from_scale.checked_mul(i128::from(rate_e8))?,
        ),
    };
    // Both are non-negative, so integer division rounds down.
    i64::try_from(numerator.checked_div(denominator)?).ok()
}

/// The fee on `amount_minor` at `basis_points`, rounded down.
pub fn fee_of(amount_minor: i64, basis_points: u32) -> Option<i64> {
    let fee = i128::from(amount_minor).checked_mul(i128::from(basis_points))?.checked_div(10_000)?;
    i64::try_from(fee).ok()
}

// ------------------------------------------------------------- the shapes

/// A rate as `GET /rates` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RateView {
    pub id: i64,
    pub base: String,
    pub quote: String,
    pub unit: i64,
    pub buy: String,
    pub sell: String,
    pub as_of: String,
    pub source: String,
    /// Older than `rate_max_age_s`: exchanges at it are refused.
    pub stale: bool,
}

#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct RateForm {
    pub base: Option<String>,
    pub quote: Option<String>,
    pub buy: Option<String>,
    pub sell: Option<String>,
    /// Per how many units of `base` (1 by default; 100 for RUB, say).
    pub unit: Option<i64>,
    /// When the rate was fixed (RFC 3339); now by default.
    pub as_of: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct QuoteForm {
    pub from_currency: Option<String>,
    pub to_currency: Option<String>,
    /// Optional: an amount in `from_currency` to price.
    pub amount: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QuoteView {
    pub id: String,
    pub from_currency: String,
    pub to_currency: String,
    pub base: String,
    pub quote: String,
    pub unit: i64,
    /// The side of the rate that applies in this direction.
    pub rate: String,
    pub expires_at: String,
    /// With an amount: what it would pay, bring and cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debit_amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit_amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct ExchangeForm {
    pub from_account: Option<String>,
    pub to_account: Option<String>,
    /// In the from-account's currency.
    pub amount: Option<String>,
    pub quote_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExchangeView {
    /// The id of the chain's first transfer.
    pub id: String,
    pub from_account: i64,
    pub to_account: i64,
    pub from_currency: String,
    pub to_currency: String,
    pub base: String,
    pub quote: String,
    pub unit: i64,
    pub rate: String,
    pub debit_amount: String,
    pub credit_amount: String,
    pub fee: String,
    pub quote_id: Option<String>,
    pub transfers: Vec<TransferView>,
}

/// A rate side picked for one direction.
#[derive(Clone, Debug)]
struct Locked {
    rate_id: i64,
    base: Currency,
    quote: Currency,
    unit: i64,
    rate_e8: i64,
    direction: Direction,
}

const RATE_COLUMNS: &str = "id, base, quote, unit, buy_e8, sell_e8, as_of_us, source";

fn rate_from_row(row: &Row, now: i64, max_age_s: i64) -> Result<RateView, StoreError> {
    let as_of_us = row.int(6)?;
    Ok(RateView {
        id: row.int(0)?,
        base: row.text(1)?,
        quote: row.text(2)?,
        unit: row.int(3)?,
        buy: format_rate(row.int(4)?),
        sell: format_rate(row.int(5)?),
        as_of: rfc3339(as_of_us),
        source: row.text(7)?,
        stale: is_stale(as_of_us, now, max_age_s),
    })
}

fn is_stale(as_of_us: i64, now: i64, max_age_s: i64) -> bool {
    now.saturating_sub(as_of_us) > max_age_s.saturating_mul(1_000_000)
}

fn currency(field: &str, code: Option<&str>) -> Result<Currency, FieldProblem> {
    Currency::from_code(code.unwrap_or("").trim()).map_err(|error| FieldProblem {
        field: field.into(),
        code: if code.is_none() { "field_required" } else { error.code() },
        detail: if code.is_none() { format!("{field} is required") } else { error.to_string() },
    })
}

fn parse_amount_in(field: &str, text: Option<&str>, currency: Currency) -> Result<Amount, FieldProblem> {
    match text {
        None => {
            Err(FieldProblem { field: field.into(), code: "field_required", detail: format!("{field} is required") })
        }
        Some(text) => Amount::parse(text, currency, AmountPolicy::Positive).map_err(|error| FieldProblem {
            field: field.into(),
            code: error.code(),
            detail: error.to_string(),
        }),
    }
}

/// The newest rate between two currencies, in either order, and the side
/// of it that an exchange `from` → `to` uses.
fn current_rate(tx: &mut dyn Tx, from: Currency, to: Currency) -> Result<Option<(Locked, i64)>, ServiceError> {
    let row = tx.query_opt(
        &format!(
            "SELECT {RATE_COLUMNS} FROM fx_rates WHERE (base = $1 AND quote = $2) OR (base = $2 AND quote = $1) \
             ORDER BY id DESC LIMIT 1"
        ),
        &[Value::from(from.code()), Value::from(to.code())],
    )?;
    let Some(row) = row else { return Ok(None) };
    let base = stored_currency(&row.text(1)?)?;
    let quote = stored_currency(&row.text(2)?)?;
    let (rate_e8, direction) =
        if base == from { (row.int(4)?, Direction::BankBuysBase) } else { (row.int(5)?, Direction::BankSellsBase) };
    Ok(Some((Locked { rate_id: row.int(0)?, base, quote, unit: row.int(3)?, rate_e8, direction }, row.int(6)?)))
}

/// The amounts of an exchange of `amount` at `locked`: (credit, fee), or
/// the refusal.
fn price(amount: Amount, from: Currency, to: Currency, locked: &Locked, fee_bp: u32) -> ServiceResult<(i64, i64)> {
    let too_large = || ServiceError::Refused("amount_too_large", "the amount is too large to exchange".into());
    let credit = convert(amount.minor(), from.exponent(), to.exponent(), locked.rate_e8, locked.unit, locked.direction)
        .ok_or_else(too_large)?;
    if credit <= 0 {
        return Err(ServiceError::Refused(
            "amount_too_small",
            format!("the amount buys less than the smallest unit of {}", to.code()),
        ));
    }
    let fee = fee_of(amount.minor(), fee_bp).ok_or_else(too_large)?;
    Ok((credit, fee))
}

/// The account a reference names (money.rs's [`Side`]), with its currency.
fn side(tx: &mut dyn Tx, field: &str, reference: &str) -> Result<Option<(Side, Currency)>, ServiceError> {
    let Some(id) = resolve_account(tx, field, reference)? else { return Ok(None) };
    money::side(tx, id)?
        .map(|side| {
            let currency = stored_currency(&side.currency)?;
            Ok((side, currency))
        })
        .transpose()
}

/// A currency code read back from the database.
fn stored_currency(code: &str) -> Result<Currency, ServiceError> {
    Currency::from_code(code).map_err(|e| ServiceError::Internal(e.to_string()))
}

/// Everything an exchange decided before the ledger sees it.
struct Plan {
    from: Side,
    from_currency: Currency,
    to: Side,
    to_currency: Currency,
    amount: Amount,
    locked: Locked,
    quote_id: Option<String>,
    from_position: i64,
    to_position: i64,
    fee_income: i64,
}

/// An exchange's answer: what the journal keeps about it and its transfers.
fn view_of(meta: &ExchangeMeta, transfers: &[Transfer]) -> ExchangeView {
    ExchangeView {
        id: transfers.first().map(|t| t.id.to_string()).unwrap_or_default(),
        from_account: meta.from_account,
        to_account: meta.to_account,
        from_currency: meta.from_currency.clone(),
        to_currency: meta.to_currency.clone(),
        base: meta.base.clone(),
        quote: meta.quote.clone(),
        unit: meta.unit,
        rate: meta.rate.clone(),
        debit_amount: meta.debit_amount.clone(),
        credit_amount: meta.credit_amount.clone(),
        fee: meta.fee.clone(),
        quote_id: meta.quote_id.clone(),
        transfers: transfers.iter().map(transfer_view).collect(),
    }
}

/// What the journal keeps about an exchange (its `detail`), from which a
/// retry's answer is rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ExchangeMeta {
    customers: Vec<i64>,
    from_account: i64,
    to_account: i64,
    from_currency: String,
    to_currency: String,
    amount_minor: i64,
    rate_id: i64,
    base: String,
    quote: String,
    unit: i64,
    rate: String,
    side: String,
    debit_amount: String,
    credit_amount: String,
    fee: String,
    quote_id: Option<String>,
    transfers: Vec<String>,
}

impl Bank {
    /// The current rate of every pair, anyone may ask.
    pub async fn rates(&self) -> ServiceResult<Vec<RateView>> {
        let max_age_s = self.settings.fx.rate_max_age_s;
        let now = now_us();
        sql::read(&*self.db, move |tx| {
            tx.query(
                &format!(
                    "SELECT {RATE_COLUMNS} FROM fx_rates r WHERE r.id = \
                     (SELECT MAX(id) FROM fx_rates n WHERE n.base = r.base AND n.quote = r.quote) \
                     ORDER BY base, quote"
                ),
                &[],
            )?
            .iter()
            .map(|row| rate_from_row(row, now, max_age_s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServiceError::from)
        })
        .await
    }

    /// Every rate a pair has had, newest first (paged by rate id).
    pub async fn rate_history(
        &self,
        base: &str,
        quote: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<Page<RateView>> {
        let mut problems = Vec::new();
        let base = currency("base", Some(base)).map_err(|p| problems.push(p)).ok();
        let quote = currency("quote", Some(quote)).map_err(|p| problems.push(p)).ok();
        let (Some(base), Some(quote)) = (base, quote) else { return Err(ServiceError::Invalid(problems)) };
        let limit = page_limit(limit)?;
        let before = page_cursor(cursor)?.unwrap_or(i64::MAX);
        let max_age_s = self.settings.fx.rate_max_age_s;
        let now = now_us();
        let items = sql::read(&*self.db, move |tx| {
            tx.query(
                &format!(
                    "SELECT {RATE_COLUMNS} FROM fx_rates WHERE base = $1 AND quote = $2 AND id < $3 \
                     ORDER BY id DESC LIMIT $4"
                ),
                &[
                    Value::from(base.code()),
                    Value::from(quote.code()),
                    Value::Int(before),
                    Value::Int(i64::from(limit)),
                ],
            )?
            .iter()
            .map(|row| rate_from_row(row, now, max_age_s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServiceError::from)
        })
        .await?;
        let next_cursor =
            (items.len() == limit as usize).then(|| items.last().map(|rate| rate.id.to_string())).flatten();
        Ok(Page { items, next_cursor })
    }

    /// An admin sets a pair's rate; the previous one stays as history.
    pub async fn set_rate(&self, caller: &Caller, form: RateForm) -> ServiceResult<RateView> {
        caller.staff(Role::Admin)?;
        self.insert_rate(caller, form, "admin").await
    }

    async fn insert_rate(&self, caller: &Caller, form: RateForm, source: &'static str) -> ServiceResult<RateView> {
        let now = now_us();
        let mut problems = Vec::new();
        let base = currency("base", form.base.as_deref()).map_err(|p| problems.push(p)).ok();
        let quote = currency("quote", form.quote.as_deref()).map_err(|p| problems.push(p)).ok();
        if let (Some(base), Some(quote)) = (base, quote)
            && base == quote
        {
            problems.push(FieldProblem {
                field: "quote".into(),
                code: "same_currency",
                detail: "a rate is between two different currencies".into(),
            });
        }
        let mut rate = |field: &str, text: Option<&str>| match text.map(|text| (text, parse_rate(text.trim()))) {
            Some((_, Some(rate))) => Some(rate),
            Some((_, None)) => {
                problems.push(FieldProblem {
                    field: field.into(),
                    code: "rate_invalid",
                    detail: format!("{field} is a positive decimal string with at most 8 decimal places"),
                });
                None
            }
            None => {
                problems.push(FieldProblem {
                    field: field.into(),
                    code: "field_required",
                    detail: format!("{field} is required"),
                });
                None
            }
        };
        let buy = rate("buy", form.buy.as_deref());
        let sell = rate("sell", form.sell.as_deref());
        if let (Some(buy), Some(sell)) = (buy, sell)
            && sell < buy
        {
            problems.push(FieldProblem {
                field: "sell".into(),
                code: "rate_spread_invalid",
                detail: "the bank sells at no less than it buys: sell must be at least buy".into(),
            });
        }
        let unit = form.unit.unwrap_or(1);
        if !(1..=UNIT_MAX).contains(&unit) {
            problems.push(FieldProblem {
                field: "unit".into(),
                code: "unit_invalid",
                detail: format!("unit is between 1 and {UNIT_MAX}"),
            });
        }
        let as_of_us = match form.as_of.as_deref() {
            None => Some(now),
            Some(text) => match text.trim().parse::<jiff::Timestamp>() {
                Ok(at) if at.as_microsecond() <= now => Some(at.as_microsecond()),
                _ => {
                    problems.push(FieldProblem {
                        field: "as_of".into(),
                        code: "as_of_invalid",
                        detail: "as_of is an RFC 3339 time, not in the future".into(),
                    });
                    None
                }
            },
        };
        let (Some(base), Some(quote), Some(buy), Some(sell), Some(as_of_us), true) =
            (base, quote, buy, sell, as_of_us, problems.is_empty())
        else {
            return Err(ServiceError::Invalid(problems));
        };
        let draft = caller.audit(
            "rate.set",
            format!("rate:{}/{}", base.code(), quote.code()),
            json!({"base": base.code(), "quote": quote.code(), "unit": unit, "buy": format_rate(buy),
                   "sell": format_rate(sell), "as_of": rfc3339(as_of_us), "source": source}),
        );
        let actor = caller.actor();
        let max_age_s = self.settings.fx.rate_max_age_s;
        sql::write(&*self.db, move |tx| {
            // One direction per pair, so "the current rate" is never two.
            let reversed = tx.query_opt(
                "SELECT 1 FROM fx_rates WHERE base = $1 AND quote = $2 LIMIT 1",
                &[Value::from(quote.code()), Value::from(base.code())],
            )?;
            if reversed.is_some() {
                return Err(ServiceError::Conflict(
                    "rate_pair_reversed",
                    format!("this bank quotes the pair as {}/{}; set it that way", quote.code(), base.code()),
                ));
            }
            let row = tx.query_one(
                &format!(
                    "INSERT INTO fx_rates (base, quote, unit, buy_e8, sell_e8, source, set_by, as_of_us, created_at_us) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {RATE_COLUMNS}"
                ),
                &[
                    Value::from(base.code()),
                    Value::from(quote.code()),
                    Value::Int(unit),
                    Value::Int(buy),
                    Value::Int(sell),
                    Value::from(source),
                    Value::from(&actor),
                    Value::Int(as_of_us),
                    Value::Int(now),
                ],
            )?;
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            Ok(rate_from_row(&row, now, max_age_s)?)
        })
        .await
    }

    /// Reads the rates file once and records every rate in it that
    /// differs from the pair's current one (values or `as_of`); returns how
    /// many it recorded. A rate the rules refuse is logged and skipped.
    pub async fn poll_rates_file(&self, path: &str) -> ServiceResult<usize> {
        let owned = path.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&owned)?;
            let modified = file.metadata()?.modified()?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(file, RATES_FILE_MAX_BYTES), &mut text)?;
            Ok::<_, std::io::Error>((text, modified))
        })
        .await
        .map_err(|error| ServiceError::Internal(error.to_string()))?
        .map_err(|error| ServiceError::Unavailable(format!("rates file {path}: {error}")))?;
        let (text, modified) = read;
        let file: RatesFile = serde_json::from_str(&text)
            .map_err(|error| ServiceError::Unavailable(format!("rates file {path}: {error}")))?;
        let modified_us = modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|since| i64::try_from(since.as_micros()).ok())
            .unwrap_or_else(now_us)
            .min(now_us());
        let current = self.rates().await?;
        let system = Caller::anonymous("cli");
        let mut changed = 0;
        for mut form in file.rates {
            let as_of = form.as_of.clone().unwrap_or_else(|| rfc3339(modified_us));
            form.as_of = Some(as_of.clone());
            let same = |text: &Option<String>, shown: &str| {
                text.as_deref().and_then(|t| parse_rate(t.trim())).map(format_rate).as_deref() == Some(shown)
            };
            let unchanged = current.iter().any(|rate| {
                Some(rate.base.as_str()) == form.base.as_deref()
                    && Some(rate.quote.as_str()) == form.quote.as_deref()
                    && rate.unit == form.unit.unwrap_or(1)
                    && same(&form.buy, &rate.buy)
                    && same(&form.sell, &rate.sell)
                    && as_of.parse::<jiff::Timestamp>().ok().map(|at| rfc3339(at.as_microsecond()))
                        == Some(rate.as_of.clone())
            });
            if unchanged {
                continue;
            }
            match self.insert_rate(&system, form, "file").await {
                Ok(_) => changed += 1,
                Err(error) => tracing::warn!(%error, code = error.code(), path, "a rate in the rates file was refused"),
            }
        }
        Ok(changed)
    }

    /// A customer asks for a rate locked for `quote_ttl_s` in one
    /// direction; `POST /exchanges` may name it.
    pub async fn quote(&self, caller: &Caller, form: QuoteForm) -> ServiceResult<QuoteView> {
        let me = caller.customer()?;
        let mut problems = Vec::new();
        let from = currency("from_currency", form.from_currency.as_deref()).map_err(|p| problems.push(p)).ok();
        let to = currency("to_currency", form.to_currency.as_deref()).map_err(|p| problems.push(p)).ok();
        let (Some(from), Some(to)) = (from, to) else { return Err(ServiceError::Invalid(problems)) };
        if from == to {
            return Err(ServiceError::invalid("to_currency", "same_currency", "the two currencies are the same"));
        }
        let amount = form
            .amount
            .as_deref()
            .map(|text| parse_amount_in("amount", Some(text), from))
            .transpose()
            .map_err(|p| ServiceError::Invalid(vec![p]))?;
        let settings = self.settings.fx.clone();
        let now = now_us();
        let expires = now.saturating_add(settings.quote_ttl_s.max(1).saturating_mul(1_000_000));
        let id = format!("q_{}", crate::crypto::random_token(16)?);
        let locked = sql::write(&*self.db, {
            let id = id.clone();
            move |tx| {
                let locked = usable_rate(tx, from, to, now, settings.rate_max_age_s)?;
                tx.execute("DELETE FROM fx_quotes WHERE expires_at_us < $1", &[Value::Int(now - 3_600_000_000)])?;
                tx.execute(
                    "INSERT INTO fx_quotes (id, customer_id, from_currency, to_currency, rate_id, base, unit, rate_e8, \
                     created_at_us, expires_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &[
                        Value::from(&id),
                        Value::Int(me),
                        Value::from(from.code()),
                        Value::from(to.code()),
                        Value::Int(locked.rate_id),
                        Value::from(locked.base.code()),
                        Value::Int(locked.unit),
                        Value::Int(locked.rate_e8),
                        Value::Int(now),
                        Value::Int(expires),
                    ],
                )?;
                Ok::<_, ServiceError>(locked)
            }
        })
        .await?;
        let priced = amount
            .map(|amount| {
                price(amount, from, to, &locked, settings.fee_basis_points).map(|(credit, fee)| (amount, credit, fee))
            })
            .transpose()?;
        Ok(QuoteView {
            id,
            from_currency: from.code().into(),
            to_currency: to.code().into(),
            base: locked.base.code().into(),
            quote: locked.quote.code().into(),
            unit: locked.unit,
            rate: format_rate(locked.rate_e8),
            expires_at: rfc3339(expires),
            debit_amount: priced.map(|(amount, _, _)| amount.format(from)),
            credit_amount: priced.map(|(_, credit, _)| Amount::from_minor(credit).format(to)),
            fee: priced.map(|(_, _, fee)| Amount::from_minor(fee).format(from)),
        })
    }

    /// A customer exchanges between two own accounts of different
    /// currencies, at the current rate or a quote's: one linked chain.
    pub async fn exchange(
        &self,
        caller: &Caller,
        form: ExchangeForm,
        idempotency: Option<Idempotency>,
    ) -> ServiceResult<ExchangeView> {
        let me = caller.customer()?;
        let mut problems = Vec::new();
        for (field, value) in [("from_account", &form.from_account), ("to_account", &form.to_account)] {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                problems.push(FieldProblem {
                    field: field.into(),
                    code: "field_required",
                    detail: format!("{field} is required"),
                });
            }
        }
        if form.amount.is_none() {
            problems.push(FieldProblem {
                field: "amount".into(),
                code: "field_required",
                detail: "amount is required".into(),
            });
        }
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let ids = match &idempotency {
            Some(idempotency) => {
                check_idempotency_key(&idempotency.key)?;
                let scope = format!("{} {}", caller.actor(), idempotency.route);
                [0, 1, 2].map(|index| derived_id(&scope, &idempotency.key, index))
            }
            None => [new_id()?, new_id()?, new_id()?],
        };
        if idempotency.is_some()
            && let Some(done) = self.replay(ids[0], &form).await?
        {
            return Ok(done);
        }
        let settings = self.settings.fx.clone();
        let now = now_us();
        let plan = sql::read(&*self.db, move |tx| plan(tx, me, &form, now, &settings)).await?;
        let Plan {
            from,
            from_currency,
            to,
            to_currency,
            amount,
            locked,
            quote_id,
            from_position,
            to_position,
            fee_income,
        } = plan;
        let (credit, fee) = price(amount, from_currency, to_currency, &locked, self.settings.fx.fee_basis_points)?;
        let rate = format_rate(locked.rate_e8);
        let debit_text = amount.format(from_currency);
        let credit_text = Amount::from_minor(credit).format(to_currency);
        let fee_text = Amount::from_minor(fee).format(from_currency);
        let description = format!(
            "Exchange {debit_text} {} → {credit_text} {} at {rate} {} per {} {}",
            from_currency.code(),
            to_currency.code(),
            locked.quote.code(),
            locked.unit,
            locked.base.code()
        );
        let credit_amount = Amount::try_from_minor(credit).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let fee_amount = Amount::try_from_minor(fee).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let leg = |index: usize, debit: i64, credit: i64, amount: Amount, currency: Currency, kind: TransferKind| {
            let mut transfer = NewTransfer::single(ids[index], AccountId(debit), AccountId(credit), amount, currency);
            transfer.kind = kind;
            transfer.linked = true;
            transfer.description = if kind == TransferKind::Fee {
                format!("Exchange fee {fee_text} {} ({} bp)", from_currency.code(), self.settings.fx.fee_basis_points)
            } else {
                description.clone()
            };
            transfer
        };
        let mut transfers = vec![
            leg(0, from.id, from_position, amount, from_currency, TransferKind::Fx),
            leg(1, to_position, to.id, credit_amount, to_currency, TransferKind::Fx),
        ];
        if fee > 0 {
            transfers.push(leg(2, from.id, fee_income, fee_amount, from_currency, TransferKind::Fee));
        }
        if let Some(last) = transfers.last_mut() {
            last.linked = false;
        }
        let meta = ExchangeMeta {
            customers: vec![me],
            from_account: from.id,
            to_account: to.id,
            from_currency: from_currency.code().into(),
            to_currency: to_currency.code().into(),
            amount_minor: amount.minor(),
            rate_id: locked.rate_id,
            base: locked.base.code().into(),
            quote: locked.quote.code().into(),
            unit: locked.unit,
            rate,
            side: match locked.direction {
                Direction::BankBuysBase => "buy".into(),
                Direction::BankSellsBase => "sell".into(),
            },
            debit_amount: debit_text,
            credit_amount: credit_text,
            fee: fee_text,
            quote_id,
            transfers: transfers.iter().map(|t| t.id.to_string()).collect(),
        };
        let detail = serde_json::to_value(&meta).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let draft = caller.audit("exchange.create", format!("exchange:{}", ids[0]), detail);
        let outcomes = self.ledger.submit_journaled(transfers, Some(draft)).await?;
        let mut done = Vec::with_capacity(outcomes.len());
        let mut failure = None;
        for outcome in outcomes {
            match outcome {
                Ok(created) => done.push(created.transfer),
                Err(error) => {
                    // The chain's own reason, not its "a linked one failed".
                    let linked = error.code() == "linked_transfer_failed";
                    if failure.is_none() || (!linked && failure.as_ref().is_some_and(|(l, _)| *l)) {
                        failure = Some((linked, error));
                    }
                }
            }
        }
        if let Some((_, error)) = failure {
            return Err(match ServiceError::from(error) {
                ServiceError::Conflict("idempotency_key_reused", _) => ServiceError::Refused(
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used for a different request".into(),
                ),
                other => other,
            });
        }
        Ok(view_of(&meta, &done))
    }

    /// A keyed retry of an exchange already made: its answer, rebuilt from
    /// the journal and the transfers; a different request under the same
    /// key is refused.
    async fn replay(&self, first: TransferId, form: &ExchangeForm) -> ServiceResult<Option<ExchangeView>> {
        let subject = format!("exchange:{first}");
        let detail = sql::read(&*self.db, move |tx| {
            tx.query_opt(
                "SELECT detail FROM audit_events WHERE action = 'exchange.create' AND subject = $1 AND outcome = 'ok' \
                 ORDER BY id LIMIT 1",
                &[Value::from(&subject)],
            )?
            .map(|row| row.text(0))
            .transpose()
            .map_err(ServiceError::from)
        })
        .await?;
        let Some(detail) = detail else { return Ok(None) };
        let meta: ExchangeMeta = serde_json::from_str(&detail).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let from = stored_currency(&meta.from_currency)?;
        let same_amount = form
            .amount
            .as_deref()
            .and_then(|text| Amount::parse(text, from, AmountPolicy::Positive).ok())
            .is_some_and(|amount| amount.minor() == meta.amount_minor);
        let same_quote = form.quote_id == meta.quote_id;
        // The retry may name the accounts differently (id, account number, card
        // number): resolve each reference and compare the ids.
        let references = (form.from_account.clone(), form.to_account.clone());
        let (from_id, to_id) = sql::read(&*self.db, move |tx| {
            let mut resolve = |field: &str, reference: &Option<String>| match reference {
                Some(reference) => match resolve_account(tx, field, reference) {
                    Err(ServiceError::Invalid(_)) => Ok(None),
                    other => other,
                },
                None => Ok::<_, ServiceError>(None),
            };
            Ok::<_, ServiceError>((resolve("from_account", &references.0)?, resolve("to_account", &references.1)?))
        })
        .await?;
        if !same_amount || !same_quote || from_id != Some(meta.from_account) || to_id != Some(meta.to_account) {
            return Err(ServiceError::Refused(
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request".into(),
            ));
        }
        let mut transfers = Vec::with_capacity(meta.transfers.len());
        for id in &meta.transfers {
            let id = TransferId::parse(id).map_err(|_| ServiceError::Internal("a journaled transfer id".into()))?;
            let transfer = self
                .ledger
                .store()
                .transfer(id)
                .await?
                .ok_or_else(|| ServiceError::Internal("a journaled exchange transfer is missing".into()))?;
            transfers.push(transfer);
        }
        Ok(Some(view_of(&meta, &transfers)))
    }
}

/// The newest rate for `from` → `to`, refused when missing or stale.
fn usable_rate(tx: &mut dyn Tx, from: Currency, to: Currency, now: i64, max_age_s: i64) -> ServiceResult<Locked> {
    let (locked, as_of_us) = current_rate(tx, from, to)?.ok_or_else(|| {
        ServiceError::Refused(
            "rate_not_available",
            format!("the bank has no rate for {} and {}", from.code(), to.code()),
        )
    })?;
    if is_stale(as_of_us, now, max_age_s) {
        return Err(ServiceError::Refused(
            "rate_stale",
            format!("the {}/{} rate is out of date; try again later", locked.base.code(), locked.quote.code()),
        ));
    }
    Ok(locked)
}

/// Reads and checks everything an exchange needs.
fn plan(tx: &mut dyn Tx, me: i64, form: &ExchangeForm, now: i64, settings: &FxSettings) -> ServiceResult<Plan> {
    let not_yours = || ServiceError::NotFound("account_not_found", "no such account of yours");
    let (from, from_currency) = side(tx, "from_account", form.from_account.as_deref().unwrap_or(""))?
        .filter(|(side, _)| side.owner == Some(me))
        .ok_or_else(not_yours)?;
    let (to, to_currency) = side(tx, "to_account", form.to_account.as_deref().unwrap_or(""))?
        .filter(|(side, _)| side.owner.is_some())
        .ok_or(ServiceError::NotFound("account_not_found", "no such account"))?;
    if to.owner != Some(me) {
        return Err(ServiceError::Refused(
            "exchange_not_own_account",
            "an exchange is between your own accounts; pay someone else with a transfer".into(),
        ));
    }
    if from_currency == to_currency {
        return Err(ServiceError::Refused(
            "same_currency",
            "both accounts hold the same currency; use a transfer".into(),
        ));
    }
    let amount =
        parse_amount_in("amount", form.amount.as_deref(), from_currency).map_err(|p| ServiceError::Invalid(vec![p]))?;
    let (locked, quote_id) = match form.quote_id.as_deref() {
        None => (usable_rate(tx, from_currency, to_currency, now, settings.rate_max_age_s)?, None),
        Some(id) => {
            let row = tx
                .query_opt(
                    "SELECT q.rate_id, q.base, q.unit, q.rate_e8, q.expires_at_us, q.from_currency, q.to_currency, \
                     r.quote, r.base FROM fx_quotes q JOIN fx_rates r ON r.id = q.rate_id \
                     WHERE q.id = $1 AND q.customer_id = $2",
                    &[Value::from(id), Value::Int(me)],
                )?
                .ok_or(ServiceError::NotFound("quote_not_found", "no such quote of yours"))?;
            if row.int(4)? <= now {
                return Err(ServiceError::Refused("quote_expired", "the quote has expired; ask for a new one".into()));
            }
            if row.text(5)? != from_currency.code() || row.text(6)? != to_currency.code() {
                return Err(ServiceError::Refused(
                    "quote_mismatch",
                    format!("the quote is for {} → {}", row.text(5)?, row.text(6)?),
                ));
            }
            let base = stored_currency(&row.text(8)?)?;
            let quote = stored_currency(&row.text(7)?)?;
            let direction = if base == from_currency { Direction::BankBuysBase } else { Direction::BankSellsBase };
            let locked =
                Locked { rate_id: row.int(0)?, base, quote, unit: row.int(2)?, rate_e8: row.int(3)?, direction };
            (locked, Some(id.to_owned()))
        }
    };
    let from_position = system_account(tx, "fx_position", from_currency.code())?;
    let to_position = system_account(tx, "fx_position", to_currency.code())?;
    let fee_income = system_account(tx, "fee_income", from_currency.code())?;
    Ok(Plan { from, from_currency, to, to_currency, amount, locked, quote_id, from_position, to_position, fee_income })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code: a failure should stop the test")]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_exactly_and_format_back() {
        assert_eq!(parse_rate("3.2512"), Some(325_120_000));
        assert_eq!(parse_rate("0.00000001"), Some(1));
        assert_eq!(parse_rate("42"), Some(4_200_000_000));
        for bad in ["", "0", "0.0", "-1", "1.", ".5", "1.000000001", "1e3", " 1", "1,5", "+1", "١"] {
            assert_eq!(parse_rate(bad), None, "{bad:?}");
        }
        assert_eq!(format_rate(325_120_000), "3.2512");
        assert_eq!(format_rate(4_200_000_000), "42.00");
        assert_eq!(format_rate(1), "0.00000001");
        assert_eq!(format_rate(350_000_000), "3.50");
    }

    #[test]
    fn conversions_round_down() {
        // 100.00 USD sold to the bank at 3.2512 BYN per USD: 325.12 BYN.
        assert_eq!(convert(10_000, 2, 2, 325_120_000, 1, Direction::BankBuysBase), Some(32_512));
        // 100.00 BYN for USD at 3.2812: 30.4766… USD, rounded down.
        assert_eq!(convert(10_000, 2, 2, 328_120_000, 1, Direction::BankSellsBase), Some(3_047));
        // 1000.00 RUB sold at 3.40 BYN per 100 RUB: 34.00 BYN.
        assert_eq!(convert(100_000, 2, 2, 340_000_000, 100, Direction::BankBuysBase), Some(3_400));
        // 10.00 BYN for RUB at 3.45 per 100: 289.855… RUB.
        assert_eq!(convert(1_000, 2, 2, 345_000_000, 100, Direction::BankSellsBase), Some(28_985));
        // JPY (no decimals) and KWD (three).
        assert_eq!(convert(1_000, 0, 3, 200_000, 1, Direction::BankBuysBase), Some(2_000));
        assert_eq!(convert(i64::MAX, 2, 2, RATE_MAX_E8, 1, Direction::BankBuysBase), None);
        assert_eq!(fee_of(10_050, 150), Some(150));
        assert_eq!(fee_of(99, 100), Some(0));
    }

    /// An independent reading of a decimal rate string as a fraction
    /// `digits / 10^places`, without the module's parser.
    fn fraction(text: &str) -> (u128, u32) {
        let places = text.split_once('.').map_or(0, |(_, f)| f.len());
        (text.replace('.', "").parse().unwrap(), u32::try_from(places).unwrap())
    }

    /// Many random conversions against the definition of rounding down,
    /// checked in exact unsigned arithmetic from the rate's text: the
    /// result `c` is the one integer with `c·d ≤ n < (c+1)·d`.
    #[test]
    fn conversions_match_exact_rationals() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let amount = next() % 10_u64.pow(u32::try_from(next() % 13).unwrap()) + 1;
            let whole = next() % 100_000;
            let places = usize::try_from(next() % 9).unwrap();
            let digits = next() % 10_u64.pow(u32::try_from(places).unwrap());
            let text = if places == 0 { format!("{}", whole + 1) } else { format!("{whole}.{digits:0places$}") };
            let Some(rate_e8) = parse_rate(&text) else {
                assert_eq!(whole + digits, 0, "{text}");
                continue;
            };
            let unit = [1_u64, 10, 100, 1000, 10_000][usize::try_from(next() % 5).unwrap()];
            let from_exp = [0_u8, 2, 3][usize::try_from(next() % 3).unwrap()];
            let to_exp = [0_u8, 2, 3][usize::try_from(next() % 3).unwrap()];
            let direction = if next() % 2 == 0 { Direction::BankBuysBase } else { Direction::BankSellsBase };
            let (rate_digits, rate_places) = fraction(&text);
            let a = u128::from(amount);
            let u = u128::from(unit);
            let ten = |e: u32| 10_u128.pow(e);
            // amount/10^from × rate (or its inverse) per unit, in to-minor units.
            let (n, d) = match direction {
                Direction::BankBuysBase => {
                    (a * rate_digits * ten(u32::from(to_exp)), ten(u32::from(from_exp)) * ten(rate_places) * u)
                }
                Direction::BankSellsBase => {
                    (a * u * ten(rate_places) * ten(u32::from(to_exp)), ten(u32::from(from_exp)) * rate_digits)
                }
            };
            let got = convert(
                i64::try_from(amount).unwrap(),
                from_exp,
                to_exp,
                rate_e8,
                i64::try_from(unit).unwrap(),
                direction,
            );
            let expected = n / d;
            match got {
                Some(c) => {
                    let c = u128::try_from(c).unwrap();
                    assert!(c * d <= n && n < (c + 1) * d, "{amount} {text} {unit} {direction:?}: {c}");
                    assert_eq!(c, expected);
                }
                None => assert!(expected > u128::try_from(i64::MAX).unwrap(), "{amount} {text}: refused {expected}"),
            }
        }
    }
}
