//! The browser harness the browser stories share: chromedriver and
//! headless Chromium through fantoccini, screenshots at desktop and phone
//! widths, the console's errors. `tests/browser.rs` includes it as
//! `mod harness`, `tests/browser_staff.rs` by `#[path]`.
#![allow(dead_code, unreachable_pub)]

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
