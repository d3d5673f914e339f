//! The one place where rows become domain values.
//!
//! Every query selects [`ACCOUNT_COLUMNS`] from `accounts a` or
//! [`TRANSFER_COLUMNS`] from `transfers t`, and every row goes through
//! [`account_from_row`] or [`transfer_from_row`], so the column lists and the
//! mapping cannot drift apart between queries.

use kassa_core::ledger::{
    Account, AccountKind, AccountStatus, Balances, Transfer, TransferKind, TransferOp, TransferState,
};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_store::StoreError;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use uuid::Uuid;

use crate::error::describe;

/// The columns [`account_from_row`] reads, qualified by the alias `a`.
pub(crate) const ACCOUNT_COLUMNS: &str = "a.id, a.number, a.owner_id, a.currency, a.kind, a.status, \
     a.credit_limit, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, \
     a.bank_overdraft, a.last_seq, a.created_at_us";

/// The columns [`transfer_from_row`] reads, qualified by the alias `t`.
pub(crate) const TRANSFER_COLUMNS: &str = "t.seq, t.id, t.debit_account_id, t.credit_account_id, t.amount, \
     t.currency, t.kind, t.op, t.ref_id, t.timeout_s, t.state, t.linked, t.bank_debit, t.description, \
     t.chain_id, t.expires_at_us, t.created_at_us, t.debit_balance_after, t.credit_balance_after, \
     t.prev_debit_seq, t.prev_credit_seq, t.overdraft";

/// Reads one column. A failure here means the query and the mapping
/// disagree about a column's name or type, which is a bug rather than bad
/// data, so it is reported as a database error.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, column: &str) -> Result<T, StoreError> {
    row.try_get(column).map_err(|error| StoreError::Database(format!("reading column {column}: {}", describe(&error))))
}

/// Reads an amount, refusing `i64::MIN`, which lies outside the symmetric
/// range that the rules rely on.
fn amount(row: &Row, column: &str) -> Result<Amount, StoreError> {
    let minor: i64 = get(row, column)?;
    Amount::try_from_minor(minor).map_err(|_| StoreError::Corrupt(format!("{column} holds {minor}, out of range")))
}

fn currency(row: &Row, column: &str) -> Result<Currency, StoreError> {
    let code: String = get(row, column)?;
    Currency::from_code(&code).map_err(|error| StoreError::Corrupt(format!("{column}: {error}")))
}

/// Reads a transfer id stored as a UUID.
fn transfer_id(row: &Row, column: &str) -> Result<Option<TransferId>, StoreError> {
    let id: Option<Uuid> = get(row, column)?;
    Ok(id.map(|id| TransferId(id.as_u128())))
}

/// The storage form of a transfer id: the same 128 bits as a UUID.
pub(crate) fn uuid(id: TransferId) -> Uuid {
    Uuid::from_u128(id.0)
}

pub(crate) fn account_from_row(row: &Row) -> Result<Account, StoreError> {
    let id = AccountId(get(row, "id")?);
    let kind_text: String = get(row, "kind")?;
    let kind = AccountKind::parse(&kind_text)
        .ok_or_else(|| StoreError::Corrupt(format!("account {id} has unknown kind {kind_text:?}")))?;
    let status_text: String = get(row, "status")?;
    let status = AccountStatus::parse(&status_text)
        .ok_or_else(|| StoreError::Corrupt(format!("account {id} has unknown status {status_text:?}")))?;
    Ok(Account {
        id,
        number: get(row, "number")?,
        owner: get(row, "owner_id")?,
        currency: currency(row, "currency")?,
        kind,
        status,
        credit_limit: amount(row, "credit_limit")?,
        balances: Balances {
            debits_posted: amount(row, "debits_posted")?,
            credits_posted: amount(row, "credits_posted")?,
            debits_pending: amount(row, "debits_pending")?,
            credits_pending: amount(row, "credits_pending")?,
        },
        bank_overdraft: get(row, "bank_overdraft")?,
        last_seq: get(row, "last_seq")?,
        created_at_us: get(row, "created_at_us")?,
    })
}

pub(crate) fn transfer_from_row(row: &Row) -> Result<Transfer, StoreError> {
    let seq: i64 = get(row, "seq")?;
    let id = transfer_id(row, "id")?.ok_or_else(|| StoreError::Corrupt(format!("transfer {seq} has no id")))?;
    let kind_text: String = get(row, "kind")?;
    let kind = TransferKind::parse(&kind_text)
        .ok_or_else(|| StoreError::Corrupt(format!("transfer {id} has unknown kind {kind_text:?}")))?;
    let state_text: String = get(row, "state")?;
    let state = TransferState::parse(&state_text)
        .ok_or_else(|| StoreError::Corrupt(format!("transfer {id} has unknown state {state_text:?}")))?;
    let op_text: String = get(row, "op")?;
    let timeout_s = get::<Option<i64>>(row, "timeout_s")?
        .map(|timeout| {
            u32::try_from(timeout)
                .map_err(|_| StoreError::Corrupt(format!("transfer {id} has timeout {timeout}, out of range")))
        })
        .transpose()?;
    let reference = transfer_id(row, "ref_id")?;
    let op = TransferOp::from_parts(&op_text, reference, timeout_s).ok_or_else(|| {
        StoreError::Corrupt(format!("transfer {id} has op {op_text:?} with reference {reference:?}, which do not fit"))
    })?;
    Ok(Transfer {
        seq,
        id,
        debit_account: AccountId(get(row, "debit_account_id")?),
        credit_account: AccountId(get(row, "credit_account_id")?),
        amount: amount(row, "amount")?,
        currency: currency(row, "currency")?,
        kind,
        op,
        state,
        linked: get(row, "linked")?,
        bank_debit: get(row, "bank_debit")?,
        description: get(row, "description")?,
        chain_id: transfer_id(row, "chain_id")?,
        expires_at_us: get(row, "expires_at_us")?,
        created_at_us: get(row, "created_at_us")?,
        debit_balance_after: get(row, "debit_balance_after")?,
        credit_balance_after: get(row, "credit_balance_after")?,
        prev_debit_seq: get(row, "prev_debit_seq")?,
        prev_credit_seq: get(row, "prev_credit_seq")?,
        overdraft: get(row, "overdraft")?,
    })
}
