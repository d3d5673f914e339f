//! `kassa bench`: durable transfers per second and latency percentiles,
//! each beside a plain one-SQL-transaction-per-transfer baseline measured on
//! the same database in the same run.
//!
//! The baseline is deliberately honest: the same schema, indexes and
//! constraints, the same durability (`synchronous=FULL` in WAL mode;
//! `synchronous_commit=on`), one connection per concurrent task, rows
//! updated in account-id order so PostgreSQL never deadlocks, and the same
//! time-ordered transfer ids. It does not link history chains (it leaves
//! `prev_*_seq` empty), which makes it slightly cheaper than Kassa's path;
//! it works on accounts of its own, so Kassa's accounts keep whole histories.
//! Its accounts and transfers stay in the database so `kassa check` can
//! verify them afterwards.

// Timing statistics are floats; money never is (amounts here are integer minor units).
#![allow(clippy::float_arithmetic)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use kassa_core::ledger::{AccountKind, NewAccount, NewTransfer};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_ledger::{Ledger, LedgerConfig};
use kassa_store::{DatabaseUrl, LedgerStore, now_us};
use rand::Rng as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Databases to measure (repeatable). Default: a new SQLite file in a
    /// temporary directory. A PostgreSQL database should be a fresh one: the
    /// benchmark leaves its accounts and transfers there.
    #[arg(long = "database-url")]
    pub database_urls: Vec<String>,
    /// A short run: fewer accounts, a smaller preload and 3 s per measurement.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object per result line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds per measurement (default 10, or 3 with --quick).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Transfers written before measuring, so indexes have a realistic size
    /// (default 1,000,000, or 100,000 with --quick).
    #[arg(long)]
    pub preload: Option<u64>,
    /// Number of accounts (default 100,000, or 10,000 with --quick).
    #[arg(long)]
    pub accounts: Option<usize>,
    /// Only these workloads (single, batch100, batch8190, hot); default all.
    #[arg(long = "workload")]
    pub workloads: Vec<String>,
    /// Group commit: most transfers in one database transaction.
    #[arg(long, default_value_t = LedgerConfig::default().batch_transfers_max)]
    pub batch_max: usize,
    /// Group commit: how long the writer waits for more requests after the
    /// first of a batch when callers arrive together, in microseconds (0:
    /// take only what is queued).
    #[arg(long, default_value_t = 50)]
    pub batch_wait_us: u64,
    /// Group commit: batches in flight at once (PostgreSQL only; SQLite has
    /// one writer).
    #[arg(long, default_value_t = LedgerConfig::default().writers)]
    pub writers: usize,
    /// Measure the bank over HTTP on 127.0.0.1 instead of the ledger:
    /// authenticated single transfers beside a trivial endpoint's ceiling.
    #[arg(long)]
    pub http: bool,
    /// Measure the terminal (ATM) protocol over TLS on 127.0.0.1 instead:
    /// balance and transfer frames from signed-in sessions beside `ping`.
    #[arg(long, conflicts_with = "http")]
    pub terminal: bool,
    /// HTTP and terminal modes: client connections (sessions).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Single,
    Batch100,
    Batch8190,
    Hot,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Single => "single",
            Workload::Batch100 => "batch100",
            Workload::Batch8190 => "batch8190",
            Workload::Hot => "hot",
        }
    }

    fn batch(self) -> usize {
        match self {
            Workload::Single | Workload::Hot => 1,
            Workload::Batch100 => 100,
            Workload::Batch8190 => 8190,
        }
    }
}

/// One measurement, as printed.
#[derive(Clone, Debug)]
struct Measurement {
    database: &'static str,
    workload: Workload,
    mode: &'static str,
    concurrency: usize,
    transfers: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    retries: u64,
}

impl Measurement {
    fn rate(&self) -> f64 {
        if self.seconds > 0.0 { self.transfers as f64 / self.seconds } else { 0.0 }
    }
}

/// The plan: (workload, concurrency) pairs, in order.
fn plan(args: &Args) -> anyhow::Result<Vec<(Workload, usize)>> {
    let all = [
        (Workload::Single, 1),
        (Workload::Single, 16),
        (Workload::Single, 64),
        (Workload::Batch100, 8),
        (Workload::Batch8190, 2),
        (Workload::Hot, 64),
    ];
    if args.workloads.is_empty() {
        return Ok(all.to_vec());
    }
    for name in &args.workloads {
        if !all.iter().any(|(workload, _)| workload.name() == name) {
            anyhow::bail!("unknown workload {name:?}: use single, batch100, batch8190 or hot");
        }
    }
    Ok(all.into_iter().filter(|(workload, _)| args.workloads.iter().any(|name| name == workload.name())).collect())
}

/// Time-ordered unique transfer ids: the run's start time in the high half,
/// a counter in the low half, so the unique index only ever appends.
struct Ids {
    high: u128,
    counter: AtomicU64,
}

impl Ids {
    fn new() -> Ids {
        let start = u64::try_from(now_us()).unwrap_or(0);
        Ids { high: u128::from(start) << 64, counter: AtomicU64::new(1) }
    }

    fn next(&self) -> TransferId {
        TransferId(self.high | u128::from(self.counter.fetch_add(1, Ordering::Relaxed)))
    }
}

struct Setup {
    accounts: Vec<AccountId>,
    hot: AccountId,
}

const CURRENCY: Currency = Currency::BYN;

async fn create_accounts(store: &Arc<dyn LedgerStore>, count: usize, progress: &ProgressBar) -> anyhow::Result<Setup> {
    let run: u32 = rand::rng().random();
    let mut accounts = Vec::with_capacity(count);
    let mut created = 0;
    while created < count + 1 {
        let chunk: Vec<NewAccount> = (created..(created + 10_000).min(count + 1))
            .map(|index| NewAccount {
                number: format!("BENCH-{run:08x}-{index:07}"),
                owner: None,
                currency: CURRENCY,
                kind: AccountKind::Current,
                // Large enough that no benchmark transfer is ever refused.
                credit_limit: Amount::from_minor(1_000_000_000_000_000),
            })
            .collect();
        created += chunk.len();
        accounts.extend(store.create_accounts(chunk, now_us()).await.context("creating benchmark accounts")?);
        progress.set_message(format!("{created} accounts"));
    }
    let hot = accounts.pop().context("no accounts were created")?;
    Ok(Setup { accounts, hot })
}

fn random_transfer(ids: &Ids, setup: &Setup, hot: bool) -> NewTransfer {
    let mut rng = rand::rng();
    let debit = setup.accounts[rng.random_range(0..setup.accounts.len())];
    let credit = if hot {
        setup.hot
    } else {
        loop {
            let candidate = setup.accounts[rng.random_range(0..setup.accounts.len())];
            if candidate != debit {
                break candidate;
            }
        }
    };
    NewTransfer::single(ids.next(), debit, credit, Amount::from_minor(rng.random_range(1..=10_000)), CURRENCY)
}

/// One client request of the workload's size.
fn request(ids: &Ids, setup: &Setup, workload: Workload) -> Vec<NewTransfer> {
    (0..workload.batch()).map(|_| random_transfer(ids, setup, workload == Workload::Hot)).collect()
}

pub(crate) fn percentile_ms(sorted_us: &[u32], per_mille: usize) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let index = (sorted_us.len() * per_mille / 1000).min(sorted_us.len() - 1);
    f64::from(sorted_us[index]) / 1000.0
}

pub(crate) fn latency_us(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX)
}

struct Tally {
    transfers: u64,
    latencies_us: Vec<u32>,
    retries: u64,
}

fn measurement(
    database: &'static str,
    workload: Workload,
    mode: &'static str,
    concurrency: usize,
    elapsed: Duration,
    tallies: Vec<Tally>,
) -> Measurement {
    let mut latencies: Vec<u32> = Vec::new();
    let mut transfers = 0;
    let mut retries = 0;
    for tally in tallies {
        transfers += tally.transfers;
        retries += tally.retries;
        latencies.extend(tally.latencies_us);
    }
    latencies.sort_unstable();
    Measurement {
        database,
        workload,
        mode,
        concurrency,
        transfers,
        seconds: elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 500),
        p99_ms: percentile_ms(&latencies, 990),
        p999_ms: percentile_ms(&latencies, 999),
        retries,
    }
}

async fn run_kassa(
    ledger: &Ledger,
    setup: &Arc<Setup>,
    ids: &Arc<Ids>,
    database: &'static str,
    workload: Workload,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (ledger, setup, ids) = (ledger.clone(), Arc::clone(setup), Arc::clone(ids));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally { transfers: 0, latencies_us: Vec::new(), retries: 0 };
            while Instant::now() < deadline {
                let transfers = request(&ids, &setup, workload);
                let sent = Instant::now();
                let outcomes = ledger.submit(transfers).await?;
                tally.latencies_us.push(latency_us(sent));
                for outcome in outcomes {
                    if let Err(error) = outcome {
                        anyhow::bail!("a benchmark transfer was refused: {error}");
                    }
                    tally.transfers += 1;
                }
            }
            Ok(tally)
        }));
    }
    let mut tallies = Vec::with_capacity(concurrency);
    for task in tasks {
        tallies.push(task.await.context("a benchmark task failed")??);
    }
    Ok(measurement(database, workload, "kassa", concurrency, started.elapsed(), tallies))
}

// ----------------------------------------------------------------- baseline

const BASELINE_INSERT_COLUMNS: &str = "seq, id, debit_account_id, credit_account_id, amount, currency, kind, op, \
     state, linked, bank_debit, description, created_at_us, debit_balance_after, credit_balance_after, overdraft";

fn sqlite_baseline_connection(path: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    let connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 60000; PRAGMA cache_size = -65536;",
    )?;
    Ok(connection)
}

/// One plain SQLite transaction for one transfer.
fn sqlite_baseline_transfer(connection: &mut rusqlite::Connection, transfer: &NewTransfer) -> rusqlite::Result<()> {
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // The write lock is held, so MAX(seq) + 1 is this transfer's number.
    let (debit_after, seq): (i64, i64) = transaction
        .prepare_cached(
            "UPDATE accounts SET debits_posted = debits_posted + ?1,
                 last_seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM transfers)
             WHERE id = ?2 RETURNING credits_posted - debits_posted, last_seq",
        )?
        .query_row(rusqlite::params![transfer.amount.minor(), transfer.debit_account.0], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    let credit_after: i64 = transaction
        .prepare_cached(
            "UPDATE accounts SET credits_posted = credits_posted + ?1, last_seq = ?3
             WHERE id = ?2 RETURNING credits_posted - debits_posted",
        )?
        .query_row(rusqlite::params![transfer.amount.minor(), transfer.credit_account.0, seq], |row| row.get(0))?;
    transaction
        .prepare_cached(&format!(
            "INSERT INTO transfers ({BASELINE_INSERT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'transfer', 'single', 'posted', 0, 0, '', ?7, ?8, ?9, 0)"
        ))?
        .execute(rusqlite::params![
            seq,
            transfer.id.to_bytes(),
            transfer.debit_account.0,
            transfer.credit_account.0,
            transfer.amount.minor(),
            transfer.currency.code(),
            now_us(),
            debit_after,
            credit_after
        ])?;
    transaction.commit()
}

/// The three statements of the PostgreSQL baseline, prepared once per
/// connection.
struct PostgresBaseline {
    client: tokio_postgres::Client,
    first: tokio_postgres::Statement,
    second: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
}

impl PostgresBaseline {
    async fn connect(url: &str) -> anyhow::Result<PostgresBaseline> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .context("connecting the baseline to PostgreSQL")?;
        tokio::spawn(connection);
        let first = client
            .prepare(
                "UPDATE accounts SET debits_posted = debits_posted + CASE WHEN $3 THEN $1::bigint ELSE 0 END,
                     credits_posted = credits_posted + CASE WHEN $3 THEN 0 ELSE $1::bigint END
                 WHERE id = $2 RETURNING credits_posted - debits_posted",
            )
            .await?;
        let second = client
            .prepare(
                "UPDATE accounts SET debits_posted = debits_posted + CASE WHEN $3 THEN $1::bigint ELSE 0 END,
                     credits_posted = credits_posted + CASE WHEN $3 THEN 0 ELSE $1::bigint END,
                     last_seq = nextval('transfers_seq')
                 WHERE id = $2 RETURNING credits_posted - debits_posted, last_seq",
            )
            .await?;
        let insert = client
            .prepare(&format!(
                "WITH head AS (UPDATE accounts SET last_seq = $1 WHERE id = $10)
                 INSERT INTO transfers ({BASELINE_INSERT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, 'transfer', 'single', 'posted', false, false, '', $7, $8, $9, false)"
            ))
            .await?;
        Ok(PostgresBaseline { client, first, second, insert })
    }

    /// One plain PostgreSQL transaction for one transfer: rows are updated in
    /// account-id order (as any sane implementation would, to avoid
    /// deadlocks), and the sequence number is drawn once both rows are
    /// locked, so each account's newest transfer carries its latest balance.
    async fn transfer(&mut self, transfer: &NewTransfer) -> Result<(), tokio_postgres::Error> {
        let debit_first = transfer.debit_account < transfer.credit_account;
        let amount = transfer.amount.minor();
        let (first_id, second_id) = if debit_first {
            (transfer.debit_account, transfer.credit_account)
        } else {
            (transfer.credit_account, transfer.debit_account)
        };
        let transaction = self.client.transaction().await?;
        let first_row = transaction.query_one(&self.first, &[&amount, &first_id.0, &debit_first]).await?;
        let second_row = transaction.query_one(&self.second, &[&amount, &second_id.0, &!debit_first]).await?;
        let first_after: i64 = first_row.get(0);
        let second_after: i64 = second_row.get(0);
        let seq: i64 = second_row.get(1);
        let (debit_after, credit_after) =
            if debit_first { (first_after, second_after) } else { (second_after, first_after) };
        transaction
            .execute(
                &self.insert,
                &[
                    &seq,
                    &uuid_of(transfer.id),
                    &transfer.debit_account.0,
                    &transfer.credit_account.0,
                    &amount,
                    &transfer.currency.code(),
                    &now_us(),
                    &debit_after,
                    &credit_after,
                    &first_id.0,
                ],
            )
            .await?;
        transaction.commit().await
    }
}

fn uuid_of(id: TransferId) -> uuid::Uuid {
    uuid::Uuid::from_u128(id.0)
}

#[allow(clippy::too_many_arguments)]
async fn run_baseline(
    url: &DatabaseUrl,
    raw_url: &str,
    setup: &Arc<Setup>,
    ids: &Arc<Ids>,
    database: &'static str,
    workload: Workload,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (setup, ids) = (Arc::clone(setup), Arc::clone(ids));
        match url {
            DatabaseUrl::Sqlite(path) => {
                let path = path.clone();
                tasks.push(tokio::task::spawn_blocking(move || -> anyhow::Result<Tally> {
                    let mut connection = sqlite_baseline_connection(&path)?;
                    let mut tally = Tally { transfers: 0, latencies_us: Vec::new(), retries: 0 };
                    while Instant::now() < deadline {
                        let batch = request(&ids, &setup, workload);
                        let sent = Instant::now();
                        for transfer in &batch {
                            loop {
                                match sqlite_baseline_transfer(&mut connection, transfer) {
                                    Ok(()) => break,
                                    Err(error)
                                        if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) =>
                                    {
                                        tally.retries += 1;
                                    }
                                    Err(error) => return Err(error.into()),
                                }
                            }
                            tally.transfers += 1;
                        }
                        tally.latencies_us.push(latency_us(sent));
                    }
                    Ok(tally)
                }));
            }
            DatabaseUrl::Postgres(_) => {
                let raw_url = raw_url.to_owned();
                tasks.push(tokio::spawn(async move {
                    let mut baseline = PostgresBaseline::connect(&raw_url).await?;
                    let mut tally = Tally { transfers: 0, latencies_us: Vec::new(), retries: 0 };
                    while Instant::now() < deadline {
                        let batch = request(&ids, &setup, workload);
                        let sent = Instant::now();
                        for transfer in &batch {
                            let mut attempts = 0;
                            loop {
                                match baseline.transfer(transfer).await {
                                    Ok(()) => break,
                                    Err(error) if attempts < 20 && is_retryable(&error) => {
                                        attempts += 1;
                                        tally.retries += 1;
                                    }
                                    Err(error) => return Err(anyhow::Error::from(error)),
                                }
                            }
                            tally.transfers += 1;
                        }
                        tally.latencies_us.push(latency_us(sent));
                    }
                    Ok(tally)
                }));
            }
        }
    }
    let mut tallies = Vec::with_capacity(concurrency);
    for task in tasks {
        tallies.push(task.await.context("a baseline task failed")??);
    }
    Ok(measurement(database, workload, "baseline", concurrency, started.elapsed(), tallies))
}

fn is_retryable(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(error.code(), Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED)
}

// --------------------------------------------------------------------- run

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let seconds = args.seconds.unwrap_or(if args.quick { 3 } else { 10 });
    let duration = Duration::from_secs(seconds.max(1));
    if args.http || args.terminal {
        return run_over_loopback(&args, seconds, duration).await;
    }
    let plan = plan(&args)?;
    let preload = args.preload.unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
    let account_count = args.accounts.unwrap_or(if args.quick { 10_000 } else { 100_000 }).max(2);
    let temporary = tempfile_dir()?;
    let urls = if args.database_urls.is_empty() {
        vec![format!("sqlite://{}", temporary.join("bench.db").display())]
    } else {
        args.database_urls.clone()
    };
    let progress = ProgressBar::new((urls.len() * (plan.len() * 2 + 2)) as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    let mut results = Vec::new();
    for raw_url in &urls {
        let url = DatabaseUrl::parse(raw_url)?;
        let database: &'static str = match url {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        };
        let store = crate::open_store(raw_url, 16).await?;
        progress.set_message(format!("{database}: creating {account_count} accounts"));
        let setup = Arc::new(create_accounts(&store, account_count, &progress).await?);
        // The baseline gets accounts of its own: it does not link history
        // chains, and must not cut short the history of Kassa's accounts.
        let baseline_setup = Arc::new(create_accounts(&store, account_count, &progress).await?);
        progress.inc(1);
        let config = LedgerConfig {
            batch_transfers_max: args.batch_max.max(1),
            batch_wait: Duration::from_micros(args.batch_wait_us),
            writers: args.writers,
            ..LedgerConfig::default()
        };
        let ledger = Ledger::start(Arc::clone(&store), config);
        let ids = Arc::new(Ids::new());
        progress.set_message(format!("{database}: preloading {preload} transfers"));
        let mut loaded = 0;
        while loaded < preload {
            let size = usize::try_from((preload - loaded).min(8190)).unwrap_or(8190);
            let request: Vec<NewTransfer> = (0..size).map(|_| random_transfer(&ids, &setup, false)).collect();
            ledger.submit(request).await?;
            loaded += size as u64;
            progress.set_message(format!("{database}: preloaded {loaded}/{preload} transfers"));
        }
        progress.inc(1);
        for &(workload, concurrency) in &plan {
            progress.set_message(format!("{database}: {} x{concurrency} kassa", workload.name()));
            let ours = run_kassa(&ledger, &setup, &ids, database, workload, concurrency, duration).await?;
            progress.inc(1);
            progress.set_message(format!("{database}: {} x{concurrency} baseline", workload.name()));
            let baseline =
                run_baseline(&url, raw_url, &baseline_setup, &ids, database, workload, concurrency, duration).await?;
            progress.inc(1);
            if args.json {
                progress.suspend(|| {
                    println!("{}", json_line(&ours));
                    println!("{}", json_line(&baseline));
                });
            }
            results.push((ours, baseline));
        }
        let stats = ledger.stats();
        let batches = stats.batches.load(Ordering::Relaxed).max(1);
        progress.suspend(|| {
            let transfers = stats.transfers.load(Ordering::Relaxed).max(1);
            eprintln!(
                "{database}: {} ledger batches, {:.1} transfers per batch on average, largest {}, \
                 {:.1} µs of commit time per transfer",
                batches,
                transfers as f64 / batches as f64,
                stats.largest_batch.load(Ordering::Relaxed),
                stats.commit_us_total.load(Ordering::Relaxed) as f64 / transfers as f64
            );
        });
    }
    progress.finish_and_clear();
    if !args.json {
        println!("{}", table(&results, preload, account_count, seconds));
    }
    for url in &urls {
        // The data stays, so the books can be checked after the run.
        if let Ok(DatabaseUrl::Sqlite(path)) = DatabaseUrl::parse(url) {
            eprintln!("the benchmark's data is kept: kassa check --database-url sqlite://{}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kassa bench --http` and `--terminal`: each database in turn, a fresh
/// bank on each.
#[allow(clippy::print_stdout)]
async fn run_over_loopback(args: &Args, seconds: u64, duration: Duration) -> anyhow::Result<ExitCode> {
    let temporary = tempfile_dir()?;
    let urls = if args.database_urls.is_empty() {
        vec![format!("sqlite://{}", temporary.join("bench-http.db").display())]
    } else {
        args.database_urls.clone()
    };
    let mut results = Vec::new();
    for raw_url in &urls {
        let database: &'static str = match DatabaseUrl::parse(raw_url)? {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        };
        eprintln!("{database}: setting up {} customers over HTTP, then {seconds} s per measurement", args.connections);
        let config = LedgerConfig {
            batch_transfers_max: args.batch_max.max(1),
            batch_wait: Duration::from_micros(args.batch_wait_us),
            writers: args.writers,
            ..LedgerConfig::default()
        };
        let connections = args.connections.max(1);
        let measured = if args.terminal {
            crate::bench_terminal::run(raw_url, database, connections, duration, config).await?
        } else {
            crate::bench_http::run(raw_url, database, connections, duration, config).await?
        };
        if args.json {
            for measurement in &measured {
                println!("{}", measurement.json_line());
            }
        }
        results.extend(measured);
    }
    if !args.json {
        let title = if args.terminal {
            "Terminal protocol over TLS on 127.0.0.1, signed-in sessions, one frame at a time"
        } else {
            "HTTP on 127.0.0.1, keep-alive connections"
        };
        println!("{}", crate::bench_http::table(title, &results, seconds));
    }
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kassa-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn json_line(measurement: &Measurement) -> String {
    serde_json::json!({
        "database": measurement.database,
        "workload": measurement.workload.name(),
        "mode": measurement.mode,
        "concurrency": measurement.concurrency,
        "transfers_per_second": (measurement.rate() * 10.0).round() / 10.0,
        "p50_ms": measurement.p50_ms,
        "p99_ms": measurement.p99_ms,
        "p999_ms": measurement.p999_ms,
        "transfers": measurement.transfers,
        "seconds": measurement.seconds,
        "retries": measurement.retries,
    })
    .to_string()
}

fn table(results: &[(Measurement, Measurement)], preload: u64, accounts: usize, seconds: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{accounts} accounts, {preload} transfers preloaded, {seconds} s per measurement; latency is per request\n"
    );
    let _ = writeln!(
        out,
        "| database | workload | tasks | kassa transfers/s | p50 ms | p99 ms | p999 ms | baseline transfers/s | baseline p99 ms | speed-up |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for (ours, baseline) in results {
        let speedup = if baseline.rate() > 0.0 { ours.rate() / baseline.rate() } else { 0.0 };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.1}× |",
            ours.database,
            ours.workload.name(),
            ours.concurrency,
            ours.rate(),
            ours.p50_ms,
            ours.p99_ms,
            ours.p999_ms,
            baseline.rate(),
            baseline.p99_ms,
            speedup
        );
    }
    out
}
