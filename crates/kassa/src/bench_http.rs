//! `kassa bench --http`: the bank over HTTP on loopback, measured as a
//! client sees it: authenticated single transfers (`POST /api/v1/transfers`
//! with a bearer token), beside the ceiling of a trivial endpoint
//! (`GET /livez`, which touches no database) in the same run, on the same
//! server, with the same number of keep-alive connections.
//!
//! The server is the real router (`kassa_http::router`) over a fresh bank,
//! in this process, warmed up with one unmeasured round of transfers; the load generator is a minimal HTTP/1.1 keep-alive
//! client, one task per connection, so that the measurement is of the
//! server and not of a client library. Both share the machine's cores, as
//! they would in any loopback benchmark.

// Timing statistics are floats; money never is (amounts are decimal strings).
#![allow(clippy::float_arithmetic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kassa_ledger::LedgerConfig;
use kassa_service::people::StaffForm;
use kassa_service::{Bank, Caller};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::bench::{latency_us, percentile_ms};

/// A measurement of one endpoint at one number of connections.
#[derive(Clone, Debug)]
pub struct HttpMeasurement {
    pub database: &'static str,
    pub endpoint: &'static str,
    pub connections: usize,
    pub requests: u64,
    pub failures: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl HttpMeasurement {
    /// The measurement of a run that began at `started`: its answered
    /// requests' latencies (µs, any order), its failures and the first
    /// one's text (printed, for the operator).
    pub(crate) fn summarize(
        database: &'static str,
        endpoint: &'static str,
        connections: usize,
        mut latencies: Vec<u32>,
        failures: u64,
        first_failure: Option<String>,
        started: Instant,
    ) -> HttpMeasurement {
        let seconds = started.elapsed().as_secs_f64();
        if let Some(failure) = first_failure {
            eprintln!("{database}: {endpoint}: {failures} requests failed; the first: {failure}");
        }
        latencies.sort_unstable();
        HttpMeasurement {
            database,
            endpoint,
            connections,
            requests: latencies.len() as u64,
            failures,
            seconds,
            p50_ms: percentile_ms(&latencies, 500),
            p99_ms: percentile_ms(&latencies, 990),
            p999_ms: percentile_ms(&latencies, 999),
        }
    }

    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 { self.requests as f64 / self.seconds } else { 0.0 }
    }

    pub fn json_line(&self) -> String {
        json!({
            "database": self.database,
            "endpoint": self.endpoint,
            "connections": self.connections,
            "requests_per_second": (self.rate() * 10.0).round() / 10.0,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "requests": self.requests,
            "failures": self.failures,
            "seconds": self.seconds,
        })
        .to_string()
    }
}

/// A keep-alive HTTP/1.1 connection that sends one request at a time.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: SocketAddr) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buffer: Vec::with_capacity(16 * 1024) })
    }

    /// Sends a request (head and body already encoded) and reads the whole
    /// response; returns the status and the body.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end]).context("a response head that is not UTF-8")?;
        let status: u16 =
            head.split(' ').nth(1).and_then(|code| code.parse().ok()).context("a response without a status")?;
        let mut length = None;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else { continue };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("a chunked response; the benchmark client reads only Content-Length bodies");
            }
        }
        let length = length.context("a response without Content-Length")?;
        while self.buffer.len() < head_end + length {
            self.fill().await?;
        }
        Ok((status, self.buffer[head_end..head_end + length].to_vec()))
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0_u8; 8192];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("the server closed the connection");
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn encode(method: &str, path: &str, token: Option<&str>, extra: &[(&str, &str)], body: Option<&Value>) -> Vec<u8> {
    use std::fmt::Write as _;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(token) = token {
        let _ = write!(head, "Authorization: Bearer {token}\r\n");
    }
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if !body.is_empty() {
        let _ = write!(head, "Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// One JSON call during set-up, which must succeed.
async fn call(
    connection: &mut Connection,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
    expect: u16,
) -> anyhow::Result<Value> {
    let (status, body) = connection.exchange(&encode(method, path, token, &[], Some(&body))).await?;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status != expect {
        bail!("set-up: {method} {path} answered {status}: {body}");
    }
    Ok(body)
}

/// A customer of the benchmark: a token and an account to pay from, and the
/// account number of the next customer to pay to.
pub(crate) struct Payer {
    pub(crate) token: String,
    pub(crate) from: String,
    pub(crate) to: String,
    /// The payer's phone number, to sign in with (the terminal benchmark).
    pub(crate) phone: String,
}

pub(crate) const PASSWORD: &str = "bench-Password-2026";

/// Registers `2 × count` customers over HTTP, opens and funds an account
/// for each (a teller's cash deposit), and pairs payer `n` with payee
/// `count + n`: each connection pays from its own account to its own
/// payee, as many independent customers would, so concurrent batches do
/// not all queue for the same few account rows. (A ring in which every
/// payer is also the next one's payee makes any two batches share accounts,
/// which serialises PostgreSQL's writers; see docs/PERFORMANCE.md.)
pub(crate) async fn customers(bank: &Bank, address: SocketAddr, count: usize) -> anyhow::Result<Vec<Payer>> {
    bank.create_staff(
        &Caller::anonymous("cli"),
        StaffForm {
            login: Some("bench-teller".into()),
            name: Some("Bench Teller".into()),
            role: Some("teller".into()),
            password: Some(PASSWORD.into()),
            totp: Some(false),
        },
    )
    .await
    .map_err(|error| anyhow::anyhow!("creating the benchmark's teller: {error}"))?;
    let mut connection = Connection::open(address).await?;
    let teller = call(
        &mut connection,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({"login": "bench-teller", "password": PASSWORD}),
        200,
    )
    .await?["access_token"]
        .as_str()
        .context("no teller token")?
        .to_owned();
    let mut made = Vec::with_capacity(count);
    for n in 0..2 * count {
        let registration = json!({
            "first_name": "Bench", "last_name": "Customer", "phone": format!("+37529{:07}", 1_000_000 + n),
            "email": format!("bench{n}@example.com"), "password": PASSWORD,
            "passport_number": format!("MP{:07}", 1_000_000 + n), "personal_id": format!("{:07}A{:03}PB5", 3_010_190 + n / 1000, n % 1000),
        });
        let registered = call(&mut connection, "POST", "/api/v1/auth/register", None, registration, 201).await?;
        let token = registered["access_token"].as_str().context("no access token")?.to_owned();
        let account = call(
            &mut connection,
            "POST",
            "/api/v1/accounts",
            Some(&token),
            json!({"kind": "current", "currency": "BYN", "consents": [{"document": "terms", "version": "2026-01"}]}),
            201,
        )
        .await?;
        let number = account["number"].as_str().context("no account number")?.to_owned();
        call(
            &mut connection,
            "POST",
            "/api/v1/staff/cash/deposits",
            Some(&teller),
            json!({"account": number, "amount": "1000000.00", "currency": "BYN"}),
            201,
        )
        .await?;
        let phone = registered["customer"]["phone"].as_str().context("no phone")?.to_owned();
        made.push((token, account["id"].as_i64().context("no account id")?.to_string(), number, phone));
    }
    Ok((0..count)
        .map(|n| Payer {
            token: made[n].0.clone(),
            from: made[n].1.clone(),
            to: made[count + n].2.clone(),
            phone: made[n].3.clone(),
        })
        .collect())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /livez`: the ceiling.
    Livez,
    /// `POST /api/v1/transfers` without an Idempotency-Key.
    Transfer,
    /// `POST /api/v1/transfers` with a fresh Idempotency-Key on each.
    TransferIdempotent,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Livez => "GET /livez",
            Endpoint::Transfer => "POST /transfers",
            Endpoint::TransferIdempotent => "POST /transfers + Idempotency-Key",
        }
    }
}

/// Runs `connections` clients against one endpoint for `duration`.
async fn measure(
    database: &'static str,
    address: SocketAddr,
    payers: &Arc<Vec<Payer>>,
    endpoint: Endpoint,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<HttpMeasurement> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections);
    for index in 0..connections {
        let payers = Arc::clone(payers);
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            let payer = &payers[index % payers.len()];
            let body = json!({"from_account": payer.from, "to_account": payer.to, "amount": "0.01", "currency": "BYN"});
            let plain = encode("POST", "/api/v1/transfers", Some(&payer.token), &[], Some(&body));
            let livez = encode("GET", "/livez", None, &[], None);
            let mut latencies = Vec::with_capacity(64 * 1024);
            let (mut failures, mut sequence) = (0_u64, 0_u64);
            let mut first_failure = None;
            while Instant::now() < deadline {
                let request_started = Instant::now();
                let (status, answer) = match endpoint {
                    Endpoint::Livez => connection.exchange(&livez).await?,
                    Endpoint::Transfer => connection.exchange(&plain).await?,
                    Endpoint::TransferIdempotent => {
                        sequence += 1;
                        let key = format!("bench-{index}-{sequence}-{}", started.elapsed().as_nanos());
                        let request = encode(
                            "POST",
                            "/api/v1/transfers",
                            Some(&payer.token),
                            &[("Idempotency-Key", &key)],
                            Some(&body),
                        );
                        connection.exchange(&request).await?
                    }
                };
                let expected = if endpoint == Endpoint::Livez { 200 } else { 201 };
                if status == expected {
                    latencies.push(latency_us(request_started));
                } else {
                    failures += 1;
                    first_failure.get_or_insert_with(|| format!("{status} {}", String::from_utf8_lossy(&answer)));
                }
            }
            Ok::<_, anyhow::Error>((latencies, failures, first_failure))
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    let mut first_failure = None;
    for task in tasks {
        let (mut own, failed, failure) = task.await.context("a benchmark client panicked")??;
        latencies.append(&mut own);
        failures += failed;
        if first_failure.is_none() {
            first_failure = failure;
        }
    }
    Ok(HttpMeasurement::summarize(database, endpoint.name(), connections, latencies, failures, first_failure, started))
}

/// A bank on `url` with the HTTP API served on 127.0.0.1:0: the bank, the
/// address and the server's task.
pub(crate) async fn start(
    url: &str,
    ledger_config: LedgerConfig,
) -> anyhow::Result<(Bank, SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let (ledger, db) = crate::serve::open_ledger(url, ledger_config).await?;
    let mut key = vec![0_u8; 32];
    getrandom::fill(&mut key).map_err(|error| anyhow::anyhow!("no randomness for the token key: {error}"))?;
    let config = crate::config::Config::default();
    let bank = Bank::start(db, ledger, config.settings(key)).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    let state = kassa_http::AppState {
        bank: bank.clone(),
        metrics: Arc::default(),
        trusted_proxies: Arc::new(Vec::new()),
        body_max_bytes: config.limits.request_body_max_bytes,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server =
        tokio::spawn(crate::serve::run_http(listener, kassa_http::router(state), None, std::future::pending()));
    Ok((bank, address, server))
}

/// Starts a bank on `url` with the HTTP API on 127.0.0.1:0, sets up
/// customers, and measures each endpoint in turn.
pub async fn run(
    url: &str,
    database: &'static str,
    connections: usize,
    duration: Duration,
    ledger_config: LedgerConfig,
) -> anyhow::Result<Vec<HttpMeasurement>> {
    let (bank, address, server) = start(url, ledger_config).await?;
    let payers = Arc::new(customers(&bank, address, connections).await?);
    let mut results = Vec::new();
    // A warm-up, not measured: the tables grow from empty, PostgreSQL's
    // statistics and caches settle (the first seconds of a new database
    // are measurably slower), like the preload of the ledger benchmark.
    let warm_up = measure(database, address, &payers, Endpoint::Transfer, connections, duration).await?;
    eprintln!("{database}: warm-up (not measured): {} transfers", warm_up.requests);
    if database == "postgres" {
        // What autovacuum does within its first minute on a growing table:
        // fresh statistics, so plans made while the tables were empty are
        // replaced (a long-running server has them; a brand-new database
        // gets them within a minute or so).
        kassa_store::sql::write(&**bank.database(), |tx| tx.execute("ANALYZE", &[]).map(|_| ()))
            .await
            .map_err(|error: kassa_store::StoreError| anyhow::anyhow!("ANALYZE: {error}"))?;
    }
    let stats = bank.ledger().stats();
    for endpoint in [Endpoint::Livez, Endpoint::Transfer, Endpoint::TransferIdempotent] {
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
        let before = (load(&stats.batches), load(&stats.transfers), load(&stats.commit_us_total));
        results.push(measure(database, address, &payers, endpoint, connections, duration).await?);
        let batches = load(&stats.batches) - before.0;
        let transfers = load(&stats.transfers) - before.1;
        if batches > 0 {
            eprintln!(
                "{database}: {}: {batches} ledger batches, {:.1} transfers per batch, {:.0} µs of commit per batch",
                endpoint.name(),
                transfers as f64 / batches as f64,
                (load(&stats.commit_us_total) - before.2) as f64 / batches as f64
            );
        }
    }
    server.abort();
    Ok(results)
}

/// The results as a Markdown table, under `title`.
pub fn table(title: &str, results: &[HttpMeasurement], seconds: u64) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "\n{title}, {seconds} s per measurement; latency is per request\n\n\
         | database | endpoint | connections | requests/s | p50 ms | p99 ms | p999 ms | failed |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for m in results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            m.database,
            m.endpoint,
            m.connections,
            m.rate(),
            m.p50_ms,
            m.p99_ms,
            m.p999_ms,
            m.failures
        );
    }
    out
}
