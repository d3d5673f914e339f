#!/usr/bin/env bash
# The project's test command: every suite except the benchmark.
#   - checks formatting and the workspace's lints (warnings are errors);
#   - builds the debug profile once (tests and the kassa binary);
#   - runs the crash test (SIGKILL inside group-commit batches) on SQLite and
#     PostgreSQL;
#   - runs the workspace's tests (unit, property, model-based, concurrency,
#     multi-process and CLI tests) on SQLite and PostgreSQL.
# PostgreSQL tests use KASSA_TEST_PG_URL (default
# postgres://postgres@127.0.0.1:5432/test) and create a fresh database per run.
# Without a server they print SKIPPED loudly; under CI=true they must run.
# Bigger runs: KASSA_PROPTEST_CASES, KASSA_CRASH_KILLS.
set -euo pipefail
cd "$(dirname "$0")/.."

# The model-based property test runs 256 cases per engine here (64 by default).
export KASSA_PROPTEST_CASES="${KASSA_PROPTEST_CASES:-256}"

# The lint table is enforced, not advisory.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

cargo build --workspace --tests --bins --locked
KASSA_BIN="$PWD/target/debug/kassa" ./scripts/crash-test.sh all
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets --locked 2>&1 | tee "$log"
# One closing line for the whole run: the sum over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "summary: %d passed, %d failed\n", passed, failed }' "$log"
