//! Test support for Kassa: temporary databases on both engines and a
//! reference model of the ledger, and local receivers for the notification
//! gateways.

pub mod cli;
pub mod db;
pub mod frac;
pub mod model;
pub mod postgres;
pub mod receivers;
