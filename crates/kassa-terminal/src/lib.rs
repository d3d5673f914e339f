//! Kassa's terminal (ATM) protocol (docs/terminal-protocol.md): the wire
//! codec and the session state machine, pure and fuzzable; the Lamport
//! clock; and the TLS server that serves sessions through the same
//! `kassa_service::Bank` use-cases as the HTTP API.

pub mod clock;
pub mod codec;
pub mod server;
pub mod session;

pub use server::{TerminalServer, TerminalSettings};
