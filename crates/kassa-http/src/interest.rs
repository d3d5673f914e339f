//! Interest (the job's admin view): handlers, their routes and their part of the OpenAPI document.
//! Routes here are under `/api/v1`.

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use kassa_service::interest::RunForm;
use serde_json::Value;

use crate::openapi::{Access, RouteDoc, object, route};
use crate::{ApiError, AppState, Auth, Body};

/// The routes this module serves (merged into `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/jobs/interest", post(run_interest))
}

/// The same routes as the OpenAPI document lists them.
pub static ROUTES: &[RouteDoc] = &[route(
    Method::POST,
    "/api/v1/admin/jobs/interest",
    Access::Admin,
    "Run the interest job now up to as_of (default yesterday): accrue, post due months; idempotent",
    Some("InterestRun"),
)];

/// Request-body schemas this module's routes name.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![("InterestRun", object(&["as_of"], &[]))]
}

async fn run_interest(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<RunForm>,
) -> Result<Response, ApiError> {
    Ok(Json(s.bank.run_interest(&caller, form).await?).into_response())
}
