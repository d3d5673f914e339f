//! Bad frames and the server's limits: every malformed frame gets its
//! stable code and changes nothing, an oversized frame is answered and the
//! connection closed, clocks too far ahead are refused without harm, and
//! idle, silent, plaintext, too many and too fast clients are each stopped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::too_many_lines, missing_docs)]

mod support;
use support::*;

use std::time::Duration;

use kassa_terminal::TerminalSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn bad_frames_get_codes_and_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let terminals = serve_terminals(&app.bank, TerminalSettings::default()).await;
    let anna = app.register(1).await;
    let account = app.open_account(&anna.token).await;
    app.deposit(&account, "40.00").await;
    let journal_before =
        app.get("/api/v1/staff/audit?limit=200", &app.manager).await.body["items"].as_array().unwrap().len();

    let mut term = Term::connect(&terminals).await;
    // Before sign-in, every operation that needs it is refused.
    for (frame, code) in [
        (r#"{"id":1,"clock":1,"op":"withdraw","amount":"1.00"}"#, "hello_required"),
        (r#"{"id":2,"clock":1,"op":"hello","protocol_version":1}"#, ""),
        (r#"{"id":3,"clock":1,"op":"withdraw","amount":"1.00"}"#, "unauthorized"),
        (r#"{"id":4,"clock":1,"op":"transfer","to_phone":"+375291234567","amount":"1.00"}"#, "unauthorized"),
        (r#"{"id":5,"clock":1,"op":"customers"}"#, "unauthorized"),
        (r#"{"id":6,"clock":1,"op":"logout"}"#, "unauthorized"),
    ] {
        let reply = term.raw(format!("{frame}\n").as_bytes()).await.unwrap();
        if code.is_empty() {
            assert_eq!(reply["ok"], true, "{reply}");
        } else {
            assert_eq!(reply["error"]["code"], code, "{frame}: {reply}");
        }
    }
    term.ok("login", json!({"phone": anna.phone, "password": PASSWORD})).await;
    let clock_before = terminals.server.clock();
    let malformed: &[(&[u8], &str)] = &[
        (b"this is not json", "body_not_json"),
        (b"[1, 2, 3]", "body_not_json"),
        (b"\"a string\"", "body_not_json"),
        (b"{\"id\":1,\"clock\":2,\"op\":\"withdraw\",\"amount\":", "body_not_json"),
        (b"\xff\xfe\xfd", "body_not_json"),
        (b"", "body_not_json"),
        (br#"{"clock":2,"op":"balance"}"#, "field_required"),
        (br#"{"id":"seven","op":"balance"}"#, "body_invalid_field"),
        (br#"{"id":1.5,"op":"balance"}"#, "body_invalid_field"),
        (br#"{"id":7}"#, "op_missing"),
        (br#"{"id":7,"op":["withdraw"]}"#, "body_invalid_field"),
        (br#"{"id":7,"op":"launch_missiles"}"#, "op_unknown"),
        (br#"{"id":7,"op":"withdraw"}"#, "field_required"),
        (br#"{"id":7,"op":"transfer","amount":"1.00"}"#, "field_required"),
        (br#"{"id":7,"op":"transfer","amount":1.0,"to_phone":"+375297654321"}"#, "body_invalid_field"),
        (br#"{"id":7,"op":"transfer","amount":"1.00","to_phone":7}"#, "body_invalid_field"),
        (br#"{"id":7,"op":"transfer","amount":"1.00","to_phone":"+1\u0000"}"#, "nul_character"),
        (br#"{"id":7,"op":"history","limit":"ten"}"#, "body_invalid_field"),
        (br#"{"id":7,"op":"history","limit":100000}"#, "limit_out_of_range"),
        (br#"{"id":7,"op":"history","cursor":"abc"}"#, "cursor_invalid"),
        (br#"{"id":7,"op":"balance","account":"not an account"}"#, "account_number_invalid"),
        (br#"{"id":7,"op":"customers"}"#, "forbidden"),
        (br#"{"id":7,"op":"login","phone":"+375291234567","password":"x"}"#, "already_signed_in"),
        (br#"{"id":7,"op":"hello","protocol_version":1}"#, "already_signed_in"),
        (br#"{"id":7,"clock":1180591620717411303424,"op":"withdraw","amount":"40.00"}"#, "clock_out_of_range"),
        (br#"{"id":7,"clock":9223372036854775808,"op":"withdraw","amount":"40.00"}"#, "clock_out_of_range"),
        (br#"{"id":7,"clock":18446744073709551615,"op":"withdraw","amount":"40.00"}"#, "clock_out_of_range"),
        (br#"{"id":7,"clock":1e300,"op":"withdraw","amount":"40.00"}"#, "clock_out_of_range"),
    ];
    for (frame, code) in malformed {
        let mut line = frame.to_vec();
        line.push(b'\n');
        let reply = term.raw(&line).await.unwrap_or_else(|| panic!("closed on {}", String::from_utf8_lossy(frame)));
        assert_eq!(reply["ok"], false, "{reply}");
        assert_eq!(reply["error"]["code"], *code, "{engine:?}: {}: {reply}", String::from_utf8_lossy(frame));
        let message = reply["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{reply}");
    }
    // The refused clocks left the server's clock where the frames alone
    // took it: one receive and one send each.
    let ticks = u64::try_from(malformed.len() * 2).unwrap();
    assert!(terminals.server.clock() <= clock_before + ticks + 2, "{} then {}", clock_before, terminals.server.clock());
    // A frame without a valid clock is a receive of 0: still answered with
    // a clock above the server's.
    let reply = term.raw(b"{\"id\":8,\"clock\":\"x\",\"op\":\"ping\"}\n").await.unwrap();
    assert!(reply["clock"].as_u64().unwrap() > clock_before, "{reply}");
    // A clock just under the limit is taken.
    let ahead = terminals.server.clock() + (1 << 31);
    let reply = term.raw(format!("{{\"id\":9,\"clock\":{ahead},\"op\":\"ping\"}}\n").as_bytes()).await.unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(reply["clock"].as_u64().unwrap() > ahead, "{reply}");

    assert_eq!(term.ok("balance", json!({})).await["balance"], "40.00", "{engine:?}: nothing moved");
    let journal_after =
        app.get("/api/v1/staff/audit?limit=200", &app.manager).await.body["items"].as_array().unwrap().len();
    assert_eq!(journal_after, journal_before + 1, "{engine:?}: only the sign-in was journaled");

    // An oversized frame: an error, then a clean close.
    let mut big = vec![b'x'; 20 * 1024];
    big.push(b'\n');
    let reply = term.raw(&big).await.unwrap();
    assert_eq!(reply["error"]["code"], "frame_too_large", "{reply}");
    assert!(term.read().await.is_none(), "the connection is closed after an oversized frame");
    // A frame of exactly the limit is still read (and is bad JSON).
    let mut term = Term::connect(&terminals).await;
    let mut exact = vec![b' '; 16 * 1024 - 1];
    exact.push(b'\n');
    let reply = term.raw(&exact).await.unwrap();
    assert_eq!(reply["error"]["code"], "body_not_json", "{reply}");
    assert_eq!(app.balance(&anna.token, id_of(&account)).await, "40.00");
}
on_both_engines!(bad_frames_get_codes_and_change_nothing);

/// Lists are paged to fit a frame: a history of long descriptions comes in
/// shorter pages, each reply under 16 KiB, and every item is reachable.
async fn long_lists_fit_in_frames(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let terminals = serve_terminals(&app.bank, TerminalSettings::default()).await;
    let anna = app.register(1).await;
    let account = app.open_account(&anna.token).await;
    app.deposit(&account, "100.00").await;
    let bob = app.register(2).await;
    let bob_account = app.open_account(&bob.token).await;
    let mut term = Term::connect(&terminals).await;
    term.hello(None).await;
    term.ok("login", json!({"phone": anna.phone, "password": PASSWORD})).await;
    let description = "\u{1D11E}".repeat(128);
    for _ in 0..40 {
        term.ok("transfer", json!({"to_account": bob_account["number"], "amount": "0.01", "description": description}))
            .await;
    }
    let mut seen = 0;
    let mut cursor = Value::Null;
    loop {
        // Term::read checks every reply line is at most 16 KiB.
        let page = term.ok("history", json!({"limit": 50, "cursor": cursor})).await;
        let items = page["items"].as_array().unwrap().len();
        assert!(items > 0 && items < 50, "{engine:?}: a page of {items}");
        seen += items;
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen, 41, "{engine:?}: 40 payments and the deposit");
}
on_both_engines!(long_lists_fit_in_frames);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_silent_plaintext_crowded_and_hasty_clients_are_stopped() {
    let Some(app) = spawn_app(Engine::Sqlite).await else { return };
    let settings = TerminalSettings {
        idle_timeout: Duration::from_millis(800),
        handshake_timeout: Duration::from_millis(800),
        max_sessions: 3,
        requests_per_s: 2,
        request_burst: 3,
    };
    let terminals = serve_terminals(&app.bank, settings).await;
    let anna = app.register(1).await;

    // Idle: signed in, then silent; the server says why, signs the session
    // out (it cannot be resumed) and closes.
    let mut idle = Term::connect(&terminals).await;
    idle.hello(None).await;
    let token = idle.ok("login", json!({"phone": anna.phone, "password": PASSWORD})).await["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let said = idle.read().await.unwrap();
    assert_eq!(said["error"]["code"], "idle_timeout", "{said}");
    assert!(idle.read().await.is_none(), "closed after the idle timeout");
    let mut again = Term::connect(&terminals).await;
    again.hello(None).await;
    again.refused("resume", json!({"session_token": token}), "session_revoked").await;
    drop(again);

    // Silent: a TCP connection that never starts TLS is dropped.
    let mut silent = tokio::net::TcpStream::connect(terminals.address).await.unwrap();
    let mut buffer = [0_u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "a silent client is dropped: {read:?}");

    // Plaintext: a JSON frame in the clear gets no application data back.
    let mut plain = tokio::net::TcpStream::connect(terminals.address).await.unwrap();
    plain.write_all(b"{\"id\":1,\"clock\":1,\"op\":\"hello\",\"protocol_version\":1}\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await.unwrap();
    assert!(!answer.contains(&b'{'), "no JSON in the clear: {:?}", String::from_utf8_lossy(&answer));
    assert!(!String::from_utf8_lossy(&answer).contains("ok"), "{answer:?}");

    // Hasty: over the rate, requests are refused (and not served).
    let mut hasty = Term::connect(&terminals).await;
    let mut refused = None;
    for _ in 0..6 {
        let reply = hasty.call("ping", json!({})).await;
        if reply["ok"] == false {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("six pings at once exceed a burst of three");
    assert_eq!(refused["error"]["code"], "too_many_requests", "{refused}");
    assert!(refused["error"]["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{refused}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    hasty.ok("ping", json!({})).await;

    // Crowded: with three sessions open, the fourth is turned away.
    let mut one = Term::connect(&terminals).await;
    one.hello(None).await;
    let mut two = Term::connect(&terminals).await;
    two.hello(None).await;
    let mut fourth = Term::connect(&terminals).await;
    let busy = fourth.read().await.expect("a reply before the close");
    assert_eq!(busy["error"]["code"], "server_busy", "{busy}");
    assert!(fourth.read().await.is_none());
    drop(one);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = Term::connect(&terminals).await;
    next.hello(None).await;
}
