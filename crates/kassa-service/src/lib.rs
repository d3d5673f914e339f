//! Kassa's application services.
pub mod country;
pub mod crypto;
pub mod settings;
