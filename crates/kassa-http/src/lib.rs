//! Kassa's HTTP interface: the JSON API under `/api/v1`, `/healthz` and
//! `/metrics`. Handlers only translate: they read the request, call one
//! service method with the [`Caller`], and write the answer. Every rule
//! lives in `kassa-service`.

mod approvals;
mod cards;
mod fx;
mod interest;
mod metrics;
mod notify;
pub mod openapi;
mod statements;
mod terminals;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use kassa_service::accounts::{AccountUpdate, OpenAccount, ProductForm};
use kassa_service::journal::JournalFilter;
use kassa_service::money::{CashForm, Idempotency, TransferForm};
use kassa_service::people::{Notifications, ProfileUpdate, Registration, StaffForm};
use kassa_service::{Bank, Caller, ServiceError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use metrics::Metrics;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub bank: Bank,
    pub metrics: Arc<Metrics>,
    /// Addresses whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<IpAddr>>,
    /// The largest request body accepted, in bytes.
    pub body_max_bytes: usize,
}

/// An error as the API shows it: `application/problem+json`.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        ApiError(error)
    }
}

pub fn status_of(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::Unauthorized(..) => StatusCode::UNAUTHORIZED,
        ServiceError::Forbidden(..) => StatusCode::FORBIDDEN,
        ServiceError::NotFound(..) => StatusCode::NOT_FOUND,
        ServiceError::Conflict(..) => StatusCode::CONFLICT,
        ServiceError::Refused(..) => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A problem document with a stable code.
pub fn problem(status: StatusCode, code: &str, detail: &str, extra: Option<serde_json::Value>) -> Response {
    let mut body = json!({
        "type": format!("https://kassa.dev/problems/{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    if let (Some(extra), Some(map)) = (extra, body.as_object_mut()) {
        map.insert("problems".into(), extra);
    }
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        match &self.0 {
            ServiceError::Internal(message) => tracing::error!(%message, "internal error"),
            ServiceError::Unavailable(message) => tracing::warn!(%message, "unavailable"),
            _ => {}
        }
        let extra = match &self.0 {
            ServiceError::Invalid(problems) => serde_json::to_value(problems).ok(),
            _ => None,
        };
        let mut response = problem(status, self.0.code(), &self.0.to_string(), extra);
        if let ServiceError::Throttled { retry_after_s } = self.0
            && let Ok(value) = HeaderValue::from_str(&retry_after_s.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The client's address: the peer, or — when the peer is a trusted proxy —
/// the nearest untrusted address in `X-Forwarded-For`.
fn client_address(parts: &Parts, trusted: &[IpAddr]) -> String {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let Some(peer) = peer else { return "unknown".into() };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    let forwarded =
        parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    forwarded
        .split(',')
        .rev()
        .filter_map(|part| part.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .map_or_else(|| peer.to_string(), |ip| ip.to_string())
}

/// The caller, signed in or not.
#[derive(Debug)]
pub struct Who(pub Caller);

impl FromRequestParts<AppState> for Who {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Who, ApiError> {
        let origin = client_address(parts, &state.trusted_proxies);
        match parts.headers.get(header::AUTHORIZATION) {
            None => Ok(Who(Caller::anonymous(origin))),
            Some(value) => {
                let token = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or(ServiceError::Unauthorized("invalid_token", "use Authorization: Bearer <access token>"))?;
                Ok(Who(state.bank.authenticate(token.trim(), &origin).await?))
            }
        }
    }
}

/// A signed-in caller (401 otherwise).
#[derive(Debug)]
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Auth, ApiError> {
        let Who(caller) = Who::from_request_parts(parts, state).await?;
        if caller.user.is_none() {
            return Err(
                ServiceError::Unauthorized("unauthorized", "sign in first: Authorization: Bearer <token>").into()
            );
        }
        Ok(Auth(caller))
    }
}

/// A JSON body, with every way it can be wrong reported as a 4xx problem.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> axum::extract::FromRequest<AppState> for Body<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Body<T>, Response> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let bytes = Bytes::from_request(request, state).await.map_err(|_| {
            problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is too large", None)
        })?;
        if !is_json {
            return Err(problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type_not_json",
                "send the body as application/json",
                None,
            ));
        }
        if has_escaped_nul(&bytes) {
            return Err(nul_refused());
        }
        let mut json = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut json).map_err(|error| {
            let path = error.path().to_string();
            let error = error.into_inner();
            if error.is_data() {
                problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "body_invalid_field",
                    &describe(&path, &error.to_string()),
                    None,
                )
            } else {
                problem(StatusCode::UNPROCESSABLE_ENTITY, "body_not_json", "the body is not valid JSON", None)
            }
        })?;
        json.end().map_err(|_| {
            problem(StatusCode::UNPROCESSABLE_ENTITY, "body_not_json", "the body is not valid JSON", None)
        })?;
        Ok(Body(value))
    }
}

/// Whether a JSON text holds a NUL character (`\u0000`): no field of ours
/// takes one, and PostgreSQL cannot store one in text, so it is refused up
/// front for every route, the same on both databases.
fn has_escaped_nul(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|b| *b == b'0'))
}

fn nul_refused() -> Response {
    problem(StatusCode::UNPROCESSABLE_ENTITY, "nul_character", "text may not contain a NUL character", None)
}

/// What serde found wrong, naming the field but never the value: serde's
/// own messages quote what they found (`invalid type: integer `1234…`,
/// expected a string`), and that value may be a password.
fn describe(path: &str, message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("missing field {field}");
    }
    let field = if path == "." || path.is_empty() { "the body".to_owned() } else { format!("`{path}`") };
    match message.rsplit_once(", expected ") {
        Some((_, expected)) => format!("{field}: expected {expected}"),
        None => format!("{field}: not an accepted value"),
    }
}

/// A query string, with errors as problems.
#[derive(Debug)]
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Q<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Q<T>, Response> {
        let query = parts.uri.query().unwrap_or("");
        if form_urlencoded::parse(query.as_bytes()).any(|(key, value)| key.contains('\0') || value.contains('\0')) {
            return Err(nul_refused());
        }
        let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(pairs).map(Q).map_err(|error| {
            let detail = describe(&error.path().to_string(), &error.into_inner().to_string());
            problem(StatusCode::UNPROCESSABLE_ENTITY, "query_invalid", &detail, None)
        })
    }
}

/// A numeric path id, with a non-number as 404 (there is no such object).
#[derive(Debug)]
pub struct Id(pub i64);

impl FromRequestParts<AppState> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Id, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ServiceError::NotFound("not_found", "no such object"))?;
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(Id)
            .ok_or(ServiceError::NotFound("not_found", "no such object").into())
    }
}

pub(crate) fn idempotency(headers: &HeaderMap, route: &str) -> ApiResult<Option<Idempotency>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => {
            let key = value.to_str().map_err(|_| {
                ServiceError::invalid("Idempotency-Key", "idempotency_key_invalid", "not visible ASCII")
            })?;
            kassa_service::money::check_idempotency_key(key)?;
            Ok(Some(Idempotency { key: key.to_owned(), route: route.to_owned() }))
        }
    }
}

pub(crate) fn created(body: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

pub(crate) fn ok<T: serde::Serialize>(value: T) -> Response {
    Json(value).into_response()
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    login: Option<String>,
    password: Option<String>,
    totp: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefreshForm {
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: Option<String>,
    new_password: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StatusForm {
    pub(crate) status: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    pub(crate) cursor: Option<String>,
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct RecipientQuery {
    phone: Option<String>,
    currency: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct TransactionsQuery {
    account: Option<i64>,
    kind: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub(crate) fn required(value: Option<String>, field: &str) -> ApiResult<String> {
    value.ok_or_else(|| ServiceError::invalid(field, "field_required", format!("{field} is required")).into())
}

// ------------------------------------------------------------------ auth

async fn register(State(s): State<AppState>, Who(caller): Who, Body(form): Body<Registration>) -> ApiResult<Response> {
    let registered = s.bank.register(&caller, form).await?;
    Ok((StatusCode::CREATED, Json(registered)).into_response())
}

async fn login(State(s): State<AppState>, Who(caller): Who, Body(form): Body<LoginForm>) -> ApiResult<Response> {
    let login = required(form.login, "login")?;
    let password = required(form.password, "password")?;
    Ok(ok(s.bank.login(&caller.origin, &login, &password, form.totp.as_deref()).await?))
}

async fn refresh(State(s): State<AppState>, Who(caller): Who, Body(form): Body<RefreshForm>) -> ApiResult<Response> {
    let token = required(form.refresh_token, "refresh_token")?;
    Ok(ok(s.bank.refresh(&caller.origin, &token).await?))
}

async fn logout(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    s.bank.logout(&caller, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn logout_all(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    s.bank.logout(&caller, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn change_password(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<PasswordForm>,
) -> ApiResult<Response> {
    let current = required(form.current_password, "current_password")?;
    let new = required(form.new_password, "new_password")?;
    s.bank.change_password(&caller, &current, &new).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --------------------------------------------------------------- customer

async fn me(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    Ok(ok(s.bank.me(&caller).await?))
}

async fn update_me(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<ProfileUpdate>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.update_me(&caller, form).await?))
}

async fn notifications(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    Ok(ok(s.bank.notifications(&caller).await?))
}

async fn set_notifications(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<Notifications>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.set_notifications(&caller, form).await?))
}

async fn products(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(ok(json!({"items": s.bank.products().await?, "next_cursor": null})))
}

async fn accounts(State(s): State<AppState>, Auth(caller): Auth, Q(page): Q<PageQuery>) -> ApiResult<Response> {
    Ok(ok(s.bank.accounts(&caller, None, page.cursor.as_deref(), page.limit).await?))
}

async fn open_account(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<OpenAccount>,
) -> ApiResult<Response> {
    Ok((StatusCode::CREATED, Json(s.bank.open_account(&caller, None, form).await?)).into_response())
}

async fn account(State(s): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    Ok(ok(s.bank.account(&caller, id).await?))
}

async fn update_account(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<AccountUpdate>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.update_account(&caller, id, form).await?))
}

async fn close_account(State(s): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    Ok(ok(s.bank.close_account(&caller, id).await?))
}

async fn history(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Q(page): Q<PageQuery>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.history(&caller, id, page.cursor.as_deref(), page.limit).await?))
}

async fn recipients(State(s): State<AppState>, Auth(caller): Auth, Q(query): Q<RecipientQuery>) -> ApiResult<Response> {
    let phone = required(query.phone, "phone")?;
    let currency = required(query.currency, "currency")?;
    Ok(ok(s.bank.recipient(&caller, &phone, &currency).await?))
}

async fn transfer(
    State(s): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    Body(form): Body<TransferForm>,
) -> ApiResult<Response> {
    let idempotency = idempotency(&headers, "POST /api/v1/transfers")?;
    Ok(created(s.bank.transfer(&caller, form, idempotency).await?))
}

// ------------------------------------------------------------------ staff

async fn staff_customers(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Q(query): Q<SearchQuery>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.search_customers(&caller, query.q.as_deref(), query.cursor.as_deref(), query.limit).await?))
}

async fn staff_register(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<Registration>,
) -> ApiResult<Response> {
    Ok((StatusCode::CREATED, Json(s.bank.register_at_desk(&caller, form).await?)).into_response())
}

async fn staff_customer(State(s): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    Ok(ok(s.bank.staff_customer(&caller, id).await?))
}

async fn staff_customer_status(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<StatusForm>,
) -> ApiResult<Response> {
    let status = required(form.status, "status")?;
    Ok(ok(s.bank.set_customer_status(&caller, id, &status).await?))
}

async fn staff_customer_accounts(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Q(page): Q<PageQuery>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.accounts(&caller, Some(id), page.cursor.as_deref(), page.limit).await?))
}

async fn staff_open_account(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<OpenAccount>,
) -> ApiResult<Response> {
    Ok((StatusCode::CREATED, Json(s.bank.open_account(&caller, Some(id), form).await?)).into_response())
}

async fn staff_transfer(
    State(s): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    Body(form): Body<TransferForm>,
) -> ApiResult<Response> {
    let idempotency = idempotency(&headers, "POST /api/v1/staff/transfers")?;
    Ok(approvals::created_or_accepted(s.bank.staff_transfer(&caller, form, idempotency).await?))
}

async fn cash_deposit(
    State(s): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    Body(form): Body<CashForm>,
) -> ApiResult<Response> {
    let idempotency = idempotency(&headers, "POST /api/v1/staff/cash/deposits")?;
    Ok(created(s.bank.cash(&caller, true, form, idempotency).await?))
}

async fn cash_withdrawal(
    State(s): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    Body(form): Body<CashForm>,
) -> ApiResult<Response> {
    let idempotency = idempotency(&headers, "POST /api/v1/staff/cash/withdrawals")?;
    Ok(approvals::created_or_accepted(s.bank.cash(&caller, false, form, idempotency).await?))
}

async fn staff_account(State(s): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    caller_is_staff(&caller)?;
    Ok(ok(s.bank.account(&caller, id).await?))
}

fn caller_is_staff(caller: &Caller) -> ApiResult<()> {
    caller.staff(kassa_service::Role::Teller)?;
    Ok(())
}

async fn staff_account_status(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<StatusForm>,
) -> ApiResult<Response> {
    let status = required(form.status, "status")?;
    Ok(ok(s.bank.set_account_status(&caller, id, &status).await?))
}

async fn staff_transactions(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Q(query): Q<TransactionsQuery>,
) -> ApiResult<Response> {
    Ok(ok(s
        .bank
        .transactions(&caller, query.account, query.kind.as_deref(), query.cursor.as_deref(), query.limit)
        .await?))
}

async fn staff_audit(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Q(filter): Q<JournalFilter>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.journal(&caller, filter).await?))
}

async fn staff_audit_verify(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    let report = s.bank.verify_journal(&caller).await?;
    Ok(ok(json!({
        "ok": report.problems.is_empty(),
        "chains": report.chains,
        "events": report.events,
        "problems": report.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
}

// ------------------------------------------------------------------ admin

async fn admin_staff(State(s): State<AppState>, Auth(caller): Auth, Q(page): Q<PageQuery>) -> ApiResult<Response> {
    Ok(ok(s.bank.list_staff(&caller, page.cursor.as_deref(), page.limit).await?))
}

async fn admin_create_staff(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<StaffForm>,
) -> ApiResult<Response> {
    Ok((StatusCode::CREATED, Json(s.bank.create_staff(&caller, form).await?)).into_response())
}

async fn admin_staff_status(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    Body(form): Body<StatusForm>,
) -> ApiResult<Response> {
    let status = required(form.status, "status")?;
    Ok(ok(s.bank.set_staff_status(&caller, id, &status).await?))
}

async fn admin_products(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Body(form): Body<ProductForm>,
) -> ApiResult<Response> {
    Ok(ok(s.bank.put_product(&caller, form).await?))
}

async fn admin_settings(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    caller.staff(kassa_service::Role::Admin).map_err(ApiError)?;
    let settings = s.bank.settings();
    Ok(ok(json!({
        "bank": settings.bank,
        "access_token_ttl_s": settings.access_token_ttl_s,
        "accounts_per_customer_max": settings.accounts_per_customer_max,
        "login_failures_free": settings.login_failures_free,
        "address_failures_max": settings.address_failures_max,
    })))
}

// ------------------------------------------------------------------- ops

async fn bank_info(State(s): State<AppState>) -> Response {
    ok(&s.bank.settings().bank)
}

async fn livez() -> Response {
    ok(json!({"status": "ok"}))
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.bank.products().await {
        Ok(_) => ok(json!({"status": "ok"})),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response(),
    }
}

async fn metrics_page(State(s): State<AppState>) -> Response {
    let mut response = s.metrics.render(s.bank.ledger().stats()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

async fn openapi_doc() -> Response {
    ok(openapi::document())
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "not_found", "no such route", None)
}

async fn method_not_allowed() -> Response {
    problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method", None)
}

/// Counts and times every request, by route pattern.
async fn observe(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    s.metrics.observe(&method, &route, status.as_u16(), started.elapsed());
    if status.is_server_error() {
        tracing::warn!(%method, %route, status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), "request");
    }
    response
}

/// The whole HTTP interface.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/logout-all", post(logout_all))
        .route("/auth/password", post(change_password))
        .route("/me", get(me).patch(update_me))
        .route("/me/notifications", get(notifications).patch(set_notifications))
        .route("/bank", get(bank_info))
        .route("/products", get(products))
        .route("/accounts", get(accounts).post(open_account))
        .route("/accounts/{id}", get(account).patch(update_account).delete(close_account))
        .route("/accounts/{id}/transactions", get(history))
        .route("/recipients", get(recipients))
        .route("/transfers", post(transfer))
        .route("/staff/customers", get(staff_customers).post(staff_register))
        .route("/staff/customers/{id}", get(staff_customer))
        .route("/staff/customers/{id}/status", put(staff_customer_status))
        .route("/staff/customers/{id}/accounts", get(staff_customer_accounts).post(staff_open_account))
        .route("/staff/accounts/{id}", get(staff_account))
        .route("/staff/accounts/{id}/status", put(staff_account_status))
        .route("/staff/transfers", post(staff_transfer))
        .route("/staff/cash/deposits", post(cash_deposit))
        .route("/staff/cash/withdrawals", post(cash_withdrawal))
        .route("/staff/transactions", get(staff_transactions))
        .route("/staff/audit", get(staff_audit))
        .route("/staff/audit/verify", get(staff_audit_verify))
        .route("/admin/staff", get(admin_staff).post(admin_create_staff))
        .route("/admin/staff/{id}/status", put(admin_staff_status))
        .route("/admin/products", put(admin_products))
        .route("/admin/settings", get(admin_settings))
        .route("/openapi.json", get(openapi_doc))
        .merge(cards::routes())
        .merge(approvals::routes())
        .merge(fx::routes())
        .merge(interest::routes())
        .merge(terminals::routes())
        .merge(notify::routes())
        .merge(statements::routes());
    let body_max = state.body_max_bytes;
    Router::new()
        .nest("/api/v1", api)
        .route("/livez", get(livez))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(body_max))
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Every served route as (method, path), for the drift test against the
/// OpenAPI document.
pub fn served_routes() -> Vec<(Method, &'static str)> {
    openapi::all_routes().map(|route| (route.method.clone(), route.path)).collect()
}
