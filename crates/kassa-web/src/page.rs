//! What a page handler works with: the request's [`Ctx`] (caller,
//! language, CSRF token), its [`FormData`], inline [`Errors`] from a
//! `ServiceError`, and the helpers that turn a template into a response.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, StatusCode, Uri, header, request::Parts};
use axum::response::{IntoResponse, Response};
use kassa_service::{Caller, Role, ServiceError};

use crate::WebState;
use crate::i18n::Strings;

/// One request's context, made by the session middleware and taken by
/// every handler (`ctx: Ctx`).
#[derive(Clone, Debug)]
pub struct Ctx {
    pub caller: Caller,
    /// The chosen language's code (`en`, `ru`).
    pub lang: &'static str,
    strings: Option<Arc<Strings>>,
    fallback: Option<Arc<Strings>>,
    /// The CSRF token every form carries in its hidden `csrf` field.
    pub csrf: String,
    /// The path and query of this request (the language switch comes back
    /// to it).
    pub here: String,
    /// The languages to offer in the switch: (code, own name).
    pub languages: Vec<(&'static str, String)>,
}

impl Ctx {
    pub(crate) fn new(
        state: &WebState,
        caller: Caller,
        lang: &'static str,
        strings: Option<Arc<Strings>>,
        fallback: Option<Arc<Strings>>,
        csrf: String,
        uri: &Uri,
    ) -> Ctx {
        let languages = state
            .i18n
            .languages
            .iter()
            .map(|s| (s.code, s.get("language.name").unwrap_or(s.code).to_owned()))
            .collect();
        let here = uri.path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        Ctx { caller, lang, strings, fallback, csrf, here, languages }
    }

    /// The string for `key` in the chosen language (English if that
    /// language lacks it; the key itself if both do — a test fails then).
    pub fn t<'a>(&'a self, key: &'a str) -> &'a str {
        self.maybe(key).unwrap_or(key)
    }

    /// The string for `prefix.code` (an enumeration's label, `kind.savings`),
    /// or the code itself when no language names it.
    pub fn label(&self, prefix: &str, code: &str) -> String {
        self.maybe(&format!("{prefix}.{code}")).unwrap_or(code).to_owned()
    }

    /// The string for `key`, if any language has it.
    pub fn maybe(&self, key: &str) -> Option<&str> {
        self.strings.as_ref().and_then(|s| s.get(key)).or_else(|| self.fallback.as_ref().and_then(|s| s.get(key)))
    }

    pub fn signed_in(&self) -> bool {
        self.caller.user.is_some()
    }

    pub fn is_customer(&self) -> bool {
        self.caller.user.as_ref().is_some_and(|u| u.role == Role::Customer)
    }

    pub fn is_staff(&self) -> bool {
        self.caller.user.as_ref().is_some_and(|u| u.role.is_staff())
    }

    /// Whether the caller is staff of at least this role (`teller`,
    /// `manager`, `admin`): the console shows only the sections the
    /// services would let them use.
    pub fn staff_at_least(&self, least: &str) -> bool {
        let least = Role::parse(least).unwrap_or(Role::Admin);
        self.caller.user.as_ref().is_some_and(|u| u.role.is_staff() && u.role >= least)
    }

    /// The link that switches to language `code` and comes back here.
    pub fn lang_link(&self, code: &str) -> String {
        let back: String = form_urlencoded::byte_serialize(self.here.as_bytes()).collect();
        format!("/lang?to={code}&back={back}")
    }

    /// Whether the current path starts with `prefix` (for `aria-current`).
    pub fn at(&self, prefix: &str) -> bool {
        let path = self.here.split('?').next().unwrap_or("");
        path == prefix || path.starts_with(&format!("{prefix}/"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Ctx, Response> {
        // Only a route outside the session layer lacks it: a wiring bug.
        parts.extensions.get::<Ctx>().cloned().ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

/// A posted form's fields, in order (a name may repeat: checkboxes).
#[derive(Clone, Debug, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn parse(bytes: &[u8]) -> FormData {
        FormData(form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The first value of `name`, trimmed, `None` when empty: the services
    /// take `Option<String>` fields and name a missing one themselves.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// The value as typed (passwords are not trimmed).
    pub fn raw(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
    }

    /// A checkbox: ticked or not.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for FormData {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<FormData, Response> {
        Ok(parts.extensions.get::<FormData>().cloned().unwrap_or_default())
    }
}

/// Messages to show beside the inputs (by field name) and above the form.
#[derive(Clone, Debug, Default)]
pub struct Errors {
    pub fields: HashMap<String, String>,
    pub general: Vec<String>,
}

impl Errors {
    pub fn none() -> Errors {
        Errors::default()
    }

    /// A service error as the person should read it: a field problem
    /// beside its field, anything else above the form, translated by code
    /// (`error.<code>`), else the service's own message.
    pub fn from_service(ctx: &Ctx, error: &ServiceError) -> Errors {
        let mut errors = Errors::default();
        match error {
            ServiceError::Invalid(problems) => {
                for problem in problems {
                    let text = translated(ctx, problem.code).unwrap_or_else(|| problem.detail.clone());
                    errors.fields.entry(problem.field.clone()).or_insert(text);
                }
            }
            other => errors.general.push(message_of(ctx, other)),
        }
        errors
    }

    /// One general message by key.
    pub fn general(ctx: &Ctx, key: &str) -> Errors {
        Errors { fields: HashMap::new(), general: vec![ctx.t(key).to_owned()] }
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    pub fn msg(&self, field: &str) -> &str {
        self.fields.get(field).map_or("", String::as_str)
    }

    pub fn any(&self) -> bool {
        !self.fields.is_empty() || !self.general.is_empty()
    }

    /// Field problems for fields a form does not show, as general lines.
    pub fn unplaced(&self, shown: &[&str]) -> Vec<String> {
        let mut lines = self.general.clone();
        lines.extend(self.fields.iter().filter(|(field, _)| !shown.contains(&field.as_str())).map(|(_, m)| m.clone()));
        lines
    }
}

fn translated(ctx: &Ctx, code: &str) -> Option<String> {
    ctx.maybe(&format!("error.{code}")).map(str::to_owned)
}

/// The message of a non-field error.
pub fn message_of(ctx: &Ctx, error: &ServiceError) -> String {
    match error {
        ServiceError::Throttled { retry_after_s } => {
            ctx.t("error.too_many_attempts").replace("{seconds}", &retry_after_s.max(&1).to_string())
        }
        ServiceError::Internal(message) => {
            tracing::error!(%message, "internal error");
            ctx.t("error.internal_error").to_owned()
        }
        ServiceError::Unavailable(message) => {
            tracing::warn!(%message, "unavailable");
            ctx.t("error.unavailable").to_owned()
        }
        other => translated(ctx, other.code()).unwrap_or_else(|| other.to_string()),
    }
}

/// A rendered template as an HTML response. A form that comes back with
/// its errors is a 200 too: the messages are the answer, and a 4xx
/// document would count as an error in the browser's console.
pub fn html<T: Template>(template: &T) -> Response {
    html_status(StatusCode::OK, template)
}

pub fn html_status<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(text) => {
            let mut response = (status, text).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "a template failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// 303 See Other: after a POST, the browser GETs the target.
pub fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

pub(crate) fn asset(text: &'static str, content_type: &'static str) -> Response {
    let mut response = text.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

/// A page with one message (errors that are not about a form).
#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    c: &'a Ctx,
    title: String,
    message: String,
}

pub(crate) fn message_page(ctx: &Ctx, status: StatusCode, key: &str) -> Response {
    let title = ctx.t(&format!("status.{}", status.as_u16())).to_owned();
    html_status(status, &MessagePage { c: ctx, title, message: ctx.t(key).to_owned() })
}

/// A service error that is not about a form: sign-in needed → the sign-in
/// page; a password to change first → the cabinet; otherwise a page with
/// the status the API would give and the translated message.
pub fn service_error_page(ctx: &Ctx, error: &ServiceError) -> Response {
    match error {
        ServiceError::Unauthorized(..) => redirect("/login"),
        ServiceError::Forbidden("password_change_required", _) => redirect("/cabinet#password"),
        other => {
            let status = match other {
                ServiceError::Invalid(_) | ServiceError::Refused(..) => StatusCode::UNPROCESSABLE_ENTITY,
                ServiceError::Forbidden(..) => StatusCode::FORBIDDEN,
                ServiceError::NotFound(..) => StatusCode::NOT_FOUND,
                ServiceError::Conflict(..) => StatusCode::CONFLICT,
                ServiceError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let title = ctx.t(&format!("status.{}", status.as_u16())).to_owned();
            html_status(status, &MessagePage { c: ctx, title, message: message_of(ctx, other) })
        }
    }
}

/// One input of a form, for `fields.html`.
#[derive(Clone, Debug, Default)]
pub struct Field {
    pub name: &'static str,
    /// The translation key of its label.
    pub label: &'static str,
    /// The input type: text, password, email, tel, date.
    pub kind: &'static str,
    pub value: String,
    pub autocomplete: &'static str,
    pub inputmode: &'static str,
    /// A translation key for a hint under the input, or empty.
    pub hint: &'static str,
}

impl Field {
    pub fn new(name: &'static str, label: &'static str, kind: &'static str) -> Field {
        Field { name, label, kind, ..Field::default() }
    }

    pub fn value(mut self, value: Option<&str>) -> Field {
        self.value = value.unwrap_or("").to_owned();
        self
    }

    pub fn auto(mut self, autocomplete: &'static str) -> Field {
        self.autocomplete = autocomplete;
        self
    }

    #[allow(dead_code)]
    pub fn mode(mut self, inputmode: &'static str) -> Field {
        self.inputmode = inputmode;
        self
    }

    pub fn hint(mut self, hint: &'static str) -> Field {
        self.hint = hint;
        self
    }
}
