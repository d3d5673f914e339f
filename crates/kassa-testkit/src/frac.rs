//! Exact fractions for tests that check money maths independently of the
//! service's fixed-point formulas: sums of reduced `i128` fractions, no
//! common denominator, no floats.

/// The greatest common divisor (non-negative).
pub fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

/// Whether `year` of the Gregorian calendar has 366 days.
pub fn is_leap(year: i16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// The days in `year`: 365 or 366.
pub fn days_in_year(year: i16) -> i128 {
    if is_leap(year) { 366 } else { 365 }
}

/// An exact fraction `numerator / denominator`, always reduced; the
/// denominator is positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frac(pub i128, pub i128);

impl Frac {
    pub const ZERO: Frac = Frac(0, 1);

    /// `n / d` reduced. `d` must not be 0.
    pub fn new(n: i128, d: i128) -> Frac {
        let (n, d) = if d < 0 { (-n, -d) } else { (n, d) };
        let g = gcd(n, d).max(1);
        Frac(n / g, d / g)
    }

    /// The largest integer not above the fraction.
    pub fn floor(self) -> i128 {
        self.0.div_euclid(self.1)
    }
}

impl std::ops::Add for Frac {
    type Output = Frac;

    fn add(self, other: Frac) -> Frac {
        Frac::new(self.0 * other.1 + other.0 * self.1, self.1 * other.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_reduce_add_and_floor() {
        assert_eq!(Frac::new(6, 8), Frac(3, 4));
        assert_eq!(Frac::new(3, -6), Frac(-1, 2));
        assert_eq!(Frac::new(1, 3) + Frac::new(1, 6), Frac(1, 2));
        assert_eq!(Frac::new(7, 2).floor(), 3);
        assert_eq!(Frac::new(-7, 2).floor(), -4);
        assert_eq!((Frac::ZERO + Frac::new(5, 1)).floor(), 5);
        assert!(is_leap(2024) && is_leap(2000) && !is_leap(1900) && !is_leap(2026));
        assert_eq!(days_in_year(2028), 366);
    }
}
