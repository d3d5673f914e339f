//! Temporary databases on both engines, so every test can run the same
//! scenario on SQLite and on PostgreSQL and throw the data away afterwards.

#![allow(clippy::expect_used, reason = "test support: a broken test environment must stop the test run")]

use std::fmt;
use std::sync::Arc;

use kassa_store::LedgerStore;
use kassa_store_postgres::PostgresStore;
use kassa_store_sqlite::SqliteStore;

use crate::postgres::TempPostgres;

/// Which storage engine a [`TestDb`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// What keeps a temporary database alive; dropping it removes the data.
enum Guard {
    Dir(tempfile::TempDir),
    Postgres(TempPostgres),
}

/// A fresh, empty, migrated database with a store opened on it. The database
/// lives as long as this value.
pub struct TestDb {
    pub engine: Engine,
    /// The URL the `kassa` binary would be given for this database.
    pub url: String,
    pub store: Arc<dyn LedgerStore>,
    _guard: Guard,
}

impl fmt::Debug for TestDb {
    // The URL is left out: for PostgreSQL it may carry credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDb").field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl TestDb {
    /// The temporary database's name on the PostgreSQL server, for messages;
    /// `None` on SQLite.
    pub fn postgres_database(&self) -> Option<&str> {
        match &self._guard {
            Guard::Dir(_) => None,
            Guard::Postgres(database) => Some(database.name()),
        }
    }

    /// Opens another store on the same database, as a second process (or a
    /// second node) would.
    pub async fn open_again(&self) -> Arc<dyn LedgerStore> {
        match &self._guard {
            Guard::Dir(dir) => {
                let store = SqliteStore::open(dir.path().join("kassa.db")).await.expect("reopen the SQLite database");
                Arc::new(store)
            }
            Guard::Postgres(_) => postgres_store(&self.url).await,
        }
    }

    /// Runs SQL directly on the database, behind the ledger's back, to
    /// simulate damage that `kassa check` must detect. Only PostgreSQL is
    /// supported (the testkit has a PostgreSQL client but no SQLite one);
    /// returns `false` when the engine cannot be reached this way.
    pub async fn execute_behind_the_ledgers_back(&self, sql: &str) -> bool {
        match self.engine {
            Engine::Sqlite => false,
            Engine::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
                let driver = tokio::spawn(connection);
                client.batch_execute(sql).await.expect("run the tampering SQL");
                drop(client);
                let _ = driver.await;
                true
            }
        }
    }
}

/// A fresh SQLite database in its own temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("kassa.db");
    let store = SqliteStore::open(&path).await.expect("open a fresh SQLite database");
    TestDb {
        engine: Engine::Sqlite,
        url: format!("sqlite://{}", path.display()),
        store: Arc::new(store),
        _guard: Guard::Dir(dir),
    }
}

/// The pool size the PostgreSQL store gets in tests: enough for the
/// concurrent readers of the bank test beside the writer.
pub const POSTGRES_POOL_SIZE: usize = 16;

/// A fresh PostgreSQL database, or `None` when no server is available
/// outside CI (the helper prints a loud SKIPPED line then).
pub async fn postgres() -> Option<TestDb> {
    let database = TempPostgres::create().await?;
    let url = database.url().to_owned();
    let store = postgres_store(&url).await;
    Some(TestDb { engine: Engine::Postgres, url, store, _guard: Guard::Postgres(database) })
}

async fn postgres_store(url: &str) -> Arc<dyn LedgerStore> {
    let store = PostgresStore::connect(url, POSTGRES_POOL_SIZE).await.expect("connect to the test database");
    Arc::new(store)
}

/// Every engine a test should run on: SQLite always, PostgreSQL when a
/// server is available.
pub async fn engines() -> Vec<TestDb> {
    let mut all = vec![sqlite().await];
    all.extend(postgres().await);
    all
}
