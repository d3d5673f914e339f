//! What `kassa check` reads: every account beside the totals recomputed from
//! its transfers, in one consistent snapshot.
//!
//! The totals come from one grouped pass over the transfers per side rather
//! than a query per account, so that a ledger of millions of transfers is
//! checked in seconds.

use deadpool_postgres::{Object, Pool};
use kassa_core::{AccountId, TransferId};
use kassa_store::{AccountCheckRow, BadTransfer, CheckInputs, StoreError, Totals};
use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{db_error, pool_error};
use crate::rows::{ACCOUNT_COLUMNS, account_from_row, get};

/// Recomputes each account's totals, its newest transfer and the balance
/// recorded on it. Sums of BIGINTs are NUMERIC in PostgreSQL and are sent as
/// text, to be read as `i128`, so that even a corrupt ledger whose sums
/// exceed `i64` is reported rather than rejected.
fn accounts_sql() -> String {
    format!(
        "WITH d AS (
             SELECT debit_account_id AS account_id,
                    COALESCE(SUM(amount) FILTER (WHERE op IN ('single', 'post', 'reverse')), 0)::text AS posted,
                    COALESCE(SUM(amount) FILTER (WHERE op = 'pending' AND state = 'pending'), 0)::text AS pending,
                    MAX(seq) AS max_seq
             FROM transfers GROUP BY debit_account_id
         ), c AS (
             SELECT credit_account_id AS account_id,
                    COALESCE(SUM(amount) FILTER (WHERE op IN ('single', 'post', 'reverse')), 0)::text AS posted,
                    COALESCE(SUM(amount) FILTER (WHERE op = 'pending' AND state = 'pending'), 0)::text AS pending,
                    MAX(seq) AS max_seq
             FROM transfers GROUP BY credit_account_id
         )
         SELECT {ACCOUNT_COLUMNS},
                COALESCE(d.posted, '0') AS check_debits_posted,
                COALESCE(c.posted, '0') AS check_credits_posted,
                COALESCE(d.pending, '0') AS check_debits_pending,
                COALESCE(c.pending, '0') AS check_credits_pending,
                GREATEST(d.max_seq, c.max_seq) AS check_max_seq,
                CASE WHEN n.debit_account_id = a.id THEN n.debit_balance_after
                     ELSE n.credit_balance_after END AS check_newest_balance_after
         FROM accounts a
         LEFT JOIN d ON d.account_id = a.id
         LEFT JOIN c ON c.account_id = a.id
         LEFT JOIN LATERAL (
             SELECT debit_account_id, debit_balance_after, credit_balance_after
             FROM transfers WHERE seq = GREATEST(d.max_seq, c.max_seq)
         ) n ON true
         ORDER BY a.id"
    )
}

/// Transfers that break a rule the schema should already enforce; each
/// reason is named so that the report says what is wrong with the row.
const BAD_TRANSFERS_SQL: &str = "SELECT t.id,
        t.amount <= 0 AS bad_amount,
        t.debit_account_id = t.credit_account_id AS same_account,
        da.id IS NULL AS no_debit_account,
        ca.id IS NULL AS no_credit_account,
        da.id IS NOT NULL AND da.currency <> t.currency AS debit_currency_differs,
        ca.id IS NOT NULL AND ca.currency <> t.currency AS credit_currency_differs
     FROM transfers t
     LEFT JOIN accounts da ON da.id = t.debit_account_id
     LEFT JOIN accounts ca ON ca.id = t.credit_account_id
     WHERE t.amount <= 0
        OR t.debit_account_id = t.credit_account_id
        OR da.id IS NULL
        OR ca.id IS NULL
        OR da.currency <> t.currency
        OR ca.currency <> t.currency
     ORDER BY t.seq";

pub(crate) async fn check_inputs(pool: &Pool) -> Result<CheckInputs, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let context = "reading the ledger for a check";
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|error| db_error(context, &error))?;
    let result = async {
        // The grouped passes need room for one entry per account; with the
        // default few megabytes they spill to disk and take twice as long.
        // LOCAL keeps the setting to this one read transaction.
        tx.batch_execute("SET LOCAL work_mem = '64MB'").await.map_err(|error| db_error(context, &error))?;
        let rows = tx.query(&accounts_sql(), &[]).await.map_err(|error| db_error(context, &error))?;
        let accounts = rows.iter().map(check_row).collect::<Result<Vec<_>, _>>()?;
        let count: i64 = get(
            &tx.query_one("SELECT count(*) AS transfers FROM transfers", &[])
                .await
                .map_err(|error| db_error(context, &error))?,
            "transfers",
        )?;
        let transfers = u64::try_from(count)
            .map_err(|_| StoreError::Database(format!("count(*) returned a negative number: {count}")))?;
        let rows = tx.query(BAD_TRANSFERS_SQL, &[]).await.map_err(|error| db_error(context, &error))?;
        let mut bad_transfers = rows.iter().map(bad_transfer).collect::<Result<Vec<_>, _>>()?;
        let rows =
            tx.query(kassa_store::BROKEN_HISTORY_LINKS_SQL, &[]).await.map_err(|error| db_error(context, &error))?;
        for row in &rows {
            let id: Uuid = get(row, "id")?;
            bad_transfers.push(BadTransfer { id: TransferId(id.as_u128()), reason: get(row, "reason")? });
        }
        let rows =
            tx.query(kassa_store::OVERDRAWN_BY_BANK_SQL, &[]).await.map_err(|error| db_error(context, &error))?;
        let overdrawn_by_bank =
            rows.iter().map(|row| get::<i64>(row, "debit_account_id").map(AccountId)).collect::<Result<Vec<_>, _>>()?;
        Ok::<CheckInputs, StoreError>(CheckInputs { accounts, transfers, bad_transfers, overdrawn_by_bank })
    }
    .await;
    // The transaction only read, so ending it either way changes nothing;
    // a rollback is used so that no read-only commit has to wait for disk.
    if let Err(error) = tx.rollback().await {
        // The connection may still be inside the transaction; it must not
        // go back to the pool like that.
        drop(Object::take(client));
        result?;
        return Err(db_error(context, &error));
    }
    result
}

fn total(row: &Row, column: &str) -> Result<i128, StoreError> {
    let text: String = get(row, column)?;
    text.parse::<i128>().map_err(|_| StoreError::Database(format!("{column} is {text:?}, not a whole number")))
}

fn check_row(row: &Row) -> Result<AccountCheckRow, StoreError> {
    Ok(AccountCheckRow {
        account: account_from_row(row)?,
        from_transfers: Totals {
            debits_posted: total(row, "check_debits_posted")?,
            credits_posted: total(row, "check_credits_posted")?,
            debits_pending: total(row, "check_debits_pending")?,
            credits_pending: total(row, "check_credits_pending")?,
        },
        max_seq: get(row, "check_max_seq")?,
        newest_balance_after: get(row, "check_newest_balance_after")?,
    })
}

fn bad_transfer(row: &Row) -> Result<BadTransfer, StoreError> {
    let id: Uuid = get(row, "id")?;
    let checks = [
        ("bad_amount", "the amount is not positive"),
        ("same_account", "the debit and credit accounts are the same"),
        ("no_debit_account", "the debit account does not exist"),
        ("no_credit_account", "the credit account does not exist"),
        ("debit_currency_differs", "the currency differs from the debit account's"),
        ("credit_currency_differs", "the currency differs from the credit account's"),
    ];
    let mut reasons = Vec::new();
    for (column, reason) in checks {
        if get::<Option<bool>>(row, column)?.unwrap_or(false) {
            reasons.push(reason);
        }
    }
    Ok(BadTransfer { id: TransferId(id.as_u128()), reason: reasons.join("; ") })
}
