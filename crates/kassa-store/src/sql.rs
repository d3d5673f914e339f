//! A small portable SQL boundary for everything that is not the ledger's hot
//! path: customers, staff, sessions, audit, idempotency records.
//!
//! The bank's services write their SQL once, with `$1` placeholders and only
//! integer, text and blob values, and run it through [`Database::write`] on
//! either engine. Work runs synchronously on a blocking thread inside one
//! database transaction; on PostgreSQL a serialization failure or deadlock
//! re-runs the whole closure, reads included, so the closure must be
//! repeatable (it is `FnMut` and should only touch its own locals).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::StoreError;

/// A value bound to or read from a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value)
    }
}
impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Int(i64::from(value))
    }
}
impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::Text(value.to_owned())
    }
}
impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Text(value)
    }
}
impl From<&String> for Value {
    fn from(value: &String) -> Value {
        Value::Text(value.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Value {
        Value::Blob(value)
    }
}
impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Value {
        Value::Blob(value.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

/// One result row. Getters name the column index and fail with
/// [`StoreError::Corrupt`] when the stored value has another type, so a
/// schema drift surfaces as a clear error rather than a panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn value(&self, index: usize) -> Result<&Value, StoreError> {
        self.0.get(index).ok_or_else(|| StoreError::Corrupt(format!("a row has no column {index}")))
    }

    pub fn int(&self, index: usize) -> Result<i64, StoreError> {
        match self.value(index)? {
            Value::Int(value) => Ok(*value),
            other => Err(StoreError::Corrupt(format!("column {index} is {other:?}, not an integer"))),
        }
    }

    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Int(value) => Ok(Some(*value)),
            other => Err(StoreError::Corrupt(format!("column {index} is {other:?}, not an integer"))),
        }
    }

    pub fn text(&self, index: usize) -> Result<String, StoreError> {
        match self.value(index)? {
            Value::Text(value) => Ok(value.clone()),
            other => Err(StoreError::Corrupt(format!("column {index} is {other:?}, not text"))),
        }
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Text(value) => Ok(Some(value.clone())),
            other => Err(StoreError::Corrupt(format!("column {index} is {other:?}, not text"))),
        }
    }

    pub fn blob(&self, index: usize) -> Result<Vec<u8>, StoreError> {
        match self.value(index)? {
            Value::Blob(value) => Ok(value.clone()),
            other => Err(StoreError::Corrupt(format!("column {index} is {other:?}, not a blob"))),
        }
    }

    pub fn opt_blob(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Blob(value) => Ok(Some(value.clone())),
            other => Err(StoreError::Corrupt(format!("column {index} is {other:?}, not a blob"))),
        }
    }
}

/// One open database transaction.
pub trait Tx {
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// Runs a query and returns all of its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// `"sqlite"` or `"postgres"`, for the rare statement that differs.
    fn backend(&self) -> &'static str;
    /// The audit chain this write transaction appends to; `None` in a read.
    fn audit_chain(&self) -> Option<i64>;

    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?.ok_or_else(|| StoreError::Corrupt(format!("no row from: {sql}")))
    }
}

/// How a unit of work ended, seen from the engine: commit, or roll back.
#[derive(Debug)]
pub enum TxEnd {
    /// The work failed for a reason of its own (already recorded by the
    /// caller); roll back and do not retry.
    Rollback,
    /// The database failed; roll back. Retryable failures are retried by
    /// the engine before they reach the caller.
    Store(StoreError),
}

impl From<StoreError> for TxEnd {
    fn from(error: StoreError) -> TxEnd {
        TxEnd::Store(error)
    }
}

pub type TxWork = Box<dyn FnMut(&mut dyn Tx) -> Result<(), TxEnd> + Send>;

/// A database the bank's services run their transactions on.
#[async_trait]
pub trait Database: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    /// Runs `work` in one write transaction and commits it durably, or rolls
    /// it back when `work` fails.
    async fn write_boxed(&self, work: TxWork) -> Result<(), TxEnd>;
    /// Runs `work` on a read connection (a consistent snapshot on both
    /// engines); nothing it does is committed.
    async fn read_boxed(&self, work: TxWork) -> Result<(), TxEnd>;
}

/// Journals events in the transaction `tx` (see [`crate::audit::append`]).
pub fn journal(tx: &mut dyn Tx, at_us: i64, drafts: &[crate::AuditDraft]) -> Result<(), StoreError> {
    let chain = tx.audit_chain().ok_or_else(|| StoreError::Database("journaling in a read transaction".into()))?;
    crate::audit::append(tx, chain, at_us, drafts)
}

type Slot<T, E> = Arc<Mutex<Option<Result<T, E>>>>;

fn run_boxed<T, E, F>(mut work: F) -> (TxWork, Slot<T, E>)
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut dyn Tx) -> Result<T, E> + Send + 'static,
{
    let slot: Slot<T, E> = Arc::new(Mutex::new(None));
    let out = Arc::clone(&slot);
    let boxed: TxWork = Box::new(move |tx| {
        let result = work(tx);
        let failed = result.is_err();
        if let Ok(mut out) = out.lock() {
            *out = Some(result);
        }
        if failed { Err(TxEnd::Rollback) } else { Ok(()) }
    });
    (boxed, slot)
}

fn take<T, E: From<StoreError>>(ended: Result<(), TxEnd>, slot: &Slot<T, E>) -> Result<T, E> {
    let result = slot.lock().ok().and_then(|mut slot| slot.take());
    match (ended, result) {
        (Ok(()), Some(result)) => result,
        (Err(TxEnd::Rollback), Some(Err(error))) => Err(error),
        (Err(TxEnd::Store(error)), _) => Err(error.into()),
        _ => Err(StoreError::Database("a transaction ended without a result".into()).into()),
    }
}

/// Runs `work` in one write transaction; its `Err` rolls back.
pub async fn write<T, E, F>(db: &dyn Database, work: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut dyn Tx) -> Result<T, E> + Send + 'static,
{
    let (boxed, slot) = run_boxed(work);
    let ended = db.write_boxed(boxed).await;
    take(ended, &slot)
}

/// Runs `work` on a read connection.
pub async fn read<T, E, F>(db: &dyn Database, work: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut dyn Tx) -> Result<T, E> + Send + 'static,
{
    let (boxed, slot) = run_boxed(work);
    let ended = db.read_boxed(boxed).await;
    take(ended, &slot)
}

/// Rewrites `$N` placeholders as SQLite's `?N`. Our SQL never has a `$`
/// inside a string literal, so a plain scan is enough.
pub fn sqlite_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return std::borrow::Cow::Borrowed(sql);
    }
    std::borrow::Cow::Owned(sql.replace('$', "?"))
}
