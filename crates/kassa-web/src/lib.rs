//! Kassa's web pages: the customer cabinet at `/` (and the staff console
//! at `/staff`), server-rendered HTML over the same [`Bank`] methods the
//! JSON API calls. Handlers only translate, as in `kassa-http`: read the
//! form, call one service method with the [`Caller`], render the answer.
//!
//! Cross-cutting work happens once, in [`session`]'s middleware, before any
//! handler runs: the cookie session is authenticated (and refreshed), the
//! language is chosen, and every state-changing request must carry the
//! session's CSRF token or is refused with 403 before it reaches a handler.
//! See FOUNDATION.md for how to add a page.

mod account;
mod cabinet;
mod chart;
mod customer;
pub mod i18n;
mod page;
mod session;
mod staff;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::get;
use kassa_service::Bank;

pub use page::{Ctx, Errors, FormData, html, redirect, service_error_page};
pub use session::{clear_session_cookies, session_cookies};

/// How the web pages are served.
#[derive(Clone, Debug, Default)]
pub struct WebOptions {
    /// Mark the cookies `Secure`: set when the server speaks HTTPS (or a
    /// proxy in front of it does).
    pub secure_cookies: bool,
    /// Addresses whose `X-Forwarded-For` is believed, as for the API.
    pub trusted_proxies: Vec<IpAddr>,
}

/// What every page handler shares.
#[derive(Clone, Debug)]
pub struct WebState {
    pub bank: Bank,
    pub options: Arc<WebOptions>,
    pub i18n: Arc<i18n::I18n>,
    /// The key CSRF tokens are derived under (from the token key, with its
    /// own purpose label, so the two never coincide).
    pub(crate) csrf_key: Arc<[u8; 32]>,
}

impl WebState {
    pub fn new(bank: Bank, options: WebOptions) -> WebState {
        let csrf_key = kassa_service::crypto::hmac_sha256(&bank.settings().token_key.0, b"kassa-web csrf v1");
        WebState { bank, options: Arc::new(options), i18n: Arc::new(i18n::I18n::load()), csrf_key: Arc::new(csrf_key) }
    }
}

/// The style sheet and the little script, embedded: no build step.
const CSS: &str = include_str!("../static/kassa.css");
const JS: &str = include_str!("../static/kassa.js");

async fn css() -> axum::response::Response {
    page::asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> axum::response::Response {
    page::asset(JS, "text/javascript; charset=utf-8")
}

/// The web pages, ready to merge beside the API (they have no fallback of
/// their own, so the API's 404 stays the one fallback).
pub fn router(bank: Bank, options: WebOptions) -> Router {
    pages(WebState::new(bank, options))
}

/// The pages over a prepared state (tests use this to share the state).
pub fn pages(state: WebState) -> Router {
    Router::new()
        .merge(customer::routes())
        .merge(staff::routes())
        .route("/lang", get(session::switch_language))
        .route_layer(middleware::from_fn_with_state(state.clone(), session::middleware))
        // The static files need no session: served outside the layer.
        .route("/static/kassa.css", get(css))
        .route("/static/kassa.js", get(js))
        .with_state(state)
}
