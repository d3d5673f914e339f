//! Exact money: an integer count of minor units together with its currency.
//!
//! Money never touches floating point. An [`Amount`] is a signed count of minor
//! units (kopecks, cents, fils), and a [`Currency`] says how many minor units
//! make one major unit. Amounts cross the wire as strict decimal strings such
//! as `"1250.50"`, which [`Amount::parse`] reads and [`Amount::format`] writes.
//!
//! # The symmetric range
//!
//! Every amount that this module produces lies in `-i64::MAX..=i64::MAX`
//! minor units, that is between [`Amount::MIN`] and [`Amount::MAX`]. The one
//! value left out, `i64::MIN`, has no positive counterpart, so excluding it
//! means that negating an amount (turning a debit into a credit) can never
//! fail. Parsing, the checked arithmetic and [`Amount::try_from_minor`] report
//! [`MoneyError::Overflow`] rather than produce `i64::MIN`. Only
//! [`Amount::from_minor`], which is a `const fn` and cannot fail, lets it in;
//! such a value still formats, and the checked operations treat it as an
//! ordinary operand.

use std::fmt;

/// A currency this ledger knows, identified by its ISO 4217 code.
///
/// The fields are private so that every `Currency` in existence is one of the
/// constants below: code that holds a `Currency` never has to re-check it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

impl Currency {
    /// The Belarusian rouble.
    pub const BYN: Currency = Currency::new(*b"BYN", 2);
    /// The Russian rouble.
    pub const RUB: Currency = Currency::new(*b"RUB", 2);
    /// The Ukrainian hryvnia.
    pub const UAH: Currency = Currency::new(*b"UAH", 2);
    /// The United States dollar.
    pub const USD: Currency = Currency::new(*b"USD", 2);
    /// The euro.
    pub const EUR: Currency = Currency::new(*b"EUR", 2);
    /// The pound sterling.
    pub const GBP: Currency = Currency::new(*b"GBP", 2);
    /// The Polish zloty.
    pub const PLN: Currency = Currency::new(*b"PLN", 2);
    /// The Indian rupee.
    pub const INR: Currency = Currency::new(*b"INR", 2);
    /// The Brazilian real.
    pub const BRL: Currency = Currency::new(*b"BRL", 2);
    /// The Japanese yen, which has no minor unit in practice.
    pub const JPY: Currency = Currency::new(*b"JPY", 0);
    /// The Kuwaiti dinar, which is divided into 1000 fils.
    pub const KWD: Currency = Currency::new(*b"KWD", 3);
    /// The Swiss franc.
    pub const CHF: Currency = Currency::new(*b"CHF", 2);
    /// The Chinese yuan renminbi.
    pub const CNY: Currency = Currency::new(*b"CNY", 2);
    /// The Kazakhstani tenge.
    pub const KZT: Currency = Currency::new(*b"KZT", 2);
    /// The Georgian lari.
    pub const GEL: Currency = Currency::new(*b"GEL", 2);
    /// The Czech koruna.
    pub const CZK: Currency = Currency::new(*b"CZK", 2);
    /// The Swedish krona.
    pub const SEK: Currency = Currency::new(*b"SEK", 2);

    /// Every supported currency, in a fixed order that tests and user
    /// interfaces can rely on.
    pub const ALL: &'static [Currency] = &[
        Currency::BYN,
        Currency::RUB,
        Currency::UAH,
        Currency::USD,
        Currency::EUR,
        Currency::GBP,
        Currency::PLN,
        Currency::INR,
        Currency::BRL,
        Currency::JPY,
        Currency::KWD,
        Currency::CHF,
        Currency::CNY,
        Currency::KZT,
        Currency::GEL,
        Currency::CZK,
        Currency::SEK,
    ];

    /// Builds a constant; it is private so that the list above stays the only
    /// source of currencies.
    const fn new(code: [u8; 3], exponent: u8) -> Currency {
        Currency { code, exponent }
    }

    /// Looks a currency up by its exact ISO code, such as `"BYN"`.
    ///
    /// The match is case-sensitive on purpose: the wire format uses upper
    /// case only, and accepting `"byn"` would give one currency two spellings.
    /// The rejected code is echoed back in the error, cut to 16 characters so
    /// that a hostile input cannot make error messages arbitrarily large.
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        Currency::ALL
            .iter()
            .copied()
            .find(|currency| currency.code.as_slice() == code.as_bytes())
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(16).collect()))
    }

    /// Returns the ISO code, such as `"BYN"`.
    pub fn code(&self) -> &str {
        // The compile-time check below guarantees that every code is ASCII,
        // so the fallback is unreachable; it exists only because this crate
        // does not unwrap.
        match std::str::from_utf8(&self.code) {
            Ok(code) => code,
            Err(_) => "???",
        }
    }

    /// Returns how many decimal places the currency has, such as 2 for BYN.
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// Returns how many minor units make one major unit, such as 100 for BYN.
    pub fn minor_per_major(&self) -> i64 {
        // The compile-time check below keeps every exponent at 18 or less,
        // so this power always fits in an i64.
        10_i64.pow(u32::from(self.exponent))
    }
}

// Checks, when the crate is compiled, the facts that `Currency::code` and
// `Currency::minor_per_major` rely on, so that adding a malformed constant is
// a build error rather than a runtime surprise.
const _: () = {
    let mut i = 0;
    while i < Currency::ALL.len() {
        let currency = Currency::ALL[i];
        assert!(currency.exponent <= 18);
        let mut j = 0;
        while j < currency.code.len() {
            assert!(currency.code[j].is_ascii_uppercase());
            j += 1;
        }
        i += 1;
    }
};

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A signed count of minor units; balances can be negative.
///
/// An amount carries no currency of its own, so it has no `Display`: use
/// [`Amount::format`] with the currency, or [`Money`]. See the module
/// documentation for why the range is `-i64::MAX..=i64::MAX`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(i64);

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl Amount {
    /// No money at all.
    pub const ZERO: Amount = Amount(0);
    /// The largest amount, `i64::MAX` minor units.
    pub const MAX: Amount = Amount(i64::MAX);
    /// The smallest amount this module produces, `-i64::MAX` minor units, so
    /// that `MIN` is exactly the negation of `MAX`.
    pub const MIN: Amount = Amount(-i64::MAX);

    /// Wraps a count of minor units as it is.
    ///
    /// This cannot fail, so it accepts `i64::MIN` too; use
    /// [`Amount::try_from_minor`] for numbers from outside, such as a
    /// database row, to keep the range symmetric.
    pub const fn from_minor(minor: i64) -> Amount {
        Amount(minor)
    }

    /// Wraps a count of minor units, refusing `i64::MIN` with
    /// [`MoneyError::Overflow`] because it lies outside the symmetric range.
    pub fn try_from_minor(minor: i64) -> Result<Amount, MoneyError> {
        within_range(Some(minor))
    }

    /// Returns the count of minor units.
    pub const fn minor(self) -> i64 {
        self.0
    }

    /// Adds two amounts, or reports [`MoneyError::Overflow`] if the sum falls
    /// outside the symmetric range.
    pub fn checked_add(self, other: Amount) -> Result<Amount, MoneyError> {
        within_range(self.0.checked_add(other.0))
    }

    /// Subtracts `other`, or reports [`MoneyError::Overflow`] if the
    /// difference falls outside the symmetric range.
    pub fn checked_sub(self, other: Amount) -> Result<Amount, MoneyError> {
        within_range(self.0.checked_sub(other.0))
    }

    /// Negates the amount; this fails with [`MoneyError::Overflow`] only for
    /// an `i64::MIN` that came in through [`Amount::from_minor`].
    pub fn checked_neg(self) -> Result<Amount, MoneyError> {
        within_range(self.0.checked_neg())
    }

    /// Multiplies by a whole factor, or reports [`MoneyError::Overflow`] if
    /// the product falls outside the symmetric range.
    pub fn checked_mul(self, factor: i64) -> Result<Amount, MoneyError> {
        within_range(self.0.checked_mul(factor))
    }

    /// Tells whether the amount is greater than zero.
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Tells whether the amount is less than zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Tells whether the amount is exactly zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Reads a strict decimal string such as `"1250.50"` in `currency`.
    ///
    /// The accepted shape is an optional `-`, one or more ASCII digits, and
    /// optionally a `.` followed by one to `currency.exponent()` digits.
    /// Everything else is refused rather than guessed at, because a lenient
    /// reader of money is a way to book the wrong amount.
    ///
    /// Errors are checked in this order, so that the customer is told about
    /// the form of the number before its value: [`MoneyError::Empty`], then
    /// [`MoneyError::ExponentNotation`] or [`MoneyError::NotANumber`], then
    /// [`MoneyError::TooManyDecimals`], then [`MoneyError::Overflow`], and
    /// last the policy's [`MoneyError::Negative`] or [`MoneyError::Zero`].
    /// A negative zero such as `"-0.00"` is zero, not negative.
    pub fn parse(text: &str, currency: Currency, policy: AmountPolicy) -> Result<Amount, MoneyError> {
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let Some((whole, fraction)) = split_decimal(unsigned) else {
            return Err(if is_exponent_notation(unsigned) {
                MoneyError::ExponentNotation
            } else {
                MoneyError::NotANumber
            });
        };
        let exponent = currency.exponent();
        // Extra zeros after the last allowed place are refused too: "1.500"
        // BYN is most likely a KWD amount sent with the wrong currency.
        if fraction.len() > usize::from(exponent) {
            return Err(MoneyError::TooManyDecimals { currency, max: exponent });
        }
        // The magnitude is built up digit by digit with checked arithmetic, so
        // an overlong number stops at the first digit that no longer fits
        // instead of being copied or converted as a whole.
        let mut magnitude: i64 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(digit - b'0')))
                .ok_or(MoneyError::Overflow)?;
        }
        // "12.5" BYN means 12.50, so the missing places count as zeros.
        for _ in fraction.len()..usize::from(exponent) {
            magnitude = magnitude.checked_mul(10).ok_or(MoneyError::Overflow)?;
        }
        // The magnitude is at most i64::MAX, so its negation cannot overflow
        // and never produces i64::MIN.
        let amount = Amount(if negative { -magnitude } else { magnitude });
        match policy {
            AmountPolicy::Positive if amount.is_zero() => Err(MoneyError::Zero),
            AmountPolicy::Positive | AmountPolicy::NonNegative if amount.is_negative() => Err(MoneyError::Negative),
            _ => Ok(amount),
        }
    }

    /// Writes the amount as the wire format reads it: exactly
    /// `currency.exponent()` decimals after a `.`, a leading `-` when
    /// negative, and no grouping, so `125050` BYN becomes `"1250.50"`.
    pub fn format(self, currency: Currency) -> String {
        let sign = if self.is_negative() { "-" } else { "" };
        // Working on the unsigned magnitude keeps even i64::MIN printable.
        let magnitude = self.0.unsigned_abs();
        let exponent = u32::from(currency.exponent());
        let divisor = 10_u64.pow(exponent);
        let whole = magnitude / divisor;
        if exponent == 0 {
            return format!("{sign}{whole}");
        }
        let fraction = magnitude % divisor;
        let width = usize::from(currency.exponent());
        format!("{sign}{whole}.{fraction:0width$}")
    }

    /// Splits into `parts` amounts that differ by at most one minor unit and
    /// sum exactly to `self`; the remainder goes to the first parts.
    ///
    /// A negative amount splits as the mirror image of its positive
    /// counterpart: `-7` into three parts is `[-3, -2, -2]`. Asking for zero
    /// parts is [`MoneyError::ZeroParts`]. The result holds `parts` values, so
    /// the caller decides how much memory this takes.
    pub fn split(self, parts: u32) -> Result<Vec<Amount>, MoneyError> {
        if parts == 0 {
            return Err(MoneyError::ZeroParts);
        }
        let divisor = i64::from(parts);
        // Division truncates towards zero, so the remainder has the sign of
        // the amount and a magnitude below `parts`.
        let base = self.0 / divisor;
        let remainder = self.0 % divisor;
        let step = remainder.signum();
        let extra_parts = remainder.unsigned_abs();
        // With at least one remainder unit there are at least two parts, so
        // `base` is at most half of i64::MAX in magnitude and the step fits;
        // the check is kept anyway so that no path can panic.
        let bigger = base.checked_add(step).ok_or(MoneyError::Overflow)?;
        Ok((0..parts).map(|index| if u64::from(index) < extra_parts { Amount(bigger) } else { Amount(base) }).collect())
    }
}

/// Turns the result of a checked `i64` operation into an amount, treating
/// both a real overflow and `i64::MIN` as [`MoneyError::Overflow`] so that
/// the range stays symmetric.
fn within_range(minor: Option<i64>) -> Result<Amount, MoneyError> {
    match minor {
        Some(minor) if minor != i64::MIN => Ok(Amount(minor)),
        _ => Err(MoneyError::Overflow),
    }
}

/// Splits `digits` or `digits.digits` into its whole and fractional digits,
/// or returns `None` for anything else, including `".5"`, `"1."` and signs.
fn split_decimal(text: &str) -> Option<(&str, &str)> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) if is_digits(fraction) => (whole, fraction),
        Some(_) => return None,
        None => (text, ""),
    };
    is_digits(whole).then_some((whole, fraction))
}

/// Tells whether `text` is one or more ASCII digits; other scripts' digits
/// are refused because the ledger must not guess at what they mean.
fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// Tells whether `text` is a decimal with an exponent, such as `"1.5E2"` or
/// `"1e-2"`, so that the customer can be told why it was refused.
fn is_exponent_notation(text: &str) -> bool {
    let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
        return false;
    };
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    split_decimal(mantissa).is_some() && is_digits(exponent)
}

/// Which signs an amount may have where it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmountPolicy {
    /// Greater than zero, as for a transfer.
    Positive,
    /// Zero or more, as for a limit.
    NonNegative,
    /// Any sign, as for a balance or an adjustment.
    Any,
}

/// An amount together with the currency it is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    /// The count of minor units.
    pub amount: Amount,
    /// The currency whose minor units `amount` counts.
    pub currency: Currency,
}

impl Money {
    /// Pairs an amount with its currency.
    pub fn new(amount: Amount, currency: Currency) -> Money {
        Money { amount, currency }
    }

    /// Reads a decimal string in `currency`, following [`Amount::parse`].
    pub fn parse(text: &str, currency: Currency, policy: AmountPolicy) -> Result<Money, MoneyError> {
        Amount::parse(text, currency, policy).map(|amount| Money::new(amount, currency))
    }

    /// Adds two sums of the same currency; different currencies are
    /// [`MoneyError::CurrencyMismatch`], because converting them is a
    /// business decision and not arithmetic.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(Money::new(self.amount.checked_add(other.amount)?, self.currency))
    }

    /// Subtracts a sum of the same currency; different currencies are
    /// [`MoneyError::CurrencyMismatch`].
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(Money::new(self.amount.checked_sub(other.amount)?, self.currency))
    }

    /// Refuses `other` when its currency differs, naming `self`'s currency
    /// as the expected one.
    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch { expected: self.currency, found: other.currency })
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount.format(self.currency), self.currency)
    }
}

/// Why an amount or a currency was refused.
///
/// The messages are written for a bank customer; [`MoneyError::code`] gives
/// the stable identifier that goes on the wire.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    /// The amount was an empty string.
    #[error("the amount is empty; enter a number such as 1250.50")]
    Empty,
    /// The amount was not a plain decimal number.
    #[error(
        "the amount is not a plain number; use digits, an optional minus sign and a dot before the decimals, such as 1250.50"
    )]
    NotANumber,
    /// The amount used exponent notation such as `1e3`.
    #[error("the amount is written with an exponent (such as 1e3); write it out in full, such as 1000")]
    ExponentNotation,
    /// The amount had more decimal places than the currency allows.
    #[error("{}", too_many_decimals_message(*currency, *max))]
    TooManyDecimals {
        /// The currency the amount was read in.
        currency: Currency,
        /// How many decimal places that currency allows.
        max: u8,
    },
    /// The amount was negative where only zero or more is allowed.
    #[error("the amount must not be negative")]
    Negative,
    /// The amount was zero where it must be greater than zero.
    #[error("the amount must be greater than zero")]
    Zero,
    /// The amount, or the result of a calculation, is too large to handle.
    #[error("the amount is too large to be handled")]
    Overflow,
    /// An amount was to be split into zero parts.
    #[error("an amount cannot be split into zero parts")]
    ZeroParts,
    /// The currency code is not one this ledger supports.
    #[error("{0:?} is not a supported currency code")]
    UnknownCurrency(String),
    /// Two sums in different currencies were combined.
    #[error("expected an amount in {expected}, but got one in {found}")]
    CurrencyMismatch {
        /// The currency the operation works in.
        expected: Currency,
        /// The currency that was given instead.
        found: Currency,
    },
}

impl MoneyError {
    /// Returns the stable, machine-readable code that goes on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::Empty => "amount_empty",
            MoneyError::NotANumber => "amount_not_a_number",
            MoneyError::ExponentNotation => "amount_exponent_notation",
            MoneyError::TooManyDecimals { .. } => "amount_too_many_decimals",
            MoneyError::Negative => "amount_negative",
            MoneyError::Zero => "amount_zero",
            MoneyError::Overflow => "amount_overflow",
            MoneyError::ZeroParts => "amount_zero_parts",
            MoneyError::UnknownCurrency(_) => "unknown_currency",
            MoneyError::CurrencyMismatch { .. } => "currency_mismatch",
        }
    }
}

/// Words the decimals error so that it reads naturally for every exponent,
/// since "at most 0 decimal places" would be an odd thing to tell a customer.
fn too_many_decimals_message(currency: Currency, max: u8) -> String {
    match max {
        0 => format!("{currency} amounts have no decimal places"),
        1 => format!("{currency} amounts have at most 1 decimal place"),
        _ => format!("{currency} amounts have at most {max} decimal places"),
    }
}
