//! Interest (the job's admin view): handlers, their routes and their part of the OpenAPI document.
//! Routes here are under `/api/v1`.

use axum::Router;
use serde_json::Value;

use crate::AppState;
use crate::openapi::RouteDoc;

/// The routes this module serves (merged into `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// The same routes as the OpenAPI document lists them.
pub static ROUTES: &[RouteDoc] = &[];

/// Request-body schemas this module's routes name.
pub fn schemas() -> Vec<(&'static str, Value)> {
    Vec::new()
}
