//! Kassa's PostgreSQL storage engine.
//!
//! [`PostgresStore`] implements [`LedgerStore`] on a pool of connections. It
//! holds no rules of its own: the money path loads what a batch needs, runs
//! [`kassa_core::ledger::apply_batch`] and writes back its effects in one
//! transaction (see `apply`), and several processes may do so against one
//! database at the same time.

mod apply;
mod check;
mod error;
mod migrate;
mod rows;
mod sqltx;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use kassa_core::ledger::{
    self, Account, AccountError, AccountStatus, NewAccount, NewTransfer, Transfer, TransferOutcome,
};
use kassa_core::{AccountId, Amount, TransferId};
use kassa_store::{CheckInputs, LedgerStore, StoreError};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::error::{db_error, is_unique_violation_on, pool_error, sqlstate};
use crate::rows::{ACCOUNT_COLUMNS, TRANSFER_COLUMNS, account_from_row, get, transfer_from_row, uuid};

/// The most transfers one `history` call returns, so that a careless caller
/// cannot make one query walk an account's whole life.
const HISTORY_LIMIT_MAX: u32 = 1000;

/// How long to wait for a server that does not answer, unless the URL says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller waits for a free pooled connection before the store
/// reports itself unavailable instead of hanging.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The unique constraint PostgreSQL names for `accounts.number`.
const ACCOUNT_NUMBER_CONSTRAINT: &str = "accounts_number_key";

/// The PostgreSQL ledger store: a pool of connections to one database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    chains: std::sync::Arc<sqltx::Chains>,
}

impl fmt::Debug for PostgresStore {
    // The pool's configuration holds the password, so only its size is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("pool_size", &self.pool.status().max_size).finish()
    }
}

impl PostgresStore {
    /// Opens a pool of up to `pool_size` connections to the database named by
    /// `url` and applies any missing migrations. Errors never repeat the URL,
    /// since it may carry a password.
    pub async fn connect(url: &str, pool_size: usize) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|error: tokio_postgres::Error| {
            StoreError::BadUrl(format!("the PostgreSQL URL could not be read: {}", error::describe(&error)))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A commit is acknowledged only once it is durable, whatever the
        // server's or the URL's defaults say: the ledger answers callers
        // after COMMIT returns, so COMMIT must mean "on disk".
        //
        // (Statements stay prepared for a connection's life, and PostgreSQL
        // may switch one to a generic plan after five runs; on a brand-new
        // database that plan is made for empty tables — a sequential scan of
        // `transfers` — until autovacuum's first ANALYZE of the growing
        // table, within a minute or so, invalidates it. Forcing a custom
        // plan for every run avoids that minute but costs about a quarter of
        // the ledger's throughput for ever, measured; see docs/PERFORMANCE.md.)
        let ours = "-c synchronous_commit=on";
        let options = match config.get_options() {
            Some(existing) => format!("{existing} {ours}"),
            None => ours.to_owned(),
        };
        config.options(&options);
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .build()
            .map_err(|error| StoreError::Unavailable(format!("could not build the PostgreSQL pool: {error}")))?;
        migrate::run(&pool).await?;
        Ok(PostgresStore { pool, chains: Default::default() })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Locks an account for a change of its settings, checks it with
    /// `decide`, applies `update` (which gets the id as `$1` and `value` as
    /// `$2`) and returns the account as updated, all in one transaction.
    async fn change_account<V>(
        &self,
        id: AccountId,
        context: &'static str,
        decide: impl FnOnce(&Account) -> Result<(), StoreError> + Send,
        update: &'static str,
        value: V,
    ) -> Result<Account, StoreError>
    where
        V: tokio_postgres::types::ToSql + Sync + Send,
    {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|error| db_error(context, &error))?;
        let result = async {
            let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = $1 FOR UPDATE");
            let row = tx.query_opt(&sql, &[&id.0]).await.map_err(|error| db_error(context, &error))?;
            let account = account_from_row(&row.ok_or(AccountError::NotFound)?)?;
            decide(&account)?;
            let sql = format!("UPDATE accounts a SET {update} WHERE a.id = $1 RETURNING {ACCOUNT_COLUMNS}");
            let row = tx.query_one(&sql, &[&id.0, &value]).await.map_err(|error| {
                if sqlstate(&error) == Some(&SqlState::CHECK_VIOLATION) {
                    StoreError::Database(format!(
                        "{context}: the account's current balances do not allow it (it would break the \
                         accounts table's check constraint)"
                    ))
                } else {
                    db_error(context, &error)
                }
            })?;
            account_from_row(&row)
        }
        .await;
        match result {
            Ok(account) => {
                tx.commit().await.map_err(|error| db_error(context, &error))?;
                Ok(account)
            }
            Err(error) => {
                if tx.rollback().await.is_err() {
                    // The connection may still be inside the transaction;
                    // it must not go back to the pool like that.
                    drop(deadpool_postgres::Object::take(client));
                }
                Err(error)
            }
        }
    }
}

#[async_trait]
impl LedgerStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn concurrent_batches_max(&self) -> usize {
        // Leave at least half of the pool to readers.
        (self.pool.status().max_size / 2).max(1)
    }

    async fn create_account(&self, account: NewAccount, now_us: i64) -> Result<Account, StoreError> {
        account.validate()?;
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO accounts AS a (number, owner_id, currency, kind, status, credit_limit, created_at_us) \
             VALUES ($1, $2, $3, $4, 'active', $5, $6) RETURNING {ACCOUNT_COLUMNS}"
        );
        let context = "opening an account";
        let statement = client.prepare_cached(&sql).await.map_err(|error| db_error(context, &error))?;
        let row = client
            .query_one(
                &statement,
                &[
                    &account.number,
                    &account.owner,
                    &account.currency.code(),
                    &account.kind.as_str(),
                    &account.credit_limit.minor(),
                    &now_us,
                ],
            )
            .await
            .map_err(|error| account_insert_error(context, &error))?;
        account_from_row(&row)
    }

    async fn create_accounts(&self, accounts: Vec<NewAccount>, now_us: i64) -> Result<Vec<AccountId>, StoreError> {
        for account in &accounts {
            account.validate()?;
        }
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let numbers: Vec<&str> = accounts.iter().map(|a| a.number.as_str()).collect();
        let owners: Vec<Option<i64>> = accounts.iter().map(|a| a.owner).collect();
        let currencies: Vec<&str> = accounts.iter().map(|a| a.currency.code()).collect();
        let kinds: Vec<&str> = accounts.iter().map(|a| a.kind.as_str()).collect();
        let limits: Vec<i64> = accounts.iter().map(|a| a.credit_limit.minor()).collect();
        let client = self.client().await?;
        let context = "opening accounts";
        // One statement is one transaction, so the accounts are opened all
        // or none. The ids come back with their numbers, which are unique,
        // so the result is put in input order without trusting the order of
        // RETURNING.
        let statement = client
            .prepare_cached(
                "INSERT INTO accounts (number, owner_id, currency, kind, status, credit_limit, created_at_us) \
                 SELECT u.number, u.owner_id, u.currency, u.kind, 'active', u.credit_limit, $6 \
                 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[]) \
                     WITH ORDINALITY AS u(number, owner_id, currency, kind, credit_limit, ord) \
                 ORDER BY u.ord \
                 RETURNING id, number",
            )
            .await
            .map_err(|error| db_error(context, &error))?;
        let rows = client
            .query(&statement, &[&numbers, &owners, &currencies, &kinds, &limits, &now_us])
            .await
            .map_err(|error| account_insert_error(context, &error))?;
        let mut ids = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            ids.insert(get::<String>(row, "number")?, AccountId(get(row, "id")?));
        }
        numbers
            .iter()
            .map(|number| {
                ids.get(*number).copied().ok_or_else(|| {
                    StoreError::Database(format!("{context}: account {number:?} was not returned by the insert"))
                })
            })
            .collect()
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = $1");
        let context = "reading an account";
        let statement = client.prepare_cached(&sql).await.map_err(|error| db_error(context, &error))?;
        let row = client.query_opt(&statement, &[&id.0]).await.map_err(|error| db_error(context, &error))?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn account_by_number(&self, number: &str) -> Result<Option<Account>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.number = $1");
        let context = "reading an account by number";
        let statement = client.prepare_cached(&sql).await.map_err(|error| db_error(context, &error))?;
        let row = client.query_opt(&statement, &[&number]).await.map_err(|error| db_error(context, &error))?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let client = self.client().await?;
        // One statement sees one snapshot, so the balances are consistent
        // with each other.
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ANY($1) ORDER BY a.id");
        let context = "reading accounts";
        let statement = client.prepare_cached(&sql).await.map_err(|error| db_error(context, &error))?;
        let rows = client.query(&statement, &[&ids]).await.map_err(|error| db_error(context, &error))?;
        rows.iter().map(account_from_row).collect()
    }

    async fn set_account_status(&self, id: AccountId, status: AccountStatus) -> Result<Account, StoreError> {
        self.change_account(
            id,
            "changing an account's status",
            |account| ledger::check_status_change(account, status).map_err(StoreError::Account),
            "status = $2",
            status.as_str(),
        )
        .await
    }

    async fn set_credit_limit(&self, id: AccountId, credit_limit: Amount) -> Result<Account, StoreError> {
        if credit_limit.is_negative() {
            return Err(AccountError::NegativeCreditLimit.into());
        }
        self.change_account(
            id,
            "changing an account's credit limit",
            |account| {
                if account.status == AccountStatus::Closed { Err(AccountError::Closed.into()) } else { Ok(()) }
            },
            "credit_limit = $2",
            credit_limit.minor(),
        )
        .await
    }

    async fn apply_journaled(
        &self,
        requests: Vec<Vec<NewTransfer>>,
        journal: Vec<Option<kassa_store::AuditDraft>>,
        now_us: i64,
    ) -> Result<Vec<Vec<TransferOutcome>>, StoreError> {
        let chain = if journal.iter().any(Option::is_some) { Some(self.chain().await?) } else { None };
        apply::apply(&self.pool, &requests, &journal, chain, now_us).await
    }

    async fn transfer(&self, id: TransferId) -> Result<Option<Transfer>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers t WHERE t.id = $1");
        let context = "reading a transfer";
        let statement = client.prepare_cached(&sql).await.map_err(|error| db_error(context, &error))?;
        let row = client.query_opt(&statement, &[&uuid(id)]).await.map_err(|error| db_error(context, &error))?;
        row.as_ref().map(transfer_from_row).transpose()
    }

    async fn history(
        &self,
        account: AccountId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Transfer>, StoreError> {
        let client = self.client().await?;
        let context = "reading an account's history";
        let head = history_head(&client, account).await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = match before_seq {
            None => head,
            Some(cursor) => {
                // The page starts at the cursor's link for this account; a
                // cursor that is not one of this account's transfers names
                // no position in its history, so the page is empty.
                let statement = client
                    .prepare_cached(
                        "SELECT CASE WHEN debit_account_id = $2 THEN prev_debit_seq ELSE prev_credit_seq END \
                             AS prev_seq \
                         FROM transfers WHERE seq = $1 AND (debit_account_id = $2 OR credit_account_id = $2)",
                    )
                    .await
                    .map_err(|error| db_error(context, &error))?;
                let row = client
                    .query_opt(&statement, &[&cursor, &account.0])
                    .await
                    .map_err(|error| db_error(context, &error))?;
                match row {
                    Some(row) => get::<Option<i64>>(&row, "prev_seq")?,
                    None => None,
                }
            }
        };
        let Some(start) = start else {
            return Ok(Vec::new());
        };
        let depth = i32::try_from(limit.min(HISTORY_LIMIT_MAX)).unwrap_or(1000);
        // Each account's history is a chain through the transfers; the walk
        // follows this account's link at every step, one primary key lookup
        // per transfer, and stops after `limit` of them.
        let sql = format!(
            "WITH RECURSIVE chain(seq, depth) AS (
                 SELECT $1::bigint, 1
                 UNION ALL
                 SELECT CASE WHEN t.debit_account_id = $2 THEN t.prev_debit_seq ELSE t.prev_credit_seq END,
                        chain.depth + 1
                 FROM chain JOIN transfers t ON t.seq = chain.seq
                 WHERE chain.depth < $3
             )
             SELECT {TRANSFER_COLUMNS} FROM chain JOIN transfers t ON t.seq = chain.seq ORDER BY chain.depth"
        );
        let statement = client.prepare_cached(&sql).await.map_err(|error| db_error(context, &error))?;
        let rows =
            client.query(&statement, &[&start, &account.0, &depth]).await.map_err(|error| db_error(context, &error))?;
        rows.iter().map(transfer_from_row).collect()
    }

    async fn balance_at(&self, account: AccountId, at_us: i64) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let context = "reading a past balance";
        let Some(head) = history_head(&client, account).await? else {
            return Ok(0);
        };
        // Walks back from the newest transfer while transfers are newer than
        // `at_us`; the first one at or before it holds the answer.
        let statement = client
            .prepare_cached(
                "WITH RECURSIVE walk(seq) AS (
                     SELECT $1::bigint
                     UNION ALL
                     SELECT CASE WHEN t.debit_account_id = $2 THEN t.prev_debit_seq ELSE t.prev_credit_seq END
                     FROM walk JOIN transfers t ON t.seq = walk.seq
                     WHERE t.created_at_us > $3
                 )
                 SELECT CASE WHEN t.debit_account_id = $2 THEN t.debit_balance_after
                             ELSE t.credit_balance_after END AS balance
                 FROM walk JOIN transfers t ON t.seq = walk.seq
                 WHERE t.created_at_us <= $3
                 LIMIT 1",
            )
            .await
            .map_err(|error| db_error(context, &error))?;
        let row = client
            .query_opt(&statement, &[&head, &account.0, &at_us])
            .await
            .map_err(|error| db_error(context, &error))?;
        match row {
            Some(row) => get(&row, "balance"),
            None => Ok(0),
        }
    }

    async fn expired_pending(&self, now_us: i64, limit: u32) -> Result<Vec<Transfer>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let context = "reading expired pending transfers";
        let sql = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers t \
             WHERE t.state = 'pending' AND t.expires_at_us IS NOT NULL AND t.expires_at_us <= $1 \
             ORDER BY t.expires_at_us, t.seq LIMIT $2"
        );
        let statement = client.prepare_cached(&sql).await.map_err(|error| db_error(context, &error))?;
        let rows =
            client.query(&statement, &[&now_us, &i64::from(limit)]).await.map_err(|error| db_error(context, &error))?;
        rows.iter().map(transfer_from_row).collect()
    }

    async fn check_inputs(&self) -> Result<CheckInputs, StoreError> {
        check::check_inputs(&self.pool).await
    }
}

/// The head of an account's history chain, or `AccountError::NotFound`.
async fn history_head(client: &deadpool_postgres::Object, account: AccountId) -> Result<Option<i64>, StoreError> {
    let context = "reading an account's history head";
    let statement = client
        .prepare_cached("SELECT last_seq FROM accounts WHERE id = $1")
        .await
        .map_err(|error| db_error(context, &error))?;
    let row = client.query_opt(&statement, &[&account.0]).await.map_err(|error| db_error(context, &error))?;
    match row {
        Some(row) => get(&row, "last_seq"),
        None => Err(AccountError::NotFound.into()),
    }
}

/// A taken account number is the caller's mistake, not a database failure.
fn account_insert_error(context: &'static str, error: &tokio_postgres::Error) -> StoreError {
    if is_unique_violation_on(error, ACCOUNT_NUMBER_CONSTRAINT) {
        StoreError::Account(AccountError::NumberTaken)
    } else {
        db_error(context, error)
    }
}
