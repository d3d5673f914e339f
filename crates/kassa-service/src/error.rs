//! The one error type of the services. Each variant carries a stable `code`
//! that every interface (HTTP, terminal) puts on the wire unchanged, and a
//! message meant for the person who made the request — never internal text.

use kassa_core::ledger::{AccountError, TransferError};
use kassa_core::money::MoneyError;
use kassa_ledger::LedgerError;
use kassa_store::StoreError;

use crate::country::FieldProblem;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// One or more input fields are wrong; nothing was changed.
    #[error("{}", invalid_message(.0))]
    Invalid(Vec<FieldProblem>),
    /// Not signed in, or the credentials or token are not good.
    #[error("{1}")]
    Unauthorized(&'static str, &'static str),
    /// Signed in, but this caller may not do this.
    #[error("{1}")]
    Forbidden(&'static str, &'static str),
    /// The object does not exist — or is not the caller's to see, which
    /// looks the same from outside.
    #[error("{1}")]
    NotFound(&'static str, &'static str),
    /// The request conflicts with the current state (a taken phone number,
    /// an account that is not empty).
    #[error("{1}")]
    Conflict(&'static str, String),
    /// A rule of the bank refuses the operation (insufficient funds, a
    /// blocked account, a currency mismatch).
    #[error("{1}")]
    Refused(&'static str, String),
    /// Too many attempts; try again after `retry_after_s` seconds.
    #[error("too many attempts; try again in {retry_after_s} seconds")]
    Throttled { retry_after_s: i64 },
    /// The database is unreachable or busy; nothing was changed and the
    /// request may be retried.
    #[error("the bank is temporarily unavailable; please retry")]
    Unavailable(String),
    /// A bug or corrupt data. The text is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

fn invalid_message(problems: &[FieldProblem]) -> String {
    match problems {
        [one] => one.detail.clone(),
        _ => format!("{} fields are invalid", problems.len()),
    }
}

impl ServiceError {
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Invalid(problems) => match problems.as_slice() {
                [one] => one.code,
                _ => "validation_failed",
            },
            ServiceError::Unauthorized(code, _)
            | ServiceError::Forbidden(code, _)
            | ServiceError::NotFound(code, _)
            | ServiceError::Conflict(code, _)
            | ServiceError::Refused(code, _) => code,
            ServiceError::Throttled { .. } => "too_many_attempts",
            ServiceError::Unavailable(_) => "unavailable",
            ServiceError::Internal(_) => "internal_error",
        }
    }

    pub fn invalid(field: &str, code: &'static str, detail: impl Into<String>) -> ServiceError {
        ServiceError::Invalid(vec![FieldProblem { field: field.to_owned(), code, detail: detail.into() }])
    }

    pub fn money(field: &str, error: &MoneyError) -> ServiceError {
        ServiceError::invalid(field, error.code(), error.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        match error {
            StoreError::Unavailable(message) => ServiceError::Unavailable(message),
            StoreError::Account(error) => ServiceError::from(error),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<AccountError> for ServiceError {
    fn from(error: AccountError) -> ServiceError {
        match error {
            AccountError::NotFound => ServiceError::NotFound("account_not_found", "no such account"),
            other => ServiceError::Refused(other.code(), other.to_string()),
        }
    }
}

impl From<TransferError> for ServiceError {
    fn from(error: TransferError) -> ServiceError {
        match error {
            TransferError::IdReusedWithDifferentContent => ServiceError::Conflict(
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request".into(),
            ),
            other => ServiceError::Refused(other.code(), other.to_string()),
        }
    }
}

impl From<LedgerError> for ServiceError {
    fn from(error: LedgerError) -> ServiceError {
        match error {
            LedgerError::Store(error) => ServiceError::from(error),
            LedgerError::ShuttingDown => ServiceError::Unavailable("the server is shutting down".into()),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<crate::crypto::CryptoError> for ServiceError {
    fn from(error: crate::crypto::CryptoError) -> ServiceError {
        ServiceError::Internal(error.to_string())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
