//! Temporary PostgreSQL databases for tests.
//!
//! Each test gets a database of its own, created on the server named by
//! `KASSA_TEST_PG_URL` and dropped when the [`TempPostgres`] goes out of
//! scope, so tests can run in parallel and leave nothing behind. Without a
//! server, a developer's run skips the PostgreSQL tests loudly, while a CI
//! run fails, so that CI can never pass by silently testing nothing.

use std::time::Duration;

use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

/// The server used when `KASSA_TEST_PG_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long to wait for the server before deciding there is none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database created for one test run and dropped afterwards.
#[derive(Debug)]
pub struct TempPostgres {
    url: String,
    name: String,
    admin_url: String,
}

impl TempPostgres {
    /// Creates `kassa_t_<pid>_<random hex>` on the server named by
    /// `KASSA_TEST_PG_URL` (default [`DEFAULT_ADMIN_URL`]) and returns it.
    ///
    /// If the server can't be reached: when the `CI` environment variable is
    /// `"true"` this panics, because PostgreSQL tests must run under CI;
    /// otherwise it prints a loud line to stderr and returns `None`, and the
    /// caller skips its test.
    #[allow(clippy::panic, reason = "test support: a broken test environment must stop the test run")]
    pub async fn create() -> Option<TempPostgres> {
        let admin_url = std::env::var("KASSA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        // The URL may carry a password, so no message below repeats it.
        let config: tokio_postgres::Config = match admin_url.parse() {
            Ok(config) => config,
            Err(error) => panic!("KASSA_TEST_PG_URL is not a valid PostgreSQL URL: {error}"),
        };
        let server = describe_server(&config);
        let client = match connect(&config).await {
            Ok(client) => client,
            Err(error) => {
                if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                    panic!(
                        "PostgreSQL tests must run under CI, but there is no server at {server} ({error}); \
                         start one or set KASSA_TEST_PG_URL"
                    );
                }
                // Written to the process's stderr directly: the test
                // harness captures eprintln!, and a skip must be seen.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED: PostgreSQL tests — no server at {server} ({error}); start it or set KASSA_TEST_PG_URL"
                );
                return None;
            }
        };
        let name = format!("kassa_t_{}_{:016x}", std::process::id(), rand::random::<u64>());
        // The name is made of digits, lower-case letters and underscores
        // only, so it needs no quoting.
        if let Err(error) = client.batch_execute(&format!("CREATE DATABASE {name}")).await {
            panic!("could not create the test database {name} on {server}: {}", error_text(&error));
        }
        let url = with_database(&admin_url, &name);
        Some(TempPostgres { url, name, admin_url })
    }

    /// The URL of the new database: the server's URL with the database name
    /// replaced.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of the new database.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempPostgres {
    /// Drops the database, best effort. The work runs on a fresh thread with
    /// its own runtime, because a `Drop` inside an async test runs on a
    /// runtime thread, where blocking on another future would panic.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                let Ok(config) = admin_url.parse::<tokio_postgres::Config>() else {
                    return;
                };
                let Ok(client) = connect(&config).await else {
                    return;
                };
                // FORCE ends the sessions the test's store left open.
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            });
        });
        let _ = dropper.join();
    }
}

/// Connects with a timeout, and drives the connection on the current
/// runtime for as long as the client lives.
async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, String> {
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls)).await;
    let (client, connection) = match connecting {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => return Err(error_text(&error)),
        Err(_) => return Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The driver's `Display` hides the cause, which is what a person needs.
fn error_text(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.to_string();
    }
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// Names the server as host:port, without the user's credentials.
fn describe_server(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Replaces the database name of a `postgres://user[@host[:port]]/dbname[?params]`
/// URL: the path segment after the last '/' before any '?'. A URL without a
/// path gets one.
fn with_database(url: &str, name: &str) -> String {
    let (base, params) = match url.split_once('?') {
        Some((base, params)) => (base, Some(params)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let mut result = match base[authority_start..].rfind('/') {
        Some(slash) => format!("{}{name}", &base[..authority_start + slash + 1]),
        None => format!("{base}/{name}"),
    };
    if let Some(params) = params {
        result.push('?');
        result.push_str(params);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(with_database("postgresql://u@h", "x"), "postgresql://u@h/x");
        assert_eq!(with_database("postgres://u@h/", "x"), "postgres://u@h/x");
    }
}
