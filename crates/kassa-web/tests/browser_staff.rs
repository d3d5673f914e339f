//! The staff console's story in a real browser (headless Chromium via
//! chromedriver and fantoccini, the harness `tests/browser/harness.rs`),
//! against the API and pages served in process on SQLite: a teller finds
//! a customer registered over the API and takes a cash deposit at the
//! desk; the customer, signed in in the same browser after the teller
//! signs out, sees the money; a large withdrawal waits for approval and a
//! manager approves it; a customer cannot reach /staff. Every staff page
//! is photographed at desktop and phone widths; console errors fail it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_debug_implementations)]

mod common;

use common::*;
use serde_json::{Value, json};

#[path = "browser/harness.rs"]
mod harness;

use harness::Chrome;

/// A customer registered over the JSON API with a BYN current account:
/// returns the account's number.
async fn register_over_api(app: &App) -> String {
    let client = reqwest::Client::new();
    let registered = client
        .post(format!("{}/api/v1/auth/register", app.base))
        .json(&json!({"first_name": "Olga", "last_name": "Sidorova", "phone": "+375291110007",
                      "email": "olga@example.com", "password": PASSWORD, "passport_number": "MP7654321",
                      "personal_id": "3010107A001PB5"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let token = registered["access_token"].as_str().unwrap_or_else(|| panic!("registered: {registered}")).to_owned();
    let opened = client
        .post(format!("{}/api/v1/accounts", app.base))
        .bearer_auth(&token)
        .json(&json!({"kind": "current", "currency": "BYN", "consents": [{"document": "terms", "version": "2026-01"}]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    opened["number"].as_str().unwrap_or_else(|| panic!("opened: {opened}")).to_owned()
}

async fn sign_in(chrome: &Chrome, base: &str, login: &str, password: &str) {
    chrome.go(&format!("{base}/login")).await;
    chrome.fill("login", login).await;
    chrome.fill("password", password).await;
    chrome.click_to("button[type=submit].primary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staff_console_in_the_browser() {
    let Some(app) = spawn_app(Engine::Sqlite).await else { return };
    let Some(chrome) = Chrome::start().await else { return };
    app.set_rates().await;
    let number = register_over_api(&app).await;
    let base = &app.base;

    // The teller signs in and lands in the console.
    sign_in(&chrome, base, "teller", TELLER_PASSWORD).await;
    assert_eq!(chrome.path().await, "/staff/customers");
    chrome.fill("q", "+375291110007").await;
    chrome.click_to("form.search button[type=submit]").await;
    assert!(chrome.text("customers").await.contains("Olga Sidorova"));
    chrome.shot("staff-customers").await;
    chrome.click_to("#customers a").await;
    assert!(chrome.body().await.contains(&number));
    chrome.shot("staff-customer").await;
    chrome.click_to("#accounts a").await;
    assert!(chrome.path().await.starts_with("/staff/accounts/"));
    assert!(chrome.client.find(fantoccini::Locator::Id("block")).await.is_err(), "a teller sees no block button");

    // A cash deposit at the desk; a bad amount first (inline error).
    chrome.click_to("a[href='/staff/cash']").await;
    chrome.fill("account", &number).await;
    chrome.fill("amount", "seven").await;
    chrome.click_to("#deposit").await;
    assert!(!chrome.text("amount-error").await.is_empty());
    chrome.fill("amount", "7000.00").await;
    chrome.click_to("#deposit").await;
    assert!(chrome.text("cash-done").await.contains("the cash is on the account"));
    chrome.shot("staff-cash").await;
    chrome.click_to("#sign-out").await;

    // The customer, in the same browser, sees the money and cannot enter the console.
    sign_in(&chrome, base, "+375291110007", PASSWORD).await;
    assert_eq!(chrome.path().await, "/products");
    assert!(chrome.body().await.contains("7000.00"), "the deposit shows on the products page");
    chrome.go(&format!("{base}/staff")).await;
    assert!(chrome.body().await.contains("for bank staff"), "a customer is refused at /staff");
    chrome.go(&format!("{base}/staff/cash")).await;
    assert!(chrome.body().await.contains("for bank staff"));
    // The browser logs the two refusals (403) as errors: exactly those,
    // and the log is empty again for the rest of the story.
    let refusals = chrome.console_errors().await;
    assert!(
        !refusals.is_empty() && refusals.iter().all(|e| e.contains("/staff") && e.contains("403")),
        "only the refusals: {refusals:?}"
    );
    chrome.go(&format!("{base}/products")).await;
    chrome.click_to("#sign-out").await;

    // The teller asks for a large withdrawal: it waits.
    sign_in(&chrome, base, "teller", TELLER_PASSWORD).await;
    chrome.click_to("a[href='/staff/cash']").await;
    chrome.fill("account", &number).await;
    chrome.fill("amount", "6000.00").await;
    chrome.click_to("#withdraw").await;
    let held = chrome.text("cash-done").await;
    assert!(held.contains("waits for a second pair of eyes"), "{held}");
    chrome.shot("staff-cash-held").await;
    chrome.click_to("#cash-done a").await;
    assert_eq!(chrome.path().await, "/staff/approvals");
    chrome.go(&format!("{base}/lang?to=ru&back=/staff/approvals")).await;
    assert!(chrome.body().await.contains("Одобрения"));
    chrome.shot("staff-approvals-ru").await;
    chrome.go(&format!("{base}/lang?to=en&back=/staff/cash")).await;
    chrome.click_to("#sign-out").await;

    // A manager approves it in the console.
    sign_in(&chrome, base, "manager", MANAGER_PASSWORD).await;
    chrome.click_to("a[href='/staff/approvals']").await;
    chrome.shot("staff-approvals").await;
    chrome.click_to("button[id^='approve-']").await;
    assert!(chrome.text("approvals-done").await.contains("Approved"));
    chrome.click_to("a[href='/staff/transactions']").await;
    chrome.fill("account", &number).await;
    chrome.click_to("form.filters button[type=submit]").await;
    let listed = chrome.text("transactions").await;
    assert!(listed.contains("6000.00 BYN") && listed.contains("7000.00 BYN"), "{listed}");
    chrome.shot("staff-transactions").await;
    // The account's page as a manager sees it: block and unblock.
    chrome.click_to("#transactions a[href^='/staff/accounts/']").await;
    chrome.click_to("#block").await;
    assert_eq!(chrome.text("account-status").await, "blocked");
    chrome.click_to("#unblock").await;
    assert_eq!(chrome.text("account-status").await, "active");
    chrome.shot("staff-account").await;
    chrome.click_to("a[href='/staff/audit']").await;
    assert!(chrome.text("chain").await.contains("verify"));
    chrome.shot("staff-audit").await;
    chrome.click_to("#sign-out").await;

    // The admin's pages: rates and staff users.
    sign_in(&chrome, base, "admin", ADMIN_PASSWORD).await;
    if chrome.path().await == "/login" {
        chrome.fill("password", ADMIN_PASSWORD).await;
    }
    chrome.client.execute("document.querySelector('details.field').open = true;", vec![]).await.unwrap();
    chrome.fill("totp", &app.admin_code()).await;
    chrome.click_to("button[type=submit].primary").await;
    assert_eq!(chrome.path().await, "/staff/customers");
    chrome.click_to("a[href='/staff/rates']").await;
    chrome.fill("base", "EUR").await;
    chrome.fill("buy", "3.4500").await;
    chrome.fill("sell", "3.5500").await;
    chrome.click_to("#set-rate + form button[type=submit]").await;
    assert!(chrome.body().await.contains("The rate is set."));
    chrome.shot("staff-rates").await;
    chrome.click_to("a[href='/staff/users']").await;
    chrome.shot("staff-users").await;
    chrome.click_to("#sign-out").await;

    let errors = chrome.console_errors().await;
    assert!(errors.is_empty(), "browser console errors: {errors:?}");
    chrome.quit().await;
}
