//! Prometheus metrics: requests by route and status, their latencies, and
//! the ledger's batches.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::Method;
use kassa_ledger::LedgerStats;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 12] =
    [500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];

#[derive(Debug, Default)]
struct Series {
    count: u64,
    sum_us: u64,
    buckets: [u64; BUCKETS_US.len()],
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    pub fn observe(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut requests) = self.requests.lock() {
            let series = requests.entry((method.to_string(), route.to_owned(), status)).or_default();
            series.count += 1;
            series.sum_us = series.sum_us.saturating_add(us);
            for (bucket, bound) in series.buckets.iter_mut().zip(BUCKETS_US) {
                if us <= bound {
                    *bucket += 1;
                }
            }
        }
    }

    pub fn render(&self, ledger: &LedgerStats) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP kassa_http_requests_total HTTP requests by route and status.");
        let _ = writeln!(out, "# TYPE kassa_http_requests_total counter");
        let mut latency = String::new();
        let _ = writeln!(latency, "# HELP kassa_http_request_duration_seconds HTTP request latency.");
        let _ = writeln!(latency, "# TYPE kassa_http_request_duration_seconds histogram");
        if let Ok(requests) = self.requests.lock() {
            for ((method, route, status), series) in requests.iter() {
                let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
                let _ = writeln!(out, "kassa_http_requests_total{{{labels}}} {}", series.count);
                for (bucket, bound) in series.buckets.iter().zip(BUCKETS_US) {
                    let _ = writeln!(
                        latency,
                        "kassa_http_request_duration_seconds_bucket{{{labels},le=\"{}.{:06}\"}} {bucket}",
                        bound / 1_000_000,
                        bound % 1_000_000
                    );
                }
                let _ = writeln!(
                    latency,
                    "kassa_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    series.count
                );
                let _ = writeln!(
                    latency,
                    "kassa_http_request_duration_seconds_sum{{{labels}}} {}.{:06}",
                    series.sum_us / 1_000_000,
                    series.sum_us % 1_000_000
                );
                let _ = writeln!(latency, "kassa_http_request_duration_seconds_count{{{labels}}} {}", series.count);
            }
        }
        out.push_str(&latency);
        let batches = ledger.batches.load(Ordering::Relaxed);
        let transfers = ledger.transfers.load(Ordering::Relaxed);
        let commit_us = ledger.commit_us_total.load(Ordering::Relaxed);
        for (name, help, kind, value) in [
            ("kassa_ledger_batches_total", "Ledger batches committed.", "counter", batches.to_string()),
            (
                "kassa_ledger_transfers_total",
                "Transfers requested through the ledger.",
                "counter",
                transfers.to_string(),
            ),
            (
                "kassa_ledger_commit_seconds_total",
                "Time spent committing ledger batches.",
                "counter",
                format!("{}.{:06}", commit_us / 1_000_000, commit_us % 1_000_000),
            ),
            (
                "kassa_ledger_batch_size_max",
                "The largest batch so far, in transfers.",
                "gauge",
                ledger.largest_batch.load(Ordering::Relaxed).to_string(),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}
