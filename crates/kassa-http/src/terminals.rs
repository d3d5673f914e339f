//! Registered terminals (ATMs): handlers, their routes and their part of the OpenAPI document.
//! Routes here are under `/api/v1`.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use kassa_service::terminals::TerminalForm;
use serde_json::Value;

use crate::openapi::{Access, RouteDoc, object, route};
use crate::{ApiResult, AppState, Auth, Body, Id, PageQuery, Q, StatusForm, ok, required};

/// The routes this module serves (merged into `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/terminals", get(list).post(register)).route("/admin/terminals/{id}/status", put(status))
}

/// The same routes as the OpenAPI document lists them.
pub static ROUTES: &[RouteDoc] = &[
    route(Method::GET, "/api/v1/admin/terminals", Access::Admin, "Registered terminals (paged)", None),
    route(
        Method::POST,
        "/api/v1/admin/terminals",
        Access::Admin,
        "Register a terminal (ATM); its key is in this reply only",
        Some("TerminalForm"),
    ),
    route(
        Method::PUT,
        "/api/v1/admin/terminals/{id}/status",
        Access::Admin,
        "Disable a terminal (active|disabled)",
        Some("Status"),
    ),
];

/// Request-body schemas this module's routes name.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![("TerminalForm", object(&["name"], &["name"]))]
}

async fn list(State(s): State<AppState>, Auth(caller): Auth, Q(page): Q<PageQuery>) -> ApiResult<Response> {
    Ok(ok(s.bank.list_terminals(&caller, page.cursor.as_deref(), page.limit).await?))
}

async fn register(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<TerminalForm>,
) -> ApiResult<Response> {
    Ok((StatusCode::CREATED, Json(s.bank.register_terminal(&caller, form).await?)).into_response())
}

async fn status(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<StatusForm>,
) -> ApiResult<Response> {
    let status = required(form.status, "status")?;
    Ok(ok(s.bank.set_terminal_status(&caller, id, &status).await?))
}
