//! Account statements: opening balance, every transfer of a date range with
//! its counterparty, closing balance; as JSON, CSV or XLSX.
//!
//! A statement covers whole days of the bank's time zone, `from` and `to`
//! included (DESIGN.md section 5). The opening balance is the posted balance
//! at the first microsecond of `from`, the closing balance the posted
//! balance after the last transfer of `to`. The lines are the transfers that
//! moved the posted balance (`single`, `post` and `reverse` operations):
//! holds and their voids do not, so they are left out, and then the opening
//! balance, plus the credits, less the debits, is the closing balance. That
//! sum is checked before a statement is handed out (a pair assertion: the
//! ledger's recorded balances against the amounts).
//!
//! The ledger keeps each account's history as a chain, newest first, so a
//! statement is read backwards in pages from the account's newest transfer
//! and turned around; a caller may watch the pages go by (the CLI shows a
//! progress bar). Every statement request that passes the checks is
//! journaled as `statement.export`.

use std::collections::HashMap;

use kassa_core::AccountId;
use kassa_core::ledger::{Transfer, TransferOp};
use kassa_core::money::{Amount, Currency};
use kassa_store::now_us;
use kassa_store::sql::{self, Value};
use serde_json::json;

use crate::accounts::{AccountView, format_minor, read_view, resolve_account};
use crate::calendar::{self, Day};
use crate::{Bank, Caller, Role, ServiceError, ServiceResult};

/// The longest statement, in days (a year, leap day included).
pub const RANGE_DAYS_MAX: i64 = 366;
/// The most lines one statement holds; a busier account asks for shorter
/// ranges. Bounds the memory a single request may take (about 100 MB).
pub const LINES_MAX: usize = 200_000;
/// Transfers read per page of history.
const PAGE: u32 = 500;

/// What a statement is asked for, as the client sent it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct StatementQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: Option<String>,
}

/// The formats a statement is rendered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementFormat {
    Json,
    Csv,
    Xlsx,
}

impl StatementFormat {
    /// Reads `format` (default `json`).
    pub fn parse(text: Option<&str>) -> ServiceResult<StatementFormat> {
        match text.map(str::trim) {
            None | Some("" | "json") => Ok(StatementFormat::Json),
            Some("csv") => Ok(StatementFormat::Csv),
            Some("xlsx") => Ok(StatementFormat::Xlsx),
            Some(_) => Err(ServiceError::invalid("format", "format_invalid", "format is json, csv or xlsx")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatementFormat::Json => "json",
            StatementFormat::Csv => "csv",
            StatementFormat::Xlsx => "xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            StatementFormat::Json => "application/json",
            StatementFormat::Csv => "text/csv; charset=utf-8; header=present",
            StatementFormat::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// Who asks, which decides which accounts they may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementScope {
    /// A customer, for an own account (someone else's is "not found").
    Own,
    /// Staff (teller and up), for any customer account.
    Staff,
    /// The command line (`kassa statement`), for any customer account.
    Cli,
}

/// The account a statement is about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatementAccount {
    pub id: i64,
    pub number: String,
    pub kind: String,
    pub currency: String,
    /// The owner's masked name ("Anna I.").
    pub owner: String,
}

/// One transfer on a statement.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatementLine {
    /// When, in the bank's zone with its offset (`2026-11-22T23:59:00+03:00`).
    pub at: String,
    /// The bank day it falls on.
    pub date: String,
    pub transfer_id: String,
    pub kind: String,
    pub description: String,
    /// The other account's number.
    pub counterparty_account: String,
    /// The other account's owner, masked ("Anna I."), or what the bank's
    /// own account is for ("cash desk").
    pub counterparty_name: String,
    /// The amount taken from the account, or `""`.
    pub debit: String,
    /// The amount paid into the account, or `""`.
    pub credit: String,
    pub balance_after: String,
    #[serde(skip)]
    pub at_us: i64,
    /// Minor units, for typed cells: negative for a debit.
    #[serde(skip)]
    pub amount_minor: i64,
    #[serde(skip)]
    pub balance_after_minor: i64,
}

/// A statement: the account, the days, the balances and the lines, oldest
/// first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    pub bank: String,
    pub timezone: String,
    pub account: StatementAccount,
    pub from: String,
    pub to: String,
    pub generated_at: String,
    pub opening_balance: String,
    pub closing_balance: String,
    pub total_debits: String,
    pub total_credits: String,
    pub count: usize,
    pub items: Vec<StatementLine>,
    #[serde(skip)]
    pub currency_exponent: u8,
    #[serde(skip)]
    pub opening_minor: i64,
    #[serde(skip)]
    pub closing_minor: i64,
    #[serde(skip)]
    pub debits_minor: i64,
    #[serde(skip)]
    pub credits_minor: i64,
}

/// How far the reading has come: `done` of `total` (microseconds of the
/// range covered, newest first).
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

/// Checks `from`, `to` (required, `YYYY-MM-DD`, `from` ≤ `to`, at most
/// [`RANGE_DAYS_MAX`] days) and `format`, naming every field that is wrong.
pub fn check_query(query: &StatementQuery) -> ServiceResult<(Day, Day, StatementFormat)> {
    let mut problems = Vec::new();
    let mut day = |field: &str, value: Option<&str>| match value.map(str::trim) {
        None | Some("") => {
            problems.push(crate::country::FieldProblem {
                field: field.into(),
                code: "date_required",
                detail: format!("{field} is required, as YYYY-MM-DD"),
            });
            None
        }
        Some(text) => match calendar::parse_day(field, text) {
            Ok(day) => Some(day),
            Err(ServiceError::Invalid(mut found)) => {
                problems.append(&mut found);
                None
            }
            Err(_) => None,
        },
    };
    let from = day("from", query.from.as_deref());
    let to = day("to", query.to.as_deref());
    let format = match StatementFormat::parse(query.format.as_deref()) {
        Ok(format) => Some(format),
        Err(ServiceError::Invalid(mut found)) => {
            problems.append(&mut found);
            None
        }
        Err(error) => return Err(error),
    };
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            problems.push(crate::country::FieldProblem {
                field: "to".into(),
                code: "range_invalid",
                detail: "to must not be before from".into(),
            });
        } else {
            let days = from.until(to).map(|span| i64::from(span.get_days())).unwrap_or(i64::MAX);
            if days >= RANGE_DAYS_MAX {
                problems.push(crate::country::FieldProblem {
                    field: "to".into(),
                    code: "range_too_long",
                    detail: format!("a statement covers at most {RANGE_DAYS_MAX} days"),
                });
            }
        }
    }
    match (from, to, format) {
        (Some(from), Some(to), Some(format)) if problems.is_empty() => Ok((from, to, format)),
        _ => Err(ServiceError::Invalid(problems)),
    }
}

/// What the bank's own account of a kind is called on a statement.
fn system_name(kind: &str) -> &'static str {
    match kind {
        "cash" => "cash desk",
        "fee_income" => "bank fees",
        "interest_expense" => "bank interest",
        "fx_position" => "currency exchange",
        _ => "bank",
    }
}

fn internal(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(error.to_string())
}

impl Bank {
    /// A customer's statement of an own account, by id.
    pub async fn statement(
        &self,
        caller: &Caller,
        scope: StatementScope,
        account: i64,
        query: &StatementQuery,
        progress: Progress<'_>,
    ) -> ServiceResult<(Statement, StatementFormat)> {
        let owner = match scope {
            StatementScope::Own => Some(caller.customer()?),
            StatementScope::Staff => {
                caller.staff(Role::Teller)?;
                None
            }
            StatementScope::Cli => {
                if caller.user.is_some() || caller.origin != "cli" {
                    return Err(ServiceError::Forbidden("forbidden", "this is for the command line"));
                }
                None
            }
        };
        // Whose account it is comes before what is wrong with the request:
        // someone else's account is "not found" whatever the query says.
        let query = query.clone();
        let caller = caller.clone();
        let (view, holder, (from, to, format)) = sql::write(&*self.db, move |tx| {
            let view = read_view(tx, account)?
                .filter(|view| owner.is_none_or(|owner| view.owner == owner))
                .ok_or(ServiceError::NotFound("account_not_found", "no such account"))?;
            let checked = check_query(&query)?;
            let (from, to, format) = checked;
            let holder = tx
                .query_opt("SELECT first_name, last_name FROM customers WHERE id = $1", &[Value::Int(view.owner)])?
                .map(|row| Ok::<_, ServiceError>(crate::mask::name(&row.text(0)?, &row.text(1)?)))
                .transpose()?
                .unwrap_or_default();
            let detail = json!({
                "account": account, "from": from.to_string(), "to": to.to_string(), "format": format.as_str(),
            });
            let draft = caller.audit("statement.export", format!("account:{account}"), detail);
            sql::journal(tx, now_us(), std::slice::from_ref(&draft))?;
            Ok::<_, ServiceError>((view, holder, checked))
        })
        .await?;
        let (start_us, end_us) = calendar::range_us(&self.zone, from, to)?;
        let statement = self.build(view, holder, (from, to), (start_us, end_us), progress).await?;
        Ok((statement, format))
    }

    /// A statement for the command line, the account given by number (or id).
    pub async fn statement_by_number(
        &self,
        caller: &Caller,
        number: &str,
        query: &StatementQuery,
        progress: Progress<'_>,
    ) -> ServiceResult<(Statement, StatementFormat)> {
        let reference = number.to_owned();
        let id = sql::read(&*self.db, move |tx| resolve_account(tx, "account", &reference))
            .await?
            .ok_or(ServiceError::NotFound("account_not_found", "no such account"))?;
        self.statement(caller, StatementScope::Cli, id, query, progress).await
    }

    async fn build(
        &self,
        view: AccountView,
        holder: String,
        (from, to): (Day, Day),
        (start_us, end_us): (i64, i64),
        progress: Progress<'_>,
    ) -> ServiceResult<Statement> {
        let currency = Currency::from_code(&view.currency).map_err(internal)?;
        let id = AccountId(view.id);
        let opening = self.ledger.balance_at(id, start_us - 1).await?;
        let closing = self.ledger.balance_at(id, end_us - 1).await?;

        let total = u64::try_from(end_us - start_us).unwrap_or(0);
        let mut transfers: Vec<Transfer> = Vec::new();
        let mut before = None;
        'pages: loop {
            let page = self.ledger.history(id, before, PAGE).await?;
            let full = page.len() == PAGE as usize;
            for transfer in page {
                before = Some(transfer.seq);
                if transfer.created_at_us >= end_us {
                    continue;
                }
                if transfer.created_at_us < start_us {
                    break 'pages;
                }
                progress(u64::try_from(end_us - transfer.created_at_us).unwrap_or(0), total);
                if matches!(transfer.op, TransferOp::Single | TransferOp::Post { .. } | TransferOp::Reverse { .. }) {
                    if transfers.len() >= LINES_MAX {
                        return Err(ServiceError::Refused(
                            "statement_too_large",
                            format!("more than {LINES_MAX} transfers: ask for fewer days"),
                        ));
                    }
                    transfers.push(transfer);
                }
            }
            if !full {
                break;
            }
        }
        progress(total, total);
        transfers.reverse();

        let others: Vec<i64> = {
            let mut ids: Vec<i64> = transfers
                .iter()
                .map(|t| if t.debit_account == id { t.credit_account.0 } else { t.debit_account.0 })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let names = self.counterparties(others).await?;

        let mut items = Vec::with_capacity(transfers.len());
        let (mut debits, mut credits, mut running) = (0_i64, 0_i64, opening);
        for transfer in &transfers {
            let debit = transfer.debit_account == id;
            let other = if debit { transfer.credit_account.0 } else { transfer.debit_account.0 };
            let minor = transfer.amount.minor();
            let balance_after = transfer.balance_after_for(id);
            let signed = if debit { -minor } else { minor };
            running = running.checked_add(signed).ok_or_else(|| internal("a statement balance overflowed"))?;
            if debit {
                debits = debits.checked_add(minor).ok_or_else(|| internal("statement debits overflowed"))?;
            } else {
                credits = credits.checked_add(minor).ok_or_else(|| internal("statement credits overflowed"))?;
            }
            if running != balance_after {
                return Err(internal(format!("the statement does not add up at transfer {}", transfer.id)));
            }
            let zoned = jiff::Timestamp::from_microsecond(transfer.created_at_us)
                .map_err(internal)?
                .to_zoned(self.zone.clone());
            let (number, name) = names.get(&other).cloned().unwrap_or_default();
            let amount = Amount::from_minor(minor).format(currency);
            items.push(StatementLine {
                at: zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                date: zoned.date().to_string(),
                transfer_id: transfer.id.to_string(),
                kind: transfer.kind.as_str().to_owned(),
                description: transfer.description.clone(),
                counterparty_account: number,
                counterparty_name: name,
                debit: if debit { amount.clone() } else { String::new() },
                credit: if debit { String::new() } else { amount },
                balance_after: Amount::from_minor(balance_after).format(currency),
                at_us: transfer.created_at_us,
                amount_minor: signed,
                balance_after_minor: balance_after,
            });
        }
        if running != closing {
            return Err(internal("the statement's lines do not lead to its closing balance"));
        }
        Ok(Statement {
            bank: self.settings.bank.name.clone(),
            timezone: self.settings.bank.timezone.clone(),
            account: StatementAccount {
                id: view.id,
                number: view.number,
                kind: view.kind,
                currency: view.currency,
                owner: holder,
            },
            from: from.to_string(),
            to: to.to_string(),
            generated_at: crate::people::rfc3339(now_us()),
            opening_balance: format_minor(i128::from(opening), currency),
            closing_balance: format_minor(i128::from(closing), currency),
            total_debits: format_minor(i128::from(debits), currency),
            total_credits: format_minor(i128::from(credits), currency),
            count: items.len(),
            items,
            currency_exponent: currency.exponent(),
            opening_minor: opening,
            closing_minor: closing,
            debits_minor: debits,
            credits_minor: credits,
        })
    }

    /// Number and masked owner of each account, read in chunks.
    async fn counterparties(&self, ids: Vec<i64>) -> ServiceResult<HashMap<i64, (String, String)>> {
        let mut names = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(200) {
            let chunk = chunk.to_vec();
            let rows = sql::read(&*self.db, move |tx| {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let values: Vec<Value> = chunk.iter().map(|id| Value::Int(*id)).collect();
                tx.query(
                    &format!(
                        "SELECT a.id, a.number, a.kind, c.first_name, c.last_name FROM accounts a \
                         LEFT JOIN account_details d ON d.account_id = a.id \
                         LEFT JOIN customers c ON c.id = d.customer_id WHERE a.id IN ({})",
                        marks.join(", ")
                    ),
                    &values,
                )?
                .iter()
                .map(|row| {
                    let name = match (row.opt_text(3)?, row.opt_text(4)?) {
                        (Some(first), Some(last)) => crate::mask::name(&first, &last),
                        _ => system_name(&row.text(2)?).to_owned(),
                    };
                    Ok((row.int(0)?, (row.text(1)?, name)))
                })
                .collect::<Result<Vec<_>, ServiceError>>()
            })
            .await?;
            names.extend(rows);
        }
        Ok(names)
    }
}

// ---------------------------------------------------------------- rendering

/// The file name a statement is saved under.
pub fn file_name(statement: &Statement, format: StatementFormat) -> String {
    let number: String = statement.account.number.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("statement-{number}-{}-{}.{}", statement.from, statement.to, format.as_str())
}

/// The statement in `format`.
pub fn render(statement: &Statement, format: StatementFormat) -> ServiceResult<Vec<u8>> {
    match format {
        StatementFormat::Json => serde_json::to_vec_pretty(statement).map_err(internal),
        StatementFormat::Csv => Ok(csv(statement).into_bytes()),
        StatementFormat::Xlsx => xlsx(statement),
    }
}

/// The columns of the CSV and of the XLSX sheet.
pub const COLUMNS: [&str; 10] = [
    "date_time",
    "transfer_id",
    "kind",
    "description",
    "counterparty_account",
    "counterparty_name",
    "debit",
    "credit",
    "balance",
    "currency",
];

/// One CSV field, quoted as RFC 4180 says when it holds a comma, a quote,
/// CR or LF. Text that a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`, a tab or CR) is prefixed with `'`; only free text
/// (descriptions and names) goes through this, the amounts are written as
/// the numbers they are (a leading `-` there is a sign, not a formula).
pub fn csv_text(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    csv_field(&text)
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

/// Local date-time as a spreadsheet shows it: `2026-11-22 23:59:00`.
fn local_time(at: &str) -> String {
    at.get(..19).unwrap_or(at).replacen('T', " ", 1)
}

/// A rectangular table: a header, the opening balance, the transfers, the
/// totals and the closing balance, told apart by `kind`
/// (`opening_balance`, `totals`, `closing_balance`).
fn csv(statement: &Statement) -> String {
    let mut out = String::with_capacity(200 * (statement.items.len() + 4));
    let currency = &statement.account.currency;
    let mut line = |fields: &[String]| {
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    };
    line(&COLUMNS.map(str::to_owned));
    let summary = |day: &str, kind: &str, label: &str, debit: &str, credit: &str, balance: &str| {
        [
            day.to_owned(),
            String::new(),
            kind.to_owned(),
            label.to_owned(),
            String::new(),
            String::new(),
            debit.to_owned(),
            credit.to_owned(),
            balance.to_owned(),
            currency.clone(),
        ]
    };
    line(&summary(&statement.from, "opening_balance", "Opening balance", "", "", &statement.opening_balance));
    for item in &statement.items {
        line(&[
            local_time(&item.at),
            item.transfer_id.clone(),
            item.kind.clone(),
            csv_text(&item.description),
            csv_field(&item.counterparty_account),
            csv_text(&item.counterparty_name),
            item.debit.clone(),
            item.credit.clone(),
            item.balance_after.clone(),
            currency.clone(),
        ]);
    }
    line(&summary(&statement.to, "totals", "Totals", &statement.total_debits, &statement.total_credits, ""));
    line(&summary(&statement.to, "closing_balance", "Closing balance", "", "", &statement.closing_balance));
    out
}

/// A decimal amount as the spreadsheet number it is. The text was made by
/// `Amount::format`, so it parses; read as text, not computed, so no
/// floating-point arithmetic touches money.
fn number(minor: i64, exponent: u8) -> f64 {
    xlsx_number(&format_with_exponent(minor, exponent)).unwrap_or_default()
}

/// A decimal amount's text (`"-1250.50"`) as an XLSX number cell's value,
/// the one place money becomes a float: spreadsheets store IEEE doubles,
/// which hold a decimal of up to 15 digits exactly. Read from the text, so
/// nothing is computed in floating point. `None` for text that is not a
/// number (write it as a string then).
pub fn xlsx_number(decimal: &str) -> Option<f64> {
    decimal.parse::<f64>().ok()
}

/// The XLSX number format of amounts in the currency `code` (thousands
/// grouped, its own decimals); two decimals for a code the bank does not
/// know.
pub fn xlsx_money_format_of(code: &str) -> String {
    xlsx_money_format(Currency::from_code(code).map_or(2, |currency| currency.exponent()))
}

/// The XLSX number format of amounts with `exponent` decimals, thousands
/// grouped: `#,##0.00` for kopecks and cents, `#,##0` for a currency
/// without minor units.
fn xlsx_money_format(exponent: u8) -> String {
    match usize::from(exponent) {
        0 => "#,##0".to_owned(),
        decimals => format!("#,##0.{}", "0".repeat(decimals)),
    }
}

fn format_with_exponent(minor: i64, exponent: u8) -> String {
    let digits = minor.unsigned_abs().to_string();
    let sign = if minor < 0 { "-" } else { "" };
    let exponent = usize::from(exponent);
    if exponent == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = exponent + 1);
    let (whole, fraction) = padded.split_at(padded.len() - exponent);
    format!("{sign}{whole}.{fraction}")
}

fn excel_time(at_us: i64, zone: &jiff::tz::TimeZone) -> ServiceResult<rust_xlsxwriter::ExcelDateTime> {
    let zoned = jiff::Timestamp::from_microsecond(at_us).map_err(internal)?.to_zoned(zone.clone());
    excel_day(zoned.date())?
        .and_hms(
            u16::try_from(zoned.hour()).map_err(internal)?,
            u8::try_from(zoned.minute()).map_err(internal)?,
            u8::try_from(zoned.second()).map_err(internal)?,
        )
        .map_err(internal)
}

fn excel_day(day: Day) -> ServiceResult<rust_xlsxwriter::ExcelDateTime> {
    rust_xlsxwriter::ExcelDateTime::from_ymd(
        u16::try_from(day.year()).map_err(internal)?,
        u8::try_from(day.month()).map_err(internal)?,
        u8::try_from(day.day()).map_err(internal)?,
    )
    .map_err(internal)
}

/// The same table as the CSV, on a sheet named `Statement`, with real date
/// cells and numbers in the currency's decimals. Text cells are strings,
/// never formulas, so the CSV's formula guard is not needed here.
fn xlsx(statement: &Statement) -> ServiceResult<Vec<u8>> {
    use rust_xlsxwriter::{Format, Workbook};
    let zone = calendar::zone(&statement.timezone)?;
    let money = Format::new().set_num_format(xlsx_money_format(statement.currency_exponent));
    let money_bold = money.clone().set_bold();
    let when = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let day_format = Format::new().set_num_format("yyyy-mm-dd");
    let bold = Format::new().set_bold();
    let exponent = statement.currency_exponent;
    let from: Day = statement.from.parse().map_err(internal)?;
    let to: Day = statement.to.parse().map_err(internal)?;

    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("Statement").map_err(internal)?;
    for (col, title) in (0_u16..).zip(COLUMNS) {
        sheet.write_string_with_format(0, col, title, &bold).map_err(internal)?;
    }
    let currency = statement.account.currency.as_str();
    let mut row: u32 = 1;
    sheet.write_datetime_with_format(row, 0, excel_day(from)?, &day_format).map_err(internal)?;
    sheet.write_string(row, 2, "opening_balance").map_err(internal)?;
    sheet.write_string(row, 3, "Opening balance").map_err(internal)?;
    sheet.write_number_with_format(row, 8, number(statement.opening_minor, exponent), &money).map_err(internal)?;
    sheet.write_string(row, 9, currency).map_err(internal)?;
    for item in &statement.items {
        row = row.checked_add(1).ok_or_else(|| internal("too many rows"))?;
        sheet.write_datetime_with_format(row, 0, excel_time(item.at_us, &zone)?, &when).map_err(internal)?;
        sheet.write_string(row, 1, &item.transfer_id).map_err(internal)?;
        sheet.write_string(row, 2, &item.kind).map_err(internal)?;
        sheet.write_string(row, 3, &item.description).map_err(internal)?;
        sheet.write_string(row, 4, &item.counterparty_account).map_err(internal)?;
        sheet.write_string(row, 5, &item.counterparty_name).map_err(internal)?;
        let column = if item.amount_minor < 0 { 6 } else { 7 };
        let amount = number(item.amount_minor.checked_abs().ok_or_else(|| internal("amount overflow"))?, exponent);
        sheet.write_number_with_format(row, column, amount, &money).map_err(internal)?;
        sheet.write_number_with_format(row, 8, number(item.balance_after_minor, exponent), &money).map_err(internal)?;
        sheet.write_string(row, 9, currency).map_err(internal)?;
    }
    row = row.checked_add(1).ok_or_else(|| internal("too many rows"))?;
    sheet.write_datetime_with_format(row, 0, excel_day(to)?, &day_format).map_err(internal)?;
    sheet.write_string_with_format(row, 2, "totals", &bold).map_err(internal)?;
    sheet.write_string_with_format(row, 3, "Totals", &bold).map_err(internal)?;
    sheet.write_number_with_format(row, 6, number(statement.debits_minor, exponent), &money_bold).map_err(internal)?;
    sheet.write_number_with_format(row, 7, number(statement.credits_minor, exponent), &money_bold).map_err(internal)?;
    sheet.write_string(row, 9, currency).map_err(internal)?;
    row = row.checked_add(1).ok_or_else(|| internal("too many rows"))?;
    sheet.write_datetime_with_format(row, 0, excel_day(to)?, &day_format).map_err(internal)?;
    sheet.write_string(row, 2, "closing_balance").map_err(internal)?;
    sheet.write_string(row, 3, "Closing balance").map_err(internal)?;
    sheet.write_number_with_format(row, 8, number(statement.closing_minor, exponent), &money).map_err(internal)?;
    sheet.write_string(row, 9, currency).map_err(internal)?;
    sheet.set_column_width(0, 20).map_err(internal)?;
    sheet.set_column_width(1, 38).map_err(internal)?;
    sheet.set_column_width(3, 40).map_err(internal)?;
    sheet.set_column_width(4, 30).map_err(internal)?;
    workbook.save_to_buffer().map_err(internal)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_text("rent, may"), "\"rent, may\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_text("+1"), "'+1");
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_text("plain"), "plain");
    }

    #[test]
    fn amounts_become_their_decimal_numbers() {
        assert_eq!(format_with_exponent(12_345, 2), "123.45");
        assert_eq!(format_with_exponent(-5, 2), "-0.05");
        assert_eq!(format_with_exponent(7, 0), "7");
        assert_eq!(format_with_exponent(1_234, 3), "1.234");
        assert_eq!(number(0, 2).to_string(), "0");
        assert_eq!(number(-150, 2).to_string(), "-1.5");
    }

    #[test]
    fn ranges_are_checked() {
        let query = |from: &str, to: &str| StatementQuery {
            from: Some(from.into()),
            to: Some(to.into()),
            format: Some("csv".into()),
        };
        assert!(check_query(&query("2026-01-01", "2026-12-31")).is_ok());
        let code = |q: StatementQuery| match check_query(&q).unwrap_err() {
            ServiceError::Invalid(problems) => problems.iter().map(|p| p.code).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(code(query("2026-01-02", "2026-01-01")), ["range_invalid"]);
        assert_eq!(code(query("2025-01-01", "2026-01-02")), ["range_too_long"]);
        assert_eq!(code(query("2026-02-30", "x")), ["date_invalid", "date_invalid"]);
        assert_eq!(code(StatementQuery::default()), ["date_required", "date_required"]);
        let mut bad = query("2026-01-01", "2026-01-01");
        bad.format = Some("pdf".into());
        assert_eq!(code(bad), ["format_invalid"]);
    }
}
