//! An account's page: details, the card behind "Show", transfers (by
//! phone, by number, between own accounts with a live quote), history with
//! paging and the balance chart, the statement, closing.

use askama::Template;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kassa_service::ServiceError;
use kassa_service::accounts::AccountView;
use kassa_service::cards::{CardDetails, RevealForm};
use kassa_service::fx::{ExchangeForm, QuoteForm};
use kassa_service::money::{HistoryItem, Idempotency, TransferForm};
use kassa_service::statements::{self, StatementQuery, StatementScope};
use serde_json::json;

use crate::WebState;
use crate::page::{Ctx, Errors, FormData, html_status, message_of, redirect, service_error_page};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/accounts/{id}", get(account_page))
        .route("/accounts/{id}/reveal", post(reveal))
        .route("/accounts/{id}/transfer", post(transfer))
        .route("/accounts/{id}/statement", post(statement))
        .route("/accounts/{id}/close", post(close))
        .route("/web/recipient", get(recipient))
        .route("/web/quote", post(quote))
}

/// History lines per page, and how many recent lines the chart draws.
const HISTORY_PAGE: u32 = 20;
const CHART_POINTS: u32 = 60;

/// A path id: a positive number, anything else is "no such account".
fn account_id(raw: &str) -> Result<i64, ServiceError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or(ServiceError::NotFound("account_not_found", "no such account"))
}

#[derive(Debug, Default)]
struct PageQuery {
    cursor: Option<String>,
    tab: Option<String>,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    c: &'a Ctx,
    a: AccountView,
    title: String,
    flash: String,
    errors: Errors,
    /// The transfer form shown: `phone`, `number` or `own`.
    tab: String,
    /// The transfer form's idempotency key, new on every rendering: a
    /// double click (or a resent POST) makes one payment, not two.
    idempotency_key: String,
    values: FormData,
    revealed: Option<CardDetails>,
    /// Errors of the "Show" form (a wrong password), kept apart.
    reveal_errors: Errors,
    /// The other active own accounts (targets of "between my accounts").
    others: Vec<AccountView>,
    history: Vec<HistoryItem>,
    next_cursor: Option<String>,
    paged: bool,
    chart: String,
    statement_from: String,
    statement_to: String,
    statement_errors: Errors,
}

impl AccountPage<'_> {
    fn value(&self, name: &str) -> String {
        self.values.get(name).unwrap_or("").to_owned()
    }

    /// `2026-11-23T10:15:00Z` as `2026-11-23 10:15` (UTC).
    fn when(&self, stamp: &str) -> String {
        short_time(stamp)
    }

    fn line_kind(&self, item: &HistoryItem) -> String {
        self.c.label("transfer_kind", &item.transfer.kind)
    }
}

pub(crate) fn short_time(stamp: &str) -> String {
    stamp.get(..16).map_or_else(|| stamp.to_owned(), |head| head.replace('T', " "))
}

/// Extra state a POST brings back to the page.
#[derive(Default)]
struct Extras {
    errors: Errors,
    tab: Option<String>,
    values: FormData,
    revealed: Option<CardDetails>,
    reveal_errors: Errors,
    statement_errors: Errors,
}

async fn render(s: &WebState, ctx: &Ctx, id: i64, query: &PageQuery, extras: Extras, status: StatusCode) -> Response {
    let a = match s.bank.account(&ctx.caller, id).await {
        Ok(a) => a,
        Err(error) => return service_error_page(ctx, &error),
    };
    let history = match s.bank.history(&ctx.caller, id, query.cursor.as_deref(), Some(HISTORY_PAGE)).await {
        Ok(page) => page,
        Err(error @ ServiceError::Invalid(_)) => {
            // A cursor this server never gave out: show the newest page.
            tracing::debug!(%error, "history cursor refused");
            match s.bank.history(&ctx.caller, id, None, Some(HISTORY_PAGE)).await {
                Ok(page) => page,
                Err(error) => return service_error_page(ctx, &error),
            }
        }
        Err(error) => return service_error_page(ctx, &error),
    };
    let recent = match s.bank.history(&ctx.caller, id, None, Some(CHART_POINTS)).await {
        Ok(page) => page.items,
        Err(error) => return service_error_page(ctx, &error),
    };
    let points: Vec<(String, String)> =
        recent.iter().rev().map(|item| (short_time(&item.transfer.created_at), item.balance_after.clone())).collect();
    let chart = crate::chart::balance_svg(&points, ctx.t("account.chart"), ctx.t("account.chart_desc"));
    let others = match s.bank.accounts(&ctx.caller, None, None, Some(200)).await {
        Ok(page) => page.items.into_iter().filter(|o| o.id != id && o.status == "active").collect(),
        Err(error) => return service_error_page(ctx, &error),
    };
    let title = if a.nickname.is_empty() { ctx.label("kind", &a.kind) } else { a.nickname.clone() };
    // The bank's day, as statements count days (not the server's UTC date).
    let today = s.bank.today();
    let (year, month, day) = (today.year(), today.month(), today.day());
    let tab = extras.tab.or_else(|| query.tab.clone()).filter(|t| ["phone", "number", "own"].contains(&t.as_str()));
    let page = AccountPage {
        c: ctx,
        title,
        flash: crate::customer::flash(ctx),
        errors: extras.errors,
        tab: tab.unwrap_or_else(|| "phone".to_owned()),
        idempotency_key: kassa_service::crypto::random_token(16).unwrap_or_default(),
        values: extras.values,
        revealed: extras.revealed,
        reveal_errors: extras.reveal_errors,
        others,
        history: history.items,
        next_cursor: history.next_cursor,
        paged: query.cursor.is_some(),
        chart,
        statement_from: format!("{year:04}-{month:02}-01"),
        statement_to: format!("{year:04}-{month:02}-{day:02}"),
        statement_errors: extras.statement_errors,
        a,
    };
    let mut response = html_status(status, &page);
    if page.revealed.is_some() {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn account_page(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>, uri: Uri) -> Response {
    let id = match account_id(&raw) {
        Ok(id) => id,
        Err(error) => return service_error_page(&ctx, &error),
    };
    let pairs = FormData::parse(uri.query().unwrap_or("").as_bytes());
    let query = PageQuery { cursor: pairs.text("cursor"), tab: pairs.text("tab") };
    render(&s, &ctx, id, &query, Extras::default(), StatusCode::OK).await
}

async fn reveal(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>, form: FormData) -> Response {
    let id = match account_id(&raw) {
        Ok(id) => id,
        Err(error) => return service_error_page(&ctx, &error),
    };
    match s.bank.reveal_card(&ctx.caller, id, RevealForm { password: form.raw("password") }).await {
        Ok(details) => {
            let extras = Extras { revealed: Some(details), ..Extras::default() };
            render(&s, &ctx, id, &PageQuery::default(), extras, StatusCode::OK).await
        }
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Unauthorized(..) | ServiceError::Throttled { .. })) => {
            let mut reveal_errors = Errors::from_service(&ctx, &error);
            if let Some(message) = reveal_errors.general.pop() {
                reveal_errors.fields.insert("password".into(), message);
            }
            let extras = Extras { reveal_errors, ..Extras::default() };
            render(&s, &ctx, id, &PageQuery::default(), extras, StatusCode::OK).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

async fn transfer(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>, form: FormData) -> Response {
    let id = match account_id(&raw) {
        Ok(id) => id,
        Err(error) => return service_error_page(&ctx, &error),
    };
    let view = match s.bank.account(&ctx.caller, id).await {
        Ok(view) => view,
        Err(error) => return service_error_page(&ctx, &error),
    };
    let tab = form.get("mode").unwrap_or("phone").to_owned();
    // The key the form was rendered with (none from an old page: then the
    // payment simply has no key, as before).
    let idempotency = |route: &str| {
        form.text("idempotency_key").map(|key| Idempotency { key, route: format!("WEB POST /accounts/{id}/{route}") })
    };
    let mut transfer = TransferForm {
        from_account: Some(id.to_string()),
        to_account: None,
        to_phone: None,
        amount: form.text("amount"),
        currency: Some(view.currency.clone()),
        description: form.text("description"),
    };
    let outcome = match tab.as_str() {
        "own" => {
            let target = form.text("to_account");
            let target_currency = match s.bank.accounts(&ctx.caller, None, None, Some(200)).await {
                Ok(page) => page
                    .items
                    .into_iter()
                    .find(|o| target.as_deref() == Some(o.id.to_string().as_str()))
                    .map(|o| o.currency),
                Err(error) => return service_error_page(&ctx, &error),
            };
            match target_currency {
                // Different currencies: an exchange at the quoted rate.
                Some(currency) if currency != view.currency => {
                    let exchange = ExchangeForm {
                        from_account: Some(id.to_string()),
                        to_account: target,
                        amount: form.text("amount"),
                        quote_id: form.text("quote_id"),
                    };
                    s.bank.exchange(&ctx.caller, exchange, idempotency("exchange")).await.map(|_| "exchanged")
                }
                _ => {
                    transfer.to_account = target;
                    s.bank.transfer(&ctx.caller, transfer, idempotency("transfer")).await.map(|_| "transferred")
                }
            }
        }
        "number" => {
            transfer.to_account = form.text("to_account");
            s.bank.transfer(&ctx.caller, transfer, idempotency("transfer")).await.map(|_| "transferred")
        }
        _ => {
            transfer.to_phone = form.text("to_phone");
            s.bank.transfer(&ctx.caller, transfer, idempotency("transfer")).await.map(|_| "transferred")
        }
    };
    match outcome {
        Ok(done) => redirect(&format!("/accounts/{id}?done={done}")),
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Refused(..) | ServiceError::Conflict(..))) => {
            let extras = Extras {
                errors: Errors::from_service(&ctx, &error),
                tab: Some(tab),
                values: form,
                ..Extras::default()
            };
            render(&s, &ctx, id, &PageQuery::default(), extras, StatusCode::OK).await
        }
        Err(error @ ServiceError::Throttled { .. }) => {
            let extras = Extras {
                errors: Errors::from_service(&ctx, &error),
                tab: Some(tab),
                values: form,
                ..Extras::default()
            };
            render(&s, &ctx, id, &PageQuery::default(), extras, StatusCode::TOO_MANY_REQUESTS).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

async fn statement(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>, form: FormData) -> Response {
    let id = match account_id(&raw) {
        Ok(id) => id,
        Err(error) => return service_error_page(&ctx, &error),
    };
    let query = StatementQuery { from: form.text("from"), to: form.text("to"), format: form.text("format") };
    let rendered = match s.bank.statement(&ctx.caller, StatementScope::Own, id, &query, &mut |_, _| {}).await {
        Ok((statement, format)) => {
            let name = statements::file_name(&statement, format);
            // Rendering a large XLSX is CPU work: off the request threads.
            match tokio::task::spawn_blocking(move || statements::render(&statement, format)).await {
                Ok(Ok(body)) => Ok((name, format, body)),
                Ok(Err(error)) => Err(error),
                Err(error) => Err(ServiceError::Internal(error.to_string())),
            }
        }
        Err(error) => Err(error),
    };
    match rendered {
        Ok((name, format, body)) => {
            let mut response = body.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error @ ServiceError::Invalid(_)) => {
            let extras = Extras { statement_errors: Errors::from_service(&ctx, &error), ..Extras::default() };
            render(&s, &ctx, id, &PageQuery::default(), extras, StatusCode::OK).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

async fn close(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>) -> Response {
    let id = match account_id(&raw) {
        Ok(id) => id,
        Err(error) => return service_error_page(&ctx, &error),
    };
    match s.bank.close_account(&ctx.caller, id).await {
        Ok(_) => redirect("/products?done=closed"),
        Err(error @ (ServiceError::Refused(..) | ServiceError::Conflict(..))) => {
            let extras = Extras { errors: Errors::from_service(&ctx, &error), ..Extras::default() };
            render(&s, &ctx, id, &PageQuery::default(), extras, StatusCode::OK).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

/// The masked name a phone number pays, for the script's preview:
/// `{"text": "Recipient: Anna I."}` or `{"text": "<why not>"}`.
async fn recipient(State(s): State<WebState>, ctx: Ctx, uri: Uri) -> Response {
    let pairs = FormData::parse(uri.query().unwrap_or("").as_bytes());
    let (phone, currency) = (pairs.text("phone"), pairs.text("currency"));
    let answer = s.bank.recipient(&ctx.caller, phone.as_deref().unwrap_or(""), currency.as_deref().unwrap_or("")).await;
    let (status, text) = match answer {
        Ok(found) => (StatusCode::OK, ctx.t("recipient.text").replace("{name}", &found.name)),
        Err(error) => (status_of(&error), one_line(&ctx, &error)),
    };
    (status, Json(json!({ "text": text }))).into_response()
}

/// A live exchange quote for the script: `{"text": …, "id": …}`.
async fn quote(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    let from = form.text("from");
    let to = form.text("to");
    if from.is_some() && from == to {
        return Json(json!({"text": ctx.t("quote.same"), "id": null})).into_response();
    }
    let asked = QuoteForm { from_currency: from, to_currency: to, amount: form.text("amount") };
    match s.bank.quote(&ctx.caller, asked).await {
        Ok(q) => {
            let text = ctx
                .t("quote.text")
                .replace("{rate}", &q.rate)
                .replace("{debit}", q.debit_amount.as_deref().unwrap_or("—"))
                .replace("{from}", &q.from_currency)
                .replace("{credit}", q.credit_amount.as_deref().unwrap_or("—"))
                .replace("{to}", &q.to_currency);
            Json(json!({"text": text, "id": q.id})).into_response()
        }
        // The script shows why there is no quote; it is not a page error.
        Err(error) => Json(json!({"text": one_line(&ctx, &error), "id": null})).into_response(),
    }
}

fn one_line(ctx: &Ctx, error: &ServiceError) -> String {
    let errors = Errors::from_service(ctx, error);
    errors.general.into_iter().chain(errors.fields.into_values()).next().unwrap_or_else(|| message_of(ctx, error))
}

/// The preview's status: a failure of ours is a 5xx; anything about the
/// input (no such recipient, a bad number, too many look-ups) is an answer
/// the script shows, so a 200 (a 4xx would also log a console error).
fn status_of(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    }
}
