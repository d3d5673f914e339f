//! Cards: numbers with a Luhn digit, holder names, PINs (keyed hash), CVVs derived on demand, card status; credit-card applications live in applications.rs.
//!
//! (Being built for issue 4; see docs and ARCHITECTURE.md once it lands.)

/// Settings: the `[cards]` section of kassa.toml.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardSettings {}

/// Starts this feature's background tasks (none yet).
pub fn spawn(_bank: &crate::Bank) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
