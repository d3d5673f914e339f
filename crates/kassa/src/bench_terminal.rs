//! `kassa bench --terminal`: the terminal (ATM) protocol over TLS on
//! loopback, measured as terminals see it: signed-in sessions sending
//! `balance` and `transfer` frames one at a time, beside the ceiling of
//! `ping` (no database work) in the same run, on the same server, with the
//! same number of sessions.
//!
//! The server is the real terminal server over a fresh bank in this
//! process, with a certificate from a fresh local CA (as `kassa serve`
//! makes one); customers are set up over the HTTP API as in `--http`. The
//! per-session request rate limit is lifted for the run (it exists to stop
//! one misbehaving client, and every session here sends as fast as it can).

// Timing statistics are floats; money never is (amounts are decimal strings).
#![allow(clippy::float_arithmetic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kassa_ledger::LedgerConfig;
use serde_json::{Map, Value, json};

use crate::atm::wire::{Client, Hello, TrustConfig};
use crate::bench::latency_us;
use crate::bench_http::{HttpMeasurement, PASSWORD, Payer};

/// A signed-in session of `kassa atm`'s client, trusting the bench's CA.
async fn session(address: SocketAddr, ca: &Path, phone: &str) -> anyhow::Result<Client> {
    let hello = Hello { client: "kassa bench".into(), terminal: None };
    let mut client = Client::connect(&address.to_string(), TrustConfig::Ca(ca.to_path_buf()), hello).await?;
    for (op, fields) in [("hello", Map::new()), ("login", fields(json!({"phone": phone, "password": PASSWORD})))] {
        let reply = client.call(op, fields).await?;
        if !reply.is_ok() {
            anyhow::bail!("{op}: {}", reply.raw);
        }
    }
    Ok(client)
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Ping,
    Balance,
    Transfer,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Ping => "terminal ping",
            Op::Balance => "terminal balance",
            Op::Transfer => "terminal transfer",
        }
    }

    /// The protocol's name of the operation.
    fn frame(self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::Balance => "balance",
            Op::Transfer => "transfer",
        }
    }
}

async fn measure(
    database: &'static str,
    sessions: Vec<(Client, String)>,
    op: Op,
    duration: Duration,
) -> anyhow::Result<(HttpMeasurement, Vec<(Client, String)>)> {
    let connections = sessions.len();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections);
    for (mut session, payee) in sessions {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(64 * 1024);
            let (mut failures, mut first_failure) = (0_u64, None);
            while Instant::now() < deadline {
                let frame = match op {
                    Op::Ping | Op::Balance => Map::new(),
                    Op::Transfer => fields(json!({"to_account": payee, "amount": "0.01"})),
                };
                let request_started = Instant::now();
                let reply = session.call(op.frame(), frame).await?;
                if reply.is_ok() {
                    latencies.push(latency_us(request_started));
                } else {
                    failures += 1;
                    first_failure.get_or_insert_with(|| reply.raw.to_string());
                }
            }
            Ok::<_, anyhow::Error>((latencies, failures, first_failure, session, payee))
        }));
    }
    let (mut latencies, mut failures, mut first_failure, mut back) = (Vec::new(), 0, None, Vec::new());
    for task in tasks {
        let (mut own, failed, failure, session, payee) = task.await.context("a benchmark session panicked")??;
        latencies.append(&mut own);
        failures += failed;
        first_failure = first_failure.or(failure);
        back.push((session, payee));
    }
    let measurement =
        HttpMeasurement::summarize(database, op.name(), connections, latencies, failures, first_failure, started);
    Ok((measurement, back))
}

/// Starts a bank on `url` with the HTTP API (for set-up) and the terminal
/// server, signs `connections` sessions in, and measures each operation.
pub async fn run(
    url: &str,
    database: &'static str,
    connections: usize,
    duration: Duration,
    ledger_config: LedgerConfig,
) -> anyhow::Result<Vec<HttpMeasurement>> {
    let (bank, http_address, http_server) = crate::bench_http::start(url, ledger_config).await?;
    let payers: Vec<Payer> = crate::bench_http::customers(&bank, http_address, connections).await?;

    let tls_dir = std::env::temp_dir().join(format!("kassa-bench-tls-{}-{database}", std::process::id()));
    let data_dir = crate::datadir::DataDir::open_or_create(&tls_dir)?;
    data_dir.ensure_tls("Kassa bench", &[])?;
    let acceptor =
        tokio_rustls::TlsAcceptor::from(crate::tls::server_config(&data_dir.cert_path(), &data_dir.key_path(), &[])?);
    let ca = tls_dir.join("tls").join("ca.pem");
    let settings = kassa_terminal::TerminalSettings {
        max_sessions: connections.saturating_mul(2).max(16),
        requests_per_s: 1_000_000,
        request_burst: 1_000_000,
        ..kassa_terminal::TerminalSettings::default()
    };
    let server = kassa_terminal::TerminalServer::start(bank.clone(), settings)
        .await
        .map_err(|error| anyhow::anyhow!("starting the terminal server: {error}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let terminal_server = tokio::spawn(Arc::clone(&server).serve(listener, acceptor, stopped));

    let mut sessions = Vec::with_capacity(connections);
    for payer in &payers {
        sessions.push((session(address, &ca, &payer.phone).await?, payer.to.clone()));
    }
    let (warm_up, mut sessions) = measure(database, sessions, Op::Transfer, duration).await?;
    eprintln!("{database}: warm-up (not measured): {} terminal transfers", warm_up.requests);
    if database == "postgres" {
        // As in `--http`: the statistics a running server would have.
        kassa_store::sql::write(&**bank.database(), |tx| tx.execute("ANALYZE", &[]).map(|_| ()))
            .await
            .map_err(|error: kassa_store::StoreError| anyhow::anyhow!("ANALYZE: {error}"))?;
    }
    let mut results = Vec::new();
    for op in [Op::Ping, Op::Balance, Op::Transfer] {
        let (measured, back) = measure(database, sessions, op, duration).await?;
        results.push(measured);
        sessions = back;
    }
    eprintln!("{database}: the server's logical clock ended at {}", server.clock());
    drop(sessions);
    let _ = stop.send(true);
    let _ = terminal_server.await;
    http_server.abort();
    let _ = std::fs::remove_dir_all(&tls_dir);
    Ok(results)
}
