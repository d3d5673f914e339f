//! What the `kassa` binary's test files share. Each test binary uses only
//! part of it, hence the allowance for unused items.
#![allow(dead_code, unreachable_pub)]

pub mod http;
pub mod process;
