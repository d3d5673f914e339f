//! kassa-store-sqlite
