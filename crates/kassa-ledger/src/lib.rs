//! The ledger: the one writer of money, with group commit.
//!
//! Every money-moving command goes through [`Ledger::submit`]. Requests wait
//! in a bounded queue; one writer task takes as many as fit in a batch
//! (bounded by [`LedgerConfig::batch_transfers_max`]), applies them in one
//! database transaction with one fsync, and only then answers each caller.
//! While one batch commits, the next one gathers, so under load batches grow
//! by themselves and the cost of the fsync is shared. A rejected transfer
//! fails alone (unless linked); a database failure fails the whole batch and
//! changes nothing, so callers may retry with the same transfer ids.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kassa_core::ledger::{
    Account, AccountStatus, Created, NewAccount, NewTransfer, REQUEST_TRANSFERS_MAX, Transfer, TransferOp,
    TransferOutcome,
};
use kassa_core::{AccountId, Amount, TransferId};
use kassa_store::{AuditDraft, CheckReport, LedgerStore, StoreError, now_us};
use tokio::sync::{mpsc, oneshot};

/// Bounds of the group-commit writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Most transfers in one database transaction.
    pub batch_transfers_max: usize,
    /// How long the writer waits for more requests after the first one of a
    /// batch arrives, when the previous batch had more than one request (a
    /// lone caller is never kept waiting). Callers just answered need a few
    /// microseconds to send their next request; waiting for them makes the
    /// next batch fuller. Zero takes only what is already queued.
    pub batch_wait: Duration,
    /// Most requests waiting for the writer; callers beyond it wait to
    /// enqueue (backpressure instead of unbounded memory).
    pub queue_requests_max: usize,
    /// Batches in flight at once (writer tasks sharing the queue), capped by
    /// what the engine supports (`LedgerStore::concurrent_batches_max`):
    /// SQLite always uses one; on PostgreSQL two overlap one batch's round
    /// trips and commit with the next batch's work (measured best of 1–3 in
    /// docs/PERFORMANCE.md).
    pub writers: usize,
}

impl Default for LedgerConfig {
    fn default() -> LedgerConfig {
        LedgerConfig {
            batch_transfers_max: 8190,
            batch_wait: Duration::from_micros(50),
            queue_requests_max: 16_384,
            writers: 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("a request may carry at most {REQUEST_TRANSFERS_MAX} transfers")]
    TooManyTransfers,
    #[error("a request must carry at least one transfer")]
    EmptyRequest,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the ledger is shutting down")]
    ShuttingDown,
}

impl LedgerError {
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::TooManyTransfers => "too_many_transfers",
            LedgerError::EmptyRequest => "empty_request",
            LedgerError::Store(StoreError::Account(error)) => error.code(),
            LedgerError::Store(_) | LedgerError::ShuttingDown => "ledger_unavailable",
        }
    }
}

struct Job {
    transfers: Vec<NewTransfer>,
    audit: Option<AuditDraft>,
    reply: oneshot::Sender<Result<Vec<TransferOutcome>, Arc<StoreError>>>,
}

/// Figures the writer keeps about its batches, for `/metrics` and the
/// benchmark.
#[derive(Debug, Default)]
pub struct LedgerStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub transfers: std::sync::atomic::AtomicU64,
    pub commit_us_total: std::sync::atomic::AtomicU64,
    pub largest_batch: std::sync::atomic::AtomicU64,
}

/// A handle to the ledger; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn LedgerStore>,
    queue: mpsc::Sender<Job>,
    stats: Arc<LedgerStats>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("backend", &self.store.backend()).finish()
    }
}

impl Ledger {
    /// Starts the writer task on the current tokio runtime. It ends when the
    /// last handle is dropped, after answering everything queued.
    pub fn start(store: Arc<dyn LedgerStore>, config: LedgerConfig) -> Ledger {
        Ledger::start_joinable(store, config).0
    }

    /// Like [`Ledger::start`], and also returns a future that resolves when
    /// every writer has ended (after the last handle is dropped), for a
    /// caller that runs the ledger on a runtime of its own.
    pub fn start_joinable(
        store: Arc<dyn LedgerStore>,
        config: LedgerConfig,
    ) -> (Ledger, impl std::future::Future<Output = ()> + Send + 'static) {
        let (queue, receiver) = mpsc::channel(config.queue_requests_max.max(1));
        let stats = Arc::new(LedgerStats::default());
        // Writers share the queue; each holds it only while gathering a
        // batch, so one batch gathers while others commit.
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let in_flight = Arc::new(InFlight::default());
        let mut writers = Vec::new();
        for _ in 0..config.writers.clamp(1, store.concurrent_batches_max().max(1)) {
            writers.push(tokio::spawn(writer(
                Arc::clone(&store),
                Arc::clone(&receiver),
                Arc::clone(&in_flight),
                config,
                Arc::clone(&stats),
            )));
        }
        let ended = async move {
            for writer in writers {
                let _ = writer.await;
            }
        };
        (Ledger { store, queue, stats }, ended)
    }

    pub fn store(&self) -> &Arc<dyn LedgerStore> {
        &self.store
    }

    pub fn stats(&self) -> &LedgerStats {
        &self.stats
    }

    /// Submits one request (a single transfer, or several, possibly linked)
    /// and waits until its batch is durable. Outcomes are in request order.
    pub async fn submit(&self, transfers: Vec<NewTransfer>) -> Result<Vec<TransferOutcome>, LedgerError> {
        self.submit_journaled(transfers, None).await
    }

    /// [`Ledger::submit`], also journaling `audit` in the batch's own
    /// database transaction, with the request's outcome filled in.
    pub async fn submit_journaled(
        &self,
        transfers: Vec<NewTransfer>,
        audit: Option<AuditDraft>,
    ) -> Result<Vec<TransferOutcome>, LedgerError> {
        if transfers.is_empty() {
            return Err(LedgerError::EmptyRequest);
        }
        if transfers.len() > REQUEST_TRANSFERS_MAX {
            return Err(LedgerError::TooManyTransfers);
        }
        let (reply, answer) = oneshot::channel();
        self.queue.send(Job { transfers, audit, reply }).await.map_err(|_| LedgerError::ShuttingDown)?;
        match answer.await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(error)) => Err(LedgerError::Store(StoreError::clone(&error))),
            Err(_) => Err(LedgerError::ShuttingDown),
        }
    }

    /// Submits a single transfer.
    pub async fn transfer(&self, transfer: NewTransfer) -> Result<TransferOutcome, LedgerError> {
        let mut outcomes = self.submit(vec![transfer]).await?;
        outcomes.pop().ok_or(LedgerError::ShuttingDown)
    }

    pub async fn create_account(&self, account: NewAccount) -> Result<Account, StoreError> {
        self.store.create_account(account, now_us()).await
    }

    pub async fn set_account_status(&self, id: AccountId, status: AccountStatus) -> Result<Account, StoreError> {
        self.store.set_account_status(id, status).await
    }

    pub async fn set_credit_limit(&self, id: AccountId, limit: Amount) -> Result<Account, StoreError> {
        self.store.set_credit_limit(id, limit).await
    }

    pub async fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.store.account(id).await
    }

    pub async fn history(
        &self,
        id: AccountId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Transfer>, StoreError> {
        self.store.history(id, before_seq, limit).await
    }

    pub async fn balance_at(&self, id: AccountId, at_us: i64) -> Result<i64, StoreError> {
        self.store.balance_at(id, at_us).await
    }

    pub async fn check(&self) -> Result<CheckReport, StoreError> {
        Ok(CheckReport::from_inputs(self.store.check_inputs().await?))
    }

    /// Voids pending transfers whose timeout has passed, as of `now_us`.
    /// Returns how many were voided. Safe to run on several nodes at once:
    /// a pending transfer is voided at most once, and losing that race is
    /// reported as `pending_transfer_already_*`, which is ignored here.
    pub async fn expire_pending(&self, now_us: i64, limit: u32) -> Result<usize, LedgerError> {
        let expired = self.store.expired_pending(now_us, limit).await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let voids: Vec<NewTransfer> = expired
            .iter()
            .map(|pending| NewTransfer {
                kind: pending.kind,
                op: TransferOp::Void { pending_id: pending.id },
                description: "expired".to_owned(),
                ..NewTransfer::single(
                    expiry_void_id(pending.id),
                    pending.debit_account,
                    pending.credit_account,
                    pending.amount,
                    pending.currency,
                )
            })
            .collect();
        let mut voided = 0;
        for chunk in voids.chunks(REQUEST_TRANSFERS_MAX) {
            for outcome in self.submit(chunk.to_vec()).await? {
                if matches!(outcome, Ok(Created { replayed: false, .. })) {
                    voided += 1;
                }
            }
        }
        Ok(voided)
    }

    /// Runs [`Ledger::expire_pending`] every `every`, so holds with a
    /// timeout void themselves. The sweeper holds only a weak handle: it
    /// stops once every `Ledger` handle is gone. Errors are retried on the
    /// next tick.
    pub fn spawn_expiry(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let queue = self.queue.downgrade();
        let store = Arc::clone(&self.store);
        let stats = Arc::clone(&self.stats);
        tokio::spawn(async move {
            // A zero period would make tokio's interval panic.
            let mut ticker = tokio::time::interval(every.max(Duration::from_millis(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                let Some(queue) = queue.upgrade() else { break };
                let ledger = Ledger { store: Arc::clone(&store), queue, stats: Arc::clone(&stats) };
                let _ = ledger.expire_pending(now_us(), 1000).await;
            }
        })
    }
}

/// The id of the void that expires `pending`: derived from the pending id,
/// so two nodes expiring the same hold submit the same transfer and the
/// second one is an idempotent replay.
pub fn expiry_void_id(pending: TransferId) -> TransferId {
    // Flip the UUID version nibble to 0xf, a value no RFC 9562 generator
    // produces, and mix the rest so the id differs from the pending one.
    let mixed = pending.0.rotate_left(64) ^ 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    TransferId((mixed & !(0xf_u128 << 76)) | (0xf_u128 << 76))
}

/// The accounts of the batches being applied right now. A batch that shares
/// an account with one in flight waits for it, and keeps gathering requests
/// meanwhile, instead of queueing on the database's row lock: a hot account
/// then gets one big batch after another rather than many small ones in
/// single file, and two big batches never half-overlap.
#[derive(Debug, Default)]
struct InFlight {
    accounts: std::sync::Mutex<HashSet<AccountId>>,
    done: tokio::sync::Notify,
}

impl InFlight {
    /// Claims `accounts` unless one of them is in flight already.
    fn try_claim(&self, accounts: &HashSet<AccountId>) -> bool {
        let Ok(mut in_flight) = self.accounts.lock() else { return false };
        if accounts.iter().any(|account| in_flight.contains(account)) {
            return false;
        }
        in_flight.extend(accounts.iter().copied());
        true
    }

    fn release(&self, accounts: &HashSet<AccountId>) {
        if let Ok(mut in_flight) = self.accounts.lock() {
            for account in accounts {
                in_flight.remove(account);
            }
        }
        self.done.notify_waiters();
    }
}

/// Accounts claimed in [`InFlight`], released on drop.
struct Claim<'a> {
    in_flight: &'a InFlight,
    accounts: &'a HashSet<AccountId>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.in_flight.release(self.accounts);
    }
}

fn add_accounts(accounts: &mut HashSet<AccountId>, transfers: &[NewTransfer]) {
    for transfer in transfers {
        accounts.insert(transfer.debit_account);
        accounts.insert(transfer.credit_account);
    }
}

/// The longest the writer ever waits to fill a batch.
pub const BATCH_WAIT_MAX: Duration = Duration::from_millis(100);

/// Waits shorter than this are done by yielding, not by a timer.
const SLEEP_GRANULARITY: Duration = Duration::from_millis(2);

async fn writer(
    store: Arc<dyn LedgerStore>,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    in_flight: Arc<InFlight>,
    config: LedgerConfig,
    stats: Arc<LedgerStats>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    // A request larger than the bound still runs, alone in its batch.
    let batch_max = config.batch_transfers_max.max(1);
    // Bounded, so no configuration can stall every caller (or overflow the
    // clock arithmetic below).
    let batch_wait = config.batch_wait.min(BATCH_WAIT_MAX);
    // A job that did not fit in the previous batch starts the next one.
    let mut carried: Option<Job> = None;
    let mut previous_jobs = 0_usize;
    loop {
        let mut receiver = receiver.lock().await;
        let first = match carried.take() {
            Some(job) => job,
            None => match receiver.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut count = first.transfers.len();
        let mut jobs = vec![first];
        // Wait for stragglers only when callers are arriving together: a
        // lone caller is answered at once.
        let wait = if previous_jobs > 1 { batch_wait } else { Duration::ZERO };
        let deadline = tokio::time::Instant::now() + wait;
        while count < batch_max {
            let next = match receiver.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        None
                    } else if deadline - now < SLEEP_GRANULARITY {
                        // tokio's timers tick in milliseconds, too coarse for
                        // a wait of microseconds: yield instead, which lets
                        // just-answered callers send their next request.
                        tokio::task::yield_now().await;
                        continue;
                    } else {
                        tokio::time::timeout_at(deadline, receiver.recv()).await.ok().flatten()
                    }
                }
            };
            let Some(job) = next else { break };
            if count + job.transfers.len() > batch_max {
                carried = Some(job);
                break;
            }
            count += job.transfers.len();
            jobs.push(job);
        }
        let mut accounts = HashSet::new();
        for job in &jobs {
            add_accounts(&mut accounts, &job.transfers);
        }
        let mut open = true;
        loop {
            // Registered before the check, so a release in between is seen.
            let released = in_flight.done.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if in_flight.try_claim(&accounts) {
                break;
            }
            let room = open && carried.is_none() && count < batch_max;
            tokio::select! {
                () = &mut released => {}
                job = receiver.recv(), if room => match job {
                    Some(job) if count + job.transfers.len() <= batch_max => {
                        count += job.transfers.len();
                        add_accounts(&mut accounts, &job.transfers);
                        jobs.push(job);
                    }
                    Some(job) => carried = Some(job),
                    None => open = false,
                },
            }
        }
        drop(receiver);
        previous_jobs = jobs.len();
        let mut journal = Vec::with_capacity(jobs.len());
        let (requests, replies): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|job| {
                journal.push(job.audit);
                (job.transfers, job.reply)
            })
            .unzip();
        // Batches without a journaled request skip the journal entirely.
        if journal.iter().all(Option::is_none) {
            journal.clear();
        }
        let started = std::time::Instant::now();
        // Released when this scope ends, even if the task is cancelled
        // mid-apply, so a claim can never be left behind.
        let claim = Claim { in_flight: &in_flight, accounts: &accounts };
        let result = store.apply_journaled(requests, journal, now_us()).await;
        drop(claim);
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.batches.fetch_add(1, Relaxed);
        stats.transfers.fetch_add(count as u64, Relaxed);
        stats.commit_us_total.fetch_add(elapsed_us, Relaxed);
        stats.largest_batch.fetch_max(count as u64, Relaxed);
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A caller that stopped waiting still had its transfer
                    // committed; it can find it by id.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(Arc::clone(&error)));
                }
            }
        }
    }
}
