//! Notifications: the outbox written in the change's own transaction, the delivery worker (lease, retries, backoff, dead letters) and its gateways (log, SMTP, HTTP SMS).
//!
//! (Being built for issue 4; see docs and ARCHITECTURE.md once it lands.)

/// Settings: the `[notifications]` section of kassa.toml.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {}

/// Starts this feature's background tasks (none yet).
pub fn spawn(_bank: &crate::Bank) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}

/// Whether a journaled action (when its outcome is `ok`) may interest the
/// customers it concerns, so the journal also writes an outbox row for it.
pub fn wants(_action: &str) -> bool {
    false
}
