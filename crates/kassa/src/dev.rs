//! Hidden tools for the project's own tests.
//!
//! `crash-writer` and `crash-verify` prove durability: `scripts/crash-test.sh`
//! kills the writer with SIGKILL again and again while it commits, then the
//! verifier shows that every acknowledged transfer survived and that no
//! linked pair was left half-applied. `bank-workload` and `overdraft-race`
//! are run as several processes on one database by
//! `tests/multi_process.rs`, to prove that the rules hold when the writers
//! do not share a process (and so share no in-memory lock).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use kassa_core::ledger::{
    Account, AccountKind, NewAccount, NewTransfer, TransferError, TransferKind, TransferOp, TransferOutcome,
};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_ledger::{Ledger, LedgerConfig, LedgerError};
use kassa_store::{CheckReport, DatabaseUrl, LedgerStore, now_us};

use crate::DatabaseArgs;

/// Every dev workload books in one currency with two decimals.
const CURRENCY: Currency = Currency::EUR;

/// Whole units of [`CURRENCY`] in minor units, so that amounts below read
/// as the money they are: `units(100)` is 100.00.
const fn units(major: i64) -> i64 {
    major * 100
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Submits linked pairs of transfers until killed (or --max-requests)
    /// and prints `ACK <id1> <id2>` once each pair is durable.
    CrashWriter(CrashWriterArgs),
    /// Checks a database that crash-writer was killed on against the ACK
    /// lines it printed.
    CrashVerify(CrashVerifyArgs),
    /// The Jepsen "bank" workload: random transfers among 8 accounts while
    /// readers check that the total never changes.
    BankWorkload(BankArgs),
    /// Many tasks (in several processes) race to overdraw one account.
    OverdraftRace(RaceArgs),
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CrashWriter(args) => crash_writer(args).await,
        Command::CrashVerify(args) => crash_verify(args).await,
        Command::BankWorkload(args) => bank_workload(args).await,
        Command::OverdraftRace(args) => overdraft_race(args).await,
    }
}

// ------------------------------------------------------------------ helpers

/// A fresh transfer id laid out like a UUIDv7: 48 bits of milliseconds, the
/// version nibble 7, then random bits under the RFC 9562 variant. The clock
/// in front keeps the unique index append-only (the fast path); the 74
/// random bits make a collision between tasks or runs negligible.
fn fresh_id() -> TransferId {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() & ((1 << 48) - 1);
    let random: u128 = rand::random();
    let rand_a = random & 0xfff;
    let rand_b = (random >> 12) & ((1 << 62) - 1);
    TransferId((millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)
}

/// A transfer id derived from a name, so that several processes asking for
/// "the top-up of round 7" submit the very same transfer and the ledger
/// applies it once and replays it for the others. The version nibble is 8
/// (RFC 9562's custom ids), so these never collide with `fresh_id`'s.
fn derived_id(name: &str) -> TransferId {
    // Two FNV-1a passes with different offsets give 128 bits; this needs to
    // be stable and well spread, not secret.
    let fnv = |offset: u64| {
        name.bytes().fold(offset, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
    };
    let value = (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x6c62_272e_07bb_0142));
    let versioned = (value & !(0xf << 76)) | (0x8 << 76);
    TransferId((versioned & !(0b11 << 62)) | (0b10 << 62))
}

/// Prints one line to stdout and flushes it. The standard output lock is
/// held for the whole line, so lines written by concurrent tasks never
/// interleave, and the flush puts the line in the file before the caller
/// goes on: a line that was printed is a line the crash test will read.
fn emit(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{line}\n").as_bytes()).context("writing to stdout")?;
    out.flush().context("flushing stdout")
}

/// Finds an account by number, creating it if it does not exist yet.
///
/// Creation may race another process, or follow a run that was killed
/// between its read and its insert; the account number is unique, so the
/// loser's insert fails and the account it finds on reading again is the
/// one that won, which is all the caller needs.
async fn ensure_account(
    store: &dyn LedgerStore,
    number: &str,
    kind: AccountKind,
    credit_limit: Amount,
) -> anyhow::Result<Account> {
    let found = match store.account_by_number(number).await? {
        Some(found) => found,
        None => {
            let new = NewAccount {
                number: number.to_owned(),
                owner: if kind.is_system() { None } else { Some(1) },
                currency: CURRENCY,
                kind,
                credit_limit,
            };
            match store.create_account(new, now_us()).await {
                Ok(created) => created,
                Err(error) => store
                    .account_by_number(number)
                    .await?
                    .ok_or(error)
                    .with_context(|| format!("creating account {number}"))?,
            }
        }
    };
    if found.currency != CURRENCY || found.kind != kind {
        bail!("account {number} exists but is a {} {} account", found.currency.code(), found.kind.as_str());
    }
    Ok(found)
}

/// Waits until every named account exists, for processes that join a
/// database another process sets up.
async fn wait_for_accounts(
    store: &dyn LedgerStore,
    numbers: &[String],
    wait: Duration,
) -> anyhow::Result<Vec<Account>> {
    let deadline = Instant::now() + wait;
    loop {
        let mut found = Vec::with_capacity(numbers.len());
        for number in numbers {
            match store.account_by_number(number).await? {
                Some(account) => found.push(account),
                None => break,
            }
        }
        if found.len() == numbers.len() {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            bail!("the accounts {numbers:?} were not set up within {} s", wait.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a transfer exists, for processes that must not start before
/// another process's setup is committed.
async fn wait_for_transfer(store: &dyn LedgerStore, id: TransferId, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    while store.transfer(id).await?.is_none() {
        if Instant::now() >= deadline {
            bail!("transfer {id} (the end of the setup) did not appear within {} s", wait.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Sleeps until the wall-clock moment `start_at_ms` (milliseconds since the
/// Unix epoch), so that processes started one after another begin their
/// load together instead of the first one finishing before the last one
/// has started. A moment already past starts at once.
async fn start_together(start_at_ms: Option<u64>) {
    let Some(start_at_ms) = start_at_ms else { return };
    let now_ms =
        u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX);
    if let Some(wait_ms) = start_at_ms.checked_sub(now_ms) {
        // Bounded, so a wrong argument cannot park a test for hours.
        tokio::time::sleep(Duration::from_millis(wait_ms.min(60_000))).await;
    }
}

fn single(
    id: TransferId,
    debit: AccountId,
    credit: AccountId,
    minor: i64,
    kind: TransferKind,
    what: &str,
) -> NewTransfer {
    NewTransfer {
        id,
        debit_account: debit,
        credit_account: credit,
        amount: Amount::from_minor(minor),
        currency: CURRENCY,
        kind,
        op: TransferOp::Single,
        linked: false,
        bank_debit: false,
        description: what.to_owned(),
    }
}

/// How many times a request is resubmitted after the store failed its batch.
const RETRIES_MAX: u32 = 20;

/// Submits a request, resubmitting it with the same ids when the store
/// fails the batch. The ledger promises that a failed batch wrote nothing,
/// and if the commit did land after all, the same ids make the retry an
/// idempotent replay, so a retry can never move money twice. Retries are
/// counted and the first error of each request is reported on stderr, so a
/// store that fails under concurrency is visible rather than hidden.
async fn submit_retrying(
    ledger: &Ledger,
    transfers: Vec<NewTransfer>,
    retries: &AtomicU64,
) -> anyhow::Result<Vec<TransferOutcome>> {
    let mut attempt = 0;
    loop {
        match ledger.submit(transfers.clone()).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(LedgerError::Store(error)) if attempt < RETRIES_MAX => {
                if attempt == 0 {
                    eprintln!("store error, retrying with the same ids: {error}");
                }
                attempt += 1;
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
            }
            Err(error) => return Err(error).context("submitting transfers"),
        }
    }
}

fn refusal_codes(outcomes: &[TransferOutcome]) -> String {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(_) => "ok",
            Err(error) => error.code(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits for every task; the first failure wins, and the remaining tasks
/// are aborted when the set is dropped.
async fn join_all(mut tasks: tokio::task::JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    while let Some(joined) = tasks.join_next().await {
        joined.context("a task panicked")??;
    }
    Ok(())
}

// ------------------------------------------------------------ crash-writer

#[derive(Debug, clap::Args)]
pub struct CrashWriterArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Concurrent submitting tasks.
    #[arg(long, default_value_t = 16)]
    pub tasks: usize,
    /// Customer accounts the pairs move money among.
    #[arg(long, default_value_t = 32)]
    pub accounts: usize,
    /// Stop after this many requests (default: run until killed).
    #[arg(long)]
    pub max_requests: Option<u64>,
}

/// A credit limit no random walk of small amounts reaches in a test run,
/// so that refusals are rare and nearly every request commits.
const CRASH_CREDIT_LIMIT: i64 = units(1_000_000_000);

async fn crash_writer(args: CrashWriterArgs) -> anyhow::Result<ExitCode> {
    if args.accounts < 3 {
        bail!("--accounts must be at least 3: a pair moves money A -> B -> C");
    }
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let store = args.database.open(16).await?;
    let cash = ensure_account(&*store, "CRASH-CASH", AccountKind::Cash, Amount::ZERO).await?.id;
    let mut customers = Vec::with_capacity(args.accounts);
    for index in 1..=args.accounts {
        let number = format!("CRASH-{index:04}");
        customers.push(
            ensure_account(&*store, &number, AccountKind::Current, Amount::from_minor(CRASH_CREDIT_LIMIT)).await?.id,
        );
    }
    let customers: Arc<[AccountId]> = customers.into();
    let ledger = Ledger::start(Arc::clone(&store), LedgerConfig::default());
    let issued = Arc::new(AtomicU64::new(0));
    eprintln!("crash-writer ({}): {} tasks over {} accounts", store.backend(), args.tasks, args.accounts);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.tasks {
        let ledger = ledger.clone();
        let customers = Arc::clone(&customers);
        let issued = Arc::clone(&issued);
        let max_requests = args.max_requests;
        tasks.spawn(async move {
            let mut failures_in_a_row = 0_u32;
            loop {
                if max_requests.is_some_and(|max| issued.fetch_add(1, Ordering::Relaxed) >= max) {
                    return anyhow::Ok(());
                }
                let pair = crash_pair(cash, &customers);
                let ids = (pair[0].id, pair[1].id);
                match ledger.submit(pair).await {
                    Ok(outcomes) if outcomes.len() == 2 && outcomes.iter().all(Result::is_ok) => {
                        failures_in_a_row = 0;
                        emit(&format!("ACK {} {}", ids.0, ids.1))?;
                    }
                    Ok(outcomes) => {
                        failures_in_a_row = 0;
                        emit(&format!("REFUSED {} {} {}", ids.0, ids.1, refusal_codes(&outcomes)))?;
                    }
                    // Nothing of a failed batch was written, so the pair is
                    // simply never acknowledged; a store that keeps failing
                    // ends the run, since the test would prove nothing.
                    Err(error) => {
                        failures_in_a_row += 1;
                        eprintln!("crash-writer: request {} {} failed: {error}", ids.0, ids.1);
                        if failures_in_a_row >= 50 {
                            return Err(anyhow!("50 requests in a row failed; last: {error}"));
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
    }
    join_all(tasks).await?;
    eprintln!("crash-writer: {} requests done", args.max_requests.unwrap_or(0));
    Ok(ExitCode::SUCCESS)
}

/// A linked pair A -> B, B -> C among distinct random customers (an eighth
/// of the time the first leg is a deposit from the cash account instead),
/// with small random amounts. The pair commits whole or not at all.
fn crash_pair(cash: AccountId, customers: &[AccountId]) -> Vec<NewTransfer> {
    let count = customers.len();
    let a = rand::random_range(0..count);
    let b = (a + rand::random_range(1..count)) % count;
    let c = loop {
        let c = rand::random_range(0..count);
        if c != b {
            break c;
        }
    };
    let (first_debit, first_kind) = if rand::random_range(0..8) == 0 {
        (cash, TransferKind::Deposit)
    } else {
        (customers[a], TransferKind::Transfer)
    };
    let mut first =
        single(fresh_id(), first_debit, customers[b], rand::random_range(1..=10_000), first_kind, "crash-writer leg 1");
    first.linked = true;
    let second = single(
        fresh_id(),
        customers[b],
        customers[c],
        rand::random_range(1..=10_000),
        TransferKind::Transfer,
        "crash-writer leg 2",
    );
    vec![first, second]
}

// ------------------------------------------------------------ crash-verify

#[derive(Debug, clap::Args)]
pub struct CrashVerifyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The stdout of every crash-writer run, appended together.
    #[arg(long)]
    pub acked: PathBuf,
}

/// What the ACK log says.
#[derive(Debug, Default)]
struct AckLog {
    pairs: Vec<(TransferId, TransferId)>,
    refused: u64,
    torn: u64,
    malformed: Vec<String>,
}

/// Reads the appended stdout of all writer runs. A run killed mid-line
/// would leave a torn line with the next run's first line glued to it; the
/// writer prints each line with a single write, so this should not happen,
/// but if it does the torn prefix is dropped and the line after it kept. A
/// torn last line is dropped too.
fn read_ack_log(text: &str) -> AckLog {
    let mut log = AckLog::default();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len().saturating_sub(1);
    for (index, line) in lines.iter().enumerate() {
        if index == last {
            // After the final newline there is either nothing or a torn line.
            if !complete && !line.is_empty() {
                log.torn += 1;
            }
            break;
        }
        let mut line = *line;
        let restart =
            ["ACK ", "REFUSED "].iter().filter_map(|marker| line.get(1..).and_then(|rest| rest.rfind(marker))).max();
        if let Some(restart) = restart {
            log.torn += 1;
            line = &line[restart + 1..];
        }
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            [] | [""] => {}
            ["ACK", first, second] => match (TransferId::parse(first), TransferId::parse(second)) {
                (Ok(first), Ok(second)) => log.pairs.push((first, second)),
                _ => log.malformed.push(line.to_owned()),
            },
            ["REFUSED", ..] => log.refused += 1,
            _ => log.malformed.push(line.to_owned()),
        }
    }
    log
}

/// How the transfers in the database group into linked chains.
#[derive(Debug, Default)]
struct ChainCensus {
    transfers: i64,
    /// Transfers outside any chain: crash-writer never makes one.
    unchained: i64,
    /// Chains that do not have exactly two members, with a few examples.
    broken_chains: i64,
    broken_examples: Vec<(String, i64)>,
    /// Transfers whose chain head (the chain id) is not in the database.
    headless: i64,
}

/// Counts linked chains straight from the tables. The store has no API for
/// "every chain", and the point is to look at the rows as they are on disk.
async fn chain_census(url: &str) -> anyhow::Result<ChainCensus> {
    const BROKEN_LIMIT: i64 = 10;
    match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite(path) => tokio::task::spawn_blocking(move || -> anyhow::Result<ChainCensus> {
            let connection = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
                .with_context(|| format!("opening {}", path.display()))?;
            let count = |sql: &str| -> anyhow::Result<i64> {
                connection.query_row(sql, [], |row| row.get(0)).with_context(|| format!("running {sql}"))
            };
            let mut census = ChainCensus {
                transfers: count("SELECT COUNT(*) FROM transfers")?,
                unchained: count("SELECT COUNT(*) FROM transfers WHERE chain_id IS NULL")?,
                broken_chains: count(
                    "SELECT COUNT(*) FROM (SELECT chain_id FROM transfers WHERE chain_id IS NOT NULL
                     GROUP BY chain_id HAVING COUNT(*) <> 2)",
                )?,
                headless: count(
                    "SELECT COUNT(*) FROM transfers t WHERE t.chain_id IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM transfers h WHERE h.id = t.chain_id)",
                )?,
                broken_examples: Vec::new(),
            };
            let mut statement = connection.prepare(
                "SELECT hex(chain_id), COUNT(*) FROM transfers WHERE chain_id IS NOT NULL
                 GROUP BY chain_id HAVING COUNT(*) <> 2 LIMIT ?1",
            )?;
            census.broken_examples = statement
                .query_map([BROKEN_LIMIT], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(census)
        })
        .await
        .context("the SQLite census thread failed")?,
        DatabaseUrl::Postgres(url) => {
            let (client, connection) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.context("connecting to PostgreSQL")?;
            let driver = tokio::spawn(connection);
            let count = async |sql: &str| -> anyhow::Result<i64> {
                Ok(client.query_one(sql, &[]).await.with_context(|| format!("running {sql}"))?.get(0))
            };
            let mut census = ChainCensus {
                transfers: count("SELECT COUNT(*) FROM transfers").await?,
                unchained: count("SELECT COUNT(*) FROM transfers WHERE chain_id IS NULL").await?,
                broken_chains: count(
                    "SELECT COUNT(*) FROM (SELECT chain_id FROM transfers WHERE chain_id IS NOT NULL
                     GROUP BY chain_id HAVING COUNT(*) <> 2) AS broken",
                )
                .await?,
                headless: count(
                    "SELECT COUNT(*) FROM transfers t WHERE t.chain_id IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM transfers h WHERE h.id = t.chain_id)",
                )
                .await?,
                broken_examples: Vec::new(),
            };
            census.broken_examples = client
                .query(
                    "SELECT chain_id::text, COUNT(*) FROM transfers WHERE chain_id IS NOT NULL
                     GROUP BY chain_id HAVING COUNT(*) <> 2 LIMIT $1",
                    &[&BROKEN_LIMIT],
                )
                .await
                .context("listing broken chains")?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            drop(client);
            let _ = driver.await;
            Ok(census)
        }
    }
}

/// Looks every acknowledged pair up through the store, `WORKERS` lookups at
/// a time, and returns the problems found (at most a few hundred).
async fn check_acked_pairs(
    store: &Arc<dyn LedgerStore>,
    pairs: &[(TransferId, TransferId)],
) -> anyhow::Result<(u64, Vec<String>)> {
    const WORKERS: usize = 16;
    const PROBLEMS_MAX: usize = 200;
    let pairs: Arc<[(TransferId, TransferId)]> = pairs.into();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (store, pairs, next) = (Arc::clone(store), Arc::clone(&pairs), Arc::clone(&next));
        tasks.spawn(async move {
            let mut problems = Vec::new();
            let mut missing = 0_u64;
            loop {
                let index = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(usize::MAX);
                let Some(&(first, second)) = pairs.get(index) else { break };
                for (position, id) in [first, second].into_iter().enumerate() {
                    match store.transfer(id).await.with_context(|| format!("reading transfer {id}"))? {
                        None => {
                            missing += 1;
                            problems.push(format!("acknowledged transfer {id} is not in the database"));
                        }
                        Some(transfer) => {
                            let linked_ok = transfer.linked == (position == 0);
                            if transfer.chain_id != Some(first) || !linked_ok {
                                problems.push(format!(
                                    "acknowledged transfer {id} is not leg {} of chain {first} (chain {:?}, linked {})",
                                    position + 1,
                                    transfer.chain_id,
                                    transfer.linked
                                ));
                            }
                        }
                    }
                }
                if problems.len() > PROBLEMS_MAX {
                    break;
                }
            }
            anyhow::Ok((missing, problems))
        });
    }
    let mut missing = 0;
    let mut problems = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (worker_missing, worker_problems) = joined.context("a lookup task panicked")??;
        missing += worker_missing;
        problems.extend(worker_problems);
    }
    problems.truncate(PROBLEMS_MAX);
    Ok((missing, problems))
}

#[allow(clippy::print_stdout)]
async fn crash_verify(args: CrashVerifyArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.acked).with_context(|| format!("reading {}", args.acked.display()))?;
    let log = read_ack_log(&String::from_utf8_lossy(&bytes));
    let url = args.database.url();
    let store = args.database.open(16).await?;
    let mut failures: Vec<String> = Vec::new();

    for line in log.malformed.iter().take(10) {
        failures.push(format!("malformed line in the ACK log: {line:?}"));
    }
    let mut seen = HashSet::with_capacity(log.pairs.len() * 2);
    for &(first, second) in &log.pairs {
        for id in [first, second] {
            if !seen.insert(id) {
                failures.push(format!("transfer {id} was acknowledged twice"));
            }
        }
    }

    let started = Instant::now();
    let (missing, problems) = check_acked_pairs(&store, &log.pairs).await?;
    let lookup_ms = started.elapsed().as_millis();
    failures.extend(problems);

    let census = chain_census(&url).await?;
    if census.unchained > 0 {
        failures
            .push(format!("{} transfers belong to no linked chain; crash-writer makes only pairs", census.unchained));
    }
    if census.broken_chains > 0 {
        failures.push(format!(
            "{} linked chains do not have exactly 2 transfers (half-applied), e.g. {:?}",
            census.broken_chains, census.broken_examples
        ));
    }
    if census.headless > 0 {
        failures.push(format!("{} transfers name a chain whose first transfer is missing", census.headless));
    }

    let report = CheckReport::from_inputs(store.check_inputs().await?);
    if !report.is_ok() {
        failures.push(format!("kassa check failed:\n{}", crate::check::render(&report, store.backend())));
    }

    let acked_transfers = i64::try_from(log.pairs.len()).unwrap_or(i64::MAX).saturating_mul(2);
    println!(
        "crash-verify ({}): {} acknowledged pairs ({acked_transfers} transfers), {} refused, {} torn line(s); \
         {} transfers in the database ({} committed but not acknowledged); {missing} acknowledged transfers missing; \
         lookups took {lookup_ms} ms",
        store.backend(),
        log.pairs.len(),
        log.refused,
        log.torn,
        census.transfers,
        census.transfers - acked_transfers,
    );
    if failures.is_empty() {
        println!("crash-verify: OK: every acknowledged pair is durable, no pair is half-applied, the books balance");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("crash-verify: FAILED: {} problem(s):", failures.len());
        for failure in &failures {
            println!("  - {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}

// ----------------------------------------------------------- bank-workload

#[derive(Debug, clap::Args)]
pub struct BankArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Prefix of the account numbers, so several tests can share a database.
    #[arg(long)]
    pub accounts_prefix: String,
    /// Concurrent transferring tasks.
    #[arg(long, default_value_t = 64)]
    pub tasks: usize,
    /// Transfers this process submits in all.
    #[arg(long, default_value_t = 2000)]
    pub transfers: u64,
    /// Concurrent reading tasks.
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// Create and fund the accounts (otherwise wait for another process to).
    #[arg(long)]
    pub setup: bool,
    /// How long to wait for the setup, in seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_s: u64,
    /// Begin the load at this moment (milliseconds since the Unix epoch),
    /// so that several processes run it at the same time.
    #[arg(long)]
    pub start_at_ms: Option<u64>,
}

const BANK_ACCOUNTS: usize = 8;
const BANK_OPENING_MINOR: i64 = units(1000);
const BANK_TOTAL_MINOR: i64 = BANK_OPENING_MINOR * BANK_ACCOUNTS as i64;

#[derive(Debug, Default)]
struct BankCounters {
    ok: AtomicU64,
    refused: AtomicU64,
    unexpected: AtomicU64,
    violations: AtomicU64,
    reads: AtomicU64,
    retries: AtomicU64,
}

impl BankCounters {
    /// Records a broken invariant; the first few are described on stderr.
    fn violation(&self, what: impl FnOnce() -> String) {
        if self.violations.fetch_add(1, Ordering::Relaxed) < 10 {
            eprintln!("bank-workload: VIOLATION: {}", what());
        }
    }
}

/// Reads all accounts in one snapshot and checks the bank's invariants:
/// money only moves among them, so the total never changes, and with a
/// credit limit of zero none may be negative.
async fn bank_read(store: &dyn LedgerStore, ids: &[AccountId], counters: &BankCounters) -> anyhow::Result<()> {
    let accounts = store.accounts(ids).await?;
    counters.reads.fetch_add(1, Ordering::Relaxed);
    if accounts.len() != ids.len() {
        counters.violation(|| format!("read {} of the {} accounts", accounts.len(), ids.len()));
    }
    let total: i64 = accounts.iter().map(|account| account.balances.posted()).sum();
    if total != BANK_TOTAL_MINOR {
        let balances: Vec<i64> = accounts.iter().map(|account| account.balances.posted()).collect();
        counters.violation(|| format!("balances {balances:?} sum to {total}, not {BANK_TOTAL_MINOR}"));
    }
    for account in &accounts {
        if account.balances.posted() < 0 || account.balances.available() < 0 {
            counters.violation(|| format!("account {} is negative: {:?}", account.number, account.balances));
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn bank_workload(args: BankArgs) -> anyhow::Result<ExitCode> {
    let prefix = &args.accounts_prefix;
    let store = args.database.open(8).await?;
    let numbers: Vec<String> = (1..=BANK_ACCOUNTS).map(|index| format!("{prefix}-{index}")).collect();
    let cash_number = format!("{prefix}-CASH");
    // The funding ids are derived from the prefix, so the funding is one
    // idempotent request even if two processes were started with --setup.
    let funding_ids: Vec<TransferId> =
        (1..=BANK_ACCOUNTS).map(|index| derived_id(&format!("{prefix}/bank/funding/{index}"))).collect();
    let wait = Duration::from_secs(args.wait_s);
    let counters = Arc::new(BankCounters::default());
    let accounts = if args.setup {
        let cash = ensure_account(&*store, &cash_number, AccountKind::Cash, Amount::ZERO).await?.id;
        let mut accounts = Vec::with_capacity(BANK_ACCOUNTS);
        for number in &numbers {
            accounts.push(ensure_account(&*store, number, AccountKind::Current, Amount::ZERO).await?);
        }
        let ledger = Ledger::start(Arc::clone(&store), LedgerConfig::default());
        let mut funding: Vec<NewTransfer> = accounts
            .iter()
            .zip(&funding_ids)
            .map(|(account, &id)| {
                let mut transfer =
                    single(id, cash, account.id, BANK_OPENING_MINOR, TransferKind::Deposit, "bank-workload funding");
                transfer.linked = true;
                transfer
            })
            .collect();
        if let Some(last) = funding.last_mut() {
            last.linked = false;
        }
        let outcomes = submit_retrying(&ledger, funding, &counters.retries).await?;
        if let Some(Err(error)) = outcomes.iter().find(|outcome| outcome.is_err()) {
            bail!("funding the bank accounts was refused: {error}");
        }
        accounts
    } else {
        let accounts = wait_for_accounts(&*store, &numbers, wait).await?;
        if let Some(&last) = funding_ids.last() {
            wait_for_transfer(&*store, last, wait).await?;
        }
        accounts
    };
    let ids: Arc<[AccountId]> = accounts.iter().map(|account| account.id).collect();
    let ledger = Ledger::start(Arc::clone(&store), LedgerConfig::default());
    start_together(args.start_at_ms).await;
    let started = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let writers_done = Arc::new(AtomicBool::new(false));

    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..args.readers {
        let (store, ids, counters, done) =
            (Arc::clone(&store), Arc::clone(&ids), Arc::clone(&counters), Arc::clone(&writers_done));
        readers.spawn(async move {
            while !done.load(Ordering::Relaxed) {
                bank_read(&*store, &ids, &counters).await?;
                // A short pause keeps the readers from starving the writers
                // of the machine's few cores.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(())
        });
    }

    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..args.tasks {
        let (ledger, ids, counters, issued) =
            (ledger.clone(), Arc::clone(&ids), Arc::clone(&counters), Arc::clone(&issued));
        let transfers = args.transfers;
        writers.spawn(async move {
            while issued.fetch_add(1, Ordering::Relaxed) < transfers {
                let from = rand::random_range(0..ids.len());
                let to = (from + rand::random_range(1..ids.len())) % ids.len();
                let transfer = single(
                    fresh_id(),
                    ids[from],
                    ids[to],
                    rand::random_range(1..=units(100)),
                    TransferKind::Transfer,
                    "bank-workload",
                );
                let outcomes = submit_retrying(&ledger, vec![transfer], &counters.retries).await?;
                match outcomes.first() {
                    Some(Ok(created)) => {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                        if created.transfer.debit_balance_after < 0 {
                            counters.violation(|| {
                                format!(
                                    "transfer {} left its debit account at {}",
                                    created.transfer.id, created.transfer.debit_balance_after
                                )
                            });
                        }
                    }
                    Some(Err(TransferError::InsufficientFunds { .. })) => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        counters.unexpected.fetch_add(1, Ordering::Relaxed);
                        eprintln!("bank-workload: unexpected outcome {other:?}");
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    let written = join_all(writers).await;
    writers_done.store(true, Ordering::Relaxed);
    let read = join_all(readers).await;
    written?;
    read?;
    // One last read after every writer of this process is done.
    bank_read(&*store, &ids, &counters).await?;

    let violations = counters.violations.load(Ordering::Relaxed);
    let unexpected = counters.unexpected.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "ok": counters.ok.load(Ordering::Relaxed),
            "refused": counters.refused.load(Ordering::Relaxed),
            "violations": violations,
            "unexpected": unexpected,
            "reads": counters.reads.load(Ordering::Relaxed),
            "retries": counters.retries.load(Ordering::Relaxed),
            "elapsed_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    );
    Ok(if violations == 0 && unexpected == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

// ---------------------------------------------------------- overdraft-race

/// The overdraft race, designed so that "exactly one winner per round" is
/// checkable across processes that share nothing but the database.
///
/// One customer account (credit limit 0) and one cash account. Round r
/// begins with the top-up of round r, a deposit whose id is derived from
/// the prefix and r: 100.00 in round 1, 80.00 after. Every process submits
/// the same top-up, so it is applied once and replayed for the others. Then
/// each process's `--tasks` tasks all try to withdraw 80.00 at once, and the
/// process waits for all of them before it starts the next round.
///
/// Why this proves at most one winner against a shared balance: a process
/// submits top-up r only after its own round r-1 is over, and every one of
/// its withdrawals in that round was applied after top-up r-1 was (it
/// waited for that top-up's answer first), so top-up r-1 had been spent by
/// then — an unspent 80.00 would have let that process's first withdrawal
/// win. Hence top-ups are applied in order, each onto a balance of 20.00,
/// and the balance is never above 100.00: a correct ledger lets exactly one
/// of the 80.00 withdrawals through per top-up, in whichever process, and
/// every winner leaves exactly 20.00 behind (each process checks that of
/// its own winners). One process's round may see two wins, when a faster
/// process applied the next top-up while the round was still running, so
/// the count that must hold is global: after R rounds the processes' wins
/// must add up to exactly R, the account's history must hold exactly R
/// withdrawals, never a balance below 0 or above 100.00, and end at 20.00.
/// A lost update (two withdrawals both spending the same 100.00) breaks the
/// count and `kassa check`'s cached totals. `--verify` checks the database
/// side; the test adds up the reported wins.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).multiple(false)))]
pub struct RaceArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Prefix of the account numbers and derived transfer ids.
    #[arg(long)]
    pub prefix: String,
    /// Concurrent withdrawing tasks per round in this process.
    #[arg(long, default_value_t = 50)]
    pub tasks: usize,
    #[arg(long, default_value_t = 20)]
    pub rounds: u32,
    /// Create the two accounts, then race.
    #[arg(long, group = "mode")]
    pub setup: bool,
    /// Wait for another process to create the accounts, then race.
    #[arg(long, group = "mode")]
    pub join: bool,
    /// Race no more: check the account's history after all racers are done.
    #[arg(long, group = "mode")]
    pub verify: bool,
    /// With --verify: the wins the racers reported, added up.
    #[arg(long, requires = "verify")]
    pub expect_wins: Option<u64>,
    /// How long --join waits for the accounts, in seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_s: u64,
    /// Begin round 1 at this moment (milliseconds since the Unix epoch), so
    /// that several processes race from the same round on.
    #[arg(long)]
    pub start_at_ms: Option<u64>,
}

const RACE_FIRST_TOP_UP_MINOR: i64 = units(100);
const RACE_TOP_UP_MINOR: i64 = units(80);
const RACE_WITHDRAWAL_MINOR: i64 = units(80);
/// What a winning withdrawal leaves behind: 100.00 - 80.00.
const RACE_REST_MINOR: i64 = units(20);

async fn overdraft_race(args: RaceArgs) -> anyhow::Result<ExitCode> {
    let store = args.database.open(8).await?;
    let numbers = [format!("{}-ACC", args.prefix), format!("{}-CASH", args.prefix)];
    let (account, cash) = if args.setup {
        (
            ensure_account(&*store, &numbers[0], AccountKind::Current, Amount::ZERO).await?.id,
            ensure_account(&*store, &numbers[1], AccountKind::Cash, Amount::ZERO).await?.id,
        )
    } else {
        let found = wait_for_accounts(&*store, &numbers, Duration::from_secs(args.wait_s)).await?;
        match found.as_slice() {
            [account, cash] => (account.id, cash.id),
            _ => bail!("expected two accounts"),
        }
    };
    if args.verify { race_verify(&*store, &args, account).await } else { race(store, &args, account, cash).await }
}

#[allow(clippy::print_stdout)]
async fn race(
    store: Arc<dyn LedgerStore>,
    args: &RaceArgs,
    account: AccountId,
    cash: AccountId,
) -> anyhow::Result<ExitCode> {
    let ledger = Ledger::start(store, LedgerConfig::default());
    let retries = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let (mut wins, mut losses, mut multi_win_rounds) = (0_u64, 0_u64, 0_u64);
    start_together(args.start_at_ms).await;
    let started = Instant::now();
    for round in 1..=args.rounds {
        let amount = if round == 1 { RACE_FIRST_TOP_UP_MINOR } else { RACE_TOP_UP_MINOR };
        let top_up = single(
            derived_id(&format!("{}/race/top-up/{round}", args.prefix)),
            cash,
            account,
            amount,
            TransferKind::Deposit,
            &format!("overdraft-race top-up {round}"),
        );
        let outcomes = submit_retrying(&ledger, vec![top_up], &retries).await?;
        if let Some(Err(error)) = outcomes.first() {
            bail!("the top-up of round {round} was refused: {error}");
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.tasks {
            let (ledger, retries, violations) = (ledger.clone(), Arc::clone(&retries), Arc::clone(&violations));
            tasks.spawn(async move {
                let withdrawal =
                    single(fresh_id(), account, cash, RACE_WITHDRAWAL_MINOR, TransferKind::Withdrawal, "overdraft-race");
                let outcomes = submit_retrying(&ledger, vec![withdrawal], &retries).await?;
                match outcomes.into_iter().next() {
                    Some(Ok(created)) => {
                        if created.transfer.debit_balance_after != RACE_REST_MINOR {
                            violations.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "overdraft-race: VIOLATION: round {round}: withdrawal {} left {} instead of {RACE_REST_MINOR}",
                                created.transfer.id, created.transfer.debit_balance_after
                            );
                        }
                        anyhow::Ok(true)
                    }
                    Some(Err(TransferError::InsufficientFunds { .. })) => Ok(false),
                    other => bail!("round {round}: unexpected outcome {other:?}"),
                }
            });
        }
        let mut round_wins = 0;
        while let Some(joined) = tasks.join_next().await {
            if joined.context("a racing task panicked")?? {
                round_wins += 1;
            } else {
                losses += 1;
            }
        }
        // Not a violation: while this process's round is still running,
        // a faster process may finish the same round and apply the next
        // top-up, which one of this round's slower withdrawals may then win.
        // Each win still spent a balance of exactly 100.00 (checked above).
        if round_wins > 1 {
            multi_win_rounds += 1;
        }
        wins += round_wins;
    }
    let violations = violations.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "rounds": args.rounds,
            "wins": wins,
            "losses": losses,
            "multi_win_rounds": multi_win_rounds,
            "violations": violations,
            "retries": retries.load(Ordering::Relaxed),
            "elapsed_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    );
    Ok(if violations == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[allow(clippy::print_stdout)]
async fn race_verify(store: &dyn LedgerStore, args: &RaceArgs, account: AccountId) -> anyhow::Result<ExitCode> {
    let current = store.account(account).await?.ok_or_else(|| anyhow!("account {account} vanished"))?;
    let mut history = Vec::new();
    let mut before = None;
    // The history has 2 transfers per round; the bound guards against a
    // history chain that loops.
    let pages_max = u64::from(args.rounds) / 500 + 10;
    for _ in 0..pages_max {
        let page = store.history(account, before, 1000).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        history.extend(page);
    }
    let mut failures = Vec::new();
    let mut by_kind: HashMap<&'static str, u64> = HashMap::new();
    for transfer in &history {
        let key = if transfer.debit_account == account { "withdrawals" } else { "top_ups" };
        *by_kind.entry(key).or_default() += 1;
        let after = transfer.balance_after_for(account);
        if !(0..=RACE_FIRST_TOP_UP_MINOR).contains(&after) {
            failures.push(format!("transfer {} left the balance at {after}, outside 0..=100.00", transfer.id));
        }
    }
    let withdrawals = by_kind.get("withdrawals").copied().unwrap_or(0);
    let top_ups = by_kind.get("top_ups").copied().unwrap_or(0);
    let rounds = u64::from(args.rounds);
    if top_ups != rounds {
        failures.push(format!("{top_ups} top-ups were applied for {rounds} rounds"));
    }
    if withdrawals != rounds {
        failures.push(format!("{withdrawals} withdrawals won, but exactly one per round ({rounds}) may"));
    }
    if let Some(expected) = args.expect_wins
        && expected != withdrawals
    {
        failures.push(format!("the racers reported {expected} wins but the database holds {withdrawals}"));
    }
    if current.balances.posted() != RACE_REST_MINOR {
        failures.push(format!("the account ends at {} instead of {RACE_REST_MINOR}", current.balances.posted()));
    }
    let report = CheckReport::from_inputs(store.check_inputs().await?);
    if !report.is_ok() {
        failures.push(format!("kassa check failed:\n{}", crate::check::render(&report, store.backend())));
    }
    println!(
        "{}",
        serde_json::json!({
            "rounds": rounds,
            "top_ups": top_ups,
            "withdrawals": withdrawals,
            "final_balance": current.balances.posted(),
            "failures": failures,
        })
    );
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_log_drops_torn_lines_and_keeps_the_rest() {
        let a = TransferId(1);
        let b = TransferId(2);
        let c = TransferId(3);
        let d = TransferId(4);
        let text = format!("ACK {a} {b}\nREFUSED {a} {b} ok,insufficient_funds\nACK 0000ACK {c} {d}\nACK {a}");
        let log = read_ack_log(&text);
        assert_eq!(log.pairs, vec![(a, b), (c, d)]);
        assert_eq!(log.refused, 1);
        assert_eq!(log.torn, 2);
        assert!(log.malformed.is_empty(), "{:?}", log.malformed);
        let log = read_ack_log("ACK x y\n");
        assert_eq!(log.malformed, vec!["ACK x y".to_owned()]);
    }

    #[test]
    fn ids_have_the_expected_versions_and_differ() {
        let fresh = fresh_id();
        assert_eq!((fresh.0 >> 76) & 0xf, 7);
        assert_eq!((fresh.0 >> 62) & 0b11, 0b10);
        assert_ne!(fresh, fresh_id());
        let derived = derived_id("x/race/top-up/1");
        assert_eq!((derived.0 >> 76) & 0xf, 8);
        assert_eq!(derived, derived_id("x/race/top-up/1"));
        assert_ne!(derived, derived_id("x/race/top-up/2"));
    }
}
