//! A session's state machine, pure: which operations may come when
//! (docs/terminal-protocol.md "Session states"). The server asks it before
//! doing any work and tells it what happened after.

use crate::codec::{Audience, FrameError, Login, Request};

/// Who is signed in on a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Customer,
    Staff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Connected,
    Greeted,
    SignedIn(Who),
}

/// The state of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionState {
    pub stage: Stage,
    /// The registered terminal the connection said `hello` as.
    pub terminal: Option<i64>,
}

impl Default for SessionState {
    fn default() -> SessionState {
        SessionState { stage: Stage::Connected, terminal: None }
    }
}

impl SessionState {
    /// Whether `request` may be served now; the refusal if not. Nothing
    /// about the bank is asked here, only the session's own state: the
    /// services check roles (teller, manager) and ownership themselves.
    pub fn admit(&self, request: &Request) -> Result<(), FrameError> {
        if self.stage == Stage::Connected && !matches!(request, Request::Hello { .. } | Request::Ping) {
            return Err(FrameError::new("hello_required", "say hello first"));
        }
        let signed_in = match self.stage {
            Stage::SignedIn(who) => Some(who),
            _ => None,
        };
        match request.audience() {
            Audience::Anyone => {
                if signed_in.is_some()
                    && matches!(request, Request::Hello { .. } | Request::Login(_) | Request::Resume { .. })
                {
                    return Err(FrameError::new("already_signed_in", "log out first"));
                }
            }
            Audience::SignedIn => {
                if signed_in.is_none() {
                    return Err(FrameError::new("unauthorized", "sign in first"));
                }
            }
            Audience::Customer => match signed_in {
                None => return Err(FrameError::new("unauthorized", "sign in first")),
                Some(Who::Staff) => return Err(FrameError::new("customers_only", "this is for customers")),
                Some(Who::Customer) => {}
            },
            Audience::Staff => match signed_in {
                None => return Err(FrameError::new("unauthorized", "sign in first")),
                Some(Who::Customer) => return Err(FrameError::new("forbidden", "your role may not do this")),
                Some(Who::Staff) => {}
            },
        }
        let needs_terminal =
            matches!(request, Request::Login(Login::Card { .. }) | Request::Deposit { .. } | Request::Withdraw { .. });
        if needs_terminal && self.terminal.is_none() {
            return Err(FrameError::new(
                "terminal_required",
                "card logins and cash need a registered terminal (hello with terminal_id and terminal_key)",
            ));
        }
        Ok(())
    }

    pub fn greeted(&mut self, terminal: Option<i64>) {
        self.stage = Stage::Greeted;
        self.terminal = terminal;
    }

    pub fn signed_in(&mut self, who: Who) {
        self.stage = Stage::SignedIn(who);
    }

    pub fn signed_out(&mut self) {
        self.stage = Stage::Greeted;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::codec::decode;

    fn admit(state: &SessionState, text: &str) -> Result<(), &'static str> {
        let request = decode(text.as_bytes()).request.map_err(|e| e.code)?;
        state.admit(&request).map_err(|e| e.code)
    }

    #[test]
    fn hello_comes_first_then_sign_in_then_the_role_decides() {
        let mut state = SessionState::default();
        assert_eq!(admit(&state, r#"{"id":1,"op":"balance"}"#), Err("hello_required"));
        assert_eq!(admit(&state, r#"{"id":1,"op":"ping"}"#), Ok(()));
        assert_eq!(admit(&state, r#"{"id":1,"op":"hello","protocol_version":1}"#), Ok(()));
        state.greeted(None);
        assert_eq!(admit(&state, r#"{"id":2,"op":"balance"}"#), Err("unauthorized"));
        assert_eq!(admit(&state, r#"{"id":2,"op":"customers"}"#), Err("unauthorized"));
        assert_eq!(admit(&state, r#"{"id":2,"op":"logout"}"#), Err("unauthorized"));
        assert_eq!(admit(&state, r#"{"id":2,"op":"login","card_number":"4","pin":"1"}"#), Err("terminal_required"));
        assert_eq!(admit(&state, r#"{"id":2,"op":"login","phone":"+1","password":"p"}"#), Ok(()));
        state.signed_in(Who::Customer);
        assert_eq!(admit(&state, r#"{"id":3,"op":"balance"}"#), Ok(()));
        assert_eq!(admit(&state, r#"{"id":3,"op":"withdraw","amount":"1"}"#), Err("terminal_required"));
        assert_eq!(admit(&state, r#"{"id":3,"op":"customers"}"#), Err("forbidden"));
        assert_eq!(admit(&state, r#"{"id":3,"op":"login","phone":"+1","password":"p"}"#), Err("already_signed_in"));
        state.signed_out();
        state.signed_in(Who::Staff);
        assert_eq!(admit(&state, r#"{"id":4,"op":"balance"}"#), Err("customers_only"));
        assert_eq!(admit(&state, r#"{"id":4,"op":"transactions"}"#), Ok(()));
        let mut terminal = SessionState::default();
        terminal.greeted(Some(7));
        assert_eq!(admit(&terminal, r#"{"id":1,"op":"login","card_number":"4","pin":"1"}"#), Ok(()));
        terminal.signed_in(Who::Customer);
        assert_eq!(admit(&terminal, r#"{"id":2,"op":"deposit","amount":"1"}"#), Ok(()));
    }
}
