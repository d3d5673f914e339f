//! Arbitrary bytes as a terminal connection's stream: lines through the
//! frame decoder, the Lamport clock and the session state machine. The
//! checks live in crates/kassa-terminal/tests/fuzz_check, shared with the
//! corpus replay test that CI runs on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/kassa-terminal/tests/fuzz_check/mod.rs"]
mod fuzz_check;

fuzz_target!(|data: &[u8]| fuzz_check::check(data));
