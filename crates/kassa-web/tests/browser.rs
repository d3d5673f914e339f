//! The customer's story in a real browser: headless Chromium driven by
//! chromedriver through fantoccini, against the API and pages served in
//! process on SQLite. It also saves the screenshots in docs/screenshots/
//! and fails on any browser console error.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (Debian's
//! `chromium-driver` and `chromium`; `.ci/run` installs them). Without them
//! the test fails with a message saying so, unless `KASSA_SKIP_BROWSER=1`.
//!
//! The harness (module `harness` below): `Chrome::start()` runs chromedriver
//! on a free port with a fresh profile directory and connects a session;
//! dropping it ends the session and kills chromedriver. `chrome.shot(name)`
//! saves `docs/screenshots/<name>-desktop.png` and `-phone.png`;
//! `chrome.console_errors()` reads the browser log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_debug_implementations)]

mod common;

use std::time::Duration;

use common::*;
use fantoccini::Locator;

#[path = "browser/harness.rs"]
mod harness;

use harness::Chrome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_story_in_the_browser() {
    let Some(app) = spawn_app(Engine::Sqlite).await else { return };
    let Some(chrome) = Chrome::start().await else { return };
    app.set_rates().await;
    // The payee: another customer with a BYN account (over HTTP, not the browser).
    let payee = app.browser("en");
    payee.register(2).await;
    payee
        .submit(
            "/products/new",
            "/products/new",
            &[("kind", "current"), ("currency", "BYN"), ("consent", "terms:2026-01")],
        )
        .await;
    let base = &app.base;

    // Signs in page, registers.
    chrome.go(&format!("{base}/")).await;
    assert_eq!(chrome.path().await, "/login");
    chrome.shot("customer-login").await;
    // The keyboard: the first Tab lands on the skip link, which is shown;
    // the next ones reach the navigation.
    chrome.client.find(Locator::Css("body")).await.unwrap().send_keys("\u{E004}").await.unwrap();
    let focused = chrome
        .client
        .execute(
            "var e = document.activeElement; return [e.className, getComputedStyle(e).left, \
             getComputedStyle(e).outlineStyle];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focused[0], "skip", "the first Tab: {focused}");
    assert_eq!(focused[1], "0px", "the skip link shows itself when focused: {focused}");
    assert_eq!(focused[2], "solid", "a visible focus ring: {focused}");
    chrome.click_to("a[href='/register']").await;
    chrome.fill("first_name", "Ivan").await;
    chrome.fill("last_name", "Petrov").await;
    chrome.fill("phone", "12").await;
    chrome.fill("email", "ivan@example.com").await;
    chrome.fill("password", PASSWORD).await;
    chrome.fill("passport_number", "MP1234501").await;
    chrome.fill("personal_id", "3010101A001PB5").await;
    chrome.click_to("button[type=submit].primary").await;
    // Inline errors on a bad phone number; then fixed.
    assert!(!chrome.text("phone-error").await.is_empty());
    chrome.shot("customer-register").await;
    chrome.fill("phone", "+375291110001").await;
    chrome.fill("password", PASSWORD).await;
    chrome.click_to("button[type=submit].primary").await;
    assert_eq!(chrome.path().await, "/products");

    // Opens a BYN debit card (in the dialog) and a USD account (on the
    // form's own page).
    chrome.click("#open-new").await;
    let open = chrome.client.find(Locator::Css("#open-dialog[open]")).await;
    assert!(open.is_ok(), "the dialog opened");
    chrome.client.find(Locator::Id("kind")).await.unwrap().select_by_value("debit_card").await.unwrap();
    chrome.client.find(Locator::Id("currency")).await.unwrap().select_by_value("BYN").await.unwrap();
    chrome.click("#consent-terms").await;
    chrome.click("#consent-cards").await;
    chrome.shot("customer-open-product").await;
    chrome.click_to("#open-dialog button[type=submit].primary").await;
    let card_path = chrome.path().await;
    assert!(card_path.starts_with("/accounts/"), "{card_path}: {}", chrome.body().await);
    let card_number = chrome.text("account-number").await;
    chrome.go(&format!("{base}/products/new")).await;
    chrome.client.find(Locator::Id("kind")).await.unwrap().select_by_value("current").await.unwrap();
    chrome.client.find(Locator::Id("currency")).await.unwrap().select_by_value("USD").await.unwrap();
    chrome.click("#consent-terms").await;
    chrome.shot("customer-open-product-page").await;
    chrome.click_to("button[type=submit].primary").await;
    let usd_path = chrome.path().await;
    assert!(usd_path.starts_with("/accounts/") && usd_path != card_path, "{usd_path}");

    // A teller's deposit. The staff console's cash desk is the second
    // helper's; until it exists the deposit is made over the API.
    app.deposit(&card_number, "500.00", "BYN").await;

    // The card behind "Show".
    chrome.go(&format!("{base}{card_path}")).await;
    assert!(chrome.text("card-masked").await.contains('•'));
    chrome.fill("reveal-password", PASSWORD).await;
    chrome.click_to("#show-card").await;
    assert_eq!(chrome.text("card-number").await.len(), 16);

    // Pays another customer by phone, with the masked-name preview.
    chrome.go(&format!("{base}{card_path}?tab=phone")).await;
    chrome.fill("to_phone", "+375291110002").await;
    chrome.wait_text("recipient-out", "Olga S.").await;
    chrome.fill("amount", "25.00").await;
    chrome.fill("description", "Lunch").await;
    chrome.click_to("#send").await;
    assert_eq!(chrome.text("balance").await, "475.00 BYN");

    // Exchanges BYN to USD with the live quote.
    chrome.click_to("#tab-own").await;
    chrome.fill("amount", "33.00").await;
    chrome.wait_text("quote-out", "10.00").await;
    chrome.shot("customer-exchange").await;
    chrome.click_to("#send").await;
    assert_eq!(chrome.text("balance").await, "442.00 BYN");
    chrome.shot("customer-account").await;

    // Both in the history and on the chart.
    let page = chrome.body().await;
    assert!(page.contains("Exchange") && page.contains("Transfer") && page.contains("Lunch"), "{page}");
    let dots = chrome.client.find_all(Locator::Css(".chart circle.dot")).await.unwrap().len();
    assert_eq!(dots, 3, "deposit, payment, exchange");
    chrome.go(&format!("{base}{usd_path}")).await;
    assert_eq!(chrome.text("balance").await, "10.00 USD");

    // Downloads a statement.
    chrome.go(&format!("{base}{card_path}")).await;
    chrome.click("#download").await;
    let mut statement = None;
    for _ in 0..100 {
        statement = std::fs::read_dir(chrome.downloads.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "csv"));
        if statement.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statement = statement.expect("a CSV statement was downloaded");
    let text = std::fs::read_to_string(statement).unwrap();
    assert!(text.contains("25.00") && text.contains("33.00"), "{text}");

    // The other pages, for their screenshots.
    chrome.go(&format!("{base}/products")).await;
    chrome.shot("customer-products").await;
    chrome.go(&format!("{base}/rates")).await;
    assert!(chrome.body().await.contains("USD/BYN"));
    chrome.shot("customer-rates").await;
    chrome.go(&format!("{base}/cabinet")).await;
    chrome.shot("customer-cabinet").await;
    chrome.go(&format!("{base}/lang?to=ru&back=/products")).await;
    assert!(chrome.body().await.contains("Мои продукты"));
    chrome.shot("customer-products-ru").await;
    chrome.go(&format!("{base}/lang?to=en&back=/products")).await;

    // Signs out.
    chrome.click_to("#sign-out").await;
    assert_eq!(chrome.path().await, "/login");
    chrome.go(&format!("{base}/products")).await;
    assert_eq!(chrome.path().await, "/login", "signed out, the products need sign-in again");

    let errors = chrome.console_errors().await;
    chrome.quit().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
