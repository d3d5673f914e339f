//! Daily limits and four-eyes approvals: handlers, their routes and their part of the OpenAPI document.
//! Routes here are under `/api/v1`.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_service::approvals::ApprovalFilter;
use kassa_service::limits::LimitsForm;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::openapi::{Access, RouteDoc, object, route};
use crate::{ApiResult, AppState, Auth, Body, Id, Q, created, ok};

/// The routes this module serves (merged into `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/staff/approvals", get(list))
        .route("/staff/approvals/{id}", get(one))
        .route("/staff/approvals/{id}/approve", post(approve))
        .route("/staff/approvals/{id}/reject", post(reject))
        .route("/staff/accounts/{id}/limits", get(limits).put(set_limits))
}

/// The same routes as the OpenAPI document lists them.
pub static ROUTES: &[RouteDoc] = &[
    route(
        Method::GET,
        "/api/v1/staff/approvals",
        Access::Teller,
        "Approval requests, newest first (paged; ?status=pending|approved|rejected|expired|failed)",
        None,
    ),
    route(Method::GET, "/api/v1/staff/approvals/{id}", Access::Teller, "One approval request", None),
    route(
        Method::POST,
        "/api/v1/staff/approvals/{id}/approve",
        Access::Manager,
        "Approve a request (not one's own); its held money moves",
        None,
    ),
    route(
        Method::POST,
        "/api/v1/staff/approvals/{id}/reject",
        Access::Teller,
        "Reject a request (managers: any; the maker: their own); its hold is released",
        Some("Rejection"),
    ),
    route(
        Method::GET,
        "/api/v1/staff/accounts/{id}/limits",
        Access::Teller,
        "An account's daily limits, today's usage and credit limit",
        None,
    ),
    route(
        Method::PUT,
        "/api/v1/staff/accounts/{id}/limits",
        Access::Manager,
        "Set an account's daily limits and, on a credit card, its credit limit (a large one waits for approval: 202)",
        Some("Limits"),
    ),
];

/// Request-body schemas this module's routes name.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("Rejection", object(&["reason"], &[])),
        ("Limits", object(&["daily_withdrawal", "daily_transfer", "credit_limit"], &[])),
    ]
}

/// A money route's answer: 201 with the transfer, or 202 with the approval
/// request when the operation waits for a second staff member.
pub(crate) fn created_or_accepted(body: Value) -> Response {
    if body.get("object").and_then(Value::as_str) == Some("approval") {
        (StatusCode::ACCEPTED, Json(body)).into_response()
    } else {
        created(body)
    }
}

#[derive(Debug, Deserialize)]
struct RejectForm {
    reason: Option<String>,
}

async fn list(State(s): State<AppState>, Auth(caller): Auth, Q(filter): Q<ApprovalFilter>) -> ApiResult<Response> {
    Ok(ok(s.bank.approvals(&caller, filter).await?))
}

async fn one(State(s): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    Ok(ok(s.bank.approval(&caller, id).await?))
}

async fn approve(State(s): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    Ok(ok(s.bank.approve(&caller, id).await?))
}

async fn reject(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<RejectForm>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.reject(&caller, id, form.reason).await?))
}

async fn limits(State(s): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    Ok(ok(s.bank.account_limits(&caller, id).await?))
}

async fn set_limits(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<LimitsForm>,
) -> ApiResult<Response> {
    let view = s.bank.set_account_limits(&caller, id, form).await?;
    let status = if view.approval.is_some() { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(json!(view))).into_response())
}
