//! Kassa's SQLite storage engine, the embedded default.
//!
//! One write connection does every write, on a blocking thread, inside
//! `BEGIN IMMEDIATE … COMMIT` with `synchronous=FULL` in WAL mode, so a
//! commit that returned is on disk. The ledger's group-commit writer hands it
//! whole batches, so one fsync covers thousands of transfers. Reads use a
//! small pool of separate connections, which WAL lets run beside the writer.
//!
//! rusqlite is used rather than sqlx: the writer wants a synchronous
//! connection with cached prepared statements on its own thread, and sqlx's
//! SQLite driver would send every statement through a channel to a worker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

mod sqltx;

use async_trait::async_trait;
use kassa_core::ledger::{
    Account, AccountError, AccountKind, AccountStatus, Balances, LedgerState, NewAccount, NewTransfer, Transfer,
    TransferKind, TransferOp, TransferOutcome, TransferState, apply_batch, check_status_change,
};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_store::{AccountCheckRow, BadTransfer, CheckInputs, LedgerStore, StoreError, Totals};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_ledger.sql")),
    (2, include_str!("../migrations/0002_bank.sql")),
    (3, include_str!("../migrations/0003_rate_limits.sql")),
    (4, include_str!("../migrations/0004_cards.sql")),
    (5, include_str!("../migrations/0005_approvals.sql")),
    (6, include_str!("../migrations/0006_fx.sql")),
    (7, include_str!("../migrations/0007_interest.sql")),
    (8, include_str!("../migrations/0008_outbox.sql")),
    (9, include_str!("../migrations/0009_card_key.sql")),
    (10, include_str!("../migrations/0010_notify_prefs.sql")),
    (11, include_str!("../migrations/0011_terminals.sql")),
];

const ACCOUNT_COLUMNS: &str = "id, number, owner_id, currency, kind, status, credit_limit, debits_posted, \
     credits_posted, debits_pending, credits_pending, bank_overdraft, last_seq, created_at_us";

const TRANSFER_COLUMNS: &str = "seq, id, debit_account_id, credit_account_id, amount, currency, kind, op, ref_id, \
     timeout_s, state, linked, bank_debit, description, chain_id, expires_at_us, created_at_us, \
     debit_balance_after, credit_balance_after, prev_debit_seq, prev_credit_seq, overdraft";

/// How many read connections to keep; WAL lets them read while the writer
/// commits.
const READERS_MAX: usize = 8;
/// The writer's page cache: large enough to keep the hot part of the
/// accounts table and the transfers table's right edge in memory.
const WRITER_CACHE_KIB: i64 = 256 * 1024;
const READER_CACHE_KIB: i64 = 32 * 1024;
/// Checkpoint the WAL back into the database every this many pages (4 KiB
/// each), instead of SQLite's default 1000, so big batches do not pay for a
/// checkpoint on almost every commit: pages that every batch dirties (the
/// accounts table) are then copied back once per checkpoint, not per batch.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 65_536;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// At most [`READERS_MAX`] reads run at once, so every read finds a
    /// pooled connection instead of opening (and parsing the schema on) a
    /// new one under load.
    read_slots: Arc<tokio::sync::Semaphore>,
    /// This process's audit chain, created on the first journaled write.
    chain: OnceLock<i64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish()
    }
}

fn db_error(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("the database is busy: {error}"))
        }
        Some(
            rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::SystemIoFailure,
        ) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Database(error.to_string()),
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("stored {what} is invalid: {detail}").into(),
    )
}

fn open_connection(path: &Path, cache_kib: i64) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| StoreError::Unavailable(format!("cannot open {}: {error}", path.display())))?;
    // WAL with synchronous=FULL: a commit returns only after its WAL frames
    // are fsynced, which is the durability the ledger promises. The busy
    // timeout comes first: switching to WAL needs the database to itself,
    // and several processes opening a new database at once would otherwise
    // see "database is locked" at once instead of waiting their turn.
    connection
        .execute_batch(&format!(
            "PRAGMA busy_timeout = 10000;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};
             PRAGMA cache_size = -{cache_kib};"
        ))
        .map_err(db_error)?;
    // Refuse to run without the durability the ledger promises (a file
    // system or build without WAL would silently fall back).
    let journal_mode: String = connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)).map_err(db_error)?;
    let synchronous: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0)).map_err(db_error)?;
    if !journal_mode.eq_ignore_ascii_case("wal") || synchronous != 2 {
        return Err(StoreError::Unavailable(format!(
            "{} could not be put in WAL mode with synchronous=FULL (got {journal_mode}, {synchronous})",
            path.display()
        )));
    }
    connection.set_prepared_statement_cache_capacity(256);
    Ok(connection)
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at_us INTEGER NOT NULL
             )",
        )
        .map_err(db_error)?;
    for (version, sql) in MIGRATIONS {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
        let applied: bool = transaction
            .query_row("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)", [version], |row| {
                row.get(0)
            })
            .map_err(db_error)?;
        if !applied {
            transaction.execute_batch(sql).map_err(db_error)?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version, applied_at_us) VALUES (?1, ?2)",
                    params![version, kassa_store::now_us()],
                )
                .map_err(db_error)?;
        }
        transaction.commit().map_err(db_error)?;
    }
    Ok(())
}

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    let amount = |index: usize| -> rusqlite::Result<Amount> {
        let minor: i64 = row.get(index)?;
        Amount::try_from_minor(minor).map_err(|error| corrupt("amount", error))
    };
    let currency: String = row.get(3)?;
    let kind: String = row.get(4)?;
    let status: String = row.get(5)?;
    Ok(Account {
        id: AccountId(row.get(0)?),
        number: row.get(1)?,
        owner: row.get(2)?,
        currency: Currency::from_code(&currency).map_err(|error| corrupt("currency", error))?,
        kind: AccountKind::parse(&kind).ok_or_else(|| corrupt("account kind", &kind))?,
        status: AccountStatus::parse(&status).ok_or_else(|| corrupt("account status", &status))?,
        credit_limit: amount(6)?,
        balances: Balances {
            debits_posted: amount(7)?,
            credits_posted: amount(8)?,
            debits_pending: amount(9)?,
            credits_pending: amount(10)?,
        },
        bank_overdraft: row.get(11)?,
        last_seq: row.get(12)?,
        created_at_us: row.get(13)?,
    })
}

fn id_from_blob(blob: Vec<u8>) -> rusqlite::Result<TransferId> {
    let bytes: [u8; 16] = blob.try_into().map_err(|_| corrupt("transfer id", "not 16 bytes"))?;
    Ok(TransferId::from_bytes(bytes))
}

fn transfer_from_row(row: &Row<'_>) -> rusqlite::Result<Transfer> {
    let currency: String = row.get(5)?;
    let kind: String = row.get(6)?;
    let op: String = row.get(7)?;
    let reference = row.get::<_, Option<Vec<u8>>>(8)?.map(id_from_blob).transpose()?;
    let timeout_s = row
        .get::<_, Option<i64>>(9)?
        .map(|timeout| u32::try_from(timeout).map_err(|error| corrupt("timeout", error)))
        .transpose()?;
    let state: String = row.get(10)?;
    let amount: i64 = row.get(4)?;
    Ok(Transfer {
        seq: row.get(0)?,
        id: id_from_blob(row.get(1)?)?,
        debit_account: AccountId(row.get(2)?),
        credit_account: AccountId(row.get(3)?),
        amount: Amount::try_from_minor(amount).map_err(|error| corrupt("amount", error))?,
        currency: Currency::from_code(&currency).map_err(|error| corrupt("currency", error))?,
        kind: TransferKind::parse(&kind).ok_or_else(|| corrupt("transfer kind", &kind))?,
        op: TransferOp::from_parts(&op, reference, timeout_s).ok_or_else(|| corrupt("transfer op", &op))?,
        state: TransferState::parse(&state).ok_or_else(|| corrupt("transfer state", &state))?,
        linked: row.get(11)?,
        bank_debit: row.get(12)?,
        description: row.get(13)?,
        chain_id: row.get::<_, Option<Vec<u8>>>(14)?.map(id_from_blob).transpose()?,
        expires_at_us: row.get(15)?,
        created_at_us: row.get(16)?,
        debit_balance_after: row.get(17)?,
        credit_balance_after: row.get(18)?,
        prev_debit_seq: row.get(19)?,
        prev_credit_seq: row.get(20)?,
        overdraft: row.get(21)?,
    })
}

fn read_account(connection: &Connection, id: AccountId) -> rusqlite::Result<Option<Account>> {
    connection
        .prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"))?
        .query_row([id.0], account_from_row)
        .optional()
}

fn insert_account(connection: &Connection, account: &NewAccount, now_us: i64) -> Result<AccountId, StoreError> {
    account.validate()?;
    let result = connection
        .prepare_cached(
            "INSERT INTO accounts (number, owner_id, currency, kind, status, credit_limit, created_at_us)
             VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6)",
        )
        .and_then(|mut statement| {
            statement.insert(params![
                account.number,
                account.owner,
                account.currency.code(),
                account.kind.as_str(),
                account.credit_limit.minor(),
                now_us
            ])
        });
    match result {
        Ok(id) => Ok(AccountId(id)),
        Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            if error.to_string().contains("accounts.number") {
                Err(StoreError::Account(AccountError::NumberTaken))
            } else {
                Err(db_error(error))
            }
        }
        Err(error) => Err(db_error(error)),
    }
}

/// Rows written per INSERT or UPDATE statement. Multi-row statements pay
/// SQLite's per-statement costs (including the lookup tables it builds for
/// the schema's `IN (…)` checks) once per chunk instead of once per row.
const ROWS_PER_STATEMENT: usize = 64;
const TRANSFER_COLUMN_COUNT: usize = 22;

fn insert_transfers_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; TRANSFER_COLUMN_COUNT].join(", "));
    format!("INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES {}", vec![row; rows].join(", "))
}

fn update_accounts_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "UPDATE accounts SET debits_posted = v.column2, credits_posted = v.column3, debits_pending = v.column4,
             credits_pending = v.column5, bank_overdraft = v.column6, last_seq = v.column7
         FROM (VALUES {values}) AS v WHERE accounts.id = v.column1"
    )
}

/// Binds one transfer's columns, in TRANSFER_COLUMNS order, after `offset`.
fn bind_transfer(statement: &mut rusqlite::Statement<'_>, offset: usize, transfer: &Transfer) -> rusqlite::Result<()> {
    let at = |column: usize| offset + column;
    statement.raw_bind_parameter(at(1), transfer.seq)?;
    statement.raw_bind_parameter(at(2), transfer.id.to_bytes())?;
    statement.raw_bind_parameter(at(3), transfer.debit_account.0)?;
    statement.raw_bind_parameter(at(4), transfer.credit_account.0)?;
    statement.raw_bind_parameter(at(5), transfer.amount.minor())?;
    statement.raw_bind_parameter(at(6), transfer.currency.code())?;
    statement.raw_bind_parameter(at(7), transfer.kind.as_str())?;
    statement.raw_bind_parameter(at(8), transfer.op.name())?;
    statement.raw_bind_parameter(at(9), transfer.op.reference().map(TransferId::to_bytes))?;
    statement.raw_bind_parameter(at(10), transfer.op.timeout_s())?;
    statement.raw_bind_parameter(at(11), transfer.state.as_str())?;
    statement.raw_bind_parameter(at(12), transfer.linked)?;
    statement.raw_bind_parameter(at(13), transfer.bank_debit)?;
    statement.raw_bind_parameter(at(14), transfer.description.as_str())?;
    statement.raw_bind_parameter(at(15), transfer.chain_id.map(TransferId::to_bytes))?;
    statement.raw_bind_parameter(at(16), transfer.expires_at_us)?;
    statement.raw_bind_parameter(at(17), transfer.created_at_us)?;
    statement.raw_bind_parameter(at(18), transfer.debit_balance_after)?;
    statement.raw_bind_parameter(at(19), transfer.credit_balance_after)?;
    statement.raw_bind_parameter(at(20), transfer.prev_debit_seq)?;
    statement.raw_bind_parameter(at(21), transfer.prev_credit_seq)?;
    statement.raw_bind_parameter(at(22), transfer.overdraft)
}

/// Loads what a batch needs, applies the rules and writes the effects, all
/// inside the caller's `BEGIN IMMEDIATE` transaction.
fn apply_in_transaction(
    transaction: &rusqlite::Transaction<'_>,
    requests: &[Vec<NewTransfer>],
    now_us: i64,
) -> rusqlite::Result<Vec<Vec<TransferOutcome>>> {
    let mut state = LedgerState::default();
    {
        let mut by_id =
            transaction.prepare_cached(&format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1"))?;
        let mut reversed =
            transaction.prepare_cached("SELECT 1 FROM transfers WHERE ref_id = ?1 AND op = 'reverse'")?;
        // Ids sort like their bytes, so an id above the largest stored one
        // cannot exist yet: with time-ordered ids that skips nearly every
        // lookup of a new transfer.
        let largest: Option<Vec<u8>> = transaction.query_row("SELECT MAX(id) FROM transfers", [], |row| row.get(0))?;
        for id in LedgerState::transfer_ids_needed(requests) {
            if largest.as_deref().is_none_or(|largest| id.to_bytes().as_slice() > largest) {
                continue;
            }
            if let Some(transfer) = by_id.query_row([id.to_bytes()], transfer_from_row).optional()? {
                state.transfers.insert(id, transfer);
            }
        }
        for request in requests.iter().flatten() {
            if let TransferOp::Reverse { original_id } = request.op
                && reversed.exists([original_id.to_bytes()])?
            {
                state.reversed.insert(original_id);
            }
        }
        // Accounts are read many per statement, like the writes below.
        for chunk in LedgerState::account_ids_needed(requests).chunks(ROWS_PER_STATEMENT) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let mut statement = transaction
                .prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id IN ({placeholders})"))?;
            let mut rows = statement.query(rusqlite::params_from_iter(chunk.iter().map(|id| id.0)))?;
            while let Some(row) = rows.next()? {
                let found = account_from_row(row)?;
                state.accounts.insert(found.id, found);
            }
        }
    }
    // BEGIN IMMEDIATE holds the write lock, so no other writer (even in
    // another process) can take these numbers.
    let mut next: i64 =
        transaction.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM transfers", [], |row| row.get(0))?;
    let mut next_seq = || {
        let seq = next;
        next += 1;
        seq
    };
    // History chains must run backwards in time for `balance_at`; if the
    // clock stepped back, keep stamping at the newest time already used.
    let newest: i64 = transaction.query_row(
        "SELECT COALESCE((SELECT created_at_us FROM transfers ORDER BY seq DESC LIMIT 1), 0)",
        [],
        |row| row.get(0),
    )?;
    let effects = apply_batch(&mut state, requests, now_us.max(newest), &mut next_seq);

    for chunk in effects.inserted.chunks(ROWS_PER_STATEMENT) {
        let mut insert = transaction.prepare_cached(&insert_transfers_sql(chunk.len()))?;
        for (row, transfer) in chunk.iter().enumerate() {
            bind_transfer(&mut insert, row * TRANSFER_COLUMN_COUNT, transfer)?;
        }
        insert.raw_execute()?;
    }
    let mut resolve =
        transaction.prepare_cached("UPDATE transfers SET state = ?2 WHERE id = ?1 AND state = 'pending'")?;
    for (id, new_state) in &effects.resolved {
        if resolve.execute(params![id.to_bytes(), new_state.as_str()])? != 1 {
            return Err(corrupt("pending transfer", format!("{id} was not pending")));
        }
    }
    let touched: Vec<&Account> = effects.touched_accounts.iter().filter_map(|id| state.accounts.get(id)).collect();
    for chunk in touched.chunks(ROWS_PER_STATEMENT) {
        let mut update = transaction.prepare_cached(&update_accounts_sql(chunk.len()))?;
        for (row, account) in chunk.iter().enumerate() {
            let base = row * 7;
            let balances = account.balances;
            update.raw_bind_parameter(base + 1, account.id.0)?;
            update.raw_bind_parameter(base + 2, balances.debits_posted.minor())?;
            update.raw_bind_parameter(base + 3, balances.credits_posted.minor())?;
            update.raw_bind_parameter(base + 4, balances.debits_pending.minor())?;
            update.raw_bind_parameter(base + 5, balances.credits_pending.minor())?;
            update.raw_bind_parameter(base + 6, account.bank_overdraft)?;
            update.raw_bind_parameter(base + 7, account.last_seq)?;
        }
        if update.raw_execute()? != chunk.len() {
            return Err(corrupt("account", "an account to update vanished"));
        }
    }
    Ok(effects.outcomes)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|error| StoreError::Unavailable(format!("cannot create {}: {error}", parent.display())))?;
            }
            let mut writer = open_connection(&path, WRITER_CACHE_KIB)?;
            migrate(&mut writer)?;
            Ok(SqliteStore {
                inner: Arc::new(Inner {
                    path,
                    writer: Mutex::new(writer),
                    readers: Mutex::new(Vec::new()),
                    read_slots: Arc::new(tokio::sync::Semaphore::new(READERS_MAX)),
                    chain: OnceLock::new(),
                }),
            })
        })
        .await
        .map_err(|error| StoreError::Database(format!("the database thread failed: {error}")))?
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on the write connection, on a blocking thread.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut connection = inner
                .writer
                .lock()
                .map_err(|_| StoreError::Database("a previous write panicked; restart the server".into()))?;
            work(&mut connection)
        })
        .await
        .map_err(|error| StoreError::Database(format!("the database thread failed: {error}")))?
    }

    /// Runs `work` on a pooled read connection, on a blocking thread.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let slot = Arc::clone(&inner.read_slots)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the database is closing".into()))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let pooled = inner.readers.lock().ok().and_then(|mut readers| readers.pop());
            let mut connection = match pooled {
                Some(connection) => connection,
                None => open_connection(&inner.path, READER_CACHE_KIB)?,
            };
            let result = work(&mut connection);
            // A connection left inside a transaction by an error is not
            // returned to the pool.
            if connection.is_autocommit()
                && let Ok(mut readers) = inner.readers.lock()
                && readers.len() < READERS_MAX
            {
                readers.push(connection);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Database(format!("the database thread failed: {error}")))?
    }
}

#[async_trait]
impl LedgerStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create_account(&self, account: NewAccount, now_us: i64) -> Result<Account, StoreError> {
        self.write(move |connection| {
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
            let id = insert_account(&transaction, &account, now_us)?;
            let created = read_account(&transaction, id)
                .map_err(db_error)?
                .ok_or_else(|| StoreError::Corrupt("a new account vanished".into()))?;
            transaction.commit().map_err(db_error)?;
            Ok(created)
        })
        .await
    }

    async fn create_accounts(&self, accounts: Vec<NewAccount>, now_us: i64) -> Result<Vec<AccountId>, StoreError> {
        self.write(move |connection| {
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
            let ids = accounts
                .iter()
                .map(|account| insert_account(&transaction, account, now_us))
                .collect::<Result<Vec<_>, _>>()?;
            transaction.commit().map_err(db_error)?;
            Ok(ids)
        })
        .await
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.read(move |connection| read_account(connection, id).map_err(db_error)).await
    }

    async fn account_by_number(&self, number: &str) -> Result<Option<Account>, StoreError> {
        let number = number.to_owned();
        self.read(move |connection| {
            connection
                .prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE number = ?1"))
                .and_then(|mut statement| statement.query_row([number], account_from_row).optional())
                .map_err(db_error)
        })
        .await
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        self.read(move |connection| {
            // One read transaction: every balance comes from the same snapshot.
            let transaction = connection.transaction().map_err(db_error)?;
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(account) = read_account(&transaction, id).map_err(db_error)? {
                    found.push(account);
                }
            }
            transaction.commit().map_err(db_error)?;
            Ok(found)
        })
        .await
    }

    async fn set_account_status(&self, id: AccountId, status: AccountStatus) -> Result<Account, StoreError> {
        self.write(move |connection| {
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
            let mut account = read_account(&transaction, id).map_err(db_error)?.ok_or(AccountError::NotFound)?;
            check_status_change(&account, status)?;
            transaction
                .execute("UPDATE accounts SET status = ?2 WHERE id = ?1", params![id.0, status.as_str()])
                .map_err(db_error)?;
            transaction.commit().map_err(db_error)?;
            account.status = status;
            Ok(account)
        })
        .await
    }

    async fn set_credit_limit(&self, id: AccountId, credit_limit: Amount) -> Result<Account, StoreError> {
        self.write(move |connection| {
            if credit_limit.is_negative() {
                return Err(AccountError::NegativeCreditLimit.into());
            }
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
            let mut account = read_account(&transaction, id).map_err(db_error)?.ok_or(AccountError::NotFound)?;
            if account.status == AccountStatus::Closed {
                return Err(AccountError::Closed.into());
            }
            transaction
                .execute("UPDATE accounts SET credit_limit = ?2 WHERE id = ?1", params![id.0, credit_limit.minor()])
                .map_err(|error| match error.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::ConstraintViolation) => {
                        StoreError::Database("the new credit limit is below what the account already uses".into())
                    }
                    _ => db_error(error),
                })?;
            transaction.commit().map_err(db_error)?;
            account.credit_limit = credit_limit;
            Ok(account)
        })
        .await
    }

    async fn apply_journaled(
        &self,
        requests: Vec<Vec<NewTransfer>>,
        journal: Vec<Option<kassa_store::AuditDraft>>,
        now_us: i64,
    ) -> Result<Vec<Vec<TransferOutcome>>, StoreError> {
        let store = self.clone();
        self.write(move |connection| {
            let chain =
                if journal.iter().any(Option::is_some) { Some(sqltx::ensure_chain(&store, connection)?) } else { None };
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
            let outcomes = apply_in_transaction(&transaction, &requests, now_us).map_err(db_error)?;
            if let Some(chain) = chain {
                let events = kassa_store::journal_with_outcomes(journal, &outcomes);
                kassa_store::audit::append(
                    &mut sqltx::SqliteTx { connection: &transaction, chain: Some(chain) },
                    chain,
                    now_us,
                    &events,
                )?;
            }
            transaction.commit().map_err(db_error)?;
            Ok(outcomes)
        })
        .await
    }

    async fn transfer(&self, id: TransferId) -> Result<Option<Transfer>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1"))
                .and_then(|mut statement| statement.query_row([id.to_bytes()], transfer_from_row).optional())
                .map_err(db_error)
        })
        .await
    }

    async fn history(
        &self,
        account: AccountId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Transfer>, StoreError> {
        let limit = limit.min(1000);
        self.read(move |connection| {
            let transaction = connection.transaction().map_err(db_error)?;
            let head = read_account(&transaction, account).map_err(db_error)?.ok_or(AccountError::NotFound)?.last_seq;
            let start = match before_seq {
                None => head,
                Some(cursor) => transaction
                    .query_row(
                        "SELECT CASE WHEN debit_account_id = ?2 THEN prev_debit_seq ELSE prev_credit_seq END
                         FROM transfers WHERE seq = ?1 AND (debit_account_id = ?2 OR credit_account_id = ?2)",
                        params![cursor, account.0],
                        |row| row.get::<_, Option<i64>>(0),
                    )
                    .optional()
                    .map_err(db_error)?
                    .flatten(),
            };
            let Some(start) = start.filter(|_| limit > 0) else {
                return Ok(Vec::new());
            };
            let columns =
                TRANSFER_COLUMNS.split(", ").map(|column| format!("t.{column}")).collect::<Vec<_>>().join(", ");
            let transfers = transaction
                .prepare_cached(&format!(
                    "WITH RECURSIVE chain(seq, depth) AS (
                         SELECT ?1, 1
                         UNION ALL
                         SELECT CASE WHEN t.debit_account_id = ?2 THEN t.prev_debit_seq ELSE t.prev_credit_seq END,
                                chain.depth + 1
                         FROM chain JOIN transfers t ON t.seq = chain.seq
                         WHERE chain.depth < ?3
                     )
                     SELECT {columns} FROM chain JOIN transfers t ON t.seq = chain.seq ORDER BY chain.depth"
                ))
                .and_then(|mut statement| {
                    statement
                        .query_map(params![start, account.0, limit], transfer_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db_error)?;
            transaction.commit().map_err(db_error)?;
            Ok(transfers)
        })
        .await
    }

    async fn balance_at(&self, account: AccountId, at_us: i64) -> Result<i64, StoreError> {
        self.read(move |connection| {
            let transaction = connection.transaction().map_err(db_error)?;
            let head = read_account(&transaction, account).map_err(db_error)?.ok_or(AccountError::NotFound)?.last_seq;
            let Some(head) = head else {
                return Ok(0);
            };
            let balance = transaction
                .prepare_cached(
                    "WITH RECURSIVE chain(seq) AS (
                         SELECT ?1
                         UNION ALL
                         SELECT CASE WHEN t.debit_account_id = ?2 THEN t.prev_debit_seq ELSE t.prev_credit_seq END
                         FROM chain JOIN transfers t ON t.seq = chain.seq
                         WHERE t.created_at_us > ?3
                     )
                     SELECT CASE WHEN t.debit_account_id = ?2 THEN t.debit_balance_after ELSE t.credit_balance_after END
                     FROM chain JOIN transfers t ON t.seq = chain.seq
                     WHERE t.created_at_us <= ?3 LIMIT 1",
                )
                .and_then(|mut statement| {
                    statement.query_row(params![head, account.0, at_us], |row| row.get::<_, i64>(0)).optional()
                })
                .map_err(db_error)?;
            transaction.commit().map_err(db_error)?;
            Ok(balance.unwrap_or(0))
        })
        .await
    }

    async fn expired_pending(&self, now_us: i64, limit: u32) -> Result<Vec<Transfer>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {TRANSFER_COLUMNS} FROM transfers
                     WHERE state = 'pending' AND expires_at_us IS NOT NULL AND expires_at_us <= ?1
                     ORDER BY expires_at_us LIMIT ?2"
                ))
                .and_then(|mut statement| {
                    statement
                        .query_map(params![now_us, limit], transfer_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db_error)
        })
        .await
    }

    async fn check_inputs(&self) -> Result<CheckInputs, StoreError> {
        self.read(|connection| check_inputs(connection).map_err(db_error)).await
    }
}

fn check_inputs(connection: &mut Connection) -> rusqlite::Result<CheckInputs> {
    let transaction = connection.transaction()?;
    let mut totals: HashMap<i64, (Totals, Option<i64>)> = HashMap::new();
    for side in ["debit", "credit"] {
        let mut statement = transaction.prepare(&format!(
            "SELECT {side}_account_id,
                    CAST(COALESCE(SUM(amount) FILTER (WHERE op IN ('single', 'post', 'reverse')), 0) AS TEXT),
                    CAST(COALESCE(SUM(amount) FILTER (WHERE op = 'pending' AND state = 'pending'), 0) AS TEXT),
                    MAX(seq)
             FROM transfers GROUP BY {side}_account_id"
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let parse = |index: usize| -> rusqlite::Result<i128> {
                let text: String = row.get(index)?;
                text.parse::<i128>().map_err(|error| corrupt("sum", error))
            };
            let entry = totals.entry(row.get(0)?).or_default();
            let (posted, pending) = (parse(1)?, parse(2)?);
            if side == "debit" {
                entry.0.debits_posted = posted;
                entry.0.debits_pending = pending;
            } else {
                entry.0.credits_posted = posted;
                entry.0.credits_pending = pending;
            }
            let max_seq: Option<i64> = row.get(3)?;
            entry.1 = entry.1.max(max_seq);
        }
    }
    let mut accounts = Vec::new();
    {
        let mut statement = transaction.prepare(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"))?;
        let mut balance_after = transaction.prepare(
            "SELECT CASE WHEN debit_account_id = ?2 THEN debit_balance_after ELSE credit_balance_after END
             FROM transfers WHERE seq = ?1",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let account = account_from_row(row)?;
            let (from_transfers, max_seq) = totals.remove(&account.id.0).unwrap_or_default();
            let newest_balance_after = match max_seq {
                Some(seq) => balance_after.query_row(params![seq, account.id.0], |row| row.get(0)).optional()?,
                None => None,
            };
            accounts.push(AccountCheckRow { account, from_transfers, max_seq, newest_balance_after });
        }
    }
    let transfers: i64 = transaction.query_row("SELECT COUNT(*) FROM transfers", [], |row| row.get(0))?;
    let mut bad_transfers = Vec::new();
    {
        let mut statement = transaction.prepare(
            "SELECT t.id,
                    CASE WHEN t.amount <= 0 THEN 'amount is not positive'
                         WHEN t.debit_account_id = t.credit_account_id THEN 'debits and credits the same account'
                         WHEN d.id IS NULL THEN 'debit account does not exist'
                         WHEN c.id IS NULL THEN 'credit account does not exist'
                         ELSE 'currency differs from an account''s currency' END
             FROM transfers t
             LEFT JOIN accounts d ON d.id = t.debit_account_id
             LEFT JOIN accounts c ON c.id = t.credit_account_id
             WHERE t.amount <= 0 OR t.debit_account_id = t.credit_account_id OR d.id IS NULL OR c.id IS NULL
                OR d.currency <> t.currency OR c.currency <> t.currency",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            bad_transfers.push(BadTransfer { id: id_from_blob(row.get(0)?)?, reason: row.get(1)? });
        }
    }
    {
        let mut statement = transaction.prepare(kassa_store::BROKEN_HISTORY_LINKS_SQL)?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            bad_transfers.push(BadTransfer { id: id_from_blob(row.get(0)?)?, reason: row.get(1)? });
        }
    }
    for (account, _) in totals {
        bad_transfers.push(BadTransfer {
            id: TransferId(0),
            reason: format!("transfers name account {account}, which does not exist"),
        });
    }
    let overdrawn_by_bank = transaction
        .prepare(kassa_store::OVERDRAWN_BY_BANK_SQL)?
        .query_map([], |row| Ok(AccountId(row.get(0)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    transaction.commit()?;
    Ok(CheckInputs { accounts, transfers: u64::try_from(transfers).unwrap_or(0), bad_transfers, overdrawn_by_bank })
}
