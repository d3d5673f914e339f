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

mod harness {
    use std::net::TcpListener;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use fantoccini::{Client, ClientBuilder, Locator};
    use serde_json::{Value, json};

    pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
    pub const CHROMIUM: &str = "/usr/bin/chromium";

    /// Phone and desktop widths of the screenshots, in CSS pixels.
    pub const DESKTOP: u32 = 1280;
    pub const PHONE: u32 = 375;

    /// Chromedriver in a process group of its own, which its browser
    /// processes join: dropping it kills the whole group, so no browser is
    /// left behind even when the test panics.
    struct Driver(Child);

    impl Drop for Driver {
        fn drop(&mut self) {
            let group = format!("-{}", self.0.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    pub struct Chrome {
        pub client: Client,
        _driver: Driver,
        port: u16,
        pub downloads: tempfile::TempDir,
        _profile: tempfile::TempDir,
        session: String,
        pub shots: PathBuf,
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    impl Chrome {
        /// `None` when the browser is missing and `KASSA_SKIP_BROWSER=1`
        /// says that is fine; a panic with the reason otherwise.
        pub async fn start() -> Option<Chrome> {
            let missing = [CHROMEDRIVER, CHROMIUM].into_iter().filter(|p| !Path::new(p).exists()).collect::<Vec<_>>();
            if !missing.is_empty() {
                if std::env::var("KASSA_SKIP_BROWSER").as_deref() == Ok("1") {
                    eprintln!("KASSA_SKIP_BROWSER=1: skipping the browser test ({missing:?} missing)");
                    return None;
                }
                panic!(
                    "the browser test needs {missing:?}: apt-get install -y chromium chromium-driver \
                     (or set KASSA_SKIP_BROWSER=1 to skip it)"
                );
            }
            let port = free_port();
            let driver = Driver(
                Command::new(CHROMEDRIVER)
                    .arg(format!("--port={port}"))
                    .process_group(0)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("chromedriver starts"),
            );
            let profile = tempfile::tempdir().unwrap();
            let downloads = tempfile::tempdir().unwrap();
            let http = reqwest::Client::new();
            let status = format!("http://127.0.0.1:{port}/status");
            // Waits for chromedriver to listen (a readiness loop, not a timing).
            let mut ready = false;
            for _ in 0..200 {
                if let Ok(answer) = http.get(&status).send().await
                    && answer.status().is_success()
                {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(ready, "chromedriver did not come up on port {port}");
            let args = [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-quic",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,900",
            ]
            .iter()
            .map(|a| (*a).to_owned())
            .chain([format!("--user-data-dir={}", profile.path().display())])
            .collect::<Vec<_>>();
            let capabilities = json!({
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": args,
                    "prefs": {
                        "download.default_directory": downloads.path().display().to_string(),
                        "download.prompt_for_download": false,
                    },
                },
                "goog:loggingPrefs": {"browser": "ALL"},
            });
            let capabilities = match capabilities {
                Value::Object(map) => map,
                _ => unreachable!(),
            };
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let client = ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
                .expect("a chromedriver session");
            let session = client.session_id().await.unwrap().unwrap_or_default();
            Some(Chrome {
                client,
                _driver: driver,
                port,
                downloads,
                _profile: profile,
                session,
                shots: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots"),
            })
        }

        /// The browser console's errors since the last call (level SEVERE).
        pub async fn console_errors(&self) -> Vec<String> {
            let url = format!("http://127.0.0.1:{}/session/{}/se/log", self.port, self.session);
            let answer = reqwest::Client::new().post(&url).json(&json!({"type": "browser"})).send().await.unwrap();
            assert!(answer.status().is_success(), "chromedriver's log endpoint answered {}", answer.status());
            let body: Value = answer.json().await.unwrap();
            body["value"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|entry| entry["level"] == "SEVERE")
                .map(|entry| entry["message"].as_str().unwrap_or("").to_owned())
                .collect()
        }

        /// Sets the viewport to `width` and the page's full height, and
        /// saves a screenshot as `<name>-<suffix>.png`.
        async fn shot_at(&self, name: &str, width: u32, suffix: &str) {
            self.client.set_window_size(width, 900).await.unwrap();
            // The window's height is the page's plus the window's own frame.
            let script = "return Math.ceil(Math.max(document.body.scrollHeight, \
                          document.documentElement.scrollHeight) + (window.outerHeight - window.innerHeight));";
            let height = self.client.execute(script, vec![]).await.unwrap().as_u64().unwrap_or(900);
            let height = u32::try_from(height).unwrap_or(900).clamp(600, 4000);
            self.client.set_window_size(width, height).await.unwrap();
            self.client.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
            let png = self.client.screenshot().await.unwrap();
            std::fs::create_dir_all(&self.shots).unwrap();
            std::fs::write(self.shots.join(format!("{name}-{suffix}.png")), png).unwrap();
        }

        /// Screenshots of the current page at desktop and phone width; the
        /// window is left at desktop width.
        pub async fn shot(&self, name: &str) {
            self.shot_at(name, PHONE, "phone").await;
            // At 375 px nothing may stick out sideways.
            let overflow = self
                .client
                .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", vec![])
                .await
                .unwrap()
                .as_i64()
                .unwrap_or(0);
            assert!(overflow <= 0, "{name}: the page is {overflow}px wider than a 375 px phone");
            self.shot_at(name, DESKTOP, "desktop").await;
            self.client.set_window_size(DESKTOP, 900).await.unwrap();
        }

        /// Ends the browser session cleanly (the browser closes).
        pub async fn quit(self) {
            let Chrome { client, .. } = &self;
            let _ = client.clone().close().await;
        }

        pub async fn go(&self, url: &str) {
            self.client.goto(url).await.unwrap();
        }

        pub async fn fill(&self, id: &str, text: &str) {
            let input = self.client.find(Locator::Id(id)).await.unwrap_or_else(|_| panic!("no #{id}"));
            input.clear().await.unwrap();
            input.send_keys(text).await.unwrap();
        }

        pub async fn click(&self, css: &str) {
            self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no {css}")).click().await.unwrap();
        }

        /// Clicks something that loads a new page (a submit button, a
        /// link) and waits (bounded) until the new document has loaded.
        pub async fn click_to(&self, css: &str) {
            self.client.execute("window.__kassaOld = true;", vec![]).await.unwrap();
            self.click(css).await;
            for _ in 0..200 {
                let loaded = self
                    .client
                    .execute("return !window.__kassaOld && document.readyState === 'complete';", vec![])
                    .await
                    .ok()
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                if loaded {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("clicking {css} loaded no new page");
        }

        pub async fn text(&self, id: &str) -> String {
            self.client.find(Locator::Id(id)).await.unwrap_or_else(|_| panic!("no #{id}")).text().await.unwrap()
        }

        pub async fn path(&self) -> String {
            self.client.current_url().await.unwrap().path().to_owned()
        }

        pub async fn body(&self) -> String {
            self.client.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
        }

        /// Waits (bounded) until the element `id` has text containing `part`.
        pub async fn wait_text(&self, id: &str, part: &str) -> String {
            let mut last = String::new();
            for _ in 0..100 {
                last = self.text(id).await;
                if last.contains(part) {
                    return last;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("#{id} never said {part:?}; it says {last:?}");
        }
    }
}

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
