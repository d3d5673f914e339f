//! Fixed-window rate limits kept in the database (`rate_limits`), so every
//! node sharing it counts together: one counter per key, reset when its
//! window has passed.

use kassa_store::StoreError;
use kassa_store::sql::{Tx, Value};

/// Counts one use of `key` inside `tx`. Returns `Some(seconds)` to wait if
/// this use is over `max` in the current window of `window_s` seconds
/// (the use is still counted, so hammering does not help), else `None`.
pub fn count_use(tx: &mut dyn Tx, key: &str, max: u32, window_s: i64, now_us: i64) -> Result<Option<i64>, StoreError> {
    let window_us = window_s.max(1).saturating_mul(1_000_000);
    let row = tx.query_one(
        "INSERT INTO rate_limits (key, window_start_us, count) VALUES ($1, $2, 1) \
         ON CONFLICT (key) DO UPDATE SET \
           count = CASE WHEN rate_limits.window_start_us <= $3 THEN 1 ELSE rate_limits.count + 1 END, \
           window_start_us = CASE WHEN rate_limits.window_start_us <= $4 THEN $5 ELSE rate_limits.window_start_us END \
         RETURNING window_start_us, count",
        &[
            Value::from(key),
            Value::Int(now_us),
            Value::Int(now_us - window_us),
            Value::Int(now_us - window_us),
            Value::Int(now_us),
        ],
    )?;
    let (started, count) = (row.int(0)?, row.int(1)?);
    if count <= i64::from(max) {
        return Ok(None);
    }
    let left_us = (started + window_us - now_us).max(0);
    Ok(Some(((left_us + 999_999) / 1_000_000).max(1)))
}
