//! The server's Lamport clock (docs/terminal-protocol.md "The logical
//! clock"): pure and lock-free; persistence of its high-water mark is the
//! server's business (see `server::ClockKeeper`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::ClockField;

/// How far ahead of the server's clock a received clock may be.
pub const AHEAD_MAX: u64 = 1 << 32;
/// The clock never goes past this, so it always fits the journal's signed
/// 64-bit column; reaching it would take 2³¹ maximal jumps.
pub const CLOCK_MAX: u64 = i64::MAX as u64;

/// A received clock the server refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

/// One server's logical clock, shared by all its sessions.
#[derive(Debug)]
pub struct LamportClock {
    value: AtomicU64,
}

impl LamportClock {
    pub fn starting_at(value: u64) -> LamportClock {
        LamportClock { value: AtomicU64::new(value.min(CLOCK_MAX)) }
    }

    pub fn now(&self) -> u64 {
        self.value.load(Ordering::SeqCst)
    }

    /// A receive: `max(own, received) + 1`, the new value. A clock more than
    /// [`AHEAD_MAX`] ahead is refused, and the receive counts as one of 0
    /// (the clock ticks, but does not move to the refused value).
    pub fn receive(&self, received: ClockField) -> (u64, Result<(), OutOfRange>) {
        let mut outcome = (0, Ok(()));
        // The closure may run more than once under contention; the last run
        // is the one that stuck, and it leaves its outcome behind.
        let _ = self.value.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |own| {
            let (remote, verdict) = match received {
                ClockField::Invalid => (0, Ok(())),
                ClockField::Value(remote) if remote <= own.saturating_add(AHEAD_MAX) => (remote, Ok(())),
                ClockField::Value(_) | ClockField::TooLarge => (0, Err(OutOfRange)),
            };
            let next = own.max(remote).saturating_add(1).min(CLOCK_MAX);
            outcome = (next, verdict);
            Some(next)
        });
        outcome
    }

    /// A send: the clock ticks and the frame carries the new value.
    pub fn send(&self) -> u64 {
        let previous = self
            .value
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |own| Some(own.saturating_add(1).min(CLOCK_MAX)))
            .unwrap_or_else(|own| own);
        previous.saturating_add(1).min(CLOCK_MAX)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn receive_takes_the_larger_clock_plus_one_and_send_ticks() {
        let clock = LamportClock::starting_at(10);
        assert_eq!(clock.receive(ClockField::Value(3)), (11, Ok(())));
        assert_eq!(clock.receive(ClockField::Value(40)), (41, Ok(())));
        assert_eq!(clock.send(), 42);
        assert_eq!(clock.receive(ClockField::Invalid), (43, Ok(())));
        assert_eq!(clock.now(), 43);
    }

    #[test]
    fn clocks_too_far_ahead_are_refused_and_leave_the_clock_unharmed() {
        let clock = LamportClock::starting_at(100);
        assert_eq!(clock.receive(ClockField::Value(100 + AHEAD_MAX)), (100 + AHEAD_MAX + 1, Ok(())));
        let now = clock.now();
        assert_eq!(clock.receive(ClockField::Value(now + AHEAD_MAX + 1)), (now + 1, Err(OutOfRange)));
        assert_eq!(clock.receive(ClockField::Value(1 << 63)), (now + 2, Err(OutOfRange)));
        assert_eq!(clock.receive(ClockField::Value(u64::MAX)), (now + 3, Err(OutOfRange)));
        assert_eq!(clock.receive(ClockField::TooLarge), (now + 4, Err(OutOfRange)));
        assert_eq!(clock.now(), now + 4);
    }

    #[test]
    fn the_clock_stops_at_the_journal_maximum_instead_of_wrapping() {
        let clock = LamportClock::starting_at(CLOCK_MAX - 1);
        assert_eq!(clock.send(), CLOCK_MAX);
        assert_eq!(clock.send(), CLOCK_MAX);
        assert_eq!(clock.receive(ClockField::Value(5)).0, CLOCK_MAX);
    }
}
