//! The terminal tests' harness: the HTTP harness of kassa-http (a bank on a
//! fresh SQLite or PostgreSQL database, served over HTTP on loopback), the
//! same bank served over the terminal protocol with a test CA, and a
//! minimal line client that checks the clock rules on every reply.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../kassa-http/tests/common/mod.rs"]
pub mod common;

use std::sync::Arc;
use std::time::Duration;

pub use common::*;
use kassa_terminal::{TerminalServer, TerminalSettings};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A test CA and a server certificate for `localhost` signed by it.
pub struct TestTls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

pub fn test_tls() -> TestTls {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_cert.der().to_vec())).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TestTls { acceptor: TlsAcceptor::from(Arc::new(server)), connector: TlsConnector::from(Arc::new(client)) }
}

/// A terminal server on `127.0.0.1:0` over `bank`.
pub struct Terminals {
    pub address: std::net::SocketAddr,
    pub server: Arc<TerminalServer>,
    pub connector: TlsConnector,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Terminals {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

pub async fn serve_terminals(bank: &Bank, settings: TerminalSettings) -> Terminals {
    let tls = test_tls();
    let server = TerminalServer::start(bank.clone(), settings).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Arc::clone(&server).serve(listener, tls.acceptor, stopped));
    Terminals { address, server, connector: tls.connector, stop, task }
}

/// A terminal connection that keeps a Lamport clock of its own and checks
/// on every reply that the server's clock is above the one it was sent.
pub struct Term {
    stream: BufReader<tokio_rustls::client::TlsStream<TcpStream>>,
    pub clock: u64,
    pub next_id: u64,
    /// Every reply clock seen, in order.
    pub seen: Vec<u64>,
}

impl Term {
    pub async fn connect(terminals: &Terminals) -> Term {
        let tcp = TcpStream::connect(terminals.address).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let stream = terminals.connector.connect(name, tcp).await.unwrap();
        Term { stream: BufReader::new(stream), clock: 0, next_id: 1, seen: Vec::new() }
    }

    /// Writes raw bytes and reads one reply line (`None` when the server
    /// closed the connection).
    pub async fn raw(&mut self, bytes: &[u8]) -> Option<Value> {
        if self.stream.get_mut().write_all(bytes).await.is_err() {
            return None;
        }
        let _ = self.stream.get_mut().flush().await;
        self.read().await
    }

    pub async fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), self.stream.read_line(&mut line)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => None,
            Ok(Ok(_)) => {
                assert!(line.len() <= 16 * 1024, "a reply of {} bytes is over the frame limit", line.len());
                Some(serde_json::from_str(&line).unwrap())
            }
            Err(_) => panic!("no reply within 30 s"),
        }
    }

    /// Sends `op` with `fields` under the next id and this side's clock,
    /// then applies the receive rule to the reply's clock.
    pub async fn call(&mut self, op: &str, fields: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.call_as(id, op, fields).await
    }

    /// [`Term::call`] with a chosen frame id (a retry).
    pub async fn call_as(&mut self, id: u64, op: &str, fields: Value) -> Value {
        self.clock += 1;
        let mut frame = json!({"id": id, "clock": self.clock, "op": op});
        for (key, value) in fields.as_object().cloned().unwrap_or_default() {
            frame[key] = value;
        }
        let mut bytes = serde_json::to_vec(&frame).unwrap();
        bytes.push(b'\n');
        let sent = self.clock;
        let reply = self.raw(&bytes).await.unwrap_or_else(|| panic!("the server closed the connection on {op}"));
        assert_eq!(reply["id"], json!(id), "{reply}");
        let clock = reply["clock"].as_u64().unwrap();
        assert!(clock > sent, "reply clock {clock} is not above the request's {sent}");
        if let Some(last) = self.seen.last() {
            assert!(clock > *last, "reply clock {clock} is not above the previous reply's {last}");
        }
        self.seen.push(clock);
        self.clock = self.clock.max(clock) + 1;
        reply
    }

    /// A call that must succeed.
    pub async fn ok(&mut self, op: &str, fields: Value) -> Value {
        let reply = self.call(op, fields).await;
        assert_eq!(reply["ok"], true, "{op}: {reply}");
        reply
    }

    /// A call that must fail with `code`.
    pub async fn refused(&mut self, op: &str, fields: Value, code: &str) -> Value {
        let reply = self.call(op, fields).await;
        assert_eq!(reply["ok"], false, "{op} should be refused: {reply}");
        assert_eq!(reply["error"]["code"], code, "{op}: {reply}");
        reply
    }

    pub async fn hello(&mut self, terminal: Option<(i64, &str)>) -> Value {
        let fields = match terminal {
            Some((id, key)) => json!({"protocol_version": 1, "terminal_id": id, "terminal_key": key}),
            None => json!({"protocol_version": 1}),
        };
        self.ok("hello", fields).await
    }
}

/// A customer with a BYN debit card (PIN set) holding `amount`: the card's
/// full number and the account's id.
pub async fn card_customer(app: &App, n: u32, pin: &str, amount: &str) -> (Customer, String, i64) {
    let customer = app.register(n).await;
    let consents = json!([{"document": "terms", "version": "2026-01"}, {"document": "cards", "version": "2026-01"}]);
    let opened = app
        .post(
            "/api/v1/accounts",
            Some(&customer.token),
            json!({"kind": "debit_card", "currency": "BYN", "consents": consents}),
        )
        .await;
    assert_eq!(opened.status, 201, "{}", opened.body);
    let id = id_of(&opened.body);
    let pin_set = app
        .post(
            &format!("/api/v1/accounts/{id}/card/pin"),
            Some(&customer.token),
            json!({"password": PASSWORD, "pin": pin}),
        )
        .await;
    assert_eq!(pin_set.status, 200, "{}", pin_set.body);
    let revealed = app
        .post(&format!("/api/v1/accounts/{id}/card/reveal"), Some(&customer.token), json!({"password": PASSWORD}))
        .await;
    assert_eq!(revealed.status, 200, "{}", revealed.body);
    let number = revealed.body["number"].as_str().unwrap().to_owned();
    if amount != "0" {
        app.deposit(&opened.body, amount).await;
    }
    (customer, number, id)
}

/// A registered terminal's id and key.
pub async fn register_terminal(app: &App, name: &str) -> (i64, String) {
    let answer = app.post("/api/v1/admin/terminals", Some(&app.admin), json!({"name": name})).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    (answer.body["terminal"]["id"].as_i64().unwrap(), answer.body["key"].as_str().unwrap().to_owned())
}
