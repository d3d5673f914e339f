#!/usr/bin/env bash
# Crash test: proves that an acknowledged transfer survives a crash and that
# a linked pair is never half-applied.
#
# For each engine, `kassa dev crash-writer` submits linked pairs from 16
# tasks and prints `ACK <id1> <id2>` once a pair is durable; this script
# kills it with SIGKILL at a random moment, KASSA_CRASH_KILLS times (default
# 20), so that kills land in the middle of group commits under load. Then
# `kassa dev crash-verify` checks every ACK against the database and
# `kassa check` proves the books balance.
#
# Usage: scripts/crash-test.sh [sqlite|postgres|all]     (default: all)
#
# Environment:
#   KASSA_BIN           the kassa binary to use; if unset, `cargo build -p kassa`
#                       builds the debug one (CI builds it once for the tests)
#   KASSA_CRASH_KILLS   kills per engine (default 20)
#   KASSA_CRASH_PG_HOST / KASSA_CRASH_PG_PORT / KASSA_CRASH_PG_USER
#                       the PostgreSQL server (default 127.0.0.1, 5432, postgres)
#
# PostgreSQL is skipped with a loud line when no server answers, unless it
# was asked for by name or CI=true, where that is a failure.

set -euo pipefail

engines="${1:-all}"
case "$engines" in
    sqlite) engines="sqlite" ;;
    postgres) engines="postgres" ;;
    all) engines="sqlite postgres" ;;
    *)
        echo "usage: $0 [sqlite|postgres|all]" >&2
        exit 2
        ;;
esac

kills="${KASSA_CRASH_KILLS:-20}"
if ! [[ "$kills" =~ ^[0-9]+$ ]] || ((kills < 1)); then
    echo "crash-test: KASSA_CRASH_KILLS must be a positive number, not '$kills'" >&2
    exit 2
fi
pg_host="${KASSA_CRASH_PG_HOST:-127.0.0.1}"
pg_port="${KASSA_CRASH_PG_PORT:-5432}"
pg_user="${KASSA_CRASH_PG_USER:-postgres}"
pg_db="kassa_crash_$$"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${KASSA_BIN:-}" ]]; then
    kassa="$KASSA_BIN"
else
    (cd "$root" && cargo build -p kassa)
    kassa="${CARGO_TARGET_DIR:-$root/target}/debug/kassa"
fi
if [[ ! -x "$kassa" ]]; then
    echo "crash-test: no kassa binary at $kassa" >&2
    exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/kassa-crash.XXXXXX")"
writer_pid=""
pg_created=""

cleanup() {
    local status=$?
    # A writer left running by an interrupted run must not outlive us.
    if [[ -n "$writer_pid" ]] && kill -0 "$writer_pid" 2>/dev/null; then
        kill -9 "$writer_pid" 2>/dev/null || true
        wait "$writer_pid" 2>/dev/null || true
    fi
    if [[ -n "$pg_created" ]]; then
        dropdb -h "$pg_host" -p "$pg_port" -U "$pg_user" --if-exists --force "$pg_db" >/dev/null 2>&1 ||
            echo "crash-test: could not drop the database $pg_db" >&2
    fi
    if ((status == 0)); then
        rm -rf "$work"
    else
        echo "crash-test: logs kept in $work" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A random pause of 0.300 to 1.500 seconds, so kills land mid-batch at
# different points of the writer's life (startup, account setup, load).
random_pause() {
    local ms=$((300 + RANDOM % 1201))
    printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

postgres_available() {
    command -v pg_isready >/dev/null 2>&1 || command -v psql >/dev/null 2>&1 || return 1
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$pg_host" -p "$pg_port" -U "$pg_user" -t 5
    else
        psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1
    fi
}

# Runs the kill loop and the verification on one engine.
crash_engine() {
    local engine="$1" url dir
    dir="$work/$engine"
    mkdir -p "$dir"
    case "$engine" in
        sqlite)
            url="sqlite://$dir/kassa.db"
            ;;
        postgres)
            if ! postgres_available; then
                if [[ "${CI:-}" == "true" || "$1" == "$requested_postgres" ]]; then
                    echo "crash-test: FAILED: no PostgreSQL server at $pg_host:$pg_port" >&2
                    return 1
                fi
                echo "crash-test: SKIPPED: PostgreSQL — no server at $pg_host:$pg_port" >&2
                skipped+=("$engine")
                return 0
            fi
            createdb -h "$pg_host" -p "$pg_port" -U "$pg_user" "$pg_db"
            pg_created=1
            url="postgres://$pg_user@$pg_host:$pg_port/$pg_db"
            ;;
    esac

    local acked="$dir/acked.log" errors="$dir/writer.err" started kill
    : >"$acked"
    : >"$errors"
    started=$SECONDS
    echo "crash-test ($engine): $kills kills of crash-writer --tasks 16"
    for ((kill = 1; kill <= kills; kill++)); do
        "$kassa" dev crash-writer --database-url "$url" --tasks 16 >>"$acked" 2>>"$errors" &
        writer_pid=$!
        sleep "$(random_pause)"
        kill -9 "$writer_pid" 2>/dev/null || true
        local status=0
        wait "$writer_pid" 2>/dev/null || status=$?
        writer_pid=""
        # 137 is death by SIGKILL; anything else means the writer stopped on
        # its own before the kill, which is a failure of the writer.
        if ((status != 137)); then
            echo "crash-test ($engine): FAILED: crash-writer exited on its own (status $status) before kill $kill:" >&2
            tail -n 20 "$errors" >&2
            return 1
        fi
    done
    local load_s=$((SECONDS - started))

    local verify_status=0 check_status=0
    # Bounded, so that a hung verifier fails the run instead of hanging it.
    timeout 600 "$kassa" dev crash-verify --database-url "$url" --acked "$acked" >"$dir/verify.out" 2>&1 ||
        verify_status=$?
    cat "$dir/verify.out"
    timeout 300 "$kassa" check --database-url "$url" >"$dir/check.out" 2>&1 || check_status=$?
    cat "$dir/check.out"

    local acks
    acks=$(grep -c '^ACK ' "$acked" || true)
    if ((verify_status != 0 || check_status != 0)); then
        echo "crash-test ($engine): FAILED after $kills kills and $acks acknowledged pairs:" \
            "crash-verify exited $verify_status, kassa check exited $check_status (logs in $dir)" >&2
        return 1
    fi
    if ((acks == 0)); then
        echo "crash-test ($engine): FAILED: $kills runs acknowledged nothing, so nothing was proven:" >&2
        tail -n 20 "$errors" >&2
        return 1
    fi
    echo "crash-test ($engine): PASSED: $kills kills, $acks acknowledged pairs," \
        "all durable and whole, books balance ($load_s s of load, $((SECONDS - started)) s in all)"
    passed+=("$engine")
}

requested_postgres=""
passed=()
skipped=()
if [[ "${1:-all}" == "postgres" ]]; then
    requested_postgres="postgres"
fi

for engine in $engines; do
    crash_engine "$engine"
done
echo "crash-test: PASSED: ${passed[*]:-none} ($kills kills each); SKIPPED: ${skipped[*]:-none}"
