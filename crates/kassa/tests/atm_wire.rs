//! The protocol client against a small scripted TLS server on loopback:
//! trust on first use (pinned, then refused when the certificate changes),
//! frame ids and the Lamport clock, the 16 KiB line limit, and a dropped
//! connection during a withdrawal answered by `hello`, `resume` and the
//! same frame again.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "a test fails by panicking")]

#[path = "../src/atm/mod.rs"]
#[allow(dead_code, unreachable_pub)]
mod atm;

use std::sync::{Arc, Mutex};

use atm::wire::{Client, Hello, TrustConfig, WireError};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What the scripted server does with a frame.
enum Answer {
    Reply(Value),
    /// Close the connection without replying.
    Drop,
    /// Send this raw line.
    Raw(Vec<u8>),
}

/// Every frame the server received: (connection number, frame).
type Log = Arc<Mutex<Vec<(usize, Value)>>>;

fn tls_config() -> Arc<ServerConfig> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = CertificateDer::from(generated.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

/// Serves on `listener` until the test ends; `answer(connection, frame)`.
fn serve<F>(listener: TcpListener, config: Arc<ServerConfig>, answer: F) -> Log
where
    F: Fn(usize, &Value) -> Answer + Send + Sync + 'static,
{
    let log: Log = Arc::default();
    let answer = Arc::new(answer);
    let server_log = log.clone();
    tokio::spawn(async move {
        let acceptor = TlsAcceptor::from(config);
        let mut connection = 0;
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            connection += 1;
            let (acceptor, answer, log) = (acceptor.clone(), answer.clone(), server_log.clone());
            let number = connection;
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let mut stream = BufReader::new(tls);
                let mut clock: u64 = 0;
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let frame: Value = serde_json::from_str(&line).unwrap();
                    log.lock().unwrap().push((number, frame.clone()));
                    clock = clock.max(frame["clock"].as_u64().unwrap()) + 1;
                    let bytes = match answer(number, &frame) {
                        Answer::Drop => return,
                        Answer::Raw(bytes) => bytes,
                        Answer::Reply(mut reply) => {
                            clock += 1;
                            reply["id"] = frame["id"].clone();
                            if reply.get("clock").is_none() {
                                reply["clock"] = json!(clock);
                            }
                            let mut bytes = serde_json::to_vec(&reply).unwrap();
                            bytes.push(b'\n');
                            bytes
                        }
                    };
                    if stream.get_mut().write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    log
}

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (listener, address)
}

fn ok() -> Answer {
    Answer::Reply(json!({"ok": true}))
}

#[tokio::test]
async fn trust_on_first_use_pins_and_then_refuses_another_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("kassa").join("known_terminals");
    let (first, address) = listener().await;
    let log = serve(first, tls_config(), |_, _| ok());
    let trust = TrustConfig::Pinned(store.clone());
    let mut client = Client::connect(&address, trust.clone(), Hello::default()).await.unwrap();
    assert!(client.call("ping", Map::new()).await.unwrap().is_ok());
    let pinned = std::fs::read_to_string(&store).unwrap();
    assert!(pinned.starts_with(&format!("{address} sha256:")), "{pinned}");
    // The same certificate again: accepted, nothing added.
    Client::connect(&address, trust.clone(), Hello::default()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&store).unwrap(), pinned);
    assert_eq!(log.lock().unwrap().len(), 1);
    drop(client);

    // Another server (another certificate) on a pinned address is refused.
    let (second, other) = listener().await;
    serve(second, tls_config(), |_, _| ok());
    let line = pinned.replace(&address, &other);
    std::fs::write(&store, line).unwrap();
    let error = Client::connect(&other, trust, Hello::default()).await.unwrap_err();
    let WireError::PinMismatch { address: refused, .. } = &error else { panic!("not a pin mismatch: {error}") };
    assert_eq!(refused, &other);
    assert!(error.to_string().contains("may be an impostor"), "{error}");
}

#[tokio::test]
async fn frames_are_numbered_and_the_clock_follows_lamport() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, address) = listener().await;
    // The server's clock jumps to 1000 at the second request.
    let log = serve(socket, tls_config(), |_, frame| match frame["op"].as_str() {
        Some("balance") => Answer::Reply(json!({"ok": true, "clock": 1000, "balance": "1.00"})),
        _ => ok(),
    });
    let hello = Hello { client: "test".into(), terminal: Some((7, "key-7".into())) };
    let mut client = Client::connect(&address, TrustConfig::Pinned(dir.path().join("k")), hello).await.unwrap();
    let greeted = client.call("hello", Map::new()).await.unwrap();
    assert_eq!((greeted.request_clock, greeted.clock), (1, 3));
    let balance = client.call("balance", Map::new()).await.unwrap();
    assert_eq!((balance.request_clock, balance.clock), (5, 1000));
    assert_eq!(client.clock(), 1001);
    client.call("ping", Map::new()).await.unwrap();
    let frames: Vec<Value> = log.lock().unwrap().iter().map(|(_, frame)| frame.clone()).collect();
    let ids: Vec<u64> = frames.iter().map(|frame| frame["id"].as_u64().unwrap()).collect();
    let clocks: Vec<u64> = frames.iter().map(|frame| frame["clock"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(clocks, [1, 5, 1002]);
    assert_eq!(frames[0]["protocol_version"], json!(1));
    assert_eq!(frames[0]["terminal_id"], json!(7));
    assert_eq!(frames[0]["terminal_key"], json!("key-7"));
    let ticks = client.take_ticks();
    assert_eq!(ticks.len(), 6, "a send and a receive per request");
    assert!(ticks.windows(2).all(|pair| pair[0].after < pair[1].after), "the clock only goes up");
}

#[tokio::test]
async fn a_line_over_16_kib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, address) = listener().await;
    serve(socket, tls_config(), |_, _| {
        let mut line = format!(r#"{{"id":1,"clock":2,"ok":true,"pad":"{}"}}"#, "x".repeat(16 * 1024));
        line.push('\n');
        Answer::Raw(line.into_bytes())
    });
    let mut client =
        Client::connect(&address, TrustConfig::Pinned(dir.path().join("k")), Hello::default()).await.unwrap();
    let error = client.call("ping", Map::new()).await.unwrap_err();
    assert!(matches!(error, WireError::FrameTooLarge), "{error}");
    // And a request over 16 KiB is not sent at all.
    let mut fields = Map::new();
    fields.insert("description".into(), json!("y".repeat(17 * 1024)));
    let mut client =
        Client::connect(&address, TrustConfig::Pinned(dir.path().join("k")), Hello::default()).await.unwrap();
    assert!(matches!(client.call("transfer", fields).await, Err(WireError::RequestTooLarge(_))));
}

#[tokio::test]
async fn a_dropped_withdrawal_is_resent_with_the_same_id_after_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, address) = listener().await;
    let log = serve(socket, tls_config(), |connection, frame| match (connection, frame["op"].as_str()) {
        (_, Some("login")) => Answer::Reply(json!({"ok": true, "role": "customer", "session_token": "tok-1"})),
        (1, Some("withdraw")) => Answer::Drop,
        (_, Some("resume")) if frame["session_token"] == json!("tok-1") => {
            Answer::Reply(json!({"ok": true, "role": "customer", "session_token": "tok-1"}))
        }
        (_, Some("withdraw")) => Answer::Reply(json!({"ok": true, "transfer": {"id": "t-1"}})),
        _ => ok(),
    });
    let mut client =
        Client::connect(&address, TrustConfig::Pinned(dir.path().join("k")), Hello::default()).await.unwrap();
    client.call("hello", Map::new()).await.unwrap();
    let mut login = Map::new();
    login.insert("phone".into(), json!("+375291234567"));
    login.insert("password".into(), json!("pw"));
    client.call("login", login).await.unwrap();
    let mut withdraw = Map::new();
    withdraw.insert("amount".into(), json!("5.00"));
    let reply = client.call("withdraw", withdraw).await.unwrap();
    assert_eq!(reply.id, Some(3));
    assert_eq!(reply.field("transfer"), Some(&json!({"id": "t-1"})));
    assert_eq!(client.reconnects, 1);
    let seen: Vec<(usize, String, u64)> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(connection, frame)| {
            (*connection, frame["op"].as_str().unwrap().to_owned(), frame["id"].as_u64().unwrap())
        })
        .collect();
    let expected =
        [(1, "hello", 1), (1, "login", 2), (1, "withdraw", 3), (2, "hello", 4), (2, "resume", 5), (2, "withdraw", 3)];
    let expected: Vec<(usize, String, u64)> = expected.iter().map(|(c, op, id)| (*c, (*op).to_owned(), *id)).collect();
    assert_eq!(seen, expected);
    // The next frame takes the next number after the ones used by the reconnect.
    let next = client.call("ping", Map::new()).await.unwrap();
    assert_eq!(next.id, Some(6));
    // The resent frame is the same request, clock aside.
    let frames = log.lock().unwrap().clone();
    let strip = |frame: &Value| {
        let mut frame = frame.clone();
        frame.as_object_mut().unwrap().remove("clock");
        frame
    };
    assert_eq!(strip(&frames[2].1), strip(&frames[5].1));

    // Without a session there is nothing to resume: the loss is reported.
    let (socket, address) = listener().await;
    serve(socket, tls_config(), |_, _| Answer::Drop);
    let mut client =
        Client::connect(&address, TrustConfig::Pinned(dir.path().join("k")), Hello::default()).await.unwrap();
    assert!(matches!(client.call("hello", Map::new()).await, Err(WireError::Closed)));
}

#[tokio::test]
async fn an_idle_timeout_read_late_is_a_lost_connection_and_the_session_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, address) = listener().await;
    let log = serve(socket, tls_config(), |connection, frame| {
        match (connection, frame["op"].as_str()) {
        (_, Some("login" | "resume")) => Answer::Reply(json!({"ok": true, "role": "customer", "session_token": "tok-2"})),
        // What the server sent when it closed the idle session, as the client reads it.
        (1, Some("balance")) => Answer::Raw(
            br#"{"id":null,"clock":90,"ok":false,"error":{"code":"idle_timeout","message":"idle"}}"#.iter().copied().chain([b'\n']).collect(),
        ),
        (_, Some("balance")) => Answer::Reply(json!({"ok": true, "balance": "1.00"})),
        _ => ok(),
    }
    });
    let mut client =
        Client::connect(&address, TrustConfig::Pinned(dir.path().join("k")), Hello::default()).await.unwrap();
    client.call("hello", Map::new()).await.unwrap();
    client
        .call("login", Map::from_iter([("phone".into(), json!("+1")), ("password".into(), json!("p"))]))
        .await
        .unwrap();
    let reply = client.call("balance", Map::new()).await.unwrap();
    assert_eq!(reply.field("balance"), Some(&json!("1.00")));
    assert_eq!(client.reconnects, 1);
    let ops: Vec<String> =
        log.lock().unwrap().iter().map(|(_, frame)| frame["op"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ops, ["hello", "login", "balance", "hello", "resume", "balance"]);
}

/// Checked when this file compiles: a call can be awaited inside
/// `tokio::spawn` (a benchmark runs one client per task).
#[allow(dead_code)]
fn a_call_is_send(client: &mut Client) {
    fn send<T: Send>(_: &T) {}
    send(client);
    let call = client.call("ping", Map::new());
    send(&call);
}

#[tokio::test]
async fn a_sign_in_after_an_idle_close_is_sent_again_but_a_lost_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, address) = listener().await;
    let log = serve(socket, tls_config(), |connection, frame| {
        match (connection, frame["op"].as_str()) {
        (1, Some("login")) => Answer::Raw(
            br#"{"id":null,"clock":90,"ok":false,"error":{"code":"idle_timeout","message":"idle"}}"#
                .iter()
                .copied()
                .chain([b'\n'])
                .collect(),
        ),
        // The second connection loses the reply to a sign-in.
        (2, Some("login")) => Answer::Drop,
        (_, Some("login")) => Answer::Reply(json!({"ok": true, "role": "customer", "session_token": "tok-3"})),
        _ => ok(),
    }
    });
    let mut client =
        Client::connect(&address, TrustConfig::Pinned(dir.path().join("k")), Hello::default()).await.unwrap();
    client.call("hello", Map::new()).await.unwrap();
    let login = || Map::from_iter([("phone".into(), json!("+1")), ("password".into(), json!("p"))]);
    let error = client.call("login", login()).await.unwrap_err();
    assert!(matches!(error, WireError::Closed), "a lost sign-in is reported, not sent a third time: {error}");
    let ops: Vec<(usize, String)> =
        log.lock().unwrap().iter().map(|(c, frame)| (*c, frame["op"].as_str().unwrap().to_owned())).collect();
    let expected = [(1, "hello"), (1, "login"), (2, "hello"), (2, "login")];
    assert_eq!(ops, expected.map(|(c, op)| (c, op.to_owned())));
    // The next call starts over on a new connection.
    assert!(client.call("hello", Map::new()).await.unwrap().is_ok());
    assert!(client.call("login", login()).await.unwrap().is_ok());
    assert!(client.is_signed_in());
}
