//! Schema migrations, applied when a store connects.
//!
//! Several processes may start against one database at the same moment, so
//! the whole step runs under a session-level advisory lock: the first process
//! applies what is missing, the others wait and then find nothing to do.

use deadpool_postgres::{Object, Pool};
use kassa_store::StoreError;

use crate::error::{db_error, pool_error};

/// Every migration, in order, with the version recorded in
/// `schema_migrations` once it has been applied.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_ledger.sql")),
    (2, include_str!("../migrations/0002_bank.sql")),
    (3, include_str!("../migrations/0003_rate_limits.sql")),
    (4, include_str!("../migrations/0004_cards.sql")),
    (5, include_str!("../migrations/0005_approvals.sql")),
    (6, include_str!("../migrations/0006_fx.sql")),
    (7, include_str!("../migrations/0007_interest.sql")),
    (8, include_str!("../migrations/0008_outbox.sql")),
    (9, include_str!("../migrations/0009_card_key.sql")),
    (10, include_str!("../migrations/0010_notify_prefs.sql")),
    (11, include_str!("../migrations/0011_terminals.sql")),
];

/// The advisory lock key that serialises migrations; advisory locks are per
/// database, so stores of different databases never wait for each other.
/// The digits spell "kassa" in ASCII followed by a 1.
const MIGRATION_LOCK_KEY: i64 = 0x6b61_7373_6101;

pub(crate) async fn run(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|error| db_error("taking the migration lock", &error))?;
    let result = apply_missing(&mut client).await;
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await.is_ok();
    if result.is_err() || !unlocked {
        // A connection that failed half-way may still hold the lock or an
        // open transaction; closing it releases both, so it is taken out of
        // the pool and dropped instead of being reused.
        drop(Object::take(client));
    }
    result
}

async fn apply_missing(client: &mut Object) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version       BIGINT PRIMARY KEY,
                 applied_at_us BIGINT NOT NULL
             )",
        )
        .await
        .map_err(|error| db_error("creating schema_migrations", &error))?;
    for (version, sql) in MIGRATIONS {
        let context = format!("applying migration {version}");
        let tx = client.transaction().await.map_err(|error| db_error(&context, &error))?;
        let step = async {
            let applied = tx
                .query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version])
                .await
                .map_err(|error| db_error(&context, &error))?
                .is_some();
            if !applied {
                tx.batch_execute(sql).await.map_err(|error| db_error(&context, &error))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at_us) VALUES ($1, $2)",
                    &[version, &kassa_store::now_us()],
                )
                .await
                .map_err(|error| db_error(&context, &error))?;
            }
            Ok::<(), StoreError>(())
        }
        .await;
        match step {
            Ok(()) => tx.commit().await.map_err(|error| db_error(&context, &error))?,
            Err(error) => {
                // The caller discards this connection on error anyway; the
                // rollback is still sent so the server frees its locks now.
                let _ = tx.rollback().await;
                return Err(error);
            }
        }
    }
    Ok(())
}
