//! The one checking function of the terminal protocol's fuzzing, shared by
//! the `cargo fuzz` target (fuzz/fuzz_targets/frames.rs includes this file
//! by path) and the corpus replay test (tests/fuzz_corpus.rs), so that CI
//! replays the committed corpus through exactly what the fuzzer ran.
//!
//! The input is a byte stream as a connection would carry it: split into
//! lines at `\n` (a trailing `\r` dropped, as the server does), each line
//! decoded, given to the Lamport clock and to the session state machine,
//! and answered with a reply built by the codec. A failed invariant panics,
//! which is what the fuzzer and the test report.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use kassa_terminal::clock::{AHEAD_MAX, CLOCK_MAX, LamportClock};
use kassa_terminal::codec::{self, ClockField, FRAME_MAX_BYTES, FrameError, Login, Request};
use kassa_terminal::session::{SessionState, Stage, Who};
use serde_json::{Value, json};

/// Where the server's clock starts, chosen by the input's length so that
/// the saturation at [`CLOCK_MAX`] is fuzzed too without a prefix byte
/// that would make every corpus file unreadable.
const STARTS: [u64; 4] = [0, 1_000, 1 << 40, CLOCK_MAX - 3];

/// Runs one byte stream through the decoder, the clock and the session
/// state machine, checking every invariant on the way.
pub fn check(data: &[u8]) {
    let clock = LamportClock::starting_at(STARTS[data.len() % STARTS.len()]);
    let mut state = SessionState::default();
    for raw in data.split(|byte| *byte == b'\n') {
        // The server reads at most a frame's worth of bytes, line end
        // included; a longer line gets `frame_too_large` and the connection
        // closes, so nothing after it is ever decoded.
        if raw.len() >= FRAME_MAX_BYTES {
            let sent = send(&clock);
            check_reply(
                &codec::reply_error(None, sent, "frame_too_large", "a frame is at most 16 KiB", None),
                None,
                sent,
            );
            return;
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        frame(&clock, &mut state, line);
    }
}

/// One frame, as `TerminalServer::frame` serves it: receive, admit, act,
/// send.
fn frame(clock: &LamportClock, state: &mut SessionState, line: &[u8]) {
    let frame = codec::decode(line);
    if let Some(id) = frame.id {
        assert!(id <= codec::ID_MAX, "id {id} is over 2^53 - 1");
    }
    let before = clock.now();
    let (received, verdict) = clock.receive(frame.clock);
    check_receive(before, frame.clock, received, verdict.is_ok());
    assert_eq!(clock.now(), received, "receive returned {received} but the clock is at {}", clock.now());

    let outcome: Result<&'static str, FrameError> = match (verdict, frame.request) {
        (Err(_), _) => Err(FrameError::new("clock_out_of_range", "the clock is too far ahead")),
        (Ok(()), Err(error)) => Err(error),
        (Ok(()), Ok(request)) => match state.admit(&request) {
            Err(error) => Err(error),
            Ok(()) => {
                check_admitted(state, &request);
                apply(state, &request);
                Ok(request.op())
            }
        },
    };
    let sent = send(clock);
    let reply = match outcome {
        Ok(op) => {
            // A body that tries to override the envelope: the codec must
            // keep the envelope's own id, clock and ok.
            codec::reply_ok(frame.id, sent, json!({"op": op, "id": "spoofed", "clock": -1, "ok": false}))
        }
        Err(error) => {
            check_code(error.code);
            // The extra fields as the server adds them.
            codec::reply_error(frame.id, sent, error.code, &error.message, error.extra())
        }
    };
    check_reply(&reply, frame.id, sent);
}

/// The Lamport receive rule, with the refusal of far-ahead clocks.
fn check_receive(before: u64, field: ClockField, received: u64, accepted: bool) {
    let tick = before.saturating_add(1).min(CLOCK_MAX);
    assert!(received >= before, "the clock went back from {before} to {received} on {field:?}");
    assert!(received > before || before == CLOCK_MAX, "the clock did not tick on {field:?} at {before}");
    match field {
        ClockField::Invalid => {
            assert!(accepted, "a missing or invalid clock counts as 0, never as out of range");
            assert_eq!(received, tick, "an invalid clock is a receive of 0");
        }
        ClockField::TooLarge => {
            assert!(!accepted, "a clock beyond 64 bits must be refused");
            assert_eq!(received, tick, "a refused clock moved the clock to {received}");
        }
        ClockField::Value(remote) => {
            if remote > before.saturating_add(AHEAD_MAX) {
                assert!(!accepted, "clock {remote} is more than 2^32 ahead of {before} but was accepted");
                assert_eq!(received, tick, "the refused clock {remote} moved the clock to {received}");
            } else {
                assert!(accepted, "clock {remote} is within 2^32 of {before} but was refused");
                assert_eq!(received, before.max(remote).saturating_add(1).min(CLOCK_MAX), "max(own, received) + 1");
            }
        }
    }
}

/// What the session admitted agrees with the documented session states.
fn check_admitted(state: &SessionState, request: &Request) {
    let op = request.op();
    if state.stage == Stage::Connected {
        assert!(is_open(request), "{op} admitted before hello");
    }
    match request.audience() {
        codec::Audience::Customer => {
            assert_eq!(state.stage, Stage::SignedIn(Who::Customer), "{op} admitted in {:?}", state.stage);
        }
        codec::Audience::Staff => {
            assert_eq!(state.stage, Stage::SignedIn(Who::Staff), "{op} admitted in {:?}", state.stage);
        }
        codec::Audience::SignedIn => {
            assert!(matches!(state.stage, Stage::SignedIn(_)), "{op} admitted in {:?}", state.stage);
        }
        codec::Audience::Anyone => {
            if matches!(request, Request::Hello { .. } | Request::Login(_) | Request::Resume { .. }) {
                assert!(!matches!(state.stage, Stage::SignedIn(_)), "{op} admitted while signed in");
            }
        }
    }
    let cash =
        matches!(request, Request::Login(Login::Card { .. }) | Request::Deposit { .. } | Request::Withdraw { .. });
    if cash {
        assert!(state.terminal.is_some(), "{op} admitted without a registered terminal");
    }
}

/// The state changes the server makes after an admitted operation succeeds
/// (`TerminalServer::execute`); the bank is assumed to say yes.
fn apply(state: &mut SessionState, request: &Request) {
    match request {
        Request::Hello { protocol_version, terminal, .. } if codec::PROTOCOL_VERSIONS.contains(protocol_version) => {
            state.greeted(terminal.as_ref().map(|(id, _)| *id));
        }
        Request::Login(Login::Staff { .. }) => state.signed_in(Who::Staff),
        Request::Login(_) | Request::Resume { .. } => state.signed_in(Who::Customer),
        Request::Logout => state.signed_out(),
        _ => {}
    }
}

/// The operations a connection may send before `hello`.
fn is_open(request: &Request) -> bool {
    matches!(request, Request::Hello { .. } | Request::Ping)
}

fn send(clock: &LamportClock) -> u64 {
    let before = clock.now();
    let sent = clock.send();
    assert!(sent > before || before == CLOCK_MAX, "send did not tick: {before} -> {sent}");
    assert_eq!(clock.now(), sent, "send returned {sent} but the clock is at {}", clock.now());
    sent
}

/// An error code is stable: non-empty, lower-case letters and `_` only.
fn check_code(code: &str) {
    assert!(!code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "unstable code {code:?}");
}

/// A reply is one JSON object on one line, within the frame limit, with
/// the request's id, the clock it was sent at and `ok`.
fn check_reply(reply: &[u8], id: Option<u64>, sent: u64) {
    assert_eq!(reply.last(), Some(&b'\n'), "a reply ends its line");
    let body = &reply[..reply.len() - 1];
    assert!(!body.contains(&b'\n'), "a reply is one line");
    assert!(reply.len() <= FRAME_MAX_BYTES, "a reply of {} bytes is over the 16 KiB frame limit", reply.len());
    let value: Value = serde_json::from_slice(body).expect("a reply is JSON");
    let object = value.as_object().expect("a reply is a JSON object");
    assert_eq!(object.get("id"), Some(&id.map_or(Value::Null, Value::from)), "the reply's id");
    assert_eq!(object.get("clock").and_then(Value::as_u64), Some(sent), "the reply's clock");
    match object.get("ok") {
        Some(Value::Bool(true)) => assert!(object.get("error").is_none(), "an ok reply carries no error"),
        Some(Value::Bool(false)) => {
            let code = object.get("error").and_then(|error| error.get("code")).and_then(Value::as_str);
            check_code(code.expect("an error reply has error.code"));
        }
        other => panic!("the reply's ok is {other:?}"),
    }
}
