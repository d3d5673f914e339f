//! Four-eyes approval requests (operations above thresholds wait for a second staff member, their money held) and per-account daily limits.
//!
//! (Being built for issue 4; see docs and ARCHITECTURE.md once it lands.)

/// Settings: the `[approvals]` section of kassa.toml.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalSettings {}

/// Starts this feature's background tasks (none yet).
pub fn spawn(_bank: &crate::Bank) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
