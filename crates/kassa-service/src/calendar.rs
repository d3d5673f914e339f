//! Days in the bank's time zone: "today" for daily limits, the days of a
//! statement, the days interest accrues on. Dates are `YYYY-MM-DD`, ranges
//! inclusive (DESIGN.md section 5). The zone database is bundled (jiff), so
//! every node computes the same day for the same instant.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan as _};

use crate::{Bank, ServiceError, ServiceResult};

pub use jiff::civil::Date as Day;

/// The bank's zone, or an error naming the configured zone.
pub fn zone(name: &str) -> ServiceResult<TimeZone> {
    TimeZone::get(name).map_err(|_| ServiceError::Internal(format!("unknown time zone {name:?}")))
}

/// Parses a `YYYY-MM-DD` date given in `field`.
pub fn parse_day(field: &str, text: &str) -> ServiceResult<Day> {
    let text = text.trim();
    let valid = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    valid
        .then(|| text.parse::<Date>().ok())
        .flatten()
        .ok_or_else(|| ServiceError::invalid(field, "date_invalid", format!("{field} must be a date as YYYY-MM-DD")))
}

/// The day an instant (µs since the Unix epoch) falls on in `zone`.
pub fn day_of(zone: &TimeZone, at_us: i64) -> Day {
    Timestamp::from_microsecond(at_us).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned(zone.clone()).date()
}

/// The first microsecond of `day` in `zone` (a day that starts in a DST gap
/// starts at the gap's end).
pub fn day_start_us(zone: &TimeZone, day: Day) -> ServiceResult<i64> {
    let zoned =
        day.to_zoned(zone.clone()).map_err(|error| ServiceError::Internal(format!("the start of {day}: {error}")))?;
    Ok(zoned.timestamp().as_microsecond())
}

/// `[start, end)` in µs of the inclusive day range `from..=to`.
pub fn range_us(zone: &TimeZone, from: Day, to: Day) -> ServiceResult<(i64, i64)> {
    let after =
        to.checked_add(1.day()).map_err(|_| ServiceError::invalid("to", "date_invalid", "to is out of range"))?;
    Ok((day_start_us(zone, from)?, day_start_us(zone, after)?))
}

/// The next day.
pub fn next_day(day: Day) -> Option<Day> {
    day.checked_add(1.day()).ok()
}

impl Bank {
    /// The bank's time zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The day it is now in the bank's zone.
    pub fn today(&self) -> Day {
        day_of(&self.zone, kassa_store::now_us())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn minsk_days_start_at_21_utc_the_day_before() {
        let minsk = zone("Europe/Minsk").unwrap();
        let day: Day = "2026-03-01".parse().unwrap();
        let start = day_start_us(&minsk, day).unwrap();
        // 2026-02-28T21:00:00Z
        assert_eq!(start, 1_772_312_400_000_000);
        assert_eq!(day_of(&minsk, start), day);
        assert_eq!(day_of(&minsk, start - 1).to_string(), "2026-02-28");
    }

    #[test]
    fn kyiv_has_a_23_hour_day_in_spring() {
        let kyiv = zone("Europe/Kyiv").unwrap();
        let (start, end) = range_us(&kyiv, "2026-03-29".parse().unwrap(), "2026-03-29".parse().unwrap()).unwrap();
        assert_eq!(end - start, 23 * 3600 * 1_000_000);
    }

    #[test]
    fn dates_are_strict() {
        assert!(parse_day("from", "2026-02-28").is_ok());
        for bad in ["2026-02-30", "2026-2-28", "20260228", "2026-02-28T00:00", "", "２０２６-02-28"] {
            assert_eq!(parse_day("from", bad).unwrap_err().code(), "date_invalid", "{bad}");
        }
    }
}
