//! The staff console at `/staff`: customers and their accounts (status,
//! limits, statements), the cash desk, all transactions with filters,
//! approvals, rates, staff users and the audit journal.
//!
//! As on the customer's pages, a handler reads its form, calls one `Bank`
//! method with the caller and renders the answer: the services decide
//! what each role may do, and a refusal becomes the 403 page. The only
//! check made here is the console's door: a visitor who is not staff is
//! sent to sign in (anonymous) or shown 403 (a customer) before any page.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kassa_service::accounts::AccountView;
use kassa_service::approvals::{ApprovalFilter, ApprovalView};
use kassa_service::fx::{RateForm, RateView};
use kassa_service::journal::{JournalEvent, JournalFilter};
use kassa_service::limits::{LimitsForm, LimitsView};
use kassa_service::money::{CashForm, Idempotency, TransactionFilter, TransferView};
use kassa_service::people::{Customer, StaffForm, StaffUser};
use kassa_service::statements::{self, StatementQuery, StatementScope};
use kassa_service::{Page, ServiceError};
use serde::Deserialize;

use crate::WebState;
use crate::account::short_time;
use crate::page::{Ctx, Errors, FormData, html, message_page, redirect, service_error_page};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/staff", get(home))
        .route("/staff/customers", get(customers))
        .route("/staff/customers/{id}", get(customer))
        .route("/staff/accounts/{id}", get(account))
        .route("/staff/accounts/{id}/status", post(account_status))
        .route("/staff/accounts/{id}/limits", post(account_limits))
        .route("/staff/accounts/{id}/statement", post(account_statement))
        .route("/staff/cash", get(cash_page).post(cash))
        .route("/staff/transactions", get(transactions))
        .route("/staff/transactions.csv", get(transactions_csv))
        .route("/staff/transactions.xlsx", get(transactions_xlsx_route))
        .route("/staff/approvals", get(approvals))
        .route("/staff/approvals/{id}/decide", post(decide))
        .route("/staff/rates", get(rates_page).post(set_rate))
        .route("/staff/users", get(users_page).post(create_user))
        .route("/staff/users/{id}/status", post(user_status))
        .route("/staff/audit", get(audit))
}

/// The console's door: anonymous visitors sign in first, customers are
/// not let in. Everything past it is the services' decision.
fn door(ctx: &Ctx) -> Option<Response> {
    if !ctx.signed_in() {
        return Some(redirect("/login"));
    }
    (!ctx.is_staff()).then(|| message_page(ctx, StatusCode::FORBIDDEN, "staff.only"))
}

/// A path's numeric id; anything else is "not found", never a 5xx.
fn id_of(raw: &str) -> Result<i64, ServiceError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or(ServiceError::NotFound("not_found", "no such page"))
}

/// The query string's fields, as a form (filters are GET forms).
fn query_form(ctx: &Ctx) -> FormData {
    FormData::parse(ctx.here.split_once('?').map_or("", |(_, q)| q).as_bytes())
}

/// The numbers of the accounts a list names by id, for people to read:
/// a customer account's number, or `None` for the bank's own accounts
/// (the cash desk, fees), which have no page.
async fn account_numbers(s: &WebState, ctx: &Ctx, ids: impl Iterator<Item = i64>) -> HashMap<i64, Option<String>> {
    let mut numbers = HashMap::new();
    for id in ids {
        if numbers.contains_key(&id) {
            continue;
        }
        let number = s.bank.account(&ctx.caller, id).await.ok().map(|account| account.number);
        numbers.insert(id, number);
    }
    numbers
}

/// Builds `path?name=value&…` from the non-empty pairs.
fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(name, value);
    }
    let query = query.finish();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
}

/// A text input of a filter or form, with its label and inline error.
#[derive(Clone, Debug)]
struct Input {
    name: &'static str,
    label: String,
    kind: &'static str,
    value: String,
    mode: &'static str,
}

fn input(ctx: &Ctx, form: &FormData, name: &'static str, kind: &'static str) -> Input {
    let mode = if name.contains("amount") || name == "buy" || name == "sell" { "decimal" } else { "" };
    Input {
        name,
        label: ctx.t(&format!("staff.field.{name}")).to_owned(),
        kind,
        value: form.get(name).unwrap_or("").to_owned(),
        mode,
    }
}

/// A flash message named in the query (`?done=rate_set`), translated from
/// `staff.done.<key>`.
fn flash(ctx: &Ctx) -> String {
    query_form(ctx)
        .text("done")
        .filter(|key| key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .and_then(|key| ctx.maybe(&format!("staff.done.{key}")).map(str::to_owned))
        .unwrap_or_default()
}

// -------------------------------------------------------------- home

async fn home(ctx: Ctx) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    redirect("/staff/customers")
}

// --------------------------------------------------------- customers

#[derive(Template)]
#[template(path = "staff_customers.html")]
struct CustomersPage<'a> {
    c: &'a Ctx,
    q: String,
    found: Option<Page<Customer>>,
    more: String,
    errors: Errors,
}

async fn customers(State(s): State<WebState>, ctx: Ctx) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let form = query_form(&ctx);
    let q = form.text("q").unwrap_or_default();
    let cursor = form.text("cursor");
    let (found, errors) = if q.is_empty() {
        (None, Errors::none())
    } else {
        match s.bank.search_customers(&ctx.caller, Some(&q), cursor.as_deref(), Some(25)).await {
            Ok(page) => (Some(page), Errors::none()),
            Err(error @ ServiceError::Invalid(_)) => (None, Errors::from_service(&ctx, &error)),
            Err(error) => return service_error_page(&ctx, &error),
        }
    };
    let more = found
        .as_ref()
        .and_then(|p| p.next_cursor.as_deref())
        .map(|next| link("/staff/customers", &[("q", &q), ("cursor", next)]))
        .unwrap_or_default();
    html(&CustomersPage { c: &ctx, q, found, more, errors })
}

#[derive(Template)]
#[template(path = "staff_customer.html")]
struct CustomerPage<'a> {
    c: &'a Ctx,
    person: Customer,
    accounts: Vec<AccountView>,
}

async fn customer(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let loaded = async {
        let id = id_of(&raw)?;
        let person = s.bank.staff_customer(&ctx.caller, id).await?;
        let accounts = s.bank.accounts(&ctx.caller, Some(id), None, Some(100)).await?.items;
        Ok::<_, ServiceError>((person, accounts))
    }
    .await;
    match loaded {
        Ok((person, accounts)) => html(&CustomerPage { c: &ctx, person, accounts }),
        Err(error) => service_error_page(&ctx, &error),
    }
}

// ----------------------------------------------------------- account

#[derive(Template)]
#[template(path = "staff_account.html")]
struct AccountPage<'a> {
    c: &'a Ctx,
    account: AccountView,
    limits: LimitsView,
    flash: String,
    errors: Errors,
    inputs: Vec<Input>,
    statement_errors: Errors,
    statement_from: String,
    statement_to: String,
    history: String,
}

async fn account_page(
    s: &WebState,
    ctx: &Ctx,
    raw: &str,
    errors: Errors,
    form: &FormData,
    statement: Errors,
) -> Response {
    let loaded = async {
        let id = id_of(raw)?;
        let account = s.bank.account(&ctx.caller, id).await?;
        let limits = s.bank.account_limits(&ctx.caller, id).await?;
        Ok::<_, ServiceError>((account, limits))
    }
    .await;
    let (account, limits) = match loaded {
        Ok(found) => found,
        Err(error) => return service_error_page(ctx, &error),
    };
    let mut inputs = vec![
        input(ctx, form, "daily_withdrawal", "text"),
        input(ctx, form, "daily_transfer", "text"),
        input(ctx, form, "credit_limit", "text"),
    ];
    for field in &mut inputs {
        field.mode = "decimal";
    }
    let today = s.bank.today();
    let statement_from = form.text("from").unwrap_or_else(|| format!("{:04}-{:02}-01", today.year(), today.month()));
    let statement_to = form.text("to").unwrap_or_else(|| today.to_string());
    let history = link("/staff/transactions", &[("account", &account.number)]);
    html(&AccountPage {
        c: ctx,
        flash: flash(ctx),
        account,
        limits,
        errors,
        inputs,
        statement_errors: statement,
        statement_from,
        statement_to,
        history,
    })
}

async fn account(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    account_page(&s, &ctx, &raw, Errors::none(), &FormData::default(), Errors::none()).await
}

async fn account_status(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>, form: FormData) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let status = form.text("status").unwrap_or_default();
    let done = match id_of(&raw) {
        Ok(id) => s.bank.set_account_status(&ctx.caller, id, &status).await,
        Err(error) => Err(error),
    };
    match done {
        Ok(view) => redirect(&format!("/staff/accounts/{}?done=status_{}", view.id, view.status)),
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Refused(..))) => {
            account_page(&s, &ctx, &raw, Errors::from_service(&ctx, &error), &FormData::default(), Errors::none()).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

async fn account_limits(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>, form: FormData) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let limits = LimitsForm {
        daily_withdrawal: form.text("daily_withdrawal"),
        daily_transfer: form.text("daily_transfer"),
        credit_limit: form.text("credit_limit"),
    };
    let done = match id_of(&raw) {
        Ok(id) => s.bank.set_account_limits(&ctx.caller, id, limits).await,
        Err(error) => Err(error),
    };
    match done {
        Ok(view) if view.approval.is_some() => redirect(&format!("/staff/accounts/{}?done=limits_held", view.account)),
        Ok(view) => redirect(&format!("/staff/accounts/{}?done=limits", view.account)),
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Refused(..))) => {
            account_page(&s, &ctx, &raw, Errors::from_service(&ctx, &error), &form, Errors::none()).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

/// A staff statement of any customer account (CSV or XLSX): the report
/// the console exports, rendered by the same code as the customer's.
async fn account_statement(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>, form: FormData) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let query = StatementQuery { from: form.text("from"), to: form.text("to"), format: form.text("format") };
    let rendered = async {
        let id = id_of(&raw)?;
        let (statement, format) =
            s.bank.statement(&ctx.caller, StatementScope::Staff, id, &query, &mut |_, _| {}).await?;
        let name = statements::file_name(&statement, format);
        // Rendering a large XLSX is CPU work: off the request threads.
        let body = tokio::task::spawn_blocking(move || statements::render(&statement, format))
            .await
            .map_err(|error| ServiceError::Internal(error.to_string()))??;
        Ok::<_, ServiceError>((name, format.content_type(), body))
    }
    .await;
    match rendered {
        Ok((name, content_type, body)) => download(body, content_type, &name),
        Err(error @ ServiceError::Invalid(_)) => {
            account_page(&s, &ctx, &raw, Errors::none(), &form, Errors::from_service(&ctx, &error)).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

fn download(body: Vec<u8>, content_type: &'static str, name: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---------------------------------------------------------- cash desk

#[derive(Template)]
#[template(path = "staff_cash.html")]
struct CashPage<'a> {
    c: &'a Ctx,
    flash: String,
    held: String,
    errors: Errors,
    inputs: Vec<Input>,
    currency: String,
    key: String,
}

fn cash_form(ctx: &Ctx, form: &FormData, errors: Errors) -> Response {
    let held = query_form(ctx).text("approval").filter(|id| id.bytes().all(|b| b.is_ascii_digit())).unwrap_or_default();
    let inputs = vec![
        input(ctx, form, "account", "text"),
        input(ctx, form, "amount", "text"),
        input(ctx, form, "description", "text"),
    ];
    // A fresh key per form: a double submit moves the money once.
    let key = kassa_service::crypto::random_token(18).unwrap_or_default();
    let currency = form.text("currency").unwrap_or_else(|| "BYN".into());
    html(&CashPage { c: ctx, flash: flash(ctx), held, errors, inputs, currency, key })
}

async fn cash_page(ctx: Ctx) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    cash_form(&ctx, &FormData::default(), Errors::none())
}

async fn cash(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let deposit = match form.get("operation") {
        Some("deposit") => true,
        Some("withdrawal") => false,
        _ => {
            let mut errors = Errors::none();
            errors.fields.insert("operation".into(), ctx.t("error.field_required").to_owned());
            return cash_form(&ctx, &form, errors);
        }
    };
    let request = CashForm {
        account: form.text("account"),
        amount: form.text("amount"),
        currency: form.text("currency"),
        description: form.text("description"),
    };
    let idempotency = form.text("key").map(|key| Idempotency { key, route: "POST /staff/cash".into() });
    match s.bank.cash(&ctx.caller, deposit, request, idempotency).await {
        Ok(answer) if answer["object"] == "approval" => {
            redirect(&format!("/staff/cash?done=cash_held&approval={}", answer["id"].as_i64().unwrap_or(0)))
        }
        Ok(_) if deposit => redirect("/staff/cash?done=cash_deposited"),
        Ok(_) => redirect("/staff/cash?done=cash_withdrawn"),
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Refused(..) | ServiceError::NotFound(..))) => {
            cash_form(&ctx, &form, Errors::from_service(&ctx, &error))
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

// ------------------------------------------------------- transactions

#[derive(Template)]
#[template(path = "staff_transactions.html")]
struct TransactionsPage<'a> {
    c: &'a Ctx,
    inputs: Vec<Input>,
    kind: String,
    currency: String,
    kinds: [&'static str; 8],
    found: Option<Page<TransferView>>,
    numbers: HashMap<i64, Option<String>>,
    errors: Errors,
    more: String,
    csv: String,
    xlsx: String,
}

const KINDS: [&str; 8] = ["transfer", "deposit", "withdrawal", "fx", "fee", "interest", "reversal", "settlement"];
const FILTERS: [&str; 7] = ["account", "kind", "from", "to", "currency", "min_amount", "max_amount"];

fn transaction_filter(form: &FormData) -> TransactionFilter {
    TransactionFilter {
        account: form.text("account"),
        kind: form.text("kind"),
        from: form.text("from"),
        to: form.text("to"),
        currency: form.text("currency"),
        min_amount: form.text("min_amount"),
        max_amount: form.text("max_amount"),
        cursor: form.text("cursor"),
        limit: Some(50),
        one_line_per_operation: true,
    }
}

fn filter_pairs(form: &FormData) -> Vec<(&'static str, String)> {
    FILTERS.iter().map(|name| (*name, form.text(name).unwrap_or_default())).collect()
}

async fn transactions(State(s): State<WebState>, ctx: Ctx) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let form = query_form(&ctx);
    let (found, errors) = match s.bank.find_transactions(&ctx.caller, None, transaction_filter(&form)).await {
        Ok(page) => (Some(page), Errors::none()),
        Err(error @ ServiceError::Invalid(_)) => (None, Errors::from_service(&ctx, &error)),
        Err(error) => return service_error_page(&ctx, &error),
    };
    let pairs = filter_pairs(&form);
    let mut refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let csv = link("/staff/transactions.csv", &refs);
    let xlsx = link("/staff/transactions.xlsx", &refs);
    let more = match found.as_ref().and_then(|p| p.next_cursor.clone()) {
        Some(next) => {
            refs.push(("cursor", &next));
            link("/staff/transactions", &refs)
        }
        None => String::new(),
    };
    let inputs = vec![
        input(&ctx, &form, "account", "text"),
        input(&ctx, &form, "from", "date"),
        input(&ctx, &form, "to", "date"),
        input(&ctx, &form, "min_amount", "text"),
        input(&ctx, &form, "max_amount", "text"),
    ];
    let kind = form.text("kind").unwrap_or_default();
    let currency = form.text("currency").unwrap_or_default();
    let ids = found.iter().flat_map(|page| page.items.iter().flat_map(|t| [t.debit_account, t.credit_account]));
    let numbers = account_numbers(&s, &ctx, ids.collect::<Vec<_>>().into_iter()).await;
    html(&TransactionsPage { c: &ctx, inputs, kind, currency, kinds: KINDS, found, numbers, errors, more, csv, xlsx })
}

/// The columns of the transactions report, in both formats.
const REPORT_COLUMNS: [&str; 9] = [
    "created_at",
    "transfer_id",
    "kind",
    "state",
    "debit_account",
    "credit_account",
    "amount",
    "currency",
    "description",
];

/// The filtered transactions as CSV or XLSX (every page of them, up to a
/// bound): the console's transactions report.
async fn transactions_export(s: &WebState, ctx: &Ctx, xlsx: bool) -> Response {
    const ROWS_MAX: usize = 100_000;
    let form = query_form(ctx);
    let mut filter = transaction_filter(&form);
    filter.limit = Some(200);
    let mut items = Vec::new();
    loop {
        let page = match s.bank.find_transactions(&ctx.caller, None, filter.clone()).await {
            Ok(page) => page,
            Err(error) => return service_error_page(ctx, &error),
        };
        items.extend(page.items);
        match page.next_cursor {
            Some(next) if items.len() < ROWS_MAX => filter.cursor = Some(next),
            _ => break,
        }
    }
    if !xlsx {
        let mut out = REPORT_COLUMNS.join(",");
        out.push_str("\r\n");
        for t in &items {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\r\n",
                t.created_at,
                t.id,
                t.kind,
                t.state,
                t.debit_account,
                t.credit_account,
                t.amount,
                t.currency,
                statements::csv_text(&t.description)
            ));
        }
        return download(out.into_bytes(), "text/csv; charset=utf-8", "transactions.csv");
    }
    // Building the workbook is CPU work: off the request threads.
    match tokio::task::spawn_blocking(move || transactions_xlsx(&items)).await {
        Ok(Ok(body)) => {
            download(body, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "transactions.xlsx")
        }
        Ok(Err(error)) => service_error_page(ctx, &ServiceError::Internal(error.to_string())),
        Err(error) => service_error_page(ctx, &ServiceError::Internal(error.to_string())),
    }
}

/// One sheet, a row per transfer. The amount is a spreadsheet number in
/// its currency's decimals (as in the statements' XLSX), so columns can be
/// summed.
fn transactions_xlsx(items: &[TransferView]) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let bold = Format::new().set_bold();
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("Transactions")?;
    for (col, title) in (0_u16..).zip(REPORT_COLUMNS) {
        sheet.write_string_with_format(0, col, title, &bold)?;
    }
    for (row, t) in (1_u32..).zip(items) {
        sheet.write_string(row, 0, short_time(&t.created_at))?;
        sheet.write_string(row, 1, &t.id)?;
        sheet.write_string(row, 2, &t.kind)?;
        sheet.write_string(row, 3, &t.state)?;
        sheet.write_number(row, 4, t.debit_account as f64)?;
        sheet.write_number(row, 5, t.credit_account as f64)?;
        let money = Format::new().set_num_format(statements::xlsx_money_format_of(&t.currency));
        match statements::xlsx_number(&t.amount) {
            Some(amount) => sheet.write_number_with_format(row, 6, amount, &money)?,
            None => sheet.write_string(row, 6, &t.amount)?,
        };
        sheet.write_string(row, 7, &t.currency)?;
        sheet.write_string(row, 8, &t.description)?;
    }
    sheet.autofit();
    workbook.save_to_buffer()
}

async fn transactions_csv(State(s): State<WebState>, ctx: Ctx) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    transactions_export(&s, &ctx, false).await
}

async fn transactions_xlsx_route(State(s): State<WebState>, ctx: Ctx) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    transactions_export(&s, &ctx, true).await
}

// ---------------------------------------------------------- approvals

#[derive(Template)]
#[template(path = "staff_approvals.html")]
struct ApprovalsPage<'a> {
    c: &'a Ctx,
    status: String,
    statuses: [&'static str; 4],
    found: Page<ApprovalView>,
    numbers: HashMap<i64, Option<String>>,
    /// The caller's staff id: their own requests wait for someone else.
    me: i64,
    flash: String,
    errors: Errors,
}

async fn approvals_page(s: &WebState, ctx: &Ctx, errors: Errors) -> Response {
    let form = query_form(ctx);
    let status = form.text("status").unwrap_or_else(|| "pending".into());
    let filter = ApprovalFilter { status: Some(status.clone()), cursor: form.text("cursor"), limit: Some(100) };
    match s.bank.approvals(&ctx.caller, filter).await {
        Ok(found) => html(&ApprovalsPage {
            c: ctx,
            status,
            statuses: ["pending", "approved", "rejected", "expired"],
            numbers: account_numbers(s, ctx, found.items.iter().map(|a| a.account).collect::<Vec<_>>().into_iter())
                .await,
            found,
            me: ctx.caller.staff(kassa_service::Role::Teller).map_or(0, |(id, _)| id),
            flash: flash(ctx),
            errors,
        }),
        Err(error) => service_error_page(ctx, &error),
    }
}

async fn approvals(State(s): State<WebState>, ctx: Ctx) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    approvals_page(&s, &ctx, Errors::none()).await
}

async fn decide(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>, form: FormData) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let id = match id_of(&raw) {
        Ok(id) => id,
        Err(error) => return service_error_page(&ctx, &error),
    };
    let done = match form.get("decision") {
        Some("approve") => s.bank.approve(&ctx.caller, id).await.map(|_| "approved"),
        Some("reject") => s.bank.reject(&ctx.caller, id, form.text("reason")).await.map(|_| "rejected"),
        _ => Err(ServiceError::invalid("decision", "field_required", "approve or reject")),
    };
    match done {
        Ok(key) => redirect(&format!("/staff/approvals?done={key}")),
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Refused(..) | ServiceError::Conflict(..))) => {
            approvals_page(&s, &ctx, Errors::from_service(&ctx, &error)).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

// -------------------------------------------------------------- rates

#[derive(Template)]
#[template(path = "staff_rates.html")]
struct RatesPage<'a> {
    c: &'a Ctx,
    rates: Vec<RateView>,
    inputs: Vec<Input>,
    flash: String,
    errors: Errors,
}

async fn rates_form(s: &WebState, ctx: &Ctx, form: &FormData, errors: Errors) -> Response {
    let rates = match s.bank.rates().await {
        Ok(rates) => rates,
        Err(error) => return service_error_page(ctx, &error),
    };
    let mut defaults = form.clone();
    if defaults.get("quote").is_none() {
        defaults.0.push(("quote".into(), "BYN".into()));
    }
    let inputs = ["base", "quote", "buy", "sell", "unit"].map(|name| input(ctx, &defaults, name, "text")).to_vec();
    html(&RatesPage { c: ctx, rates, inputs, flash: flash(ctx), errors })
}

async fn rates_page(State(s): State<WebState>, ctx: Ctx) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    rates_form(&s, &ctx, &FormData::default(), Errors::none()).await
}

async fn set_rate(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let unit = match form.text("unit").map(|u| u.parse::<i64>()) {
        None => None,
        Some(Ok(unit)) => Some(unit),
        Some(Err(_)) => {
            let mut errors = Errors::none();
            errors.fields.insert("unit".into(), ctx.t("staff.error.unit").to_owned());
            return rates_form(&s, &ctx, &form, errors).await;
        }
    };
    let rate = RateForm {
        base: form.text("base").map(|b| b.to_uppercase()),
        quote: form.text("quote").map(|q| q.to_uppercase()),
        buy: form.text("buy"),
        sell: form.text("sell"),
        unit,
        as_of: None,
    };
    match s.bank.set_rate(&ctx.caller, rate).await {
        Ok(_) => redirect("/staff/rates?done=rate_set"),
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Refused(..))) => {
            rates_form(&s, &ctx, &form, Errors::from_service(&ctx, &error)).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

// --------------------------------------------------------- staff users

#[derive(Template)]
#[template(path = "staff_users.html")]
struct UsersPage<'a> {
    c: &'a Ctx,
    users: Vec<StaffUser>,
    inputs: Vec<Input>,
    role: String,
    totp_uri: String,
    flash: String,
    errors: Errors,
}

async fn users_form(s: &WebState, ctx: &Ctx, form: &FormData, errors: Errors, totp_uri: String) -> Response {
    let users = match s.bank.list_staff(&ctx.caller, None, Some(200)).await {
        Ok(page) => page.items,
        Err(error) => return service_error_page(ctx, &error),
    };
    let inputs = vec![
        input(ctx, form, "login", "text"),
        input(ctx, form, "name", "text"),
        input(ctx, &FormData::default(), "password", "password"),
    ];
    let role = form.text("role").unwrap_or_else(|| "teller".into());
    html(&UsersPage { c: ctx, users, inputs, role, totp_uri, flash: flash(ctx), errors })
}

async fn users_page(State(s): State<WebState>, ctx: Ctx) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    users_form(&s, &ctx, &FormData::default(), Errors::none(), String::new()).await
}

async fn create_user(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let new = StaffForm {
        login: form.text("login"),
        name: form.text("name"),
        role: form.text("role"),
        password: form.raw("password"),
        totp: Some(form.checked("totp")),
    };
    match s.bank.create_staff(&ctx.caller, new).await {
        // The TOTP secret is shown once, on this answer, so no redirect.
        Ok(created) => {
            let mut ctx = ctx.clone();
            ctx.here = "/staff/users?done=user_created".into();
            users_form(&s, &ctx, &FormData::default(), Errors::none(), created.totp_uri.unwrap_or_default()).await
        }
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Refused(..) | ServiceError::Conflict(..))) => {
            users_form(&s, &ctx, &form, Errors::from_service(&ctx, &error), String::new()).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

async fn user_status(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>, form: FormData) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let status = form.text("status").unwrap_or_default();
    let done = match id_of(&raw) {
        Ok(id) => s.bank.set_staff_status(&ctx.caller, id, &status).await,
        Err(error) => Err(error),
    };
    match done {
        Ok(user) => redirect(&format!("/staff/users?done=user_{}", user.status)),
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Refused(..))) => {
            users_form(&s, &ctx, &FormData::default(), Errors::from_service(&ctx, &error), String::new()).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

// -------------------------------------------------------------- audit

#[derive(Template)]
#[template(path = "staff_audit.html")]
struct AuditPage<'a> {
    c: &'a Ctx,
    inputs: Vec<Input>,
    events: Vec<JournalEvent>,
    more: String,
    verified: bool,
    counts: String,
    problems: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    subject: Option<String>,
    outcome: Option<String>,
    cursor: Option<String>,
}

async fn audit(State(s): State<WebState>, ctx: Ctx, Query(query): Query<AuditQuery>) -> Response {
    if let Some(response) = door(&ctx) {
        return response;
    }
    let blank = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let filter = JournalFilter {
        actor: blank(query.actor),
        action: blank(query.action),
        subject: blank(query.subject),
        outcome: blank(query.outcome),
        cursor: blank(query.cursor),
        limit: Some(50),
    };
    let loaded = async {
        let page = s.bank.journal(&ctx.caller, filter.clone()).await?;
        let report = s.bank.verify_journal(&ctx.caller).await?;
        Ok::<_, ServiceError>((page, report))
    }
    .await;
    let (page, report) = match loaded {
        Ok(found) => found,
        Err(error) => return service_error_page(&ctx, &error),
    };
    let form = query_form(&ctx);
    let more = page
        .next_cursor
        .as_deref()
        .map(|next| {
            let pairs: Vec<(&str, &str)> = ["actor", "action", "subject", "outcome"]
                .iter()
                .map(|name| (*name, form.get(name).unwrap_or("")))
                .chain([("cursor", next)])
                .collect();
            link("/staff/audit", &pairs)
        })
        .unwrap_or_default();
    let inputs = ["actor", "action", "subject", "outcome"].map(|name| input(&ctx, &form, name, "text")).to_vec();
    html(&AuditPage {
        c: &ctx,
        inputs,
        events: page.items,
        more,
        verified: report.problems.is_empty(),
        counts: ctx
            .t("staff.audit.counts")
            .replace("{events}", &report.events.to_string())
            .replace("{chains}", &report.chains.to_string()),
        problems: report.problems.iter().take(20).map(ToString::to_string).collect(),
    })
}

/// What the templates share: times as `YYYY-MM-DD HH:MM`, a journal
/// event's detail as compact JSON.
macro_rules! helpers {
    ($($page:ident),*) => {$(
        impl $page<'_> {
            fn when(&self, stamp: &str) -> String {
                short_time(stamp)
            }

            /// An account for a list: its number, or "bank" for the bank's own.
            #[allow(dead_code)]
            fn number(&self, numbers: &HashMap<i64, Option<String>>, id: &i64) -> Option<String> {
                numbers.get(id).cloned().flatten()
            }

            #[allow(dead_code)]
            fn detail(&self, value: &serde_json::Value) -> String {
                if value.is_null() { String::new() } else { value.to_string() }
            }
        }
    )*};
}

helpers!(CustomerPage, AccountPage, TransactionsPage, ApprovalsPage, RatesPage, AuditPage);
