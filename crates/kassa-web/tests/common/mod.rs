//! The web pages' test harness: the whole HTTP interface (API and pages)
//! on a random loopback port over SQLite or a fresh PostgreSQL database,
//! a teller signed in over the API (for deposits), and browser-like
//! clients (reqwest with a cookie jar) that read forms and post them back
//! with their CSRF token.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;

use kassa_ledger::{Ledger, LedgerConfig};
use kassa_service::people::StaffForm;
use kassa_service::{Bank, BankIdentity, Caller, SecretBytes, Settings};
use kassa_store::LedgerStore;
use kassa_store::sql::Database;
use kassa_testkit::postgres::TempPostgres;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub const PASSWORD: &str = "correct horse battery";
pub const TELLER_PASSWORD: &str = "desk secret phrase 1";
pub const MANAGER_PASSWORD: &str = "second pair of eyes 2";
pub const ADMIN_PASSWORD: &str = "keeper of the keys 3";

pub enum Guard {
    Dir(tempfile::TempDir),
    Postgres(TempPostgres),
}

pub struct App {
    pub engine: Engine,
    pub base: String,
    pub bank: Bank,
    /// A teller's API token, for cash deposits.
    pub teller: String,
    /// The TOTP secret (base32) of the staff user `admin`.
    pub admin_secret: String,
    pub server: tokio::task::JoinHandle<()>,
    pub _guard: Guard,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn open_store(engine: Engine) -> Option<(Arc<dyn LedgerStore>, Arc<dyn Database>, Guard)> {
    Some(match engine {
        Engine::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = kassa_store_sqlite::SqliteStore::open(dir.path().join("kassa.db")).await.unwrap();
            (Arc::new(store.clone()), Arc::new(store), Guard::Dir(dir))
        }
        Engine::Postgres => {
            let database = TempPostgres::create().await?;
            let store = kassa_store_postgres::PostgresStore::connect(database.url(), 8).await.unwrap();
            (Arc::new(store.clone()), Arc::new(store), Guard::Postgres(database))
        }
    })
}

/// The API and the pages on one port, as `kassa serve` mounts them.
pub async fn spawn_app(engine: Engine) -> Option<App> {
    spawn_app_with(engine, |_| {}).await
}

/// The same, with settings `configure` adjusts after the test defaults.
pub async fn spawn_app_with(engine: Engine, configure: impl FnOnce(&mut Settings)) -> Option<App> {
    let (store, db, guard) = open_store(engine).await?;
    let ledger = Ledger::start(store, LedgerConfig::default());
    let mut settings = Settings::new(BankIdentity::default(), SecretBytes(vec![7; 32]));
    settings.argon2_memory_kib = 1024;
    configure(&mut settings);
    let bank = Bank::start(db, ledger, settings).await.unwrap();
    bank.create_staff(
        &Caller::anonymous("cli"),
        StaffForm {
            login: Some("teller".into()),
            name: Some("The teller".into()),
            role: Some("teller".into()),
            password: Some(TELLER_PASSWORD.into()),
            totp: Some(false),
        },
    )
    .await
    .unwrap();
    // A manager (no one-time code) and an admin (always with one), for
    // the staff console's tests.
    let mut admin_secret = String::new();
    for (login, role, password) in [("manager", "manager", MANAGER_PASSWORD), ("admin", "admin", ADMIN_PASSWORD)] {
        let created = bank
            .create_staff(
                &Caller::anonymous("cli"),
                StaffForm {
                    login: Some(login.into()),
                    name: Some(format!("The {role}")),
                    role: Some(role.into()),
                    password: Some(password.into()),
                    totp: Some(false),
                },
            )
            .await
            .unwrap();
        if let Some(uri) = created.totp_uri {
            admin_secret = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap().to_owned();
        }
    }
    let state = kassa_http::AppState {
        bank: bank.clone(),
        metrics: Arc::default(),
        trusted_proxies: Arc::new(Vec::new()),
        body_max_bytes: 64 * 1024,
    };
    let app = kassa_http::router(state).merge(kassa_web::router(bank.clone(), kassa_web::WebOptions::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    let base = format!("http://{address}");
    let login = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": "teller", "password": TELLER_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let teller = login["access_token"].as_str().unwrap().to_owned();
    Some(App { engine, base, bank, teller, admin_secret, server, _guard: guard })
}

impl App {
    /// A cash deposit by the teller over the API (the staff console's cash
    /// desk will do this in the browser).
    pub async fn deposit(&self, account_number: &str, amount: &str, currency: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/api/v1/staff/cash/deposits", self.base))
            .bearer_auth(&self.teller)
            .json(&json!({"account": account_number, "amount": amount, "currency": currency}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 201, "{:?}: deposit: {}", self.engine, answer.text().await.unwrap());
    }

    /// Sets the USD/BYN rate the way a rates feed does (the rates file),
    /// so that exchanges have a fresh rate.
    pub async fn set_rates(&self) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rates.json");
        let rates = json!({"rates": [{"base": "USD", "quote": "BYN", "buy": "3.2000", "sell": "3.3000"},
                                     {"base": "EUR", "quote": "BYN", "buy": "3.5000", "sell": "3.6000"}]});
        std::fs::write(&path, rates.to_string()).unwrap();
        let recorded = self.bank.poll_rates_file(path.to_str().unwrap()).await.unwrap();
        assert_eq!(recorded, 2, "{:?}", self.engine);
    }

    /// The admin's one-time code for now.
    pub fn admin_code(&self) -> String {
        use kassa_service::crypto::totp;
        let now = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
            .unwrap();
        totp::code_at(&totp::base32_decode(&self.admin_secret), now)
    }

    /// A browser signed in through the sign-in page as staff.
    pub async fn staff_browser(&self, login: &str) -> Browser {
        let browser = self.browser("en");
        let (password, code) = match login {
            "teller" => (TELLER_PASSWORD, String::new()),
            "manager" => (MANAGER_PASSWORD, String::new()),
            _ => (ADMIN_PASSWORD, self.admin_code()),
        };
        let page =
            browser.submit("/login", "/login", &[("login", login), ("password", password), ("totp", &code)]).await;
        assert!(
            page.url.ends_with("/staff/customers"),
            "{:?}: {login} signs in: {} {}",
            self.engine,
            page.url,
            page.body
        );
        browser
    }

    /// A new browser-like client: cookies kept, redirects followed.
    pub fn browser(&self, language: &str) -> Browser {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT_LANGUAGE, language.parse().unwrap());
        let client = reqwest::Client::builder().cookie_store(true).default_headers(headers).build().unwrap();
        Browser { client, base: self.base.clone() }
    }
}

pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
}

pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
}

impl Page {
    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).map(|i| i + marker.len()).expect("the page has a form with a CSRF token");
        self.body[start..].split('"').next().unwrap().to_owned()
    }

    pub fn has(&self, text: &str) -> bool {
        self.body.contains(text)
    }
}

impl Browser {
    pub async fn get(&self, path: &str) -> Page {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        page(response).await
    }

    /// Posts a form as is (no token added).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self.client.post(format!("{}{path}", self.base)).form(fields).send().await.unwrap();
        page(response).await
    }

    /// Loads `from`, takes its CSRF token and posts `fields` with it to
    /// `path`, as the browser would submit the form.
    pub async fn submit(&self, from: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get(from).await.csrf();
        let mut all: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    pub async fn register(&self, n: u32) -> Page {
        let phone = format!("+3752911100{n:02}");
        let email = format!("c{n}@example.com");
        let passport = format!("MP12345{n:02}");
        let personal = format!("30101{n:02}A001PB5");
        let (first, last) = [("Ivan", "Petrov"), ("Anna", "Ivanova"), ("Olga", "Sidorova")][n as usize % 3];
        self.submit(
            "/register",
            "/register",
            &[
                ("first_name", first),
                ("last_name", last),
                ("phone", &phone),
                ("email", &email),
                ("password", PASSWORD),
                ("passport_number", &passport),
                ("personal_id", &personal),
            ],
        )
        .await
    }
}

async fn page(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let url = response.url().to_string();
    let body = response.text().await.unwrap();
    Page { status, url, body }
}

/// Runs a scenario as two tests, `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! on_both_engines {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Engine::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Engine::Postgres).await;
            }
        }
    };
}
