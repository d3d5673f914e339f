//! Exchange rates, quotes and exchanges: handlers, their routes and their part of the OpenAPI document.
//! Routes here are under `/api/v1`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::{get, post, put};
use kassa_service::fx::{ExchangeForm, QuoteForm, RateForm};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::openapi::{Access, RouteDoc, money, object, route};
use crate::{ApiResult, AppState, Auth, Body, Q, created, idempotency, ok, required};

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    base: Option<String>,
    quote: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn rates(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(ok(json!({"items": s.bank.rates().await?, "next_cursor": null})))
}

async fn rate_history(State(s): State<AppState>, Q(query): Q<HistoryQuery>) -> ApiResult<Response> {
    let base = required(query.base, "base")?;
    let quote = required(query.quote, "quote")?;
    Ok(ok(s.bank.rate_history(&base, &quote, query.cursor.as_deref(), query.limit).await?))
}

async fn set_rate(State(s): State<AppState>, Auth(caller): Auth, Body(form): Body<RateForm>) -> ApiResult<Response> {
    Ok(ok(s.bank.set_rate(&caller, form).await?))
}

async fn quote(State(s): State<AppState>, Auth(caller): Auth, Body(form): Body<QuoteForm>) -> ApiResult<Response> {
    Ok(created(json!(s.bank.quote(&caller, form).await?)))
}

async fn exchange(
    State(s): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    Body(form): Body<ExchangeForm>,
) -> ApiResult<Response> {
    let idempotency = idempotency(&headers, "POST /api/v1/exchanges")?;
    Ok(created(json!(s.bank.exchange(&caller, form, idempotency).await?)))
}

/// The routes this module serves (merged into `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rates", get(rates))
        .route("/rates/history", get(rate_history))
        .route("/admin/rates", put(set_rate))
        .route("/exchange-quotes", post(quote))
        .route("/exchanges", post(exchange))
}

/// The same routes as the OpenAPI document lists them.
pub static ROUTES: &[RouteDoc] = &[
    route(Method::GET, "/api/v1/rates", Access::Anyone, "Current exchange rates, one per pair", None),
    route(
        Method::GET,
        "/api/v1/rates/history",
        Access::Anyone,
        "Every rate a pair has had, newest first (?base=&quote=, paged)",
        None,
    ),
    route(
        Method::PUT,
        "/api/v1/admin/rates",
        Access::Admin,
        "Set a pair's buy and sell rates (the previous ones stay as history)",
        Some("Rate"),
    ),
    route(
        Method::POST,
        "/api/v1/exchange-quotes",
        Access::Customer,
        "Lock the current rate for one direction for a short while",
        Some("ExchangeQuote"),
    ),
    money(
        Method::POST,
        "/api/v1/exchanges",
        Access::Customer,
        "Exchange between two of my accounts of different currencies",
        "Exchange",
    ),
];

/// Request-body schemas this module's routes name.
pub fn schemas() -> Vec<(&'static str, Value)> {
    let mut rate = object(&["base", "quote", "buy", "sell", "as_of"], &["base", "quote", "buy", "sell"]);
    if let Some(properties) = rate.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("unit".into(), json!({"type": "integer", "minimum": 1, "maximum": 1_000_000}));
        properties.insert("as_of".into(), json!({"type": "string", "format": "date-time"}));
    }
    vec![
        ("Rate", rate),
        ("ExchangeQuote", object(&["from_currency", "to_currency", "amount"], &["from_currency", "to_currency"])),
        (
            "Exchange",
            object(&["from_account", "to_account", "amount", "quote_id"], &["from_account", "to_account", "amount"]),
        ),
    ]
}
