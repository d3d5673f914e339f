//! The pages over real HTTP, on SQLite and PostgreSQL: sign-in and
//! register, CSRF, cross-customer access, inline errors, languages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_debug_implementations)]

mod common;

use common::*;

/// Registering signs in; the products page is the customer's; signing out
/// ends the session; signing in again brings it back.
async fn register_sign_out_and_in(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let browser = app.browser("en");
    let home = browser.get("/").await;
    let headers = browser.client.get(format!("{}/login", browser.base)).send().await.unwrap();
    let csp = headers.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{engine:?}: {csp}");
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
    assert_eq!(wrong.status, 200, "{engine:?}: the form again, with the message");
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
    assert_eq!(bad.status, 200, "{engine:?}: {}", bad.body);
    for field in ["phone", "password", "last_name"] {
        assert!(bad.has(&format!("id=\"{field}-error\"")), "{engine:?}: an error beside {field}: {}", bad.body);
    }
    assert!(bad.has("value=\"Ivan\""), "{engine:?}: what was typed is kept");
    browser.register(1).await;
    let missing_consent =
        browser.submit("/products/new", "/products/new", &[("kind", "current"), ("currency", "BYN")]).await;
    assert_eq!(missing_consent.status, 200, "{engine:?}: {}", missing_consent.body);
    assert!(missing_consent.has("id=\"consents-error\""), "{engine:?}: {}", missing_consent.body);
    let nonsense = browser.submit("/products/new", "/products/new", &[("kind", "yacht"), ("currency", "XXX")]).await;
    assert_eq!(nonsense.status, 200, "{engine:?}");
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

/// The id in an `/accounts/{id}` URL.
fn account_in(url: &str) -> String {
    url.split("/accounts/").nth(1).unwrap().split(['?', '#', '/']).next().unwrap().to_owned()
}

/// The text of the element with `id` (up to the next tag).
fn text_of(page: &Page, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = page.body.find(&marker).map(|i| i + marker.len()).unwrap_or_else(|| panic!("no #{id}"));
    page.body[start..].split('<').next().unwrap().trim().to_owned()
}

/// A customer's account page is theirs alone: another customer gets 404
/// for it and for every form on it, and nothing changes.
async fn another_customers_account_is_not_found(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let anna = app.browser("en");
    anna.register(1).await;
    let opened = anna
        .submit(
            "/products/new",
            "/products/new",
            &[("kind", "current"), ("currency", "BYN"), ("consent", "terms:2026-01")],
        )
        .await;
    let id = account_in(&opened.url);
    let number = text_of(&opened, "account-number");
    app.deposit(&number, "100.00", "BYN").await;
    let ivan = app.browser("en");
    ivan.register(2).await;
    let path = format!("/accounts/{id}");
    let seen = ivan.get(&path).await;
    assert_eq!(seen.status, 404, "{engine:?}: {}", seen.body);
    assert!(!seen.has(&number), "{engine:?}: the number is not shown");
    for (action, fields) in [
        ("close", vec![]),
        ("transfer", vec![("mode", "phone"), ("to_phone", "+375291110002"), ("amount", "10.00")]),
        ("statement", vec![("from", "2026-01-01"), ("to", "2026-01-31"), ("format", "csv")]),
        ("reveal", vec![("password", PASSWORD)]),
    ] {
        let answer = ivan.submit("/products", &format!("{path}/{action}"), &fields).await;
        assert_eq!(answer.status, 404, "{engine:?}: {action}: {}", answer.body);
    }
    let still = anna.get(&path).await;
    assert_eq!(text_of(&still, "balance"), "100.00 BYN", "{engine:?}: nothing moved");
    let anonymous = app.browser("en").get(&path).await;
    assert!(anonymous.url.ends_with("/login"), "{engine:?}: {}", anonymous.url);
}
on_both_engines!(another_customers_account_is_not_found);

/// The account page's forms: a card shown after the password, payments by
/// phone and between own accounts (an exchange), errors inline, history,
/// a statement, closing.
async fn the_account_page_does_what_the_api_does(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    app.set_rates().await;
    let payee = app.browser("en");
    payee.register(2).await;
    payee
        .submit(
            "/products/new",
            "/products/new",
            &[("kind", "current"), ("currency", "BYN"), ("consent", "terms:2026-01")],
        )
        .await;
    let me = app.browser("en");
    me.register(1).await;
    let card = me
        .submit(
            "/products/new",
            "/products/new",
            &[("kind", "debit_card"), ("currency", "BYN"), ("consent", "terms:2026-01"), ("consent", "cards:2026-01")],
        )
        .await;
    assert_eq!(card.status, 200, "{engine:?}: {}", card.body);
    let card_id = account_in(&card.url);
    let masked = text_of(&card, "card-masked");
    assert!(masked.contains('•'), "{engine:?}: {masked}");
    let usd = me
        .submit(
            "/products/new",
            "/products/new",
            &[("kind", "current"), ("currency", "USD"), ("consent", "terms:2026-01")],
        )
        .await;
    let usd_id = account_in(&usd.url);
    app.deposit(&text_of(&card, "account-number"), "500.00", "BYN").await;
    let path = format!("/accounts/{card_id}");
    // The card behind "Show": a wrong password is an inline error.
    let wrong = me.submit(&path, &format!("{path}/reveal"), &[("password", "wrong password")]).await;
    assert_eq!(wrong.status, 200, "{engine:?}");
    assert!(wrong.has("id=\"reveal-password-error\""), "{engine:?}: {}", wrong.body);
    let shown = me.submit(&path, &format!("{path}/reveal"), &[("password", PASSWORD)]).await;
    assert_eq!(shown.status, 200, "{engine:?}: {}", shown.body);
    assert_eq!(text_of(&shown, "card-number").len(), 16, "{engine:?}");
    assert_eq!(text_of(&shown, "card-cvv").len(), 3, "{engine:?}");
    // By phone: bad input inline, then paid.
    let transfer = format!("{path}/transfer");
    let bad = me.submit(&path, &transfer, &[("mode", "phone"), ("to_phone", "12"), ("amount", "ten")]).await;
    assert_eq!(bad.status, 200, "{engine:?}: {}", bad.body);
    assert!(bad.has("id=\"to_phone-error\"") || bad.has("id=\"amount-error\""), "{engine:?}: {}", bad.body);
    let too_much =
        me.submit(&path, &transfer, &[("mode", "phone"), ("to_phone", "+375291110002"), ("amount", "9000.00")]).await;
    assert_eq!(too_much.status, 200, "{engine:?}");
    assert!(too_much.has("Not enough money"), "{engine:?}: {}", too_much.body);
    let paid =
        me.submit(&path, &transfer, &[("mode", "phone"), ("to_phone", "+375291110002"), ("amount", "25.00")]).await;
    assert_eq!(paid.status, 200, "{engine:?}: {}", paid.body);
    assert_eq!(text_of(&paid, "balance"), "475.00 BYN", "{engine:?}");
    // A double click: the same form (its idempotency key) posted twice pays once.
    let form = me.get(&path).await;
    let key = form.body.split("name=\"idempotency_key\" value=\"").nth(1).and_then(|rest| rest.split('"').next());
    let key = key.unwrap_or_else(|| panic!("{engine:?}: the transfer form has no idempotency key")).to_owned();
    let fields = [
        ("csrf", form.csrf()),
        ("mode", "phone".to_owned()),
        ("idempotency_key", key),
        ("to_phone", "+375291110002".to_owned()),
        ("amount", "1.00".to_owned()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = me.post_raw(&transfer, &fields).await;
    let second = me.post_raw(&transfer, &fields).await;
    assert_eq!((first.status, second.status), (200, 200), "{engine:?}: {}", second.body);
    assert_eq!(text_of(&second, "balance"), "474.00 BYN", "{engine:?}: one payment of 1.00, not two");
    app.deposit(&text_of(&card, "account-number"), "1.00", "BYN").await;
    // Between own accounts in another currency: an exchange.
    let exchanged = me.submit(&path, &transfer, &[("mode", "own"), ("to_account", &usd_id), ("amount", "33.00")]).await;
    assert_eq!(exchanged.status, 200, "{engine:?}: {}", exchanged.body);
    assert_eq!(text_of(&exchanged, "balance"), "442.00 BYN", "{engine:?}");
    let dollars = me.get(&format!("/accounts/{usd_id}")).await;
    assert_eq!(text_of(&dollars, "balance"), "10.00 USD", "{engine:?}: 33 BYN at 3.30");
    // History and chart.
    assert!(exchanged.has("<polyline class=\"line\""), "{engine:?}");
    assert!(exchanged.has("Exchange") && exchanged.has("Cash deposit"), "{engine:?}: {}", exchanged.body);
    // The live quote's endpoint (with the CSRF header) and the preview.
    let token = exchanged.csrf();
    let quote = me
        .client
        .post(format!("{}/web/quote", me.base))
        .header("X-CSRF-Token", &token)
        .form(&[("from", "BYN"), ("to", "USD"), ("amount", "33.00")])
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(quote["text"].as_str().unwrap().contains("10.00"), "{engine:?}: {quote}");
    let preview = me.get("/web/recipient?phone=%2B375291110002&currency=BYN").await;
    assert!(preview.body.contains("Olga S."), "{engine:?}: {}", preview.body);
    // A statement as CSV.
    // The form's default period: this month up to today.
    let value_of = |name: &str| {
        let marker = format!("name=\"{name}\" type=\"date\" value=\"");
        exchanged.body.split(&marker).nth(1).unwrap().split('"').next().unwrap().to_owned()
    };
    let (from, to) = (value_of("from"), value_of("to"));
    let csv = me.submit(&path, &format!("{path}/statement"), &[("from", &from), ("to", &to), ("format", "csv")]).await;
    assert_eq!(csv.status, 200, "{engine:?}: {}", csv.body);
    assert!(csv.body.contains("25.00"), "{engine:?}: {}", csv.body);
    let token = me.get(&path).await.csrf();
    let xlsx = me
        .client
        .post(format!("{}{path}/statement", me.base))
        .form(&[("csrf", token.as_str()), ("from", &from), ("to", &to), ("format", "xlsx")])
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status().as_u16(), 200, "{engine:?}");
    assert!(xlsx.headers()["content-disposition"].to_str().unwrap().contains(".xlsx"), "{engine:?}");
    assert!(xlsx.bytes().await.unwrap().starts_with(b"PK"), "{engine:?}: an XLSX is a zip");
    let bad_dates =
        me.submit(&path, &format!("{path}/statement"), &[("from", "yesterday"), ("to", ""), ("format", "csv")]).await;
    assert_eq!(bad_dates.status, 200, "{engine:?}");
    assert!(bad_dates.has("id=\"from-error\""), "{engine:?}: {}", bad_dates.body);
    // Closing: refused while money is on it, done when empty.
    let refused = me.submit(&path, &format!("{path}/close"), &[]).await;
    assert_eq!(refused.status, 200, "{engine:?}: {}", refused.body);
    assert!(
        refused.has("class=\"notice error\"") && refused.has("id=\"balance\">442.00 BYN"),
        "{engine:?}: {}",
        refused.body
    );
    let empty = me
        .submit(
            &format!("/accounts/{usd_id}"),
            &format!("/accounts/{usd_id}/transfer"),
            &[("mode", "own"), ("to_account", &card_id), ("amount", "10.00")],
        )
        .await;
    assert_eq!(empty.status, 200, "{engine:?}: {}", empty.body);
    let closed = me.submit("/products", &format!("/accounts/{usd_id}/close"), &[]).await;
    assert!(closed.url.contains("/products") && closed.has("The account is closed."), "{engine:?}: {}", closed.body);
}
on_both_engines!(the_account_page_does_what_the_api_does);

/// The cabinet: profile, notifications, password, sign out everywhere
/// (which ends the other browser's session too).
async fn the_cabinet(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let me = app.browser("en");
    me.register(1).await;
    let other = app.browser("en");
    other.submit("/login", "/login", &[("login", "+375291110001"), ("password", PASSWORD)]).await;
    let bad = me.submit("/cabinet", "/cabinet/profile", &[("first_name", ""), ("email", "nope")]).await;
    assert_eq!(bad.status, 200, "{engine:?}: {}", bad.body);
    assert!(bad.has("id=\"email-error\""), "{engine:?}: {}", bad.body);
    let saved = me
        .submit(
            "/cabinet",
            "/cabinet/profile",
            &[("first_name", "Ivan"), ("last_name", "Petrov"), ("email", "new@example.com")],
        )
        .await;
    assert!(saved.has("The profile is saved.") && saved.has("new@example.com"), "{engine:?}: {}", saved.body);
    let switched = me.submit("/cabinet", "/cabinet/notifications", &[("sms_on_login", "on")]).await;
    assert!(
        switched.has("id=\"sms_on_login\" name=\"sms_on_login\" value=\"on\" checked"),
        "{engine:?}: {}",
        switched.body
    );
    let wrong = me
        .submit(
            "/cabinet",
            "/cabinet/password",
            &[("current_password", "nope"), ("new_password", "another long phrase 2")],
        )
        .await;
    assert!(wrong.has("id=\"current_password-error\""), "{engine:?}: {}", wrong.body);
    let everywhere = me.submit("/cabinet", "/cabinet/logout-all", &[]).await;
    assert!(everywhere.url.contains("/login"), "{engine:?}");
    let gone = other.get("/products").await;
    assert!(gone.url.ends_with("/login"), "{engine:?}: the other session ended: {}", gone.url);
}
on_both_engines!(the_cabinet);

/// An expired access token is refreshed from the refresh cookie: the
/// customer stays signed in; a signed-out session's cookies do not come back.
async fn an_expired_access_token_is_refreshed(engine: Engine) {
    let Some(app) = spawn_app_with(engine, |settings| settings.access_token_ttl_s = 1).await else { return };
    let browser = app.browser("en");
    browser.register(1).await;
    // Waits until the one-second access token has certainly expired.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let products = browser.get("/products").await;
    assert!(products.url.ends_with("/products") && products.has("My products"), "{engine:?}: {}", products.url);
    // The rotated pair works for the next request too.
    let again = browser.get("/cabinet").await;
    assert!(again.url.ends_with("/cabinet"), "{engine:?}: {}", again.url);
}
on_both_engines!(an_expired_access_token_is_refreshed);

/// The history pages by 20, newest first, with a link to older lines.
async fn history_pages(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let me = app.browser("en");
    me.register(1).await;
    let opened = me
        .submit(
            "/products/new",
            "/products/new",
            &[("kind", "current"), ("currency", "BYN"), ("consent", "terms:2026-01")],
        )
        .await;
    let id = account_in(&opened.url);
    let number = text_of(&opened, "account-number");
    for n in 1..=23 {
        app.deposit(&number, &format!("{n}.00"), "BYN").await;
    }
    let first = me.get(&format!("/accounts/{id}")).await;
    assert!(first.has("+23.00 BYN") && !first.has("+3.00 BYN"), "{engine:?}: the newest 20");
    let marker = "id=\"older\"";
    assert!(first.has(marker), "{engine:?}");
    let href = first.body.split("<a href=\"").find(|part| part.contains(marker)).unwrap();
    let href = href.split('"').next().unwrap().replace("&amp;", "&");
    let older = me.get(&href).await;
    assert!(older.has("+3.00 BYN") && older.has("+1.00 BYN") && !older.has("+23.00 BYN"), "{engine:?}: {href}");
    assert!(!older.has(marker), "{engine:?}: the last page");
    let nonsense = me.get(&format!("/accounts/{id}?cursor=banana")).await;
    assert_eq!(nonsense.status, 200, "{engine:?}: a bad cursor shows the newest page");
}
on_both_engines!(history_pages);

/// A customer registered at the desk signs in with the temporary password,
/// is sent to change it first, and then reaches the products.
async fn a_temporary_password_is_changed_first(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let registration = serde_json::json!({
        "first_name": "Olga", "last_name": "Sidorova", "phone": "+375291110077", "email": "o@example.com",
        "passport_number": "MP1234577", "personal_id": "3010177A001PB5",
    });
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/staff/customers", app.base))
        .bearer_auth(&app.teller)
        .json(&registration)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 201, "{engine:?}");
    let body: serde_json::Value = answer.json().await.unwrap();
    let temporary = body["temporary_password"].as_str().unwrap().to_owned();
    let browser = app.browser("en");
    let signed_in = browser.submit("/login", "/login", &[("login", "+375291110077"), ("password", &temporary)]).await;
    assert!(signed_in.url.contains("/cabinet"), "{engine:?}: {}", signed_in.url);
    assert!(signed_in.has("Choose a new password before you continue."), "{engine:?}: {}", signed_in.body);
    let products = browser.get("/products").await;
    assert!(products.url.contains("/cabinet"), "{engine:?}: products wait for the new password: {}", products.url);
    let changed = browser
        .submit("/cabinet", "/cabinet/password", &[("current_password", &temporary), ("new_password", PASSWORD)])
        .await;
    assert!(changed.has("The password is changed."), "{engine:?}: {}", changed.body);
    let products = browser.get("/products").await;
    assert!(products.url.ends_with("/products"), "{engine:?}: {}", products.url);
}
on_both_engines!(a_temporary_password_is_changed_first);

/// Sign-in through the pages is throttled exactly as over the API: after
/// the free failures the form says to wait, and the API refuses too.
async fn sign_in_is_throttled_like_the_api(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let browser = app.browser("en");
    browser.register(1).await;
    let guesser = app.browser("en");
    let mut throttled = false;
    for _ in 0..8 {
        let page =
            guesser.submit("/login", "/login", &[("login", "+375291110001"), ("password", "a wrong guess")]).await;
        assert!(page.status < 500, "{engine:?}");
        if page.has("Too many attempts. Try again in") {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "{engine:?}: the pages' sign-in is throttled");
    let api = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&serde_json::json!({"login": "+375291110001", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 429, "{engine:?}: the same count holds for the API");
}
on_both_engines!(sign_in_is_throttled_like_the_api);
