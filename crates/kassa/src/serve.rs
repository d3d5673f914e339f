//! `kassa serve`, `kassa staff add`, `kassa audit verify`, `kassa config
//! default`: the bank as people use it.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt as _;
use kassa_ledger::{Ledger, LedgerConfig};
use kassa_service::people::StaffForm;
use kassa_service::{Bank, Caller};
use kassa_store::sql::Database;
use kassa_store::{DatabaseUrl, LedgerStore};

use crate::config::Config;
use crate::datadir::DataDir;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// A kassa.toml to read (default: ./kassa.toml if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The data directory (database, TLS certificate, secrets).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The HTTP address, e.g. 127.0.0.1:8080 (port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<String>,
    /// The terminal (ATM) address.
    #[arg(long)]
    pub terminal_listen: Option<String>,
    /// Serve HTTPS on the listen address with the data directory's
    /// certificate (`tls/cert.pem`, `tls/key.pem`).
    #[arg(long)]
    pub https: bool,
    /// Accept a non-loopback listen address behind a reverse proxy.
    #[arg(long)]
    pub behind_proxy: bool,
    /// Seed a few customers, accounts and transfers to look at.
    #[arg(long)]
    pub demo: bool,
}

/// Loads the configuration layers: defaults, kassa.toml, KASSA_*, flags.
pub fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref(), crate::config::process_env()?)?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &args.database_url {
        config.database_url = Some(url.clone());
    }
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(listen) = &args.terminal_listen {
        config.terminal_listen = listen.clone();
    }
    if args.https {
        config.https = true;
    }
    if args.behind_proxy {
        config.behind_proxy = true;
    }
    config.validate()?;
    Ok(config)
}

/// Opens the store a URL names, as both the ledger's store and the
/// services' database.
pub async fn open_both(url: &str, pool_size: usize) -> anyhow::Result<(Arc<dyn LedgerStore>, Arc<dyn Database>)> {
    Ok(match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite(path) => {
            let store = kassa_store_sqlite::SqliteStore::open(&path)
                .await
                .with_context(|| format!("opening the SQLite database {}", path.display()))?;
            (Arc::new(store.clone()), Arc::new(store))
        }
        DatabaseUrl::Postgres(url) => {
            let store = kassa_store_postgres::PostgresStore::connect(&url, pool_size)
                .await
                .context("connecting to PostgreSQL")?;
            (Arc::new(store.clone()), Arc::new(store))
        }
    })
}

/// Opens the store a URL names and starts the ledger's writers on a
/// runtime of their own, on a dedicated thread: under load the HTTP
/// handlers keep the main runtime's run queue long, and a writer that
/// waited behind them would make every batch (and so every payment) slow;
/// the operating system shares the cores between that thread and the HTTP
/// workers fairly.
///
/// SQLite: the ledger and the services share one store, so the services'
/// writes use the ledger's single write connection (and its one audit
/// chain). PostgreSQL: the ledger opens its own pool on its thread, so its
/// connections are driven there; the services use the other pool.
pub async fn open_ledger(url: &str, config: LedgerConfig) -> anyhow::Result<(Ledger, Arc<dyn Database>)> {
    let (store, db) = open_both(url, 16).await?;
    let shared = matches!(DatabaseUrl::parse(url)?, DatabaseUrl::Sqlite(_)).then_some(store);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let url = url.to_owned();
    std::thread::Builder::new()
        .name("kassa-ledger".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = sender.send(Err(anyhow::anyhow!("cannot start the ledger's runtime: {error}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let store = match shared {
                    Some(store) => Ok(store),
                    None => open_both(&url, 8).await.map(|(store, _)| store),
                };
                match store {
                    Ok(store) => {
                        let (ledger, ended) = Ledger::start_joinable(store, config);
                        let _ = sender.send(Ok(ledger));
                        // Runs until every handle is dropped.
                        ended.await;
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error));
                    }
                }
            });
        })
        .context("starting the ledger's thread")?;
    let ledger = receiver.await.context("the ledger's thread ended before starting")??;
    Ok((ledger, db))
}

/// Opens the data directory and the bank's services.
pub async fn open_bank(config: &Config) -> anyhow::Result<(DataDir, Bank)> {
    let data_dir = DataDir::open_or_create(&config.data_dir)?;
    let token_key = data_dir.token_key(config.token_key_file())?;
    let (ledger, db) = open_ledger(&config.database_url(), LedgerConfig::default()).await?;
    let mut settings = config.settings(token_key);
    settings.card_key = kassa_service::SecretBytes(data_dir.card_key(config.card_key_file())?);
    // Every node sharing the database must hold the same card key.
    let card_key_path = config.card_key_file().map_or_else(|| data_dir.card_key_path(), Path::to_path_buf);
    kassa_service::cards::check_card_key(&*db, &settings.card_key.0)
        .await
        .map_err(|error| anyhow::anyhow!("{}: {error}", card_key_path.display()))?;
    let bank = Bank::start(db, ledger, settings).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok((data_dir, bank))
}

fn init_logs(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KASSA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log.level.clone()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if config.log.format == crate::config::LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[allow(clippy::print_stdout)]
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args)?;
    init_logs(&config);
    let (data_dir, bank) = open_bank(&config).await?;
    if data_dir.ensure_tls(&config.bank.name, &[])? {
        println!("Generated a local CA and server certificate in {}", data_dir.tls_dir().display());
    }
    let _expiry = bank.ledger().spawn_expiry(Duration::from_secs(1));
    // Approval expiry, rate polling, the interest schedule, notifications.
    let _background = bank.spawn_background();
    if let Some((password, totp_uri)) = bank.ensure_first_admin().await.map_err(|e| anyhow::anyhow!("{e}"))? {
        data_dir.write_admin_password(&password)?;
        println!("First admin created: login `admin`, password {password}");
        println!("  (also written to {}, mode 0600; shown only this once)", data_dir.admin_password_path().display());
        println!("  TOTP for the admin's authenticator app: {totp_uri}");
    }
    if args.demo {
        crate::demo::seed(&bank).await?;
    }
    let trusted: Vec<IpAddr> = config.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect();
    let state = kassa_http::AppState {
        bank: bank.clone(),
        metrics: Arc::default(),
        trusted_proxies: Arc::new(trusted.clone()),
        body_max_bytes: config.limits.request_body_max_bytes,
    };
    // The web pages (customer cabinet at /, staff console at /staff) beside the API.
    let web = kassa_web::WebOptions { secure_cookies: config.https, trusted_proxies: trusted };
    let app = kassa_http::router(state).merge(kassa_web::router(bank.clone(), web));
    // One signal stops both listeners. The terminal port opens first, so
    // that "is open" below means every port is.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let terminals = start_terminals(&config, &data_dir, &bank, stopped.clone()).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let scheme = if config.https { "https" } else { "http" };
    println!("{} is open: {scheme}://{address}/api/v1 (database: {})", config.bank.name, bank.store().backend());
    println!("  web: {scheme}://{address}/ (customers), {scheme}://{address}/staff (staff)");
    tracing::info!(%address, scheme, "listening");
    let tls = if config.https {
        Some(crate::tls::server_config(&data_dir.cert_path(), &data_dir.key_path(), &[b"http/1.1"])?)
    } else {
        None
    };
    let mut http_stopped = stopped;
    run_http(listener, app, tls, async move {
        let _ = http_stopped.wait_for(|stop| *stop).await;
    })
    .await?;
    let _ = terminals.await;
    tracing::info!("stopped: in-flight requests drained");
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Binds the terminal (ATM) port and serves the terminal protocol over TLS
/// with the data directory's certificate until `stopped` turns true.
#[allow(clippy::print_stdout)]
async fn start_terminals(
    config: &Config,
    data_dir: &DataDir,
    bank: &Bank,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let tls = crate::tls::server_config(&data_dir.cert_path(), &data_dir.key_path(), &[])?;
    let listener = tokio::net::TcpListener::bind(&config.terminal_listen)
        .await
        .with_context(|| format!("cannot listen for terminals on {}", config.terminal_listen))?;
    let address = listener.local_addr()?;
    let section = &config.terminal;
    let settings = kassa_terminal::TerminalSettings {
        idle_timeout: Duration::from_secs(section.idle_timeout_s),
        handshake_timeout: Duration::from_secs(section.handshake_timeout_s),
        max_sessions: usize::try_from(section.max_sessions).unwrap_or(usize::MAX),
        requests_per_s: section.requests_per_s,
        request_burst: section.request_burst,
    };
    let server = kassa_terminal::TerminalServer::start(bank.clone(), settings)
        .await
        .map_err(|error| anyhow::anyhow!("starting the terminal server: {error}"))?;
    println!("Terminals (ATM protocol over TLS): {address}, logical clock at {}", server.clock());
    tracing::info!(%address, "terminal protocol listening");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    Ok(tokio::spawn(server.serve(listener, acceptor, stopped)))
}

/// Serves the router on a bound listener, over TLS when given a
/// configuration, until `shutdown` resolves; then waits for the requests in
/// flight.
pub async fn run_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(tls) => {
            // `tap_io` gives the TLS listener axum's client-address plumbing.
            let listener = crate::tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await.context("serving HTTPS")
        }
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await.context("serving HTTP")
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C; axum then stops accepting and waits for
/// the requests in flight.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct StaffAddArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[arg(long)]
    pub login: String,
    #[arg(long)]
    pub role: String,
    #[arg(long)]
    pub name: Option<String>,
    /// Read the password from standard input (one line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// Require a TOTP second factor (always on for admins).
    #[arg(long)]
    pub totp: bool,
}

#[allow(clippy::print_stdout)]
pub async fn staff_add(args: StaffAddArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.serve)?;
    let mut password = String::new();
    std::io::stdin().take(4096).read_to_string(&mut password).context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    let (_, bank) = open_bank(&config).await?;
    let created = bank
        .create_staff(
            &Caller::anonymous("cli"),
            StaffForm {
                login: Some(args.login),
                name: args.name,
                role: Some(args.role),
                password: Some(password),
                totp: Some(args.totp),
            },
        )
        .await;
    match created {
        Ok(created) => {
            println!(
                "Created staff user {} ({}), id {}",
                created.staff.login,
                created.staff.role.as_str(),
                created.staff.id
            );
            if let Some(uri) = created.totp_uri {
                println!("TOTP for the authenticator app (shown once): {uri}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {} ({})", error, error.code());
            if let kassa_service::ServiceError::Invalid(problems) = &error {
                for problem in problems {
                    eprintln!("  {}: {} ({})", problem.field, problem.detail, problem.code);
                }
            }
            Ok(ExitCode::from(1))
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct TerminalAddArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The terminal's name, e.g. "Lobby ATM".
    #[arg(long)]
    pub name: String,
    /// Also write the key to this file (mode 0600), for the terminal's
    /// `--terminal-key-file`.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

#[allow(clippy::print_stdout)]
pub async fn terminal_add(args: TerminalAddArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.serve)?;
    if let Some(path) = &args.key_file
        && path.exists()
    {
        anyhow::bail!("{} exists already; the key file is never overwritten", path.display());
    }
    let (_, bank) = open_bank(&config).await?;
    let form = kassa_service::terminals::TerminalForm { name: Some(args.name) };
    match bank.register_terminal(&Caller::anonymous("cli"), form).await {
        Ok(created) => {
            if let Some(path) = &args.key_file {
                crate::datadir::write_private(path, created.key.as_bytes())
                    .with_context(|| format!("writing the key to {}", path.display()))?;
            }
            println!("Registered terminal {:?}", created.terminal.name);
            println!("id: {}", created.terminal.id);
            println!("key: {}", created.key);
            println!("(the key is shown only this once; the bank keeps only its hash)");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {} ({})", error, error.code());
            Ok(ExitCode::from(1))
        }
    }
}

#[allow(clippy::print_stdout)]
pub async fn terminal_list(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args)?;
    let (_, bank) = open_bank(&config).await?;
    let mut cursor: Option<String> = None;
    loop {
        let page = bank
            .list_terminals(&Caller::anonymous("cli"), cursor.as_deref(), Some(200))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for terminal in &page.items {
            println!("{}\t{}\t{}\t{}", terminal.id, terminal.status, terminal.created_at, terminal.name);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

#[allow(clippy::print_stdout)]
pub async fn audit_verify(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args)?;
    let (_, bank) = open_bank(&config).await?;
    let report = bank.verify_journal(&Caller::anonymous("cli")).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("audit journal: {} chains, {} events", report.chains, report.events);
    if report.problems.is_empty() {
        println!("ok: every chain is intact up to its anchored head");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &report.problems {
        println!("TAMPERED: {problem}");
    }
    Ok(ExitCode::from(1))
}
