//! Notifications: the outbox as admins see it (dead letters): handlers, their routes and their part of the OpenAPI document.
//! Routes here are under `/api/v1`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use crate::openapi::{Access, RouteDoc, route};
use crate::{ApiResult, AppState, Auth, Q, ok};

/// The routes this module serves (merged into `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/outbox", get(outbox)).route("/admin/outbox/{id}/retry", post(retry))
}

/// The same routes as the OpenAPI document lists them.
pub static ROUTES: &[RouteDoc] = &[
    route(
        Method::GET,
        "/api/v1/admin/outbox",
        Access::Admin,
        "Outbox messages by state (?state=dead|pending|delivered, default dead; paged)",
        None,
    ),
    route(
        Method::POST,
        "/api/v1/admin/outbox/{id}/retry",
        Access::Admin,
        "Put a dead-lettered message back in the queue",
        None,
    ),
];

/// Request-body schemas this module's routes name.
pub fn schemas() -> Vec<(&'static str, Value)> {
    Vec::new()
}

#[derive(Debug, Deserialize)]
struct OutboxQuery {
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn outbox(State(s): State<AppState>, Auth(caller): Auth, Q(query): Q<OutboxQuery>) -> ApiResult<Response> {
    Ok(ok(s.bank.outbox(&caller, query.state.as_deref(), query.limit, query.cursor.as_deref()).await?))
}

async fn retry(State(s): State<AppState>, Auth(caller): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(ok(s.bank.retry_outbox(&caller, &id).await?))
}
