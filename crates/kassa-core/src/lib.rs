//! Kassa's domain core: exact money, accounts, transfers and the rules of the
//! ledger.
//!
//! This crate does no IO, has no async runtime, no serde and no SQL: it is the
//! pure centre that every interface and both storage engines depend on. A test
//! in `kassa` (`tests/dependency_direction.rs`) fails if that ever changes.

pub mod ids;
pub mod ledger;
pub mod money;

pub use ids::{AccountId, TransferId};
pub use money::{Amount, AmountPolicy, Currency, Money, MoneyError};
