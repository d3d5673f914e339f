//! Exchange rates (set by admins or polled from a file or URL, history kept), 30-second quotes, and exchanges between a customer's own accounts through the bank's FX position accounts.
//!
//! (Being built for issue 4; see docs and ARCHITECTURE.md once it lands.)

/// Settings: the `[fx]` section of kassa.toml.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FxSettings {}

/// Starts this feature's background tasks (none yet).
pub fn spawn(_bank: &crate::Bank) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
