//! The portable SQL boundary ([`kassa_store::sql`]) on PostgreSQL.
//!
//! The services' work is synchronous, so it runs on a blocking thread that
//! drives the pooled async connection with `Handle::block_on` statement by
//! statement (allowed there: a blocking thread is not a runtime worker).
//! Transactions are READ COMMITTED; work that must not race locks its rows
//! first (`UPDATE … SET version = version + 1`), and a deadlock or
//! serialization failure re-runs the whole closure.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::BytesMut;
use kassa_store::sql::{Database, Row, Tx, TxEnd, TxWork, Value};
use kassa_store::{AuditDraft, StoreError};
use tokio::runtime::Handle;
use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::PostgresStore;
use crate::error::{db_error, pool_error};

/// How many audit chains one process appends to, so that concurrent
/// requests seldom wait for each other's chain lock.
pub(crate) const CHAINS_PER_PROCESS: usize = 8;
const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, Default)]
pub(crate) struct Chains {
    ids: OnceCell<Vec<i64>>,
    next: AtomicUsize,
}

#[derive(Debug)]
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(value) => match *ty {
                Type::INT2 => i16::try_from(*value)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*value)?.to_sql(ty, out),
                Type::BOOL => (*value != 0).to_sql(ty, out),
                _ => value.to_sql(ty, out),
            },
            Value::Text(value) => value.to_sql(ty, out),
            Value::Blob(value) => value.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn read_row(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let bad = |error: tokio_postgres::Error| StoreError::Corrupt(format!("column {}: {error}", column.name()));
        let value = match *column.type_() {
            Type::INT2 => row.try_get::<_, Option<i16>>(index).map_err(bad)?.map(i64::from).into(),
            Type::INT4 => row.try_get::<_, Option<i32>>(index).map_err(bad)?.map(i64::from).into(),
            Type::INT8 => row.try_get::<_, Option<i64>>(index).map_err(bad)?.into(),
            Type::BOOL => row.try_get::<_, Option<bool>>(index).map_err(bad)?.map(i64::from).into(),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(index).map_err(bad)?.into(),
            // A function called for its effect (pg_advisory_xact_lock).
            Type::VOID => Value::Null,
            Type::UUID => {
                row.try_get::<_, Option<uuid::Uuid>>(index).map_err(bad)?.map(|id| id.as_bytes().to_vec()).into()
            }
            _ => row.try_get::<_, Option<String>>(index).map_err(bad)?.into(),
        };
        values.push(value);
    }
    Ok(Row(values))
}

struct PgTx<'a, 'c> {
    handle: &'a Handle,
    tx: &'a deadpool_postgres::Transaction<'c>,
    chain: Option<i64>,
}

impl PgTx<'_, '_> {
    fn run<T>(
        &mut self,
        sql: &str,
        params: &[Value],
        f: impl AsyncFnOnce(
            &deadpool_postgres::Transaction<'_>,
            &tokio_postgres::Statement,
            &[&(dyn ToSql + Sync)],
        ) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let tx = self.tx;
        self.handle.block_on(async move {
            let statement = tx.prepare_cached(sql).await.map_err(|error| db_error("preparing a statement", &error))?;
            let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|param| param as &(dyn ToSql + Sync)).collect();
            f(tx, &statement, &refs).await.map_err(|error| statement_error(&error))
        })
    }
}

/// Serialization failures and deadlocks are marked so the engine re-runs
/// the work; every other error is reported as it is.
fn statement_error(error: &tokio_postgres::Error) -> StoreError {
    if error
        .code()
        .is_some_and(|code| *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED)
    {
        return StoreError::Unavailable(format!("{RETRY_MARK}{}", crate::error::describe(error)));
    }
    if let Some(db) = error.as_db_error()
        && *db.code() == SqlState::UNIQUE_VIOLATION
    {
        return StoreError::Database(format!(
            "unique violation on {}: {}",
            db.constraint().unwrap_or("?"),
            crate::error::describe(error)
        ));
    }
    db_error("running a statement", error)
}

const RETRY_MARK: &str = "transaction conflict, retry: ";

fn is_retry(end: &TxEnd) -> bool {
    matches!(end, TxEnd::Store(StoreError::Unavailable(message)) if message.starts_with(RETRY_MARK))
}

impl Tx for PgTx<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        self.run(sql, params, async |tx, statement, refs| tx.execute(statement, refs).await)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let rows = self.run(sql, params, async |tx, statement, refs| tx.query(statement, refs).await)?;
        rows.iter().map(read_row).collect()
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn audit_chain(&self) -> Option<i64> {
        self.chain
    }
}

impl PostgresStore {
    /// This process's audit chains, created on first use.
    pub(crate) async fn chain(&self) -> Result<i64, StoreError> {
        let ids = self
            .chains
            .ids
            .get_or_try_init(|| async {
                let mut client = self.pool.get().await.map_err(pool_error)?;
                let tx = client.transaction().await.map_err(|error| db_error("opening audit chains", &error))?;
                let mut ids = Vec::with_capacity(CHAINS_PER_PROCESS);
                let node = format!("postgres pid {}", std::process::id());
                for _ in 0..CHAINS_PER_PROCESS {
                    let row = tx
                        .query_one(
                            "INSERT INTO audit_chains (node, created_at_us, head_seq, head_hash) \
                             VALUES ($1, $2, 0, '') RETURNING id",
                            &[&node, &kassa_store::now_us()],
                        )
                        .await
                        .map_err(|error| db_error("opening audit chains", &error))?;
                    let id: i64 = row.get(0);
                    tx.execute(
                        "UPDATE audit_chains SET head_hash = $2 WHERE id = $1",
                        &[&id, &kassa_store::audit::genesis_hash(id)],
                    )
                    .await
                    .map_err(|error| db_error("opening audit chains", &error))?;
                    ids.push(id);
                }
                tx.commit().await.map_err(|error| db_error("opening audit chains", &error))?;
                Ok::<_, StoreError>(ids)
            })
            .await?;
        let index = self.chains.next.fetch_add(1, Ordering::Relaxed) % ids.len().max(1);
        ids.get(index).copied().ok_or_else(|| StoreError::Database("no audit chain".into()))
    }
}

/// The place a batch's journal events take in their chain: the last
/// sequence number and hash before them. Reserving it locks the chain's row
/// until the transaction ends.
pub(crate) struct ChainSlot {
    chain_id: i64,
    after_seq: i64,
    after_hash: Vec<u8>,
}

/// Reserves `count` sequence numbers at the head of a chain, inside the
/// ledger's batch transaction (one statement, sent with the batch's reads).
pub(crate) async fn reserve(
    tx: &deadpool_postgres::Transaction<'_>,
    chain_id: i64,
    count: usize,
) -> Result<ChainSlot, tokio_postgres::Error> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let head = tx
        .query_one(
            "UPDATE audit_chains SET head_seq = head_seq + $2 WHERE id = $1 RETURNING head_seq, head_hash",
            &[&chain_id, &count],
        )
        .await?;
    Ok(ChainSlot { chain_id, after_seq: head.get::<_, i64>(0) - count, after_hash: head.get(1) })
}

/// Writes journal events into the slot reserved for them, and moves the
/// chain's anchored head hash to the last one; the two statements are
/// pipelined (and sent with the batch's writes).
pub(crate) async fn write_events(
    tx: &deadpool_postgres::Transaction<'_>,
    slot: ChainSlot,
    at_us: i64,
    drafts: &[AuditDraft],
) -> Result<(), tokio_postgres::Error> {
    if drafts.is_empty() {
        return Ok(());
    }
    let ChainSlot { chain_id, after_seq: mut seq, after_hash: mut prev } = slot;
    let mut seqs: Vec<i64> = Vec::with_capacity(drafts.len());
    let mut clocks: Vec<Option<i64>> = Vec::with_capacity(drafts.len());
    let mut prevs: Vec<Vec<u8>> = Vec::with_capacity(drafts.len());
    let mut hashes: Vec<Vec<u8>> = Vec::with_capacity(drafts.len());
    for draft in drafts {
        seq += 1;
        let hash = kassa_store::audit::event_hash(&prev, chain_id, seq, at_us, draft);
        seqs.push(seq);
        clocks.push(draft.clock);
        prevs.push(std::mem::replace(&mut prev, hash.clone()));
        hashes.push(hash);
    }
    let text = |field: fn(&AuditDraft) -> &str| drafts.iter().map(field).collect::<Vec<&str>>();
    let (actors, roles, actions) = (text(|d| &d.actor), text(|d| &d.role), text(|d| &d.action));
    let (subjects, origins, outcomes, details) =
        (text(|d| &d.subject), text(|d| &d.origin), text(|d| &d.outcome), text(|d| &d.detail));
    let insert = tx
        .prepare_cached(
            "INSERT INTO audit_events (chain_id, chain_seq, at_us, actor, role, action, subject, origin, clock, \
             outcome, detail, prev_hash, hash) \
             SELECT $1, s, $2, a, r, ac, su, o, c, ou, d, p, h FROM unnest($3::bigint[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::bytea[], $13::bytea[]) \
             AS u(s, a, r, ac, su, o, c, ou, d, p, h)",
        )
        .await?;
    let move_head = tx.prepare_cached("UPDATE audit_chains SET head_hash = $2 WHERE id = $1").await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
        &chain_id, &at_us, &seqs, &actors, &roles, &actions, &subjects, &origins, &clocks, &outcomes, &details, &prevs,
        &hashes,
    ];
    // Biased: the insert's own error wins over the update queued behind it.
    let head: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&chain_id, &prev];
    // The outbox rows (kassa_store::audit::wants_outbox) go in the same
    // flight, after the events they point to.
    let outbox_seqs: Vec<i64> = drafts
        .iter()
        .zip(&seqs)
        .filter(|(draft, _)| kassa_store::audit::wants_outbox(draft))
        .map(|(_, seq)| *seq)
        .collect();
    if outbox_seqs.is_empty() {
        tokio::try_join!(biased; tx.execute(&insert, &params), tx.execute(&move_head, &head))?;
    } else {
        let outbox = tx
            .prepare_cached(
                "INSERT INTO outbox_events (chain_id, chain_seq, created_at_us) \
                 SELECT $1, s, $2 FROM unnest($3::bigint[]) AS u(s)",
            )
            .await?;
        let rows: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&chain_id, &at_us, &outbox_seqs];
        tokio::try_join!(biased; tx.execute(&insert, &params), tx.execute(&move_head, &head), tx.execute(&outbox, &rows))?;
    }
    Ok(())
}

#[async_trait]
impl Database for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn write_boxed(&self, mut work: TxWork) -> Result<(), TxEnd> {
        let chain = self.chain().await?;
        let pool = self.pool.clone();
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut client = handle.block_on(pool.get()).map_err(pool_error)?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let tx = handle
                    .block_on(client.transaction())
                    .map_err(|error| db_error("starting a transaction", &error))?;
                let ended = work(&mut PgTx { handle: &handle, tx: &tx, chain: Some(chain) });
                let ended = match ended {
                    Ok(()) => handle.block_on(tx.commit()).map_err(|error| TxEnd::Store(statement_error(&error))),
                    Err(end) => {
                        // A failed rollback leaves the connection unusable;
                        // dropping the transaction closes it cleanly enough.
                        let _ = handle.block_on(tx.rollback());
                        Err(end)
                    }
                };
                match ended {
                    Err(end) if is_retry(&end) && attempt < MAX_ATTEMPTS => {
                        std::thread::sleep(std::time::Duration::from_millis(u64::from(attempt)));
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|error| TxEnd::Store(StoreError::Database(format!("the database thread failed: {error}"))))?
    }

    async fn read_boxed(&self, mut work: TxWork) -> Result<(), TxEnd> {
        let pool = self.pool.clone();
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut client = handle.block_on(pool.get()).map_err(pool_error)?;
            let tx = handle
                .block_on(
                    client
                        .build_transaction()
                        .read_only(true)
                        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                        .start(),
                )
                .map_err(|error| db_error("starting a read transaction", &error))?;
            let ended = work(&mut PgTx { handle: &handle, tx: &tx, chain: None });
            let _ = handle.block_on(tx.rollback());
            ended
        })
        .await
        .map_err(|error| TxEnd::Store(StoreError::Database(format!("the database thread failed: {error}"))))?
    }
}
