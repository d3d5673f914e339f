//! Account statements (JSON, CSV, XLSX): handlers, their routes and their part of the OpenAPI document.
//! Routes here are under `/api/v1`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kassa_service::ServiceError;
use kassa_service::statements::{self, StatementFormat, StatementQuery, StatementScope};
use serde_json::Value;

use crate::openapi::{Access, RouteDoc, route};
use crate::{ApiError, AppState, Auth, Id, Q};

/// The routes this module serves (merged into `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/accounts/{id}/statement", get(own_statement))
        .route("/staff/accounts/{id}/statement", get(staff_statement))
}

/// The same routes as the OpenAPI document lists them.
pub static ROUTES: &[RouteDoc] = &[
    route(
        Method::GET,
        "/api/v1/accounts/{id}/statement",
        Access::Customer,
        "Statement of my account: ?from=YYYY-MM-DD&to=YYYY-MM-DD&format=json|csv|xlsx (bank days, inclusive)",
        None,
    ),
    route(
        Method::GET,
        "/api/v1/staff/accounts/{id}/statement",
        Access::Teller,
        "Statement of any customer account: ?from&to&format=json|csv|xlsx",
        None,
    ),
];

/// Request-body schemas this module's routes name.
pub fn schemas() -> Vec<(&'static str, Value)> {
    Vec::new()
}

async fn own_statement(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Q(query): Q<StatementQuery>,
) -> Result<Response, ApiError> {
    answer(&s, &caller, StatementScope::Own, id, &query).await
}

async fn staff_statement(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Q(query): Q<StatementQuery>,
) -> Result<Response, ApiError> {
    answer(&s, &caller, StatementScope::Staff, id, &query).await
}

async fn answer(
    s: &AppState,
    caller: &kassa_service::Caller,
    scope: StatementScope,
    id: i64,
    query: &StatementQuery,
) -> Result<Response, ApiError> {
    let (statement, format) = s.bank.statement(caller, scope, id, query, &mut |_, _| {}).await?;
    let name = statements::file_name(&statement, format);
    // Rendering a large XLSX is CPU work: off the request threads.
    let body = tokio::task::spawn_blocking(move || statements::render(&statement, format))
        .await
        .map_err(|error| ServiceError::Internal(error.to_string()))??;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if format != StatementFormat::Json {
        let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .map_err(|error| ServiceError::Internal(error.to_string()))?;
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
