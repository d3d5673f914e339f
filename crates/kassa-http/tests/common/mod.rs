//! The HTTP test harness shared by the API's test files: a real server on
//! a random port over SQLite or a fresh PostgreSQL database, signed-in
//! staff, and helpers that speak the API as a client would.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub use std::net::SocketAddr;
pub use std::sync::Arc;
pub use std::time::{SystemTime, UNIX_EPOCH};

pub use base64::Engine as _;
pub use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use kassa_http::AppState;
pub use kassa_http::openapi::Access;
pub use kassa_ledger::{Ledger, LedgerConfig};
pub use kassa_service::crypto::{Claims, TokenKeys, totp};
pub use kassa_service::people::StaffForm;
pub use kassa_service::{Bank, BankIdentity, Caller, SecretBytes, Settings};
pub use kassa_store::LedgerStore;
pub use kassa_store::sql::Database;
pub use kassa_testkit::postgres::TempPostgres;
pub use reqwest::Method;
pub use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub const PASSWORD: &str = "correct horse battery";
pub const TELLER_PASSWORD: &str = "desk secret phrase 1";
pub const MANAGER_PASSWORD: &str = "boss secret phrase 1";
pub const ADMIN_PASSWORD: &str = "root secret phrase 1";
pub const KEY: u8 = 7;

#[allow(dead_code)]
pub enum Guard {
    Dir(tempfile::TempDir),
    Postgres(TempPostgres),
}

pub struct App {
    pub engine: Engine,
    /// The bank the server runs on, for tests that serve it another way too
    /// (the terminal protocol) or look behind the API.
    pub bank: Bank,
    pub base: String,
    pub client: reqwest::Client,
    pub teller: String,
    pub manager: String,
    pub admin: String,
    pub server: tokio::task::JoinHandle<()>,
    /// The bank's background tasks (`Bank::spawn_background`).
    pub background: Vec<tokio::task::JoinHandle<()>>,
    pub _guard: Guard,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
        for task in &self.background {
            task.abort();
        }
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// The top-level code and every field problem's code.
    pub fn codes(&self) -> Vec<String> {
        let mut all = vec![self.code().to_owned()];
        if let Some(problems) = self.body["problems"].as_array() {
            all.extend(problems.iter().filter_map(|p| p["code"].as_str().map(str::to_owned)));
        }
        all
    }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

pub async fn spawn_app(engine: Engine) -> Option<App> {
    spawn_app_trusting(engine, Vec::new()).await
}

/// An app whose `X-Forwarded-For` is believed from `trusted` peers.
pub async fn spawn_app_trusting(engine: Engine, trusted: Vec<std::net::IpAddr>) -> Option<App> {
    spawn_app_with(engine, trusted, |_| {}).await
}

/// A fresh store on `engine` (a temporary SQLite file, or a fresh
/// PostgreSQL database with a pool of `pool` connections), as the ledger
/// and as the services' database, with what keeps it alive.
pub async fn open_store(engine: Engine, pool: usize) -> Option<(Arc<dyn LedgerStore>, Arc<dyn Database>, Guard)> {
    Some(match engine {
        Engine::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = kassa_store_sqlite::SqliteStore::open(dir.path().join("kassa.db")).await.unwrap();
            (Arc::new(store.clone()), Arc::new(store), Guard::Dir(dir))
        }
        Engine::Postgres => {
            let database = TempPostgres::create().await?;
            let store = kassa_store_postgres::PostgresStore::connect(database.url(), pool).await.unwrap();
            (Arc::new(store.clone()), Arc::new(store), Guard::Postgres(database))
        }
    })
}

/// An app whose settings `configure` adjusts after the test defaults
/// (Argon2 at 1 MiB, a fixed token key) are applied.
pub async fn spawn_app_with(
    engine: Engine,
    trusted: Vec<std::net::IpAddr>,
    configure: impl FnOnce(&mut Settings),
) -> Option<App> {
    let (store, db, guard) = open_store(engine, 16).await?;
    let ledger = Ledger::start(store, LedgerConfig::default());
    let mut settings = Settings::new(BankIdentity::default(), SecretBytes(vec![KEY; 32]));
    settings.argon2_memory_kib = 1024;
    configure(&mut settings);
    let bank = Bank::start(db, ledger, settings).await.unwrap();
    let cli = Caller::anonymous("cli");
    for (login, role, password) in [("teller", "teller", TELLER_PASSWORD), ("manager", "manager", MANAGER_PASSWORD)] {
        bank.create_staff(
            &cli,
            StaffForm {
                login: Some(login.into()),
                name: Some(format!("The {login}")),
                role: Some(role.into()),
                password: Some(password.into()),
                totp: Some(false),
            },
        )
        .await
        .unwrap();
    }
    let admin = bank
        .create_staff(
            &cli,
            StaffForm {
                login: Some("admin".into()),
                name: Some("The admin".into()),
                role: Some("admin".into()),
                password: Some(ADMIN_PASSWORD.into()),
                totp: Some(true),
            },
        )
        .await
        .unwrap();
    let background = bank.spawn_background();
    let state = AppState {
        bank: bank.clone(),
        metrics: Arc::new(kassa_http::Metrics::default()),
        trusted_proxies: Arc::new(trusted),
        body_max_bytes: 64 * 1024,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, kassa_http::router(state).into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    let mut app = App {
        engine,
        bank,
        base: format!("http://{address}"),
        client: reqwest::Client::new(),
        teller: String::new(),
        manager: String::new(),
        admin: String::new(),
        server,
        background,
        _guard: guard,
    };
    app.teller = app.login_ok("teller", TELLER_PASSWORD, None).await;
    app.manager = app.login_ok("manager", MANAGER_PASSWORD, None).await;
    let uri = admin.totp_uri.expect("an admin has TOTP");
    let secret = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap();
    let code = totp::code_at(&totp::base32_decode(secret), now());
    app.admin = app.login_ok("admin", ADMIN_PASSWORD, Some(&code)).await;
    Some(app)
}

pub struct Customer {
    pub id: i64,
    pub token: String,
    pub refresh: String,
    pub phone: String,
}

pub fn registration(n: u32) -> Value {
    let (first, last) =
        [("Ivan", "Petrov"), ("Anna", "Ivanova"), ("Olga", "Sidorova"), ("Pavel", "Kozlov")][(n as usize + 3) % 4];
    let phone = match n {
        1 => "+375291234567".to_owned(),
        2 => "+375297654321".to_owned(),
        _ => format!("+3752911100{n:02}"),
    };
    json!({
        "first_name": first, "last_name": last, "phone": phone, "email": format!("c{n}@example.com"),
        "password": PASSWORD, "passport_number": format!("MP12345{n:02}"), "personal_id": format!("30101{n:02}A001PB5"),
    })
}

impl App {
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.answer(request).await
    }

    pub async fn answer(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body, headers }
    }

    /// Sends a JSON request over a plain socket, ignoring write errors, and
    /// returns the status and body the server sent.
    pub async fn raw(&self, method: &Method, path: &str, token: &str, body: &[u8]) -> Answer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body).await;
        let mut text = Vec::new();
        let _ = stream.read_to_end(&mut text).await;
        let text = String::from_utf8_lossy(&text).into_owned();
        let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or(Value::Null, |(_, body)| {
            serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
        });
        Answer { status, body, headers: reqwest::header::HeaderMap::new() }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn login(&self, login: &str, password: &str, totp: Option<&str>) -> Answer {
        self.post("/api/v1/auth/login", None, json!({"login": login, "password": password, "totp": totp})).await
    }

    pub async fn login_ok(&self, login: &str, password: &str, totp: Option<&str>) -> String {
        let answer = self.login(login, password, totp).await;
        assert_eq!(answer.status, 200, "{:?}: login {login}: {}", self.engine, answer.body);
        assert_eq!(answer.body["password_change_required"], false, "{login}");
        answer.body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn register(&self, n: u32) -> Customer {
        let answer = self.post("/api/v1/auth/register", None, registration(n)).await;
        assert_eq!(answer.status, 201, "{:?}: register {n}: {}", self.engine, answer.body);
        Customer {
            id: answer.body["customer"]["id"].as_i64().unwrap(),
            token: answer.body["access_token"].as_str().unwrap().to_owned(),
            refresh: answer.body["refresh_token"].as_str().unwrap().to_owned(),
            phone: answer.body["customer"]["phone"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn open_account(&self, token: &str) -> Value {
        let answer = self.post("/api/v1/accounts", Some(token), open_form()).await;
        assert_eq!(answer.status, 201, "{:?}: open account: {}", self.engine, answer.body);
        answer.body
    }

    /// A BYN credit card for the customer `token` signs in, the way a
    /// customer gets one: an application for `requested`, approved by the
    /// manager with `limit`. Returns the card's account id.
    pub async fn credit_card(&self, token: &str, requested: &str, limit: &str) -> i64 {
        let consents = json!([{"document": "terms", "version": "2026-01"}, {"document": "cards", "version": "2026-01"},
                              {"document": "credit", "version": "2026-01"}]);
        let form =
            json!({"kind": "credit_card", "currency": "BYN", "requested_limit": requested, "consents": consents});
        let applied = self.post("/api/v1/applications", Some(token), form).await;
        assert_eq!(applied.status, 201, "{:?}: apply: {}", self.engine, applied.body);
        let path = format!("/api/v1/staff/applications/{}/approve", applied.body["id"]);
        let approved = self.post(&path, Some(&self.manager), json!({"credit_limit": limit})).await;
        assert_eq!(approved.status, 200, "{:?}: approve: {}", self.engine, approved.body);
        approved.body["account"].as_i64().unwrap()
    }

    pub async fn deposit(&self, account: &Value, amount: &str) {
        let answer = self
            .post(
                "/api/v1/staff/cash/deposits",
                Some(&self.teller),
                json!({"account": account["number"], "amount": amount, "currency": "BYN"}),
            )
            .await;
        assert_eq!(answer.status, 201, "{:?}: deposit: {}", self.engine, answer.body);
    }

    pub async fn account(&self, token: &str, id: i64) -> Value {
        let answer = self.get(&format!("/api/v1/accounts/{id}"), token).await;
        assert_eq!(answer.status, 200, "{:?}: account {id}: {}", self.engine, answer.body);
        answer.body
    }

    pub async fn balance(&self, token: &str, id: i64) -> String {
        self.account(token, id).await["balance"].as_str().unwrap().to_owned()
    }

    pub async fn transfer(&self, token: &str, from: i64, to_phone: &str, amount: &str) -> Answer {
        self.post(
            "/api/v1/transfers",
            Some(token),
            json!({"from_account": from.to_string(), "to_phone": to_phone, "amount": amount, "currency": "BYN"}),
        )
        .await
    }
}

pub fn open_form() -> Value {
    json!({"kind": "current", "currency": "BYN", "consents": [{"document": "terms", "version": "2026-01"}]})
}

pub fn id_of(account: &Value) -> i64 {
    account["id"].as_i64().unwrap()
}

pub fn method_of(route: &kassa_http::openapi::RouteDoc) -> Method {
    Method::from_bytes(route.method.as_str().as_bytes()).unwrap()
}

/// A plausible body for a route's schema, so that only the access check can
/// refuse the request.
pub fn plausible_body(schema: Option<&str>) -> Option<Value> {
    schema.map(|schema| match schema {
        "Status" => json!({"status": "blocked"}),
        "Transfer" => json!({"from_account": "1", "to_account": "2", "amount": "1.00", "currency": "BYN"}),
        "Cash" => json!({"account": "1", "amount": "1.00", "currency": "BYN"}),
        "OpenAccount" => open_form(),
        "StaffUser" => json!({"login": "newteller", "role": "teller", "password": "a long password 123"}),
        "Product" => json!({"code": "x", "kind": "current", "name": "X", "currencies": ["BYN"]}),
        _ => json!({}),
    })
}

/// Runs a scenario as two tests, `<name>::sqlite` and `<name>::postgres`, so
/// that a bug on one engine doesn't hide the other's result.
#[macro_export]
macro_rules! on_both_engines {
    ($name:ident $(, sqlite: #[$sqlite:meta])? $(, postgres: #[$postgres:meta])?) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            $(#[$sqlite])?
            async fn sqlite() {
                super::$name(super::Engine::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            $(#[$postgres])?
            async fn postgres() {
                super::$name(super::Engine::Postgres).await;
            }
        }
    };
}
