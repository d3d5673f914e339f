//! The money path: one group-commit batch in one transaction.
//!
//! The rules live in [`kassa_core::ledger::apply_batch`]; this module only
//! loads the slice of the database a batch needs, hands it to the rules, and
//! writes back what they changed with a fixed number of statements however
//! large the batch is.
//!
//! Several processes may apply batches to one database at once. Every row a
//! decision depends on is locked before it is read: the accounts first, in
//! id order (one global order, so two batches never deadlock on them), and
//! the transfers a batch refers to can only change under those same account
//! locks. Read committed isolation is therefore enough; the rare conflicts
//! that remain (a deadlock on the unique index, two processes inserting the
//! same transfer id) make the whole transaction run again.

use std::time::Duration;

use deadpool_postgres::{Object, Pool, Transaction};
use kassa_core::ledger::{self, LedgerState, NewTransfer, TransferOp, TransferOutcome};
use kassa_core::{AccountId, TransferId};
use kassa_store::StoreError;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::error::{db_error, describe, is_unavailable, is_unique_violation_on, pool_error};

/// The unique constraint on client-chosen transfer ids (PostgreSQL's default
/// name for `id UUID NOT NULL UNIQUE` on `transfers`).
const TRANSFER_ID_CONSTRAINT: &str = "transfers_id_key";
use crate::rows::{ACCOUNT_COLUMNS, TRANSFER_COLUMNS, account_from_row, transfer_from_row, uuid};

/// How often a batch is tried before the conflict is reported.
const MAX_ATTEMPTS: u32 = 20;

/// Why one attempt failed: a conflict worth running the transaction again
/// for, or an error to hand to the caller.
enum Failure {
    Retry(String),
    Fail(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::Fail(error)
    }
}

/// Builds the conversion for one step, so that every message says which
/// step of the batch failed.
fn failure(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Failure {
    move |error| {
        // A duplicate transfer id means another process inserted the same
        // transfer between our lookup and our insert: run again and the
        // rules answer idempotently. Any other unique violation is a bug
        // and must not be retried into a misleading "conflict".
        let retryable = error.code().is_some_and(|code| {
            *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        }) || is_unique_violation_on(&error, TRANSFER_ID_CONSTRAINT);
        if retryable {
            Failure::Retry(format!("{context}: {}", describe(&error)))
        } else {
            Failure::Fail(db_error(context, &error))
        }
    }
}

/// What a batch needs looked up, computed once for all attempts.
struct Needs {
    account_ids: Vec<i64>,
    transfer_ids: Vec<Uuid>,
    reversed_candidates: Vec<Uuid>,
    transfers: i64,
}

impl Needs {
    fn of(requests: &[Vec<NewTransfer>]) -> Result<Needs, StoreError> {
        let account_ids = LedgerState::account_ids_needed(requests).into_iter().map(|id| id.0).collect();
        let transfer_ids = LedgerState::transfer_ids_needed(requests).into_iter().map(uuid).collect();
        let mut originals: Vec<TransferId> = requests
            .iter()
            .flatten()
            .filter_map(|transfer| match transfer.op {
                TransferOp::Reverse { original_id } => Some(original_id),
                _ => None,
            })
            .collect();
        originals.sort_unstable();
        originals.dedup();
        let count: usize = requests.iter().map(Vec::len).sum();
        let transfers = i64::try_from(count)
            .map_err(|_| StoreError::Database(format!("a batch of {count} transfers is too large")))?;
        Ok(Needs {
            account_ids,
            transfer_ids,
            reversed_candidates: originals.into_iter().map(uuid).collect(),
            transfers,
        })
    }
}

pub(crate) async fn apply(
    pool: &Pool,
    requests: &[Vec<NewTransfer>],
    journal: &[Option<kassa_store::AuditDraft>],
    chain: Option<i64>,
    now_us: i64,
) -> Result<Vec<Vec<TransferOutcome>>, StoreError> {
    let needs = Needs::of(requests)?;
    if needs.transfers == 0 {
        return Ok(requests.iter().map(|_| Vec::new()).collect());
    }
    let mut client = pool.get().await.map_err(pool_error)?;
    let mut last_conflict = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let tx = client.transaction().await.map_err(|error| db_error("starting the batch transaction", &error))?;
        let ran = run(&tx, requests, &needs, Journal { drafts: journal, chain }, now_us).await;
        let failed = match ran {
            Ok(outcomes) => match tx.commit().await {
                Ok(()) => return Ok(outcomes),
                Err(error) if is_unavailable(&error) => {
                    return Err(StoreError::Unavailable(format!(
                        "the connection failed while committing the batch, so whether it committed is unknown; \
                         sending the same transfers again is safe, since their ids make them idempotent: {}",
                        describe(&error)
                    )));
                }
                Err(error) => failure("committing the batch")(error),
            },
            Err(failed) => {
                if tx.rollback().await.is_err() {
                    // The connection may still be inside the transaction;
                    // it must not go back to the pool like that.
                    drop(Object::take(client));
                    return Err(match failed {
                        Failure::Retry(message) => StoreError::Unavailable(message),
                        Failure::Fail(error) => error,
                    });
                }
                failed
            }
        };
        match failed {
            Failure::Fail(error) => return Err(error),
            Failure::Retry(message) => {
                last_conflict = message;
                if attempt < MAX_ATTEMPTS {
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }
    Err(StoreError::Unavailable(format!(
        "the batch still conflicted with other writers after {MAX_ATTEMPTS} attempts: {last_conflict}"
    )))
}

/// A short randomised pause before another attempt, so that two processes
/// that just collided do not collide again in lockstep. It grows from about
/// a millisecond to about a quarter of a second; the jitter comes from the
/// clock's nanoseconds, which is random enough to break the symmetry.
fn backoff(attempt: u32) -> Duration {
    let ceiling_us = 1_000_u64 << attempt.min(8);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(attempt);
    let mixed = u64::from(nanos).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(attempt);
    Duration::from_micros(ceiling_us / 2 + mixed % (ceiling_us / 2))
}

/// A batch's audit events (one per request, if any) and the chain they go to.
struct Journal<'a> {
    drafts: &'a [Option<kassa_store::AuditDraft>],
    chain: Option<i64>,
}

/// Runs one attempt inside `tx`, leaving commit or rollback to the caller.
/// The whole batch is four round trips: BEGIN; the locks and reads (with
/// the journal's place in its chain); the writes (with the journal's
/// events); COMMIT.
async fn run(
    tx: &Transaction<'_>,
    requests: &[Vec<NewTransfer>],
    needs: &Needs,
    journal: Journal<'_>,
    now_us: i64,
) -> Result<Vec<Vec<TransferOutcome>>, Failure> {
    let mut state = LedgerState::default();

    // Every statement is prepared before any is sent: once they are all
    // prepared, tokio-postgres sends the queries below in the order they are
    // first polled, and the server runs them in that order. The account
    // lock goes first, so every read after it sees rows that cannot change
    // until commit — and the batch pays one round trip for the lock and all
    // the reads together.
    let lock_sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ANY($1) ORDER BY a.id FOR UPDATE");
    let transfers_sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers t WHERE t.id = ANY($1)");
    let context = "preparing the batch's statements";
    let lock_statement = tx.prepare_cached(&lock_sql).await.map_err(failure(context))?;
    let transfers_statement = tx.prepare_cached(&transfers_sql).await.map_err(failure(context))?;
    let reversed_statement = tx
        .prepare_cached("SELECT ref_id FROM transfers WHERE op = 'reverse' AND ref_id = ANY($1)")
        .await
        .map_err(failure(context))?;
    let sequence_statement = tx
        .prepare_cached("SELECT nextval('transfers_seq') FROM generate_series(1, $1::bigint)")
        .await
        .map_err(failure(context))?;
    // Each account's chain must run backwards in time, or `balance_at` would
    // stop too early: a batch that waited for locks, or a node whose clock
    // lags, must not stamp its transfers earlier than the heads it links to.
    // Run after the lock, this reads the heads of the locked accounts.
    let newest_statement = tx
        .prepare_cached(
            "SELECT COALESCE(MAX(t.created_at_us), 0) AS newest \
             FROM accounts a JOIN transfers t ON t.seq = a.last_seq WHERE a.id = ANY($1)",
        )
        .await
        .map_err(failure(context))?;

    // Accounts first, locked in id order: one global order, so two batches
    // never deadlock on them.
    let locked = async {
        let context = "locking the batch's accounts";
        let rows = tx.query(&lock_statement, &[&needs.account_ids]).await.map_err(failure(context))?;
        rows.iter().map(|row| account_from_row(row).map_err(Failure::from)).collect::<Result<Vec<_>, _>>()
    };
    // The transfers the batch names, as its own ids (idempotent replays) or
    // as references (pending transfers to resolve, transfers to reverse).
    let transfers = async {
        let mut found = Vec::new();
        if !needs.transfer_ids.is_empty() {
            let context = "loading the batch's transfers";
            for row in tx.query(&transfers_statement, &[&needs.transfer_ids]).await.map_err(failure(context))? {
                found.push(transfer_from_row(&row)?);
            }
        }
        Ok::<_, Failure>(found)
    };
    let reversed = async {
        let mut found = Vec::new();
        if !needs.reversed_candidates.is_empty() {
            let context = "loading reversals";
            for row in tx.query(&reversed_statement, &[&needs.reversed_candidates]).await.map_err(failure(context))? {
                let original: Uuid = crate::rows::get(&row, "ref_id")?;
                found.push(TransferId(original.as_u128()));
            }
        }
        Ok::<_, Failure>(found)
    };
    // Sequence numbers are drawn after the locks, so that for every account
    // the order of sequence numbers is the order of commits.
    let sequence = async {
        let context = "drawing sequence numbers";
        let mut drawn = Vec::with_capacity(requests.iter().map(Vec::len).sum());
        for row in tx.query(&sequence_statement, &[&needs.transfers]).await.map_err(failure(context))? {
            drawn.push(crate::rows::get::<i64>(&row, "nextval")?);
        }
        Ok::<_, Failure>(drawn)
    };
    let newest = async {
        let context = "reading the newest timestamps";
        let row = tx.query_one(&newest_statement, &[&needs.account_ids]).await.map_err(failure(context))?;
        crate::rows::get::<i64>(&row, "newest").map_err(Failure::from)
    };
    // The journal's place in its chain: after the account locks, like
    // every lock a batch takes, so batches never wait for each other in
    // opposite orders.
    let events = journal.drafts.iter().filter(|draft| draft.is_some()).count();
    let slot = async {
        match journal.chain {
            Some(chain) if events > 0 => crate::sqltx::reserve(tx, chain, events)
                .await
                .map(Some)
                .map_err(failure("reserving the journal's place")),
            _ => Ok(None),
        }
    };
    let (accounts, transfers, reversed, mut drawn, newest, slot) =
        // Biased: always polled in this order, so when a statement fails the
        // error seen is the earliest statement's own, not the "transaction
        // is aborted" of a statement queued behind it (which would turn a
        // retryable conflict into a hard failure).
        tokio::try_join!(biased; locked, transfers, reversed, sequence, newest, slot)?;
    for account in accounts {
        state.accounts.insert(account.id, account);
    }
    for transfer in transfers {
        state.transfers.insert(transfer.id, transfer);
    }
    state.reversed.extend(reversed);
    // The numbers come out increasing, but sorting costs nothing next to the
    // round trip and makes the order a fact rather than an observation.
    drawn.sort_unstable();
    let mut drawn = drawn.into_iter();
    let mut ran_out = false;
    let mut next_seq = || {
        drawn.next().unwrap_or_else(|| {
            ran_out = true;
            0
        })
    };
    let now_us = now_us.max(newest);

    let effects = ledger::apply_batch(&mut state, requests, now_us, &mut next_seq);
    if ran_out {
        return Err(Failure::Fail(StoreError::Database(format!(
            "the rules asked for more than the {} sequence numbers drawn for the batch",
            needs.transfers
        ))));
    }

    // The account update is independent of the transfer rows, so it is
    // pipelined beside them; the resolutions wait for the insert, since they
    // may update rows it writes.
    let transfer_rows = async {
        write_transfers(tx, &effects.inserted).await?;
        write_resolutions(tx, &effects.resolved).await
    };
    let events = kassa_store::journal_with_outcomes(journal.drafts.to_vec(), &effects.outcomes);
    let journaled = async {
        match slot {
            Some(slot) => {
                crate::sqltx::write_events(tx, slot, now_us, &events).await.map_err(failure("journaling the batch"))
            }
            None => Ok(()),
        }
    };
    // Biased for the same reason as the reads: the insert's own error (a
    // duplicate id to retry) must win over the aborted update behind it.
    tokio::try_join!(biased; transfer_rows, write_accounts(tx, &state, &effects.touched_accounts), journaled)?;
    Ok(effects.outcomes)
}

/// Inserts every new transfer with one statement.
async fn write_transfers(tx: &Transaction<'_>, inserted: &[kassa_core::ledger::Transfer]) -> Result<(), Failure> {
    if inserted.is_empty() {
        return Ok(());
    }
    let n = inserted.len();
    let mut seq = Vec::with_capacity(n);
    let mut id = Vec::with_capacity(n);
    let mut debit = Vec::with_capacity(n);
    let mut credit = Vec::with_capacity(n);
    let mut amount = Vec::with_capacity(n);
    let mut currency = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut op = Vec::with_capacity(n);
    let mut ref_id = Vec::with_capacity(n);
    let mut timeout_s = Vec::with_capacity(n);
    let mut state = Vec::with_capacity(n);
    let mut linked = Vec::with_capacity(n);
    let mut bank_debit = Vec::with_capacity(n);
    let mut description = Vec::with_capacity(n);
    let mut chain_id = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut debit_after = Vec::with_capacity(n);
    let mut credit_after = Vec::with_capacity(n);
    let mut prev_debit = Vec::with_capacity(n);
    let mut prev_credit = Vec::with_capacity(n);
    let mut overdraft = Vec::with_capacity(n);
    for t in inserted {
        seq.push(t.seq);
        id.push(uuid(t.id));
        debit.push(t.debit_account.0);
        credit.push(t.credit_account.0);
        amount.push(t.amount.minor());
        currency.push(t.currency.code());
        kind.push(t.kind.as_str());
        op.push(t.op.name());
        ref_id.push(t.op.reference().map(uuid));
        timeout_s.push(t.op.timeout_s().map(i64::from));
        state.push(t.state.as_str());
        linked.push(t.linked);
        bank_debit.push(t.bank_debit);
        description.push(t.description.as_str());
        chain_id.push(t.chain_id.map(uuid));
        expires.push(t.expires_at_us);
        created.push(t.created_at_us);
        debit_after.push(t.debit_balance_after);
        credit_after.push(t.credit_balance_after);
        prev_debit.push(t.prev_debit_seq);
        prev_credit.push(t.prev_credit_seq);
        overdraft.push(t.overdraft);
    }
    let context = "inserting the batch's transfers";
    let statement = tx
        .prepare_cached(
            "INSERT INTO transfers (seq, id, debit_account_id, credit_account_id, amount, currency, kind, op, \
                 ref_id, timeout_s, state, linked, bank_debit, description, chain_id, expires_at_us, \
                 created_at_us, debit_balance_after, credit_balance_after, prev_debit_seq, prev_credit_seq, \
                 overdraft) \
             SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], \
                 $6::text[], $7::text[], $8::text[], $9::uuid[], $10::bigint[], $11::text[], $12::bool[], \
                 $13::bool[], $14::text[], $15::uuid[], $16::bigint[], $17::bigint[], $18::bigint[], \
                 $19::bigint[], $20::bigint[], $21::bigint[], $22::bool[])",
        )
        .await
        .map_err(failure(context))?;
    let written = tx
        .execute(
            &statement,
            &[
                &seq,
                &id,
                &debit,
                &credit,
                &amount,
                &currency,
                &kind,
                &op,
                &ref_id,
                &timeout_s,
                &state,
                &linked,
                &bank_debit,
                &description,
                &chain_id,
                &expires,
                &created,
                &debit_after,
                &credit_after,
                &prev_debit,
                &prev_credit,
                &overdraft,
            ],
        )
        .await
        .map_err(failure(context))?;
    expect_rows(context, written, n)
}

/// Records the new state of every pending transfer the batch resolved, after
/// the inserts because a batch may resolve a pending transfer it created.
async fn write_resolutions(
    tx: &Transaction<'_>,
    resolved: &[(TransferId, kassa_core::ledger::TransferState)],
) -> Result<(), Failure> {
    if resolved.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = resolved.iter().map(|(id, _)| uuid(*id)).collect();
    let states: Vec<&str> = resolved.iter().map(|(_, state)| state.as_str()).collect();
    let context = "resolving pending transfers";
    let statement = tx
        .prepare_cached(
            "UPDATE transfers SET state = u.state \
             FROM UNNEST($1::uuid[], $2::text[]) AS u(id, state) \
             WHERE transfers.id = u.id AND transfers.state = 'pending'",
        )
        .await
        .map_err(failure(context))?;
    let written = tx.execute(&statement, &[&ids, &states]).await.map_err(failure(context))?;
    expect_rows(context, written, resolved.len())
}

/// Writes each touched account once, however many transfers touched it.
async fn write_accounts(tx: &Transaction<'_>, state: &LedgerState, touched: &[AccountId]) -> Result<(), Failure> {
    if touched.is_empty() {
        return Ok(());
    }
    let n = touched.len();
    let mut ids = Vec::with_capacity(n);
    let mut debits_posted = Vec::with_capacity(n);
    let mut credits_posted = Vec::with_capacity(n);
    let mut debits_pending = Vec::with_capacity(n);
    let mut credits_pending = Vec::with_capacity(n);
    let mut bank_overdraft = Vec::with_capacity(n);
    let mut last_seq = Vec::with_capacity(n);
    for id in touched {
        let account = state.accounts.get(id).ok_or_else(|| {
            Failure::Fail(StoreError::Database(format!("the rules touched account {id}, which the batch never loaded")))
        })?;
        ids.push(account.id.0);
        debits_posted.push(account.balances.debits_posted.minor());
        credits_posted.push(account.balances.credits_posted.minor());
        debits_pending.push(account.balances.debits_pending.minor());
        credits_pending.push(account.balances.credits_pending.minor());
        bank_overdraft.push(account.bank_overdraft);
        last_seq.push(account.last_seq);
    }
    let context = "updating the batch's accounts";
    let statement = tx
        .prepare_cached(
            "UPDATE accounts SET debits_posted = u.debits_posted, credits_posted = u.credits_posted, \
                 debits_pending = u.debits_pending, credits_pending = u.credits_pending, \
                 bank_overdraft = u.bank_overdraft, last_seq = u.last_seq \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bool[], \
                 $7::bigint[]) \
                 AS u(id, debits_posted, credits_posted, debits_pending, credits_pending, bank_overdraft, last_seq) \
             WHERE accounts.id = u.id",
        )
        .await
        .map_err(failure(context))?;
    let written = tx
        .execute(
            &statement,
            &[&ids, &debits_posted, &credits_posted, &debits_pending, &credits_pending, &bank_overdraft, &last_seq],
        )
        .await
        .map_err(failure(context))?;
    expect_rows(context, written, n)
}

/// A statement that wrote a different number of rows than the batch holds
/// means the database and the rules disagree; nothing may be committed.
fn expect_rows(context: &str, written: u64, expected: usize) -> Result<(), Failure> {
    if u64::try_from(expected).ok() == Some(written) {
        Ok(())
    } else {
        Err(Failure::Fail(StoreError::Database(format!("{context}: wrote {written} rows, expected {expected}"))))
    }
}
