//! The pages over real HTTP, on SQLite and PostgreSQL: sign-in and
//! register, CSRF, cross-customer access, inline errors, languages.

mod common;

use common::*;

/// Registering signs in; the products page is the customer's; signing out
/// ends the session; signing in again brings it back.
async fn register_sign_out_and_in(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let browser = app.browser("en");
    let home = browser.get("/").await;
    assert!(home.url.ends_with("/login"), "{engine:?}: an anonymous visitor is sent to sign in: {}", home.url);
    let registered = browser.register(1).await;
    assert_eq!(registered.status, 200, "{engine:?}: {}", registered.body);
    assert!(registered.url.contains("/products"), "{engine:?}: {}", registered.url);
    assert!(registered.has("My products"), "{engine:?}");
    let out = browser.submit("/products", "/logout", &[]).await;
    assert!(out.url.contains("/login"), "{engine:?}: {}", out.url);
    let after = browser.get("/products").await;
    assert!(after.url.ends_with("/login"), "{engine:?}: signed out, products need sign-in again: {}", after.url);
    let wrong =
        browser.submit("/login", "/login", &[("login", "+375291110001"), ("password", "not the password")]).await;
    assert_eq!(wrong.status, 401, "{engine:?}");
    assert!(wrong.has("The phone number (or login) or the password is wrong."), "{engine:?}: {}", wrong.body);
    let back = browser.submit("/login", "/login", &[("login", "+375291110001"), ("password", PASSWORD)]).await;
    assert!(back.url.ends_with("/products"), "{engine:?}: {}", back.url);
}
on_both_engines!(register_sign_out_and_in);

/// A POST without its CSRF token (or with another session's) is refused
/// with 403 and changes nothing.
async fn a_form_without_its_csrf_token_is_refused(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let browser = app.browser("en");
    browser.register(1).await;
    let form = [("kind", "current"), ("currency", "BYN"), ("consent", "terms:2026-01")];
    let refused = browser.post_raw("/products/new", &form).await;
    assert_eq!(refused.status, 403, "{engine:?}: {}", refused.body);
    let other = app.browser("en");
    let foreign_token = other.get("/login").await.csrf();
    let mut with_foreign: Vec<(&str, &str)> = vec![("csrf", foreign_token.as_str())];
    with_foreign.extend_from_slice(&form);
    assert_eq!(browser.post_raw("/products/new", &with_foreign).await.status, 403, "{engine:?}");
    let products = browser.get("/products").await;
    assert!(products.has("You have no products yet"), "{engine:?}: nothing was opened: {}", products.body);
    // Anonymous forms are protected too: a sign-in without a token.
    let anonymous = app.browser("en");
    let login = anonymous.post_raw("/login", &[("login", "+375291110001"), ("password", PASSWORD)]).await;
    assert_eq!(login.status, 403, "{engine:?}");
    // With the token, the same form opens the account.
    let token = browser.get("/products/new").await.csrf();
    let mut with_token: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
    with_token.extend_from_slice(&form);
    let opened = browser.client.post(format!("{}/products/new", browser.base)).form(&with_token);
    let opened = opened.send().await.unwrap();
    assert!(opened.url().path().starts_with("/accounts/"), "{engine:?}: {}", opened.url());
    let products = browser.get("/products").await;
    assert!(products.has("Current account"), "{engine:?}: {}", products.body);
}
on_both_engines!(a_form_without_its_csrf_token_is_refused);

/// Bad input comes back as messages beside the inputs, never a 5xx.
async fn bad_input_gives_inline_errors(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let browser = app.browser("en");
    let bad = browser
        .submit(
            "/register",
            "/register",
            &[("first_name", "Ivan"), ("phone", "12"), ("password", "short"), ("email", "not-an-email")],
        )
        .await;
    assert_eq!(bad.status, 422, "{engine:?}: {}", bad.body);
    for field in ["phone", "password", "last_name"] {
        assert!(bad.has(&format!("id=\"{field}-error\"")), "{engine:?}: an error beside {field}: {}", bad.body);
    }
    assert!(bad.has("value=\"Ivan\""), "{engine:?}: what was typed is kept");
    browser.register(1).await;
    let missing_consent =
        browser.submit("/products/new", "/products/new", &[("kind", "current"), ("currency", "BYN")]).await;
    assert_eq!(missing_consent.status, 422, "{engine:?}: {}", missing_consent.body);
    assert!(missing_consent.has("id=\"consents-error\""), "{engine:?}: {}", missing_consent.body);
    let nonsense = browser.submit("/products/new", "/products/new", &[("kind", "yacht"), ("currency", "XXX")]).await;
    assert_eq!(nonsense.status, 422, "{engine:?}");
    assert!(nonsense.has("id=\"kind-error\"") && nonsense.has("id=\"currency-error\""), "{engine:?}");
    for path in ["/accounts/abc", "/accounts/-1", "/accounts/99999999999999999999", "/lang?to=%00&back=//evil"] {
        let page = browser.get(path).await;
        assert!(page.status < 500, "{engine:?}: {path}: {}", page.status);
    }
}
on_both_engines!(bad_input_gives_inline_errors);

/// The language follows Accept-Language, and the switch overrides it.
async fn english_and_russian(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let russian = app.browser("ru-RU,ru;q=0.9,en;q=0.5");
    let page = russian.get("/login").await;
    assert!(page.has("<html lang=\"ru\">") && page.has("Вход"), "{engine:?}: {}", page.body);
    let english = russian.get("/lang?to=en&back=/login").await;
    assert!(english.url.ends_with("/login"), "{engine:?}");
    assert!(english.has("<html lang=\"en\">") && english.has("Sign in"), "{engine:?}");
    let back = russian.get("/lang?to=ru&back=/rates").await;
    assert!(back.url.ends_with("/rates") && back.has("Курсы валют"), "{engine:?}");
}
on_both_engines!(english_and_russian);
