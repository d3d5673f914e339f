//! Test support for Kassa: temporary databases on both engines and a
//! reference model of the ledger.

pub mod cli;
pub mod db;
pub mod frac;
pub mod model;
pub mod postgres;
