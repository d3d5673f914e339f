//! kassa-ledger
