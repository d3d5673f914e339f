//! The cabinet: profile, notification preferences, password, sign out
//! everywhere. A customer who must change the password first sees only
//! the password form.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use kassa_service::ServiceError;
use kassa_service::people::{Customer, NotificationsUpdate, ProfileUpdate};

use crate::WebState;
use crate::page::{Ctx, Errors, Field, FormData, html_status, redirect, service_error_page};
use crate::session::{clear_session_cookies, with_cookies};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/cabinet", get(cabinet))
        .route("/cabinet/profile", post(profile))
        .route("/cabinet/notifications", post(notifications))
        .route("/cabinet/password", post(password))
        .route("/cabinet/logout-all", post(logout_all))
}

#[derive(Template)]
#[template(path = "cabinet.html")]
struct CabinetPage<'a> {
    c: &'a Ctx,
    flash: String,
    /// `None` while the password must be changed first.
    me: Option<Customer>,
    profile_errors: Errors,
    fields: Vec<Field>,
    errors: Errors,
    notify_errors: Errors,
    password_fields: Vec<Field>,
    password_errors: Errors,
    /// The four switches: (name, label key, on).
    switches: Vec<(&'static str, &'static str, bool)>,
}

#[derive(Default)]
struct Extras {
    profile_errors: Errors,
    notify_errors: Errors,
    password_errors: Errors,
    values: Option<FormData>,
}

fn restricted(ctx: &Ctx) -> bool {
    ctx.caller.user.as_ref().is_some_and(|u| u.restricted)
}

async fn render(s: &WebState, ctx: &Ctx, extras: Extras, status: StatusCode) -> Response {
    if !ctx.signed_in() {
        return redirect("/login");
    }
    let me = if restricted(ctx) {
        None
    } else {
        match s.bank.me(&ctx.caller).await {
            Ok(me) => Some(me),
            Err(error) => return service_error_page(ctx, &error),
        }
    };
    let typed = extras.values.unwrap_or_default();
    let pick = |name: &str, stored: Option<&str>| typed.get(name).or(stored).map(str::to_owned);
    let fields = vec![
        Field::new("first_name", "field.first_name", "text")
            .value(pick("first_name", me.as_ref().map(|m| m.first_name.as_str())).as_deref())
            .auto("given-name"),
        Field::new("last_name", "field.last_name", "text")
            .value(pick("last_name", me.as_ref().map(|m| m.last_name.as_str())).as_deref())
            .auto("family-name"),
        Field::new("email", "field.email", "email")
            .value(pick("email", me.as_ref().map(|m| m.email.as_str())).as_deref())
            .auto("email"),
    ];
    let password_fields = vec![
        Field::new("current_password", "field.current_password", "password").auto("current-password"),
        Field::new("new_password", "cabinet.new_password", "password").auto("new-password").hint("field.password_hint"),
    ];
    let prefs = me.as_ref().map(|m| m.notifications).unwrap_or_default();
    let switches = vec![
        ("sms_per_transaction", "cabinet.sms_per_transaction", prefs.sms_per_transaction),
        ("email_per_transaction", "cabinet.email_per_transaction", prefs.email_per_transaction),
        ("sms_on_login", "cabinet.sms_on_login", prefs.sms_on_login),
        ("email_on_login", "cabinet.email_on_login", prefs.email_on_login),
    ];
    let page = CabinetPage {
        c: ctx,
        flash: crate::customer::flash(ctx),
        me,
        errors: extras.profile_errors.clone(),
        profile_errors: extras.profile_errors,
        fields,
        notify_errors: extras.notify_errors,
        password_fields,
        password_errors: extras.password_errors,
        switches,
    };
    html_status(status, &page)
}

async fn cabinet(State(s): State<WebState>, ctx: Ctx) -> Response {
    render(&s, &ctx, Extras::default(), StatusCode::OK).await
}

fn form_error(error: &ServiceError) -> bool {
    matches!(error, ServiceError::Invalid(_) | ServiceError::Refused(..) | ServiceError::Conflict(..))
}

async fn profile(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    let update = ProfileUpdate {
        email: form.text("email"),
        first_name: form.text("first_name"),
        last_name: form.text("last_name"),
    };
    match s.bank.update_me(&ctx.caller, update).await {
        Ok(_) => redirect("/cabinet?done=profile"),
        Err(error) if form_error(&error) => {
            let extras =
                Extras { profile_errors: Errors::from_service(&ctx, &error), values: Some(form), ..Extras::default() };
            render(&s, &ctx, extras, StatusCode::OK).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

async fn notifications(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    // Every switch is sent: an unticked box is "off", as the form shows it.
    let update = NotificationsUpdate {
        sms_per_transaction: Some(form.checked("sms_per_transaction")),
        email_per_transaction: Some(form.checked("email_per_transaction")),
        sms_on_login: Some(form.checked("sms_on_login")),
        email_on_login: Some(form.checked("email_on_login")),
        on_login: None,
    };
    match s.bank.set_notifications(&ctx.caller, update).await {
        Ok(_) => redirect("/cabinet?done=notifications"),
        Err(error) if form_error(&error) => {
            let extras = Extras { notify_errors: Errors::from_service(&ctx, &error), ..Extras::default() };
            render(&s, &ctx, extras, StatusCode::OK).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

async fn password(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    let current = form.raw("current_password").unwrap_or_default();
    let new = form.raw("new_password").unwrap_or_default();
    match s.bank.change_password(&ctx.caller, &current, &new).await {
        Ok(()) => redirect("/cabinet?done=password"),
        Err(error) if form_error(&error) || matches!(error, ServiceError::Throttled { .. }) => {
            let extras = Extras { password_errors: Errors::from_service(&ctx, &error), ..Extras::default() };
            render(&s, &ctx, extras, StatusCode::OK).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

async fn logout_all(State(s): State<WebState>, ctx: Ctx) -> Response {
    match s.bank.logout(&ctx.caller, true).await {
        Ok(()) => with_cookies(redirect("/login?done=signed_out_everywhere"), &clear_session_cookies(&s)),
        Err(error) => service_error_page(&ctx, &error),
    }
}
