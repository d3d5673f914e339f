//! Properties and fixed examples for `kassa_core::money`.
//!
//! The property tests pin down the promises other modules rely on: the wire
//! format round-trips, arithmetic never wraps and a split never loses a minor
//! unit. The fixed examples pin down each error variant and its wire code,
//! since clients match on those codes.

use kassa_core::{Amount, AmountPolicy, Currency, Money, MoneyError};
use proptest::prelude::*;

/// The smallest minor-unit count in the symmetric range, as i128 for exact
/// comparisons.
const LOW: i128 = -(i64::MAX as i128);
/// The largest minor-unit count, as i128 for exact comparisons.
const HIGH: i128 = i64::MAX as i128;

/// Picks any supported currency, so every property covers every exponent.
fn any_currency() -> impl Strategy<Value = Currency> {
    proptest::sample::select(Currency::ALL)
}

/// Picks a currency that has a minor unit, for tests that write decimals.
fn any_currency_with_decimals() -> impl Strategy<Value = Currency> {
    let with_decimals: Vec<Currency> =
        Currency::ALL.iter().copied().filter(|currency| currency.exponent() > 0).collect();
    proptest::sample::select(with_decimals)
}

/// Picks minor-unit counts from the whole symmetric range, with extra weight
/// on the values near zero and near both ends where off-by-one errors live.
fn any_in_range() -> impl Strategy<Value = i64> {
    prop_oneof![
        -i64::MAX..=i64::MAX,
        -10_000_i64..=10_000,
        (i64::MAX - 10_000)..=i64::MAX,
        -i64::MAX..=(-i64::MAX + 10_000),
    ]
}

/// Picks any i64, including `i64::MIN`, for the arithmetic properties, which
/// must hold for every operand `Amount::from_minor` can build.
fn any_operand() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -10_000_i64..=10_000,
        (i64::MAX - 10_000)..=i64::MAX,
        i64::MIN..=(i64::MIN + 10_000),
        Just(i64::MIN),
        Just(i64::MAX),
    ]
}

/// The result a checked operation must give for an exact i128 result.
fn expected(exact: i128) -> Result<Amount, MoneyError> {
    if (LOW..=HIGH).contains(&exact) {
        i64::try_from(exact).map(Amount::from_minor).map_err(|_| MoneyError::Overflow)
    } else {
        Err(MoneyError::Overflow)
    }
}

/// Checks by hand that `text` has the shape `-?(0|[1-9][0-9]*)(\.[0-9]{e})?`
/// with the fraction present exactly when the exponent `e` is not zero, and
/// that a minus sign never precedes a zero.
fn assert_format_shape(text: &str, currency: Currency, minor: i64) {
    let exponent = usize::from(currency.exponent());
    let unsigned = match text.strip_prefix('-') {
        Some(rest) => {
            assert!(minor < 0, "{text:?} has a sign but {minor} is not negative");
            rest
        }
        None => {
            assert!(minor >= 0, "{text:?} lacks the sign of {minor}");
            text
        }
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => {
            assert!(exponent > 0, "{text:?} has a dot but {currency} has no decimals");
            (whole, fraction)
        }
        None => {
            assert_eq!(exponent, 0, "{text:?} lacks the decimals of {currency}");
            (unsigned, "")
        }
    };
    assert!(!whole.is_empty(), "{text:?} has no whole digits");
    assert!(whole.bytes().all(|b| b.is_ascii_digit()), "{text:?} has a non-digit");
    assert!(whole == "0" || !whole.starts_with('0'), "{text:?} has a leading zero");
    assert_eq!(fraction.len(), exponent, "{text:?} has the wrong number of decimals");
    assert!(fraction.bytes().all(|b| b.is_ascii_digit()), "{text:?} has a non-digit");
}

proptest! {
    #[test]
    fn format_then_parse_round_trips(currency in any_currency(), minor in any_in_range()) {
        let amount = Amount::from_minor(minor);
        let text = amount.format(currency);
        assert_format_shape(&text, currency, minor);
        prop_assert_eq!(Amount::parse(&text, currency, AmountPolicy::Any), Ok(amount));
        prop_assert_eq!(
            Money::parse(&text, currency, AmountPolicy::Any),
            Ok(Money::new(amount, currency))
        );
    }

    #[test]
    fn format_matches_exact_decimal_value(currency in any_currency(), minor in any_in_range()) {
        // Rebuilding the number from the text with i128 checks that the digits
        // mean what they should, independently of the parser.
        let text = Amount::from_minor(minor).format(currency);
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let mut value: i128 = 0;
        for digit in digits.bytes() {
            value = value * 10 + i128::from(digit - b'0');
        }
        if text.starts_with('-') {
            value = -value;
        }
        prop_assert_eq!(value, i128::from(minor));
    }

    #[test]
    fn policies_accept_exactly_their_signs(currency in any_currency(), minor in any_in_range()) {
        let text = Amount::from_minor(minor).format(currency);
        let positive = Amount::parse(&text, currency, AmountPolicy::Positive);
        let non_negative = Amount::parse(&text, currency, AmountPolicy::NonNegative);
        match minor.signum() {
            1 => {
                prop_assert_eq!(positive, Ok(Amount::from_minor(minor)));
                prop_assert_eq!(non_negative, Ok(Amount::from_minor(minor)));
            }
            0 => {
                prop_assert_eq!(positive, Err(MoneyError::Zero));
                prop_assert_eq!(non_negative, Ok(Amount::ZERO));
            }
            _ => {
                prop_assert_eq!(positive, Err(MoneyError::Negative));
                prop_assert_eq!(non_negative, Err(MoneyError::Negative));
            }
        }
    }

    #[test]
    fn parse_accepts_shorter_fractions_and_leading_zeros(
        currency in any_currency_with_decimals(),
        whole in 0_u32..1_000_000,
        zeros in 0_usize..4,
        raw_fraction in 0_u32..1000,
        raw_places in 0_usize..3,
    ) {
        // Any count of decimal places from one up to the currency's exponent
        // is allowed.
        let places = 1 + raw_places % usize::from(currency.exponent());
        let fraction = raw_fraction % 10_u32.pow(u32::try_from(places).unwrap_or(0));
        let text = format!("{}{whole}.{fraction:0places$}", "0".repeat(zeros));
        let scale = 10_i64.pow(u32::from(currency.exponent()) - u32::try_from(places).unwrap_or(0));
        let expected_minor = i64::from(whole) * currency.minor_per_major()
            + i64::from(fraction) * scale;
        prop_assert_eq!(
            Amount::parse(&text, currency, AmountPolicy::Any),
            Ok(Amount::from_minor(expected_minor))
        );
    }

    #[test]
    fn parse_never_panics_and_accepted_text_round_trips(
        currency in any_currency(),
        text in "-?[0-9eE.+, \u{0661}-]{0,24}",
    ) {
        if let Ok(amount) = Amount::parse(&text, currency, AmountPolicy::Any) {
            prop_assert_eq!(
                Amount::parse(&amount.format(currency), currency, AmountPolicy::Any),
                Ok(amount)
            );
        }
    }

    #[test]
    fn checked_add_agrees_with_i128(a in any_operand(), b in any_operand()) {
        let exact = i128::from(a) + i128::from(b);
        prop_assert_eq!(Amount::from_minor(a).checked_add(Amount::from_minor(b)), expected(exact));
    }

    #[test]
    fn checked_sub_agrees_with_i128(a in any_operand(), b in any_operand()) {
        let exact = i128::from(a) - i128::from(b);
        prop_assert_eq!(Amount::from_minor(a).checked_sub(Amount::from_minor(b)), expected(exact));
    }

    #[test]
    fn checked_mul_agrees_with_i128(
        a in any_operand(),
        factor in prop_oneof![any::<i64>(), -1000_i64..=1000, Just(i64::MIN), Just(-1_i64)],
    ) {
        let exact = i128::from(a) * i128::from(factor);
        prop_assert_eq!(Amount::from_minor(a).checked_mul(factor), expected(exact));
    }

    #[test]
    fn checked_neg_agrees_with_i128(a in any_operand()) {
        prop_assert_eq!(Amount::from_minor(a).checked_neg(), expected(-i128::from(a)));
    }

    #[test]
    fn money_arithmetic_follows_amount_arithmetic(
        currency in any_currency(),
        a in any_in_range(),
        b in any_in_range(),
    ) {
        let (x, y) = (Amount::from_minor(a), Amount::from_minor(b));
        let (mx, my) = (Money::new(x, currency), Money::new(y, currency));
        prop_assert_eq!(mx.checked_add(my), x.checked_add(y).map(|s| Money::new(s, currency)));
        prop_assert_eq!(mx.checked_sub(my), x.checked_sub(y).map(|d| Money::new(d, currency)));
    }

    #[test]
    fn negative_split_mirrors_positive_split(minor in any_in_range(), parts in 1_u32..=64) {
        let amount = Amount::from_minor(minor);
        let mirrored: Vec<Amount> = amount
            .checked_neg()
            .and_then(|negated| negated.split(parts))
            .map(|split| split.into_iter().filter_map(|part| part.checked_neg().ok()).collect())
            .unwrap_or_default();
        prop_assert_eq!(amount.split(parts), Ok(mirrored));
    }
}

/// A tiny deterministic generator (SplitMix64), so the million-split test
/// needs no extra dependency and fails the same way on every run.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a value below `bound` (the slight modulo bias does not matter
    /// for a test).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// Returns a minor-unit count in the symmetric range, drawn from the whole
    /// range, near zero, or near either end.
    fn minor(&mut self) -> i64 {
        let offset = i64::try_from(self.below(100_000)).unwrap_or(0);
        match self.below(4) {
            0 => i64::from_ne_bytes(self.next().to_ne_bytes()).max(-i64::MAX),
            1 => offset - 50_000,
            2 => i64::MAX - offset,
            _ => -i64::MAX + offset,
        }
    }
}

#[test]
fn million_random_splits_add_up_exactly() {
    let mut rng = SplitMix64(0x6B61_7373_615F_6D6F);
    for _ in 0..1_000_000 {
        let minor = rng.minor();
        let parts = u32::try_from(rng.below(64) + 1).unwrap_or(1);
        // An error becomes an empty list, which the length check reports.
        let split = Amount::from_minor(minor).split(parts).unwrap_or_default();
        assert_eq!(split.len(), usize::try_from(parts).unwrap_or(0), "{minor} / {parts}");
        let total: i128 = split.iter().map(|part| i128::from(part.minor())).sum();
        assert_eq!(total, i128::from(minor), "{minor} / {parts}: {split:?}");
        // The remainder goes first, so magnitudes never grow along the list,
        // and the first and last part bound all the others.
        let first = split[0].minor();
        let last = split[split.len() - 1].minor();
        assert!(first.abs_diff(last) <= 1, "{minor} / {parts}: {split:?}");
        assert!(
            split.windows(2).all(|w| w[0].minor().unsigned_abs() >= w[1].minor().unsigned_abs()),
            "{minor} / {parts}: {split:?}"
        );
    }
}

#[test]
fn split_examples() {
    let minors = |amounts: Vec<Amount>| amounts.into_iter().map(Amount::minor).collect::<Vec<_>>();
    assert_eq!(Amount::from_minor(100).split(3).map(minors), Ok(vec![34, 33, 33]));
    assert_eq!(Amount::from_minor(-7).split(3).map(minors), Ok(vec![-3, -2, -2]));
    assert_eq!(Amount::from_minor(2).split(5).map(minors), Ok(vec![1, 1, 0, 0, 0]));
    assert_eq!(Amount::ZERO.split(2).map(minors), Ok(vec![0, 0]));
    assert_eq!(Amount::MAX.split(1), Ok(vec![Amount::MAX]));
    assert_eq!(Amount::MIN.split(1), Ok(vec![Amount::MIN]));
}

/// Asserts that `result` is exactly `error`, and that the error has `code`.
fn assert_error<T: std::fmt::Debug>(result: Result<T, MoneyError>, error: MoneyError, code: &str) {
    // Rendering an unexpected success as text keeps its value in the failure
    // message without requiring `T: PartialEq`.
    assert_eq!(result.map(|value| format!("{value:?}")), Err(error.clone()));
    assert_eq!(error.code(), code);
    assert!(!error.to_string().is_empty());
}

fn parse_any(text: &str, currency: Currency) -> Result<Amount, MoneyError> {
    Amount::parse(text, currency, AmountPolicy::Any)
}

#[test]
fn error_empty() {
    assert_error(parse_any("", Currency::BYN), MoneyError::Empty, "amount_empty");
    assert_error(Amount::parse("", Currency::BYN, AmountPolicy::Positive), MoneyError::Empty, "amount_empty");
}

#[test]
fn error_not_a_number() {
    let inputs = [
        " 1", "1 ", "1 000", "\t1", "1\n", "1,000", "1_000", "1'000", "+1", ".5", "1.", "1..2", "1.2.3", "--1", "-",
        "-.5", "- 1", "1-", "١٢", "１", "abc", "0x10", "NaN", "nan", "inf", "-inf", "Infinity", "e3", "1e", "1e+",
        "1.e3", ".5e3", "1e3.5", "1e3e4", "1,5", "12a",
    ];
    for input in inputs {
        assert_error(parse_any(input, Currency::BYN), MoneyError::NotANumber, "amount_not_a_number");
    }
}

#[test]
fn error_exponent_notation() {
    for input in ["1e3", "1.5E2", "1e-2", "1E+2", "-1e3", "0e0", "12.34e56"] {
        assert_error(parse_any(input, Currency::BYN), MoneyError::ExponentNotation, "amount_exponent_notation");
    }
}

#[test]
fn error_too_many_decimals() {
    let byn = MoneyError::TooManyDecimals { currency: Currency::BYN, max: 2 };
    assert_error(parse_any("12.345", Currency::BYN), byn.clone(), "amount_too_many_decimals");
    assert_error(parse_any("1.500", Currency::BYN), byn.clone(), "amount_too_many_decimals");
    assert_error(parse_any("-0.000", Currency::BYN), byn.clone(), "amount_too_many_decimals");
    assert_eq!(byn.to_string(), "BYN amounts have at most 2 decimal places");

    let jpy = MoneyError::TooManyDecimals { currency: Currency::JPY, max: 0 };
    assert_error(parse_any("1.5", Currency::JPY), jpy.clone(), "amount_too_many_decimals");
    assert_error(parse_any("1.0", Currency::JPY), jpy.clone(), "amount_too_many_decimals");
    assert_eq!(jpy.to_string(), "JPY amounts have no decimal places");

    let kwd = MoneyError::TooManyDecimals { currency: Currency::KWD, max: 3 };
    assert_error(parse_any("1.2345", Currency::KWD), kwd, "amount_too_many_decimals");
    assert_eq!(parse_any("1.234", Currency::KWD), Ok(Amount::from_minor(1234)));
}

#[test]
fn error_negative() {
    for policy in [AmountPolicy::Positive, AmountPolicy::NonNegative] {
        assert_error(Amount::parse("-5", Currency::BYN, policy), MoneyError::Negative, "amount_negative");
        assert_error(Amount::parse("-0.01", Currency::BYN, policy), MoneyError::Negative, "amount_negative");
    }
    assert_eq!(parse_any("-5", Currency::BYN), Ok(Amount::from_minor(-500)));
}

#[test]
fn error_zero() {
    for input in ["0", "0.00", "-0", "-0.00", "000.0"] {
        assert_error(Amount::parse(input, Currency::BYN, AmountPolicy::Positive), MoneyError::Zero, "amount_zero");
        assert_eq!(Amount::parse(input, Currency::BYN, AmountPolicy::NonNegative), Ok(Amount::ZERO));
        assert_eq!(parse_any(input, Currency::BYN), Ok(Amount::ZERO));
    }
}

#[test]
fn error_overflow() {
    // One minor unit past i64::MAX, written as whole yen and as BYN.
    assert_error(parse_any("9223372036854775808", Currency::JPY), MoneyError::Overflow, "amount_overflow");
    assert_error(parse_any("9223372036854775808", Currency::BYN), MoneyError::Overflow, "amount_overflow");
    assert_error(parse_any("92233720368547758.08", Currency::BYN), MoneyError::Overflow, "amount_overflow");
    assert_eq!(parse_any("92233720368547758.07", Currency::BYN), Ok(Amount::MAX));
    assert_eq!(parse_any("-92233720368547758.07", Currency::BYN), Ok(Amount::MIN));
    // i64::MIN itself is outside the symmetric range.
    assert_error(parse_any("-92233720368547758.08", Currency::BYN), MoneyError::Overflow, "amount_overflow");
    assert_error(parse_any("-9223372036854775808", Currency::JPY), MoneyError::Overflow, "amount_overflow");
    // A short fraction is padded with zeros, and the padding can overflow.
    assert_error(parse_any("92233720368547758.1", Currency::BYN), MoneyError::Overflow, "amount_overflow");
    // Arithmetic that would reach i64::MIN is an overflow too.
    assert_error(Amount::MIN.checked_sub(Amount::from_minor(1)), MoneyError::Overflow, "amount_overflow");
    assert_error(Amount::MAX.checked_add(Amount::from_minor(1)), MoneyError::Overflow, "amount_overflow");
    assert_error(Amount::from_minor(i64::MIN).checked_neg(), MoneyError::Overflow, "amount_overflow");
    assert_error(Amount::try_from_minor(i64::MIN), MoneyError::Overflow, "amount_overflow");
    assert_eq!(Amount::try_from_minor(-i64::MAX), Ok(Amount::MIN));
    assert_eq!(Amount::MAX.checked_neg(), Ok(Amount::MIN));
}

#[test]
fn overflow_on_a_megabyte_of_digits_is_quick() {
    let digits = "9".repeat(1 << 20);
    let started = std::time::Instant::now();
    assert_error(parse_any(&digits, Currency::BYN), MoneyError::Overflow, "amount_overflow");
    let negative = format!("-{digits}.99");
    assert_error(parse_any(&negative, Currency::BYN), MoneyError::Overflow, "amount_overflow");
    // Leading zeros never overflow, however many there are.
    let zeros = format!("{}1.5", "0".repeat(1 << 20));
    assert_eq!(parse_any(&zeros, Currency::BYN), Ok(Amount::from_minor(150)));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn error_zero_parts() {
    assert_error(Amount::from_minor(100).split(0), MoneyError::ZeroParts, "amount_zero_parts");
    assert_error(Amount::ZERO.split(0), MoneyError::ZeroParts, "amount_zero_parts");
}

#[test]
fn error_unknown_currency() {
    assert_error(Currency::from_code("XXX"), MoneyError::UnknownCurrency("XXX".into()), "unknown_currency");
    assert_error(Currency::from_code("byn"), MoneyError::UnknownCurrency("byn".into()), "unknown_currency");
    assert_error(Currency::from_code(""), MoneyError::UnknownCurrency(String::new()), "unknown_currency");
    for code in ["BY", "BYNN", " BYN", "BYN ", "Byn", "БYN"] {
        assert_error(Currency::from_code(code), MoneyError::UnknownCurrency(code.into()), "unknown_currency");
    }
    // Long input is cut to 16 characters, counted as characters, not bytes.
    let long = "Ж".repeat(100);
    assert_error(Currency::from_code(&long), MoneyError::UnknownCurrency("Ж".repeat(16)), "unknown_currency");
    assert_eq!(MoneyError::UnknownCurrency("XXX".into()).to_string(), "\"XXX\" is not a supported currency code");
}

#[test]
fn error_currency_mismatch() {
    let byn = Money::new(Amount::from_minor(100), Currency::BYN);
    let usd = Money::new(Amount::from_minor(100), Currency::USD);
    let mismatch = MoneyError::CurrencyMismatch { expected: Currency::BYN, found: Currency::USD };
    assert_error(byn.checked_add(usd), mismatch.clone(), "currency_mismatch");
    assert_error(byn.checked_sub(usd), mismatch.clone(), "currency_mismatch");
    assert_eq!(mismatch.to_string(), "expected an amount in BYN, but got one in USD");
    assert_eq!(byn.checked_add(byn), Ok(Money::new(Amount::from_minor(200), Currency::BYN)));
    assert_eq!(byn.checked_sub(byn), Ok(Money::new(Amount::ZERO, Currency::BYN)));
}

#[test]
fn every_error_code_is_distinct() {
    let errors = [
        MoneyError::Empty,
        MoneyError::NotANumber,
        MoneyError::ExponentNotation,
        MoneyError::TooManyDecimals { currency: Currency::BYN, max: 2 },
        MoneyError::Negative,
        MoneyError::Zero,
        MoneyError::Overflow,
        MoneyError::ZeroParts,
        MoneyError::UnknownCurrency("XXX".into()),
        MoneyError::CurrencyMismatch { expected: Currency::BYN, found: Currency::USD },
    ];
    let mut codes: Vec<&str> = errors.iter().map(MoneyError::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), errors.len());
}

#[test]
fn currency_from_code_finds_every_required_code() {
    let required = [
        ("BYN", 2),
        ("RUB", 2),
        ("UAH", 2),
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("PLN", 2),
        ("INR", 2),
        ("BRL", 2),
        ("JPY", 0),
        ("KWD", 3),
        ("CHF", 2),
        ("CNY", 2),
        ("KZT", 2),
        ("GEL", 2),
        ("CZK", 2),
        ("SEK", 2),
    ];
    for (code, exponent) in required {
        let currency = Currency::from_code(code);
        assert_eq!(currency.as_ref().map(Currency::code), Ok(code));
        assert_eq!(currency.as_ref().map(Currency::exponent), Ok(exponent));
        assert_eq!(currency.as_ref().map(Currency::minor_per_major), Ok(10_i64.pow(u32::from(exponent))));
    }
    assert_eq!(Currency::ALL.len(), required.len());
    assert_eq!(Currency::from_code("BYN"), Ok(Currency::BYN));
    assert_eq!(Currency::from_code("JPY"), Ok(Currency::JPY));
    assert_eq!(Currency::from_code("KWD"), Ok(Currency::KWD));
    for currency in Currency::ALL {
        assert_eq!(Currency::from_code(currency.code()), Ok(*currency));
    }
}

#[test]
fn formatting_examples() {
    assert_eq!(Amount::from_minor(125_050).format(Currency::BYN), "1250.50");
    assert_eq!(Amount::from_minor(-5).format(Currency::BYN), "-0.05");
    assert_eq!(Amount::ZERO.format(Currency::BYN), "0.00");
    assert_eq!(Amount::from_minor(1000).format(Currency::JPY), "1000");
    assert_eq!(Amount::from_minor(-1000).format(Currency::JPY), "-1000");
    assert_eq!(Amount::from_minor(1250).format(Currency::KWD), "1.250");
    assert_eq!(Amount::MAX.format(Currency::BYN), "92233720368547758.07");
    assert_eq!(Amount::MIN.format(Currency::BYN), "-92233720368547758.07");
    assert_eq!(Amount::from_minor(i64::MIN).format(Currency::BYN), "-92233720368547758.08");
    assert_eq!(Money::new(Amount::from_minor(125_050), Currency::BYN).to_string(), "1250.50 BYN");
    assert_eq!(format!("{}", Currency::BYN), "BYN");
    assert_eq!(format!("{:?}", Currency::BYN), "BYN");
    assert_eq!(format!("{:?}", Amount::from_minor(125_050)), "Amount(125050)");
}

#[test]
fn parsing_examples() {
    assert_eq!(parse_any("1250.50", Currency::BYN), Ok(Amount::from_minor(125_050)));
    assert_eq!(parse_any("12.5", Currency::BYN), Ok(Amount::from_minor(1250)));
    assert_eq!(parse_any("007.50", Currency::BYN), Ok(Amount::from_minor(750)));
    assert_eq!(parse_any("-0.05", Currency::BYN), Ok(Amount::from_minor(-5)));
    assert_eq!(parse_any("1000", Currency::JPY), Ok(Amount::from_minor(1000)));
    assert_eq!(parse_any("1.25", Currency::KWD), Ok(Amount::from_minor(1250)));
    assert_eq!(
        Money::parse("1250.50", Currency::BYN, AmountPolicy::Positive),
        Ok(Money::new(Amount::from_minor(125_050), Currency::BYN))
    );
}

#[test]
fn amount_predicates_and_constants() {
    assert!(Amount::from_minor(1).is_positive());
    assert!(Amount::from_minor(-1).is_negative());
    assert!(Amount::ZERO.is_zero());
    assert_eq!(Amount::default(), Amount::ZERO);
    assert!(!Amount::ZERO.is_positive() && !Amount::ZERO.is_negative());
    assert_eq!(Amount::MAX.minor(), i64::MAX);
    assert_eq!(Amount::MIN.minor(), -i64::MAX);
    assert!(Amount::MIN < Amount::ZERO && Amount::ZERO < Amount::MAX);
}
