//! The OpenAPI document, generated from the same route table the tests
//! check the router against, and committed as docs/openapi.json (a test
//! fails when the committed file drifts from this).

use axum::http::Method;
use serde_json::{Map, Value, json};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Anyone,
    SignedIn,
    Customer,
    Teller,
    Manager,
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Anyone => "anyone",
            Access::SignedIn => "signed_in",
            Access::Customer => "customer",
            Access::Teller => "teller",
            Access::Manager => "manager",
            Access::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RouteDoc {
    pub method: Method,
    /// The full path, with `{id}` for an object id.
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// Accepts `Idempotency-Key`.
    pub idempotent: bool,
    /// The name of the request body's schema, if it takes one.
    pub body: Option<&'static str>,
}

pub const fn route(
    method: Method,
    path: &'static str,
    access: Access,
    summary: &'static str,
    body: Option<&'static str>,
) -> RouteDoc {
    RouteDoc { method, path, access, summary, idempotent: false, body }
}

pub const fn money(
    method: Method,
    path: &'static str,
    access: Access,
    summary: &'static str,
    body: &'static str,
) -> RouteDoc {
    RouteDoc { method, path, access, summary, idempotent: true, body: Some(body) }
}

use Access::{Admin, Anyone, Customer, Manager, SignedIn, Teller};

pub static ROUTES: &[RouteDoc] = &[
    route(
        Method::POST,
        "/api/v1/auth/register",
        Anyone,
        "Register as a customer; returns tokens",
        Some("Registration"),
    ),
    route(
        Method::POST,
        "/api/v1/auth/login",
        Anyone,
        "Sign in with a phone or staff login, password and TOTP",
        Some("Login"),
    ),
    route(Method::POST, "/api/v1/auth/refresh", Anyone, "Rotate the refresh token", Some("Refresh")),
    route(Method::POST, "/api/v1/auth/logout", SignedIn, "End this session", None),
    route(Method::POST, "/api/v1/auth/logout-all", SignedIn, "End every session of this user", None),
    route(Method::POST, "/api/v1/auth/password", SignedIn, "Change the password", Some("PasswordChange")),
    route(Method::GET, "/api/v1/me", Customer, "My profile", None),
    route(Method::PATCH, "/api/v1/me", Customer, "Change my e-mail or names", Some("ProfileUpdate")),
    route(Method::GET, "/api/v1/me/notifications", Customer, "My notification preferences", None),
    route(
        Method::PATCH,
        "/api/v1/me/notifications",
        Customer,
        "Set my notification preferences",
        Some("Notifications"),
    ),
    route(Method::GET, "/api/v1/bank", Anyone, "The bank's name, address, phone, country and timezone", None),
    route(Method::GET, "/api/v1/products", Anyone, "What can be opened", None),
    route(Method::GET, "/api/v1/accounts", Customer, "My accounts (paged)", None),
    route(Method::POST, "/api/v1/accounts", Customer, "Open an account", Some("OpenAccount")),
    route(Method::GET, "/api/v1/accounts/{id}", Customer, "One of my accounts", None),
    route(
        Method::PATCH,
        "/api/v1/accounts/{id}",
        Customer,
        "Rename, or make the default for its currency",
        Some("AccountUpdate"),
    ),
    route(Method::DELETE, "/api/v1/accounts/{id}", Customer, "Close (zero balance only)", None),
    route(Method::GET, "/api/v1/accounts/{id}/transactions", Customer, "History, newest first (paged)", None),
    route(Method::GET, "/api/v1/recipients", Customer, "Masked name of whom a phone number pays", None),
    money(Method::POST, "/api/v1/transfers", Customer, "Pay from my account to an account or a phone", "Transfer"),
    route(Method::GET, "/api/v1/staff/customers", Teller, "Search customers by name, phone, passport", None),
    route(Method::POST, "/api/v1/staff/customers", Teller, "Register a customer at the desk", Some("Registration")),
    route(Method::GET, "/api/v1/staff/customers/{id}", Teller, "One customer", None),
    route(Method::PUT, "/api/v1/staff/customers/{id}/status", Manager, "Block or unblock a customer", Some("Status")),
    route(Method::GET, "/api/v1/staff/customers/{id}/accounts", Teller, "A customer's accounts (paged)", None),
    route(
        Method::POST,
        "/api/v1/staff/customers/{id}/accounts",
        Teller,
        "Open an account for a customer",
        Some("OpenAccount"),
    ),
    route(Method::GET, "/api/v1/staff/accounts/{id}", Teller, "Any customer account", None),
    route(
        Method::PUT,
        "/api/v1/staff/accounts/{id}/status",
        Manager,
        "Block, unblock or close an account",
        Some("Status"),
    ),
    money(Method::POST, "/api/v1/staff/transfers", Teller, "A staff-initiated transfer", "Transfer"),
    money(Method::POST, "/api/v1/staff/cash/deposits", Teller, "Cash in at the desk", "Cash"),
    money(Method::POST, "/api/v1/staff/cash/withdrawals", Teller, "Cash out at the desk", "Cash"),
    route(Method::GET, "/api/v1/staff/transactions", Teller, "All transactions, newest first (paged)", None),
    route(Method::GET, "/api/v1/staff/audit", Manager, "The audit journal, filtered and paged", None),
    route(Method::GET, "/api/v1/staff/audit/verify", Manager, "Verify the journal's hash chains", None),
    route(Method::GET, "/api/v1/admin/staff", Admin, "Staff users (paged)", None),
    route(Method::POST, "/api/v1/admin/staff", Admin, "Create a staff user", Some("StaffUser")),
    route(Method::PUT, "/api/v1/admin/staff/{id}/status", Admin, "Block or unblock a staff user", Some("Status")),
    route(Method::PUT, "/api/v1/admin/products", Admin, "Add or change a product", Some("Product")),
    route(Method::GET, "/api/v1/admin/settings", Admin, "The bank's settings", None),
    route(Method::GET, "/api/v1/openapi.json", Anyone, "This document", None),
    route(Method::GET, "/livez", Anyone, "Liveness: the process answers (no database work)", None),
    route(Method::GET, "/healthz", Anyone, "Readiness: the database answers", None),
    route(Method::GET, "/metrics", Anyone, "Prometheus metrics", None),
];

/// Every documented route: the table above and each feature module's.
pub fn all_routes() -> impl Iterator<Item = &'static RouteDoc> {
    ROUTES
        .iter()
        .chain(crate::cards::ROUTES)
        .chain(crate::approvals::ROUTES)
        .chain(crate::fx::ROUTES)
        .chain(crate::interest::ROUTES)
        .chain(crate::terminals::ROUTES)
        .chain(crate::notify::ROUTES)
        .chain(crate::statements::ROUTES)
}

pub fn string() -> Value {
    json!({"type": "string"})
}

pub fn object(fields: &[&str], required: &[&str]) -> Value {
    let properties: Map<String, Value> = fields.iter().map(|field| ((*field).to_owned(), string())).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

fn schemas() -> Value {
    let mut all = base_schemas();
    if let Some(map) = all.as_object_mut() {
        let features = [
            crate::cards::schemas(),
            crate::approvals::schemas(),
            crate::fx::schemas(),
            crate::interest::schemas(),
            crate::terminals::schemas(),
            crate::notify::schemas(),
            crate::statements::schemas(),
        ];
        for (name, schema) in features.into_iter().flatten() {
            map.insert(name.to_owned(), schema);
        }
    }
    all
}

fn base_schemas() -> Value {
    let mut consent = object(&["document", "version"], &["document", "version"]);
    let mut open = object(&["kind", "currency", "nickname", "holder_name", "product"], &["kind", "currency"]);
    if let Some(properties) = open.get_mut("properties").and_then(Value::as_object_mut) {
        properties
            .insert("consents".into(), json!({"type": "array", "items": {"$ref": "#/components/schemas/Consent"}}));
    }
    if let Some(properties) = consent.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("document".into(), string());
    }
    json!({
        "Registration": object(&["first_name", "last_name", "phone", "email", "password", "passport_number", "personal_id"],
            &["first_name", "last_name", "phone", "email", "passport_number", "personal_id"]),
        "Login": object(&["login", "password", "totp"], &["login", "password"]),
        "Refresh": object(&["refresh_token"], &["refresh_token"]),
        "PasswordChange": object(&["current_password", "new_password"], &["current_password", "new_password"]),
        "ProfileUpdate": object(&["email", "first_name", "last_name"], &[]),
        "Notifications": {"type": "object", "properties": {"sms_per_transaction": {"type": "boolean"},
            "email_per_transaction": {"type": "boolean"}, "sms_on_login": {"type": "boolean"},
            "email_on_login": {"type": "boolean"}, "on_login": {"type": "boolean"}}},
        "Consent": consent,
        "OpenAccount": open,
        "AccountUpdate": {"type": "object", "properties": {"nickname": string(), "is_default": {"type": "boolean"}}},
        "Transfer": object(&["from_account", "to_account", "to_phone", "amount", "currency", "description"],
            &["from_account", "amount", "currency"]),
        "Cash": object(&["account", "amount", "currency", "description"], &["account", "amount", "currency"]),
        "Status": object(&["status"], &["status"]),
        "StaffUser": {"type": "object", "properties": {"login": string(), "name": string(), "role": {"type": "string",
            "enum": ["teller", "manager", "admin"]}, "password": string(), "totp": {"type": "boolean"}},
            "required": ["login", "role", "password"]},
        "Product": object(&["code", "kind", "name", "description", "interest_rate"], &["code", "kind", "name", "currencies"]),
        "Problem": {"type": "object", "properties": {"type": string(), "title": string(), "status": {"type": "integer"},
            "code": string(), "detail": string(), "problems": {"type": "array", "items": {"type": "object",
            "properties": {"field": string(), "code": string(), "detail": string()}}}},
            "required": ["type", "title", "status", "code", "detail"]},
    })
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in all_routes() {
        let mut operation = json!({
            "summary": route.summary,
            "x-kassa-access": route.access.as_str(),
            "responses": {
                "default": {"description": "A problem", "content": {"application/problem+json":
                    {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                "200": {"description": "OK"},
            },
        });
        let mut parameters = Vec::new();
        if route.path.contains("{id}") {
            parameters.push(json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}));
        }
        if route.idempotent {
            parameters.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "description": "Scoped to the caller and the route; kept at least 24 hours.",
                "schema": {"type": "string", "maxLength": 255}}));
        }
        if let Some(map) = operation.as_object_mut() {
            if !parameters.is_empty() {
                map.insert("parameters".into(), Value::Array(parameters));
            }
            if let Some(body) = route.body {
                map.insert(
                    "requestBody".into(),
                    json!({"required": true, "content": {"application/json":
                        {"schema": {"$ref": format!("#/components/schemas/{body}")}}}}),
                );
            }
            if route.access != Anyone {
                map.insert("security".into(), json!([{"bearer": []}]));
            }
        }
        let entry = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(route.method.as_str().to_lowercase(), operation);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Kassa API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Errors are application/problem+json with a stable code. Amounts are decimal strings. \
                Lists are {items, next_cursor}, paged with limit and cursor."},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}
