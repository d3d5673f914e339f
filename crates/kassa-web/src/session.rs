//! Cookie sessions, CSRF tokens and the language switch: the middleware
//! every page runs behind.
//!
//! The session is the API's: `Bank::login` gives an access and a refresh
//! token, kept in HttpOnly, SameSite=Strict cookies (Secure over HTTPS).
//! Each request authenticates the access token with `Bank::authenticate`,
//! so a revoked session ("sign out everywhere", a password change, a
//! blocked customer) stops working at once; an expired access token is
//! refreshed with the refresh token, and the new pair replaces the old.
//!
//! CSRF: a signed-in session's token is an HMAC of its session id; before
//! sign-in, of a random nonce kept in its own cookie. Every request other
//! than GET/HEAD must present it (form field `csrf`, or header
//! `X-CSRF-Token` for the pages' own JSON calls) or gets 403 before any
//! handler runs, so no state changes.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64_free::encode_hex;
use kassa_service::auth::Tokens;
use kassa_service::crypto::{ct_eq, hmac_sha256, random_token};
use kassa_service::{Caller, ServiceError};
use serde::Deserialize;

use crate::WebState;
use crate::page::{Ctx, FormData};

pub const ACCESS_COOKIE: &str = "kassa_at";
pub const REFRESH_COOKIE: &str = "kassa_rt";
pub const NONCE_COOKIE: &str = "kassa_csrf";
pub const LANG_COOKIE: &str = "kassa_lang";
/// The form field and the header that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// What a page may load: its own style sheet, script and same-origin calls.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// The largest form body a page accepts.
const FORM_MAX_BYTES: usize = 64 * 1024;

mod base64_free {
    /// Lower-case hex: the CSRF token goes into HTML and headers as is.
    pub fn encode_hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The value of one cookie in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

fn set_cookie(name: &str, value: &str, secure: bool, max_age_s: Option<i64>) -> String {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age_s {
        text.push_str(&format!("; Max-Age={age}"));
    }
    text
}

/// The `Set-Cookie` lines that keep a freshly issued pair of tokens.
pub fn session_cookies(state: &WebState, tokens: &Tokens) -> Vec<String> {
    let secure = state.options.secure_cookies;
    vec![
        set_cookie(ACCESS_COOKIE, &tokens.access_token, secure, None),
        set_cookie(REFRESH_COOKIE, &tokens.refresh_token, secure, None),
    ]
}

/// The `Set-Cookie` lines that forget the session.
pub fn clear_session_cookies(state: &WebState) -> Vec<String> {
    let secure = state.options.secure_cookies;
    vec![set_cookie(ACCESS_COOKIE, "", secure, Some(0)), set_cookie(REFRESH_COOKIE, "", secure, Some(0))]
}

pub(crate) fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    for line in cookies {
        if let Ok(value) = HeaderValue::from_str(line) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The client's address: the peer, or — when the peer is a trusted proxy —
/// the nearest untrusted address in `X-Forwarded-For` (the API's rule,
/// so throttling counts the same person the same way on both).
fn client_address(request: &Request, state: &WebState) -> String {
    let trusted = &state.options.trusted_proxies;
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let Some(peer) = peer else { return "unknown".into() };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    forwarded
        .split(',')
        .rev()
        .filter_map(|part| part.trim().parse::<std::net::IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .map_or_else(|| peer.to_string(), |ip| ip.to_string())
}

/// The CSRF token of a session (signed in) or of a nonce (before).
fn csrf_token(state: &WebState, caller: &Caller, nonce: &str) -> String {
    let subject = match &caller.user {
        Some(user) => format!("session:{}", user.session_id),
        None => format!("nonce:{nonce}"),
    };
    encode_hex(&hmac_sha256(&state.csrf_key[..], subject.as_bytes()))
}

/// Authenticates the cookies; refreshes an expired access token. Returns
/// the caller and the cookies to set (new tokens, or clearing dead ones).
async fn resolve(state: &WebState, headers: &HeaderMap, origin: &str) -> Result<(Caller, Vec<String>), ServiceError> {
    let anonymous = Caller::anonymous(origin);
    let Some(access) = cookie(headers, ACCESS_COOKIE) else {
        return Ok((anonymous, Vec::new()));
    };
    match state.bank.authenticate(access, origin).await {
        Ok(caller) => Ok((caller, Vec::new())),
        Err(ServiceError::Unauthorized("token_expired", _)) => {
            let Some(refresh) = cookie(headers, REFRESH_COOKIE) else {
                return Ok((anonymous, clear_session_cookies(state)));
            };
            match state.bank.refresh(origin, refresh).await {
                Ok(tokens) => {
                    let caller = state.bank.authenticate(&tokens.access_token, origin).await?;
                    Ok((caller, session_cookies(state, &tokens)))
                }
                Err(ServiceError::Unauthorized(..)) => Ok((anonymous, clear_session_cookies(state))),
                Err(error) => Err(error),
            }
        }
        Err(ServiceError::Unauthorized(..)) => Ok((anonymous, clear_session_cookies(state))),
        Err(error) => Err(error),
    }
}

/// Runs before every page: session, language, CSRF.
pub async fn middleware(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let origin = client_address(&request, &state);
    let (mut parts, body) = request.into_parts();
    let lang = state.i18n.choose(
        cookie(&parts.headers, LANG_COOKIE),
        parts.headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
    );
    let strings = state.i18n.language(lang).or_else(|| state.i18n.fallback());
    let fallback = state.i18n.fallback();
    let (caller, mut cookies) = match resolve(&state, &parts.headers, &origin).await {
        Ok(resolved) => resolved,
        Err(error) => {
            let ctx = Ctx::new(&state, Caller::anonymous(origin), lang, strings, fallback, String::new(), &parts.uri);
            return crate::page::service_error_page(&ctx, &error);
        }
    };
    let nonce = match cookie(&parts.headers, NONCE_COOKIE) {
        Some(nonce) => nonce.to_owned(),
        None => {
            let fresh = random_token(18).unwrap_or_default();
            cookies.push(set_cookie(NONCE_COOKIE, &fresh, state.options.secure_cookies, None));
            fresh
        }
    };
    let csrf = csrf_token(&state, &caller, &nonce);
    let ctx = Ctx::new(&state, caller, lang, strings, fallback, csrf, &parts.uri);
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let body = if safe {
        body
    } else {
        let Ok(bytes) = axum::body::to_bytes(body, FORM_MAX_BYTES).await else {
            let response = crate::page::message_page(&ctx, StatusCode::PAYLOAD_TOO_LARGE, "error.too_large");
            return with_cookies(response, &cookies);
        };
        let from_header = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let form = FormData::parse(&bytes);
        let presented = from_header.or_else(|| form.get(CSRF_FIELD).map(str::to_owned)).unwrap_or_default();
        if !ct_eq(presented.as_bytes(), ctx.csrf.as_bytes()) {
            tracing::info!(path = %parts.uri.path(), "a form without a valid CSRF token was refused");
            let response = crate::page::message_page(&ctx, StatusCode::FORBIDDEN, "error.csrf");
            return with_cookies(response, &cookies);
        }
        parts.extensions.insert(form);
        Body::from(bytes)
    };
    parts.extensions.insert(ctx);
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let headers = response.headers_mut();
    // Pages show personal data: no shared cache may keep them.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    // Only our own style sheet and script run, and no other site frames us.
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    with_cookies(response, &cookies)
}

#[derive(Debug, Deserialize)]
pub struct LangQuery {
    to: Option<String>,
    back: Option<String>,
}

/// `GET /lang?to=ru&back=/products`: remembers the language in a cookie
/// and goes back. Only a local path is followed back.
pub async fn switch_language(State(state): State<WebState>, Query(query): Query<LangQuery>) -> Response {
    let back = query.back.filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'));
    let back = back.unwrap_or_else(|| "/".to_owned());
    let mut cookies = Vec::new();
    if let Some(code) = query.to.as_deref().and_then(|to| state.i18n.language(to)).map(|s| s.code) {
        cookies.push(format!(
            "{LANG_COOKIE}={code}; Path=/; SameSite=Lax; Max-Age=31536000{}",
            if state.options.secure_cookies { "; Secure" } else { "" }
        ));
    }
    with_cookies(crate::page::redirect(&back), &cookies)
}
