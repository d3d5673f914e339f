//! The customer cabinet: sign in, register, products, an account's page,
//! rates, the cabinet. Each handler reads its form, calls one `Bank`
//! method with the caller, and renders the answer or the inline errors.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use kassa_service::accounts::{AccountView, Consent, OpenAccount};
use kassa_service::fx::RateView;
use kassa_service::people::Registration;
use kassa_service::{Role, ServiceError};

use crate::WebState;
use crate::page::{Ctx, Errors, Field, FormData, html, html_status, redirect, service_error_page};
use crate::session::{clear_session_cookies, session_cookies, with_cookies};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/register", get(register_page).post(register))
        .route("/logout", post(logout))
        .route("/products", get(products))
        .route("/products/new", get(new_product_page).post(new_product))
        .route("/rates", get(rates))
        .merge(crate::account::routes())
        .merge(crate::cabinet::routes())
}

/// A flash message named in the query (`?done=opened`), translated.
pub(crate) fn flash(ctx: &Ctx) -> String {
    let query = ctx.here.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "done")
        .and_then(|(_, value)| {
            value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_').then(|| ctx.maybe(&format!("done.{value}")))
        })
        .flatten()
        .unwrap_or("")
        .to_owned()
}

async fn home(ctx: Ctx) -> Response {
    match ctx.caller.user.as_ref().map(|u| u.role) {
        Some(Role::Customer) => redirect("/products"),
        Some(_) => redirect("/staff"),
        None => redirect("/login"),
    }
}

// ------------------------------------------------------------ sign in

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    c: &'a Ctx,
    errors: Errors,
    login: String,
    flash: String,
}

async fn login_page(ctx: Ctx) -> Response {
    if ctx.signed_in() {
        return home(ctx).await;
    }
    let flash = flash(&ctx);
    html(&LoginPage { c: &ctx, errors: Errors::none(), login: String::new(), flash })
}

async fn login(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    let login = form.text("login");
    let password = form.raw("password");
    let again = |errors: Errors| {
        let status = StatusCode::OK;
        html_status(
            status,
            &LoginPage { c: &ctx, errors, login: login.clone().unwrap_or_default(), flash: String::new() },
        )
    };
    let mut missing = Errors::none();
    if login.is_none() {
        missing.fields.insert("login".into(), ctx.t("error.field_required").to_owned());
    }
    if password.is_none() {
        missing.fields.insert("password".into(), ctx.t("error.field_required").to_owned());
    }
    let (Some(login_name), Some(password)) = (login.as_deref(), password) else { return again(missing) };
    let tokens = match s.bank.login(&ctx.caller.origin, login_name, &password, form.text("totp").as_deref()).await {
        Ok(tokens) => tokens,
        Err(error) => return again(Errors::from_service(&ctx, &error)),
    };
    let target =
        match s.bank.authenticate(&tokens.access_token, &ctx.caller.origin).await {
            Ok(caller) if tokens.password_change_required => {
                if caller.user.as_ref().is_some_and(|u| u.role.is_staff()) { "/staff" } else { "/cabinet#password" }
            }
            Ok(caller) if caller.user.as_ref().is_some_and(|u| u.role.is_staff()) => "/staff",
            Ok(_) => "/products",
            Err(error) => return again(Errors::from_service(&ctx, &error)),
        };
    with_cookies(redirect(target), &session_cookies(&s, &tokens))
}

async fn logout(State(s): State<WebState>, ctx: Ctx) -> Response {
    if ctx.signed_in() {
        // The cookies go either way; a session that is already gone is fine.
        let _ = s.bank.logout(&ctx.caller, false).await;
    }
    with_cookies(redirect("/login?done=signed_out"), &clear_session_cookies(&s))
}

// ----------------------------------------------------------- register

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage<'a> {
    c: &'a Ctx,
    errors: Errors,
    fields: Vec<Field>,
    shown: Vec<&'static str>,
}

fn register_fields(form: &FormData) -> Vec<Field> {
    vec![
        Field::new("first_name", "field.first_name", "text").value(form.get("first_name")).auto("given-name"),
        Field::new("last_name", "field.last_name", "text").value(form.get("last_name")).auto("family-name"),
        Field::new("phone", "field.phone", "tel").value(form.get("phone")).auto("tel").hint("field.phone_hint"),
        Field::new("email", "field.email", "email").value(form.get("email")).auto("email"),
        Field::new("password", "field.new_password", "password").auto("new-password").hint("field.password_hint"),
        Field::new("passport_number", "field.passport_number", "text").value(form.get("passport_number")),
        Field::new("personal_id", "field.personal_id", "text").value(form.get("personal_id")),
    ]
}

fn register_form(ctx: &Ctx, errors: Errors, form: &FormData, status: StatusCode) -> Response {
    let fields = register_fields(form);
    let shown = fields.iter().map(|f| f.name).collect();
    html_status(status, &RegisterPage { c: ctx, errors, fields, shown })
}

async fn register_page(ctx: Ctx) -> Response {
    if ctx.signed_in() {
        return home(ctx).await;
    }
    register_form(&ctx, Errors::none(), &FormData::default(), StatusCode::OK)
}

async fn register(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    let registration = Registration {
        first_name: form.text("first_name"),
        last_name: form.text("last_name"),
        phone: form.text("phone"),
        email: form.text("email"),
        password: form.raw("password"),
        passport_number: form.text("passport_number"),
        personal_id: form.text("personal_id"),
    };
    match s.bank.register(&ctx.caller, registration).await {
        Ok(registered) => with_cookies(redirect("/products?done=registered"), &session_cookies(&s, &registered.tokens)),
        Err(error) => register_form(&ctx, Errors::from_service(&ctx, &error), &form, StatusCode::OK),
    }
}

// ----------------------------------------------------------- products

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage<'a> {
    c: &'a Ctx,
    accounts: Vec<AccountView>,
    flash: String,
    // The open-new form, for the dialog.
    errors: Errors,
    kinds: Vec<String>,
    kind: String,
    currencies: Vec<String>,
    currency: String,
    consents: Vec<(Consent, bool)>,
    fields: Vec<Field>,
    in_dialog: bool,
}

impl ProductsPage<'_> {
    /// An account number in groups of four, as it is printed on paper.
    fn grouped(&self, number: &str) -> String {
        let chars: Vec<char> = number.chars().collect();
        chars.chunks(4).map(|chunk| chunk.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
    }
}

async fn products(State(s): State<WebState>, ctx: Ctx) -> Response {
    let accounts = match s.bank.accounts(&ctx.caller, None, None, Some(200)).await {
        Ok(page) => page.items,
        Err(error) => return service_error_page(&ctx, &error),
    };
    let form = match open_form(&s, &FormData::default()).await {
        Ok(form) => form,
        Err(error) => return service_error_page(&ctx, &error),
    };
    html(&ProductsPage {
        c: &ctx,
        accounts,
        flash: flash(&ctx),
        errors: Errors::none(),
        kinds: form.kinds,
        kind: form.kind,
        currencies: form.currencies,
        currency: form.currency,
        consents: form.consents,
        fields: form.fields,
        in_dialog: true,
    })
}

#[derive(Template)]
#[template(path = "product_new.html")]
struct NewProductPage<'a> {
    c: &'a Ctx,
    errors: Errors,
    kinds: Vec<String>,
    kind: String,
    currencies: Vec<String>,
    currency: String,
    /// Each consent document the offered products ask for, and whether
    /// the form had it ticked.
    consents: Vec<(Consent, bool)>,
    fields: Vec<Field>,
    in_dialog: bool,
}

/// The open-new form's choices, read from the bank's products (a credit
/// card is applied for, not opened here), with what `form` had.
struct OpenForm {
    kinds: Vec<String>,
    kind: String,
    currencies: Vec<String>,
    currency: String,
    consents: Vec<(Consent, bool)>,
    fields: Vec<Field>,
}

async fn open_form(s: &WebState, form: &FormData) -> Result<OpenForm, ServiceError> {
    let products = s.bank.products().await?;
    let mut kinds: Vec<String> = Vec::new();
    let mut currencies: Vec<String> = Vec::new();
    let mut consents: Vec<Consent> = Vec::new();
    for product in products.iter().filter(|p| p.active && p.kind != "credit_card") {
        if !kinds.contains(&product.kind) {
            kinds.push(product.kind.clone());
        }
        for currency in &product.currencies {
            if !currencies.contains(currency) {
                currencies.push(currency.clone());
            }
        }
        for consent in &product.consents {
            if !consents.contains(consent) {
                consents.push(consent.clone());
            }
        }
    }
    let ticked: Vec<&str> = form.all("consent").iter().filter_map(|v| v.split(':').next()).collect();
    let consents = consents
        .into_iter()
        .map(|consent| {
            let on = ticked.contains(&consent.document.as_str());
            (consent, on)
        })
        .collect();
    let fields = vec![
        Field::new("nickname", "field.nickname", "text").value(form.get("nickname")).hint("field.nickname_hint"),
        Field::new("holder_name", "field.holder_name", "text")
            .value(form.get("holder_name"))
            .auto("cc-name")
            .hint("field.holder_name_hint"),
    ];
    Ok(OpenForm {
        kinds,
        kind: form.get("kind").unwrap_or("").to_owned(),
        currencies,
        currency: form.get("currency").unwrap_or("").to_owned(),
        consents,
        fields,
    })
}

async fn new_product_form(s: &WebState, ctx: &Ctx, errors: Errors, form: &FormData, status: StatusCode) -> Response {
    if let Err(error) = ctx.caller.customer() {
        return service_error_page(ctx, &error);
    }
    let open = match open_form(s, form).await {
        Ok(open) => open,
        Err(error) => return service_error_page(ctx, &error),
    };
    let page = NewProductPage {
        c: ctx,
        errors,
        kinds: open.kinds,
        kind: open.kind,
        currencies: open.currencies,
        currency: open.currency,
        consents: open.consents,
        fields: open.fields,
        in_dialog: false,
    };
    html_status(status, &page)
}

async fn new_product_page(State(s): State<WebState>, ctx: Ctx) -> Response {
    new_product_form(&s, &ctx, Errors::none(), &FormData::default(), StatusCode::OK).await
}

async fn new_product(State(s): State<WebState>, ctx: Ctx, form: FormData) -> Response {
    let consents = form
        .all("consent")
        .iter()
        .filter_map(|value| value.split_once(':'))
        .map(|(document, version)| Consent { document: document.to_owned(), version: version.to_owned() })
        .collect();
    let open = OpenAccount {
        kind: form.text("kind"),
        currency: form.text("currency"),
        nickname: form.text("nickname"),
        holder_name: form.text("holder_name"),
        product: None,
        consents: Some(consents),
    };
    match s.bank.open_account(&ctx.caller, None, open).await {
        Ok(account) => redirect(&format!("/accounts/{}?done=opened", account.id)),
        Err(error @ (ServiceError::Invalid(_) | ServiceError::Refused(..) | ServiceError::Conflict(..))) => {
            let errors = Errors::from_service(&ctx, &error);
            new_product_form(&s, &ctx, errors, &form, StatusCode::OK).await
        }
        Err(error) => service_error_page(&ctx, &error),
    }
}

// -------------------------------------------------------------- rates

#[derive(Template)]
#[template(path = "rates.html")]
struct RatesPage<'a> {
    c: &'a Ctx,
    rates: Vec<RateView>,
}

impl RatesPage<'_> {
    fn when(&self, stamp: &str) -> String {
        crate::account::short_time(stamp)
    }
}

async fn rates(State(s): State<WebState>, ctx: Ctx) -> Response {
    match s.bank.rates().await {
        Ok(rates) => html(&RatesPage { c: &ctx, rates }),
        Err(error) => service_error_page(&ctx, &error),
    }
}
