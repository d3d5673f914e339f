//! kassa-testkit
