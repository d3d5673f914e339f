//! Cards, PINs and credit-card applications: handlers, their routes and their part of the OpenAPI document.
//! Routes here are under `/api/v1`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use kassa_service::applications::{ApplicationForm, ApplicationQuery, DecisionForm};
use kassa_service::cards::{PinForm, RevealForm, StaffCardForm};
use serde_json::{Value, json};

use crate::openapi::{Access, RouteDoc, object, route};
use crate::{ApiResult, AppState, Auth, Body, Id, Q, ok};

/// The routes this module serves (merged into `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/accounts/{id}/card/reveal", post(reveal))
        .route("/accounts/{id}/card/pin", post(set_pin))
        .route("/staff/accounts/{id}/card", put(staff_card))
        .route("/applications", get(applications).post(apply))
        .route("/staff/applications", get(staff_applications))
        .route("/staff/applications/{id}/approve", post(approve))
        .route("/staff/applications/{id}/reject", post(reject))
}

/// The same routes as the OpenAPI document lists them.
pub static ROUTES: &[RouteDoc] = &[
    route(
        Method::POST,
        "/api/v1/accounts/{id}/card/reveal",
        Access::Customer,
        "The card's full number, valid-to and CVV, after re-entering the password",
        Some("CardReveal"),
    ),
    route(
        Method::POST,
        "/api/v1/accounts/{id}/card/pin",
        Access::Customer,
        "Set or change the card's PIN (password re-entered)",
        Some("CardPin"),
    ),
    route(
        Method::PUT,
        "/api/v1/staff/accounts/{id}/card",
        Access::Teller,
        "Mark a card lost (blocks its account) or lift its PIN block",
        Some("StaffCard"),
    ),
    route(Method::GET, "/api/v1/applications", Access::Customer, "My applications and their decisions (paged)", None),
    route(
        Method::POST,
        "/api/v1/applications",
        Access::Customer,
        "Apply for a credit card or a higher credit limit",
        Some("Application"),
    ),
    route(
        Method::GET,
        "/api/v1/staff/applications",
        Access::Manager,
        "Applications, newest first, optionally by status (paged)",
        None,
    ),
    route(
        Method::POST,
        "/api/v1/staff/applications/{id}/approve",
        Access::Manager,
        "Approve with the credit limit granted (opens the card, or raises its limit)",
        Some("ApplicationApproval"),
    ),
    route(
        Method::POST,
        "/api/v1/staff/applications/{id}/reject",
        Access::Manager,
        "Reject with a reason the customer sees",
        Some("ApplicationRejection"),
    ),
];

/// Request-body schemas this module's routes name.
pub fn schemas() -> Vec<(&'static str, Value)> {
    let mut application = object(
        &["kind", "requested_limit", "currency", "account", "product", "holder_name", "nickname"],
        &["kind", "requested_limit"],
    );
    if let Some(properties) = application.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("kind".into(), json!({"type": "string", "enum": ["credit_card", "credit_limit"]}));
        properties
            .insert("consents".into(), json!({"type": "array", "items": {"$ref": "#/components/schemas/Consent"}}));
    }
    vec![
        ("CardReveal", object(&["password"], &["password"])),
        ("CardPin", object(&["password", "pin"], &["password", "pin"])),
        (
            "StaffCard",
            json!({"type": "object", "properties": {"action": {"type": "string", "enum": ["lost", "pin_reset"]}},
                "required": ["action"]}),
        ),
        ("Application", application),
        ("ApplicationApproval", object(&["credit_limit"], &["credit_limit"])),
        ("ApplicationRejection", object(&["reason"], &["reason"])),
    ]
}

async fn reveal(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<RevealForm>,
) -> ApiResult<Response> {
    let mut response = ok(s.bank.reveal_card(&caller, id, form).await?);
    // The full number and the CVV must not be kept by a cache on the way.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn set_pin(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<PinForm>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.set_card_pin(&caller, id, form).await?))
}

async fn staff_card(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<StaffCardForm>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.staff_card(&caller, id, form).await?))
}

async fn applications(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Q(query): Q<ApplicationQuery>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.applications(&caller, query).await?))
}

async fn apply(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<ApplicationForm>,
) -> ApiResult<Response> {
    Ok((StatusCode::CREATED, axum::Json(s.bank.apply(&caller, form).await?)).into_response())
}

async fn staff_applications(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Q(query): Q<ApplicationQuery>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.staff_applications(&caller, query).await?))
}

async fn approve(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<DecisionForm>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.approve_application(&caller, id, form).await?))
}

async fn reject(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<DecisionForm>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.reject_application(&caller, id, form).await?))
}
