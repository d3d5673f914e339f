//! The ledger under concurrent load, on every engine: money is conserved
//! while many clients move it, two clients racing for the same money never
//! both get it (also with two writers on one database, like two nodes), and
//! a transfer id moves money once however many times it is sent at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure should stop the test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use kassa_core::ledger::{AccountKind, NewAccount, NewTransfer, TransferKind, TransferOp, TransferOutcome};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_ledger::{Ledger, LedgerConfig};
use kassa_store::LedgerStore;
use kassa_testkit::db::{self, TestDb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_NUMBER: AtomicU64 = AtomicU64::new(1);

/// A transfer id unique within this test process.
fn fresh_id() -> TransferId {
    TransferId(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(NEXT_ID.fetch_add(1, Ordering::Relaxed)))
}

fn single(debit: AccountId, credit: AccountId, amount: i64, kind: TransferKind) -> NewTransfer {
    NewTransfer {
        id: fresh_id(),
        debit_account: debit,
        credit_account: credit,
        amount: Amount::from_minor(amount),
        currency: Currency::BYN,
        kind,
        op: TransferOp::Single,
        linked: false,
        bank_debit: false,
        description: String::new(),
    }
}

async fn open(ledger: &Ledger, kind: AccountKind) -> AccountId {
    let number = format!("C{:08}", NEXT_NUMBER.fetch_add(1, Ordering::Relaxed));
    let owner = if kind.is_system() { None } else { Some(7) };
    ledger
        .create_account(NewAccount { number, owner, currency: Currency::BYN, kind, credit_limit: Amount::ZERO })
        .await
        .expect("open an account")
        .id
}

fn is_ok(outcome: &TransferOutcome) -> bool {
    matches!(outcome, Ok(created) if !created.replayed)
}

async fn posted(store: &Arc<dyn LedgerStore>, id: AccountId) -> i64 {
    store.account(id).await.expect("read the account").expect("the account exists").balances.posted()
}

async fn assert_check_ok(ledger: &Ledger) {
    let report = ledger.check().await.expect("run the check");
    assert!(report.is_ok(), "kassa check found violations: {:?}", report.violations);
}

// ------------------------------------------------------------------- bank

const BANK_ACCOUNTS: usize = 8;
const BANK_FUNDING: i64 = 1_000;
const BANK_WRITERS: u64 = 64;
const BANK_TRANSFERS_PER_WRITER: usize = 40;
const BANK_READERS: usize = 4;

/// Jepsen's "bank" workload: writers move random amounts between eight
/// accounts that may not go below zero, while readers keep reading all
/// eight balances in one call and demand that they always add up to what
/// was deposited and that none is negative. A torn read (some balances from
/// before a batch, some from after) or a lost update shows up as a wrong
/// sum.
///
/// With `nodes` above one, each node is a ledger on its own store (its own
/// connections) to the same database, and the writers are spread over them.
async fn bank(db: TestDb, nodes: usize) {
    let started = Instant::now();
    let ledger = Ledger::start(Arc::clone(&db.store), LedgerConfig::default());
    let mut all_nodes = vec![ledger.clone()];
    for _ in 1..nodes {
        all_nodes.push(Ledger::start(db.open_again().await, LedgerConfig::default()));
    }
    let cash = open(&ledger, AccountKind::Cash).await;
    let mut accounts = Vec::new();
    for _ in 0..BANK_ACCOUNTS {
        accounts.push(open(&ledger, AccountKind::Current).await);
    }
    let funding: Vec<NewTransfer> =
        accounts.iter().map(|id| single(cash, *id, BANK_FUNDING, TransferKind::Deposit)).collect();
    assert!(ledger.submit(funding).await.unwrap().iter().all(is_ok));
    let total = BANK_FUNDING * i64::try_from(BANK_ACCOUNTS).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..BANK_READERS {
        let store = Arc::clone(&db.store);
        let ids = accounts.clone();
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let mut reads = 0_u64;
            // At least one read even if the writers finish first.
            loop {
                let snapshot = store.accounts(&ids).await.expect("read the balances");
                assert_eq!(snapshot.len(), BANK_ACCOUNTS);
                let sum: i64 = snapshot.iter().map(|a| a.balances.posted()).sum();
                assert_eq!(sum, total, "a read saw the balances sum to {sum}: {snapshot:?}");
                for account in &snapshot {
                    assert!(account.balances.posted() >= 0, "a balance went negative: {account:?}");
                }
                reads += 1;
                if done.load(Ordering::Relaxed) {
                    return reads;
                }
                tokio::task::yield_now().await;
            }
        }));
    }

    let mut writers = Vec::new();
    for writer in 0..BANK_WRITERS {
        let ledger = all_nodes[usize::try_from(writer).unwrap() % nodes].clone();
        let ids = accounts.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(writer);
            let (mut moved, mut refused) = (0_u64, 0_u64);
            for _ in 0..BANK_TRANSFERS_PER_WRITER {
                let from = rng.random_range(0..BANK_ACCOUNTS);
                let to = (from + rng.random_range(1..BANK_ACCOUNTS)) % BANK_ACCOUNTS;
                let amount = rng.random_range(1..=400);
                match ledger.transfer(single(ids[from], ids[to], amount, TransferKind::Transfer)).await.unwrap() {
                    Ok(created) => {
                        assert!(!created.replayed);
                        moved += 1;
                    }
                    Err(error) => {
                        assert_eq!(error.code(), "insufficient_funds");
                        refused += 1;
                    }
                }
            }
            (moved, refused)
        }));
    }
    let (mut moved, mut refused) = (0, 0);
    for writer in writers {
        let (m, r) = writer.await.unwrap();
        moved += m;
        refused += r;
    }
    done.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert_eq!(moved + refused, BANK_WRITERS * u64::try_from(BANK_TRANSFERS_PER_WRITER).unwrap());
    assert!(moved > 0 && refused > 0, "the workload should see both outcomes: {moved} moved, {refused} refused");
    let snapshot = db.store.accounts(&accounts).await.unwrap();
    assert_eq!(snapshot.iter().map(|a| a.balances.posted()).sum::<i64>(), total);
    assert_check_ok(&ledger).await;
    let batches: u64 = all_nodes.iter().map(|node| node.stats().batches.load(Ordering::Relaxed)).sum();
    eprintln!(
        "bank on {}, {nodes} node(s): {moved} moved, {refused} refused, {reads} consistent reads, {batches} batches, {:.1?}",
        db.engine.name(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_balances_always_add_up_while_money_moves() {
    for db in db::engines().await {
        bank(db, 1).await;
    }
}

/// The same with two nodes writing to one database: the database's locks,
/// not one writer task, now keep every batch whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_balances_add_up_with_two_writers_on_one_database() {
    for db in db::engines().await {
        bank(db, 2).await;
    }
}

// ---------------------------------------------------------- overdraft race

const RACE_ROUNDS: usize = 200;
const RACE_CONTENDERS: usize = 50;

/// Each round, `RACE_CONTENDERS` withdrawals of 80 race for an account
/// holding 100, spread over the given ledgers: exactly one may win, and the
/// balance must end at 20, never below zero. The winner's money is then put
/// back for the next round.
async fn overdraft_race(ledgers: &[Ledger], store: &Arc<dyn LedgerStore>, label: &str) {
    let started = Instant::now();
    let cash = open(&ledgers[0], AccountKind::Cash).await;
    let account = open(&ledgers[0], AccountKind::Current).await;
    assert!(is_ok(&ledgers[0].transfer(single(cash, account, 100, TransferKind::Deposit)).await.unwrap()));
    for round in 0..RACE_ROUNDS {
        let handles: Vec<_> = (0..RACE_CONTENDERS)
            .map(|contender| {
                let ledger = ledgers[contender % ledgers.len()].clone();
                tokio::spawn(async move { ledger.transfer(single(account, cash, 80, TransferKind::Withdrawal)).await })
            })
            .collect();
        let mut winners = 0;
        for handle in handles {
            match handle.await.unwrap().unwrap() {
                Ok(created) => {
                    assert!(!created.replayed);
                    assert!(created.transfer.debit_balance_after >= 0, "round {round}: {created:?}");
                    winners += 1;
                }
                Err(error) => assert_eq!(error.code(), "insufficient_funds", "round {round}"),
            }
        }
        assert_eq!(winners, 1, "{label} round {round}: {winners} withdrawals of 80 from 100 succeeded");
        assert_eq!(posted(store, account).await, 20, "{label} round {round}");
        let refund = ledgers[round % ledgers.len()].transfer(single(cash, account, 80, TransferKind::Deposit)).await;
        assert!(is_ok(&refund.unwrap()));
    }
    assert_eq!(posted(store, account).await, 100);
    assert_check_ok(&ledgers[0]).await;
    eprintln!("overdraft race, {label}: {RACE_ROUNDS} rounds in {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_of_fifty_racing_withdrawals_wins() {
    for db in db::engines().await {
        let ledger = Ledger::start(Arc::clone(&db.store), LedgerConfig::default());
        overdraft_race(&[ledger], &db.store, &format!("{} one writer", db.engine.name())).await;
    }
}

/// Two ledgers, each with its own store (its own connections), share one
/// database as two nodes would. The database's locking, not the
/// single-writer task, must now keep the second withdrawal out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_racing_withdrawal_wins_with_two_writers_on_one_database() {
    for db in db::engines().await {
        let second = db.open_again().await;
        let ledgers = [
            Ledger::start(Arc::clone(&db.store), LedgerConfig::default()),
            Ledger::start(second, LedgerConfig::default()),
        ];
        overdraft_race(&ledgers, &db.store, &format!("{} two writers", db.engine.name())).await;
    }
}

// ------------------------------------------------------------ idempotency

/// Fifty copies of one transfer sent at once (over two writers sharing the
/// database, so the copies race inside one batch and across batches of both
/// nodes): exactly one moves money, the others are replays of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_transfer_sent_fifty_times_at_once_moves_money_once() {
    for db in db::engines().await {
        let started = Instant::now();
        let second = db.open_again().await;
        let ledgers = [
            Ledger::start(Arc::clone(&db.store), LedgerConfig::default()),
            Ledger::start(second, LedgerConfig::default()),
        ];
        let cash = open(&ledgers[0], AccountKind::Cash).await;
        let account = open(&ledgers[0], AccountKind::Current).await;
        for round in 0..10 {
            let transfer = single(cash, account, 25, TransferKind::Deposit);
            let handles: Vec<_> = (0..50)
                .map(|copy| {
                    let ledger = ledgers[copy % 2].clone();
                    let transfer = transfer.clone();
                    tokio::spawn(async move { ledger.transfer(transfer).await })
                })
                .collect();
            let mut fresh = Vec::new();
            let mut replays = Vec::new();
            for handle in handles {
                let created = handle.await.unwrap().unwrap().expect("every copy is accepted");
                if created.replayed { replays.push(created.transfer) } else { fresh.push(created.transfer) }
            }
            assert_eq!(fresh.len(), 1, "{} round {round}: {} copies moved money", db.engine.name(), fresh.len());
            assert_eq!(replays.len(), 49);
            assert!(replays.iter().all(|replay| *replay == fresh[0]), "a replay differs from the original");
            assert_eq!(posted(&db.store, account).await, 25 * (round + 1));
        }
        assert_check_ok(&ledgers[0]).await;
        eprintln!("idempotency on {}: {:.1?}", db.engine.name(), started.elapsed());
    }
}

// ----------------------------------------------------------- expiry race

/// The expiry sweeper on one node and captures on another race for the
/// same fifty holds: each hold ends either posted or voided, never both and
/// never neither, and the balances agree with whichever won.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_is_resolved_once_when_the_sweeper_and_a_capture_race() {
    for db in db::engines().await {
        let started = Instant::now();
        let ledgers = [
            Ledger::start(Arc::clone(&db.store), LedgerConfig::default()),
            Ledger::start(db.open_again().await, LedgerConfig::default()),
        ];
        let cash = open(&ledgers[0], AccountKind::Cash).await;
        let (guest, shop) =
            (open(&ledgers[0], AccountKind::Current).await, open(&ledgers[0], AccountKind::Current).await);
        assert!(is_ok(&ledgers[0].transfer(single(cash, guest, 5_000, TransferKind::Deposit)).await.unwrap()));
        let holds: Vec<NewTransfer> = (1..=50)
            .map(|amount| NewTransfer {
                op: TransferOp::Pending { timeout_s: Some(3600) },
                ..single(guest, shop, amount, TransferKind::Transfer)
            })
            .collect();
        assert!(ledgers[0].submit(holds.clone()).await.unwrap().iter().all(is_ok));

        // The sweep looks two hours ahead, so every hold counts as expired
        // for it, while the captures, judged at the real time, are in time.
        let sweeper = {
            let ledger = ledgers[1].clone();
            tokio::spawn(async move { ledger.expire_pending(kassa_store::now_us() + 7_200_000_000, 1_000).await })
        };
        let captures: Vec<_> = holds
            .iter()
            .map(|hold| {
                let ledger = ledgers[0].clone();
                let capture = NewTransfer {
                    op: TransferOp::Post { pending_id: hold.id },
                    ..single(guest, shop, hold.amount.minor(), TransferKind::Transfer)
                };
                tokio::spawn(async move { ledger.transfer(capture).await })
            })
            .collect();
        let mut captured = 0_i64;
        let mut posted_count = 0;
        for (hold, capture) in holds.iter().zip(captures) {
            match capture.await.unwrap().unwrap() {
                Ok(created) => {
                    assert!(!created.replayed);
                    captured += hold.amount.minor();
                    posted_count += 1;
                }
                Err(error) => assert_eq!(error.code(), "pending_transfer_already_voided"),
            }
        }
        let voided = sweeper.await.unwrap().unwrap();
        assert_eq!(posted_count + voided, holds.len(), "{}: {posted_count} posted, {voided} voided", db.engine.name());
        for hold in &holds {
            let state = db.store.transfer(hold.id).await.unwrap().unwrap().state;
            assert_ne!(state, kassa_core::ledger::TransferState::Pending);
        }
        let account = db.store.account(guest).await.unwrap().unwrap();
        assert_eq!((account.balances.posted(), account.balances.debits_pending.minor()), (5_000 - captured, 0));
        assert_check_ok(&ledgers[0]).await;
        eprintln!(
            "expiry race on {}: {posted_count} captured, {voided} voided, {:.1?}",
            db.engine.name(),
            started.elapsed()
        );
    }
}
