//! `kassa bench --http` and `--terminal` as a developer runs them, tiny:
//! each must set up its customers over HTTP, move money on every connection
//! without a single refused request, and print one JSON line per endpoint. Its figures are
//! printed, never asserted (a benchmark is not a timed test); the books are
//! checked afterwards with `kassa check`.

#![allow(clippy::expect_used, clippy::panic, reason = "a test fails by panicking, with the reason in the message")]

use std::process::Command;

use serde_json::Value;

const KASSA: &str = env!("CARGO_BIN_EXE_kassa");

/// Runs `kassa bench MODE` tiny on a fresh SQLite file; checks every line
/// and the books, and returns the endpoints measured.
fn bench(mode: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let output = Command::new(KASSA)
        .args(["bench", mode, "--json", "--seconds", "1", "--connections", "2", "--database-url", &url])
        .env_remove("KASSA_DATABASE_URL")
        .output()
        .expect("kassa bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kassa bench {mode} failed:\n{stdout}\n{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect();
    for line in &lines {
        assert!(line["requests"].as_u64().is_some_and(|n| n > 0), "nothing was measured: {line}");
        assert_eq!(line["failures"], 0, "a request was refused: {line}\n{stderr}");
        assert_eq!(line["connections"], 2, "{line}");
    }
    let check = Command::new(KASSA).args(["check", "--database-url", &url]).output().expect("kassa check runs");
    assert!(check.status.success(), "the books after the benchmark:\n{}", String::from_utf8_lossy(&check.stdout));
    lines.iter().filter_map(|line| line["endpoint"].as_str().map(str::to_owned)).collect()
}

#[test]
fn bench_http_moves_money_on_every_endpoint_and_the_books_balance() {
    assert_eq!(bench("--http"), ["GET /livez", "POST /transfers", "POST /transfers + Idempotency-Key"]);
}

#[test]
fn bench_terminal_moves_money_over_tls_and_the_books_balance() {
    assert_eq!(bench("--terminal"), ["terminal ping", "terminal balance", "terminal transfer"]);
}
