//! Interest: daily accrual on savings (and on negative credit-card balances) with exact decimal maths, monthly posting, idempotent per account and day; the schedule.
//!
//! (Being built for issue 4; see docs and ARCHITECTURE.md once it lands.)

/// Settings: the `[interest]` section of kassa.toml.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterestSettings {}

/// Starts this feature's background tasks (none yet).
pub fn spawn(_bank: &crate::Bank) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
