//! Turning driver and pool errors into [`StoreError`]s.
//!
//! The driver's own `Display` says only "db error" for a server error, so the
//! server's message and SQLSTATE are spelled out here; none of these messages
//! ever contains the connection URL, which may carry a password.

use deadpool_postgres::PoolError;
use kassa_store::StoreError;
use tokio_postgres::error::SqlState;

/// Describes a driver error with the server's message when there is one.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{db} (SQLSTATE {})", db.code().code());
    }
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// Whether the error means the server could not be reached or dropped the
/// connection, rather than refusing a statement.
pub(crate) fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        // Class 08 is "connection exception"; the others are the server
        // shutting down, starting up, or out of connection slots.
        return code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS;
    }
    if error.is_closed() {
        return true;
    }
    if std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>()) {
        return true;
    }
    // The driver does not expose its error kinds, so the few that mean "no
    // server" and carry no io::Error are recognised by their fixed wording.
    let text = error.to_string();
    ["error connecting to server", "timeout waiting for server", "error communicating with the server"]
        .iter()
        .any(|prefix| text.starts_with(prefix))
}

/// Maps a driver error to `Unavailable` or `Database`, prefixed with what we
/// were doing so that the message can be acted upon.
pub(crate) fn db_error(context: &str, error: &tokio_postgres::Error) -> StoreError {
    if is_unavailable(error) {
        StoreError::Unavailable(format!("{context}: {}", describe(error)))
    } else {
        StoreError::Database(format!("{context}: {}", describe(error)))
    }
}

/// Maps a failure to obtain a pooled connection; every such failure is
/// transient from the caller's point of view.
pub(crate) fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => {
            StoreError::Unavailable(format!("could not connect to PostgreSQL: {}", describe(&error)))
        }
        other => StoreError::Unavailable(format!("no PostgreSQL connection available: {other}")),
    }
}

/// The SQLSTATE of a server error, if the error came from the server.
pub(crate) fn sqlstate(error: &tokio_postgres::Error) -> Option<&SqlState> {
    error.code()
}

/// Whether the error is a unique violation on the named constraint.
pub(crate) fn is_unique_violation_on(error: &tokio_postgres::Error, constraint: &str) -> bool {
    error
        .as_db_error()
        .is_some_and(|db| *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(constraint))
}
