//! The portable SQL boundary ([`kassa_store::sql`]) on SQLite: statements
//! run on the same single write connection as the ledger, so the bank's
//! other writes queue behind ledger batches in-process instead of spinning
//! on SQLite's busy handler.

use async_trait::async_trait;
use kassa_store::StoreError;
use kassa_store::sql::{Database, Row, Tx, TxEnd, TxWork, Value, sqlite_placeholders};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use crate::{SqliteStore, db_error};

pub(crate) struct SqliteTx<'a> {
    pub(crate) connection: &'a Connection,
    pub(crate) chain: Option<i64>,
}

fn bind(value: &Value) -> ToSqlOutput<'_> {
    match value {
        Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        Value::Int(value) => ToSqlOutput::Borrowed(ValueRef::Integer(*value)),
        Value::Text(value) => ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes())),
        Value::Blob(value) => ToSqlOutput::Borrowed(ValueRef::Blob(value)),
    }
}

struct Bound<'a>(&'a Value);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(bind(self.0))
    }
}

fn read_value(value: ValueRef<'_>) -> Result<Value, StoreError> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(value) => Value::Int(value),
        ValueRef::Text(bytes) => Value::Text(
            String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::Corrupt("a text column is not UTF-8".into()))?,
        ),
        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
        ValueRef::Real(_) => return Err(StoreError::Corrupt("a column holds a floating-point number".into())),
    })
}

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let mut statement = self.connection.prepare_cached(&sqlite_placeholders(sql)).map_err(db_error)?;
        let bound: Vec<Bound<'_>> = params.iter().map(Bound).collect();
        let changed = statement.execute(rusqlite::params_from_iter(bound.iter())).map_err(db_error)?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.connection.prepare_cached(&sqlite_placeholders(sql)).map_err(db_error)?;
        let columns = statement.column_count();
        let bound: Vec<Bound<'_>> = params.iter().map(Bound).collect();
        let mut rows = statement.query(rusqlite::params_from_iter(bound.iter())).map_err(db_error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db_error)? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(read_value(row.get_ref(index).map_err(db_error)?)?);
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn audit_chain(&self) -> Option<i64> {
        self.chain
    }
}

/// Returns this process's audit chain, creating it (in its own committed
/// transaction) the first time one is needed.
pub(crate) fn ensure_chain(store: &SqliteStore, connection: &mut Connection) -> Result<i64, StoreError> {
    if let Some(id) = store.inner.chain.get() {
        return Ok(*id);
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
    let id = kassa_store::audit::open_chain(
        &mut SqliteTx { connection: &transaction, chain: None },
        &format!("sqlite pid {}", std::process::id()),
        kassa_store::now_us(),
    )?;
    transaction.commit().map_err(db_error)?;
    Ok(*store.inner.chain.get_or_init(|| id))
}

#[async_trait]
impl Database for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn write_boxed(&self, mut work: TxWork) -> Result<(), TxEnd> {
        let store = self.clone();
        let result = self
            .write(move |connection| {
                let chain = ensure_chain(&store, connection)?;
                let transaction =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
                match work(&mut SqliteTx { connection: &transaction, chain: Some(chain) }) {
                    Ok(()) => {
                        transaction.commit().map_err(db_error)?;
                        Ok(Ok(()))
                    }
                    // Dropping the transaction rolls it back.
                    Err(end) => Ok(Err(end)),
                }
            })
            .await;
        result.map_err(TxEnd::Store)?
    }

    async fn read_boxed(&self, mut work: TxWork) -> Result<(), TxEnd> {
        let result = self
            .read(move |connection| {
                let transaction = connection.transaction().map_err(db_error)?;
                let ended = work(&mut SqliteTx { connection: &transaction, chain: None });
                drop(transaction);
                Ok(ended)
            })
            .await;
        result.map_err(TxEnd::Store)?
    }
}
