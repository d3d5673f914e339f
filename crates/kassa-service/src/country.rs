//! Country profiles: how a customer's registration fields are normalised and
//! checked, and how account numbers in IBAN format are made and verified.
//!
//! Everything here is a pure function: no IO, no clock, no randomness. Each
//! refusal is a [`FieldProblem`] whose `code` is a stable string that clients
//! match on and whose `detail` is a sentence for the person at the keyboard.
//! Details never repeat the input back: a typed password, phone number or
//! passport number must not end up in a log line or an error page.

use std::collections::HashSet;
use std::sync::LazyLock;

/// One problem with one input field; `code` is a stable snake_case string clients rely on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub code: &'static str,
    pub detail: String,
}

impl FieldProblem {
    fn new(field: &str, code: &'static str, detail: impl Into<String>) -> FieldProblem {
        FieldProblem { field: field.to_owned(), code, detail: detail.into() }
    }
}

/// The countries the bank knows how to serve. Adding one means adding a
/// `Rules` constant and the document rules in `validate_passport` and
/// `validate_personal_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Country {
    Belarus,
    Ukraine,
}

/// The data that differs between countries.
#[derive(Debug)]
struct Rules {
    /// ISO 3166-1 alpha-2 code, also the first two characters of an IBAN.
    code: &'static str,
    /// The international calling code, without the plus sign.
    calling_code: &'static str,
    /// What is dialled before a national number from inside the country.
    trunk_prefix: &'static str,
    /// Digits of a national (significant) number, without trunk prefix.
    national_digits: usize,
    /// Digits of a bank code inside the IBAN: Belarus uses the four-letter
    /// code from the bank's BIC, Ukraine the six-digit MFO.
    bank_code_chars: usize,
    bank_code_numeric: bool,
    /// What comes between the bank code and the serial in a new account
    /// number: the balance-sheet account for individuals' current accounts
    /// (3014 in Belarus; 2620 in Ukraine, where the account part is padded
    /// with zeros to 19 characters).
    account_prefix: &'static str,
    /// Digits of the serial part of a new account number, and ten to that power.
    serial_digits: usize,
    serial_modulus: u64,
}

const BELARUS: Rules = Rules {
    code: "BY",
    calling_code: "375",
    trunk_prefix: "80",
    national_digits: 9,
    bank_code_chars: 4,
    bank_code_numeric: false,
    account_prefix: "3014",
    serial_digits: 16,
    serial_modulus: 10_000_000_000_000_000,
};

const UKRAINE: Rules = Rules {
    code: "UA",
    calling_code: "380",
    trunk_prefix: "0",
    national_digits: 9,
    bank_code_chars: 6,
    bank_code_numeric: true,
    account_prefix: "000002620",
    serial_digits: 10,
    serial_modulus: 10_000_000_000,
};

/// Lengths of IBANs by country, from the SWIFT IBAN registry. An account
/// number from a country not listed here is refused rather than guessed at.
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// Limits on raw input, checked before any other work so that a megabyte
/// pasted into a form field costs nothing. They are generous: a person never
/// types this much into these fields.
const PHONE_INPUT_MAX_CHARS: usize = 40;
const DOCUMENT_INPUT_MAX_CHARS: usize = 40;
const ACCOUNT_INPUT_MAX_CHARS: usize = 64;

const NAME_MIN_CHARS: usize = 2;
const NAME_MAX_CHARS: usize = 64;

/// RFC 5321 limits: a path is at most 254 characters once the angle
/// brackets are removed, a local part at most 64, a domain label at most 63.
const EMAIL_MAX_CHARS: usize = 254;
const EMAIL_LOCAL_MAX_CHARS: usize = 64;
const EMAIL_LABEL_MAX_CHARS: usize = 63;

const PASSWORD_MIN_CHARS: usize = 12;
const PASSWORD_MAX_CHARS: usize = 128;
/// A shorter login (or part of one) would match too many honest passwords.
const LOGIN_MIN_CHARS: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountryProfile {
    country: Country,
}

impl CountryProfile {
    /// Known profiles by ISO country code (case-insensitive); "BY" is the default, Belarus.
    pub fn by_code(code: &str) -> Option<CountryProfile> {
        let code = code.trim();
        if code.eq_ignore_ascii_case(BELARUS.code) {
            Some(CountryProfile { country: Country::Belarus })
        } else if code.eq_ignore_ascii_case(UKRAINE.code) {
            Some(CountryProfile { country: Country::Ukraine })
        } else {
            None
        }
    }

    pub fn belarus() -> CountryProfile {
        CountryProfile { country: Country::Belarus }
    }

    pub fn code(&self) -> &str {
        self.rules().code
    }

    fn rules(&self) -> &'static Rules {
        match self.country {
            Country::Belarus => &BELARUS,
            Country::Ukraine => &UKRAINE,
        }
    }

    /// "+375 (29) 123-45-67", "8029 1234567", "375291234567" → "+375291234567". Strips spaces, dashes, parentheses, dots;
    /// accepts the national trunk prefix "80" for BY ("0" for UA), the international prefix "00", a bare national number,
    /// and a stray trunk zero after the country code ("+375 (029) …", as people often write it).
    /// Refuses letters, unicode digits (e.g. Arabic-Indic), wrong country, wrong length.
    /// Codes: "phone_invalid" (not a phone number at all), "phone_wrong_country", "phone_wrong_length".
    pub fn normalize_phone(&self, field: &str, raw: &str) -> Result<String, FieldProblem> {
        let rules = self.rules();
        let invalid = || {
            FieldProblem::new(
                field,
                "phone_invalid",
                "enter a phone number using digits, optionally starting with + and grouped with spaces, dashes or brackets",
            )
        };
        let wrong_length = || {
            FieldProblem::new(
                field,
                "phone_wrong_length",
                format!(
                    "a phone number here has {} digits after +{} (or after the prefix {})",
                    rules.national_digits, rules.calling_code, rules.trunk_prefix
                ),
            )
        };
        let wrong_country = || {
            FieldProblem::new(
                field,
                "phone_wrong_country",
                format!("only phone numbers starting with +{} are accepted", rules.calling_code),
            )
        };

        if raw.chars().nth(PHONE_INPUT_MAX_CHARS).is_some() {
            return Err(invalid());
        }
        let mut digits = String::with_capacity(raw.len());
        let mut plus = false;
        for c in raw.trim().chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '\u{a0}' | '\t' | '-' | '(' | ')' | '.' => {}
                // The plus sign may only lead the number ("(+375)" is fine too).
                '+' if digits.is_empty() && !plus => plus = true,
                _ => return Err(invalid()),
            }
        }
        if digits.is_empty() {
            return Err(invalid());
        }

        // "00" is the international prefix in most of Europe and is how people
        // abroad write a number without the plus sign.
        let international = if plus { Some(digits.as_str()) } else { digits.strip_prefix("00") };
        let national = if let Some(international) = international {
            match international.strip_prefix(rules.calling_code) {
                Some(rest) => rest,
                // "+37" is a number cut short, not a foreign one.
                None if rules.calling_code.starts_with(international) => return Err(wrong_length()),
                None => return Err(wrong_country()),
            }
        } else if let Some(rest) = digits.strip_prefix(rules.calling_code) {
            rest
        } else if let Some(rest) = digits.strip_prefix(rules.trunk_prefix) {
            rest
        } else {
            // Without a prefix the country cannot be told apart from a typo,
            // so a length mismatch is the honest thing to report.
            digits.as_str()
        };
        // National numbers never start with zero, so a zero right after the
        // country code is a trunk prefix written out of habit.
        let national = match national.strip_prefix('0') {
            Some(rest) if national.len() == rules.national_digits + 1 => rest,
            _ => national,
        };
        if national.len() != rules.national_digits {
            return Err(wrong_length());
        }
        if national.starts_with('0') {
            return Err(invalid());
        }
        Ok(format!("+{}{}", rules.calling_code, national))
    }

    /// Names: trimmed, 2–64 characters (counted as chars, not bytes) of letters in any script, with a single hyphen,
    /// apostrophe or space allowed between letters ("Anna-Maria", "O'Neil", "Мар'яна"). Runs of spaces collapse to one;
    /// typographic apostrophes (’ ʼ) become ' and typographic hyphens become -. Combining accents may follow a letter.
    /// Codes: "name_too_short", "name_too_long", "name_invalid_characters".
    pub fn validate_name(&self, field: &str, raw: &str) -> Result<String, FieldProblem> {
        let invalid = || {
            FieldProblem::new(
                field,
                "name_invalid_characters",
                "use letters only, with a single hyphen, apostrophe or space between parts of the name",
            )
        };
        let mut name = String::with_capacity(raw.len().min(NAME_MAX_CHARS * 4));
        let mut chars = 0_usize;
        let mut after_letter = false;
        let mut after_space = false;
        for c in raw.trim().chars() {
            // Separators come first: the Ukrainian apostrophe ʼ (U+02BC) is a
            // modifier letter, so `is_alphabetic` would take it for a letter.
            let normalised = if c.is_whitespace() && after_space {
                // Collapse a run of spaces to one; it was counted already.
                continue;
            } else if let Some(separator) = name_separator(c) {
                if !after_letter {
                    return Err(invalid());
                }
                after_letter = false;
                after_space = separator == ' ';
                separator
            } else if c.is_alphabetic() {
                after_letter = true;
                after_space = false;
                c
            } else if is_combining_mark(c) && after_letter {
                c
            } else {
                return Err(invalid());
            };
            chars += 1;
            if chars > NAME_MAX_CHARS {
                return Err(FieldProblem::new(
                    field,
                    "name_too_long",
                    format!("a name may have at most {NAME_MAX_CHARS} characters"),
                ));
            }
            name.push(normalised);
        }
        if chars < NAME_MIN_CHARS {
            return Err(FieldProblem::new(
                field,
                "name_too_short",
                format!("a name needs at least {NAME_MIN_CHARS} letters"),
            ));
        }
        // A name may not end in a separator ("Anna-"); trimming removed a trailing space.
        if !after_letter {
            return Err(invalid());
        }
        Ok(name)
    }

    /// BY: 2 Latin letters + 7 ASCII digits ("MP1234567"). UA: a 9-digit ID-card number or 2 Cyrillic letters +
    /// 6 digits (the booklet passport). Normalised to upper case with spaces removed. Code "passport_number_invalid".
    pub fn validate_passport(&self, field: &str, raw: &str) -> Result<String, FieldProblem> {
        let invalid = || {
            let expected = match self.country {
                Country::Belarus => "two Latin letters and seven digits, like MP1234567",
                Country::Ukraine => "nine digits (ID card) or two Cyrillic letters and six digits",
            };
            FieldProblem::new(field, "passport_number_invalid", format!("a passport number is {expected}"))
        };
        let number = compact_upper(raw, DOCUMENT_INPUT_MAX_CHARS).ok_or_else(invalid)?;
        let chars: Vec<char> = number.chars().collect();
        let valid = match self.country {
            Country::Belarus => {
                chars.len() == 9
                    && chars[..2].iter().all(char::is_ascii_uppercase)
                    && chars[2..].iter().all(char::is_ascii_digit)
            }
            Country::Ukraine => {
                (chars.len() == 9 && chars.iter().all(char::is_ascii_digit))
                    || (chars.len() == 8
                        && chars[..2].iter().copied().all(is_ukrainian_capital)
                        && chars[2..].iter().all(char::is_ascii_digit))
            }
        };
        if valid { Ok(number) } else { Err(invalid()) }
    }

    /// BY: 14 Latin letters and ASCII digits, upper-cased ("3010190A001PB5"). UA: the 10-digit taxpayer number (RNOKPP).
    /// Spaces are removed. Code "personal_id_invalid".
    pub fn validate_personal_id(&self, field: &str, raw: &str) -> Result<String, FieldProblem> {
        let invalid = || {
            let expected = match self.country {
                Country::Belarus => "14 Latin letters and digits, like 3010190A001PB5",
                Country::Ukraine => "the 10-digit taxpayer number",
            };
            FieldProblem::new(field, "personal_id_invalid", format!("a personal identification number is {expected}"))
        };
        let id = compact_upper(raw, DOCUMENT_INPUT_MAX_CHARS).ok_or_else(invalid)?;
        let valid = match self.country {
            Country::Belarus => id.len() == 14 && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            Country::Ukraine => id.len() == 10 && id.bytes().all(|b| b.is_ascii_digit()),
        };
        if valid { Ok(id) } else { Err(invalid()) }
    }

    /// Pragmatic e-mail check: one @, non-empty local part (at most 64 chars, no leading, trailing or double dot, none of
    /// `"(),:;<>[\]`), a domain of at least two dot-separated labels of letters, digits and inner hyphens ending in a
    /// non-numeric label of 2+ chars, no spaces or control characters, ≤ 254 chars. Trims, and lower-cases the domain;
    /// the local part keeps its case, as mail servers may treat it case-sensitively. Code "email_invalid".
    pub fn validate_email(&self, field: &str, raw: &str) -> Result<String, FieldProblem> {
        let invalid = || FieldProblem::new(field, "email_invalid", "enter an e-mail address like name@example.com");
        let address = raw.trim();
        if address.chars().nth(EMAIL_MAX_CHARS).is_some() {
            return Err(invalid());
        }
        if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let Some((local, domain)) = address.split_once('@') else {
            return Err(invalid());
        };
        if domain.contains('@') {
            return Err(invalid());
        }
        let local_ok = !local.is_empty()
            && local.chars().nth(EMAIL_LOCAL_MAX_CHARS).is_none()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && !local.contains(['"', '(', ')', ',', ':', ';', '<', '>', '[', '\\', ']']);
        if !local_ok {
            return Err(invalid());
        }
        let domain = domain.to_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        let labels_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.chars().nth(EMAIL_LABEL_MAX_CHARS).is_none()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        // The top-level domain is never numeric, which also refuses bare IP addresses.
        let top_ok =
            labels.last().is_some_and(|top| top.chars().nth(1).is_some() && !top.chars().all(|c| c.is_ascii_digit()));
        if !labels_ok || !top_ok {
            return Err(invalid());
        }
        Ok(format!("{local}@{domain}"))
    }

    /// Refuses a bank code that does not fit this country's account numbers: BY 4 upper-case Latin letters (from the
    /// bank's BIC, e.g. "KASA"), UA 6 digits (the MFO). Meant for checking configuration at start-up, so that
    /// [`CountryProfile::account_number`] is only ever given a good one. Code "bank_code_invalid".
    pub fn check_bank_code(&self, field: &str, bank_code: &str) -> Result<(), FieldProblem> {
        let rules = self.rules();
        let valid = bank_code.len() == rules.bank_code_chars
            && bank_code
                .bytes()
                .all(|b| if rules.bank_code_numeric { b.is_ascii_digit() } else { b.is_ascii_uppercase() });
        if valid {
            Ok(())
        } else {
            let expected = if rules.bank_code_numeric { "digits" } else { "upper-case Latin letters" };
            Err(FieldProblem::new(
                field,
                "bank_code_invalid",
                format!("a bank code for {} is {} {expected}", rules.code, rules.bank_code_chars),
            ))
        }
    }

    /// A new account number in the country's IBAN format for the bank with `bank_code` (4 upper-case letters, e.g.
    /// "KASA"), made from `serial` (a positive database id), with correct ISO 13616 mod-97 check digits.
    /// For BY (28 chars): "BY" + 2 check digits + bank code (4 letters) + "3014" + serial zero-padded to 16 digits.
    /// For UA (29 chars): "UA" + 2 check digits + MFO (6 digits) + "000002620" + serial zero-padded to 10 digits.
    ///
    /// The result is always a structurally valid IBAN, even for arguments outside the contract (which
    /// [`CountryProfile::check_bank_code`] exists to prevent): the bank code is reduced to its ASCII letters or digits,
    /// upper-cased, cut or padded with '0' to length, and the serial's magnitude is taken modulo the serial width.
    pub fn account_number(&self, bank_code: &str, serial: i64) -> String {
        let rules = self.rules();
        let mut bban = String::with_capacity(32);
        bban.extend(
            bank_code
                .chars()
                .filter(|c| if rules.bank_code_numeric { c.is_ascii_digit() } else { c.is_ascii_alphanumeric() })
                .map(|c| c.to_ascii_uppercase())
                .chain(std::iter::repeat('0'))
                .take(rules.bank_code_chars),
        );
        bban.push_str(rules.account_prefix);
        let serial = serial.unsigned_abs() % rules.serial_modulus;
        bban.push_str(&format!("{serial:0width$}", width = rules.serial_digits));
        let check = 98 - iban_mod97(&bban, rules.code, "00");
        format!("{}{check:02}{bban}", rules.code)
    }
}

/// Normalises a typed account number (removes spaces, upper-cases) and verifies its IBAN structure and mod-97 check
/// digits. The country must be one in the IBAN registry table above and the length must match it; for BY and UA the
/// national part's layout is checked too. Check digits 00, 01 and 99 are refused as ISO 13616 requires.
/// Codes: "account_number_invalid" (bad characters/length/structure), "account_number_check_digits" (mod-97 fails: a typo).
pub fn normalize_account_number(field: &str, raw: &str) -> Result<String, FieldProblem> {
    let invalid = |detail: &str| FieldProblem::new(field, "account_number_invalid", detail);
    if raw.chars().nth(ACCOUNT_INPUT_MAX_CHARS).is_some() {
        return Err(invalid("an account number has at most 34 characters"));
    }
    let iban: String = raw.chars().filter(|c| !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
    if !iban.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return Err(invalid("an account number has only Latin letters and digits"));
    }
    let (country, rest) = iban.split_at(iban.len().min(2));
    let (check, bban) = rest.split_at(rest.len().min(2));
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid("an account number starts with a two-letter country code, like BY"));
    }
    if check.len() != 2 || !check.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("an account number has two check digits after the country code"));
    }
    let Some(&(_, length)) = IBAN_LENGTHS.iter().find(|(code, _)| *code == country) else {
        return Err(invalid("account numbers from this country are not accepted"));
    };
    if iban.len() != length {
        return Err(invalid(&format!("an account number from {country} has {length} characters")));
    }
    let layout_ok = match country {
        // BY: 4 alphanumerics (bank), 4 digits (balance account), 16 alphanumerics.
        "BY" => bban.get(4..8).is_some_and(|part| part.bytes().all(|b| b.is_ascii_digit())),
        // UA: 6 digits (MFO), 19 alphanumerics.
        "UA" => bban.get(..6).is_some_and(|part| part.bytes().all(|b| b.is_ascii_digit())),
        _ => true,
    };
    if !layout_ok {
        return Err(invalid(&format!("this is not the layout of an account number from {country}")));
    }
    let check_digits_problem = || {
        FieldProblem::new(
            field,
            "account_number_check_digits",
            "the account number has a typo: check digits do not match",
        )
    };
    // 00 and 01 are congruent to 97 and 98, and 99 to 02, so they could pass
    // the remainder test; ISO 13616 does not allow them.
    if matches!(check, "00" | "01" | "99") {
        return Err(check_digits_problem());
    }
    if iban_mod97(bban, country, check) != 1 {
        return Err(check_digits_problem());
    }
    Ok(iban)
}

/// The ISO 7064 MOD 97-10 remainder of `bban + country + check`, with letters counted as two digits (A = 10 … Z = 35).
/// Callers pass only ASCII letters and digits; any other byte would be skipped.
fn iban_mod97(bban: &str, country: &str, check: &str) -> u32 {
    let mut remainder = 0_u32;
    for byte in bban.bytes().chain(country.bytes()).chain(check.bytes()) {
        remainder = match byte {
            b'0'..=b'9' => (remainder * 10 + u32::from(byte - b'0')) % 97,
            b'A'..=b'Z' => (remainder * 100 + u32::from(byte - b'A') + 10) % 97,
            b'a'..=b'z' => (remainder * 100 + u32::from(byte - b'a') + 10) % 97,
            _ => remainder,
        };
    }
    remainder
}

/// The bundled list of common passwords, lower-cased. Built on first use.
static COMMON_PASSWORDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_lowercase)
        .collect()
});

/// Password policy: at least 12 chars (count chars), at most 128 chars, not in the bundled list of common passwords
/// (case-insensitive), not a single repeated character, and not containing the login when the login is ≥ 4 chars.
/// The login is compared case-insensitively as typed, with only its letters and digits, and — for a phone number —
/// by its last 9 digits and — for an e-mail address — by its local part.
/// Codes: "password_too_short", "password_too_long", "password_too_common", "password_contains_login".
pub fn check_password(field: &str, password: &str, login: &str) -> Result<(), FieldProblem> {
    let chars = password.chars().take(PASSWORD_MAX_CHARS + 1).count();
    if chars > PASSWORD_MAX_CHARS {
        return Err(FieldProblem::new(
            field,
            "password_too_long",
            format!("a password may have at most {PASSWORD_MAX_CHARS} characters"),
        ));
    }
    if chars < PASSWORD_MIN_CHARS {
        return Err(FieldProblem::new(
            field,
            "password_too_short",
            format!("a password needs at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    let lower = password.to_lowercase();
    let mut lower_chars = lower.chars();
    let repeated = lower_chars.next().is_some_and(|first| lower_chars.all(|c| c == first));
    if repeated || COMMON_PASSWORDS.contains(&lower) {
        return Err(FieldProblem::new(
            field,
            "password_too_common",
            "this password is too easy to guess; choose a less common one",
        ));
    }
    if login_forms(login).iter().any(|form| lower.contains(form.as_str())) {
        return Err(FieldProblem::new(field, "password_contains_login", "a password may not contain your login"));
    }
    Ok(())
}

/// The lower-cased forms of a login that a password must not contain, each at least `LOGIN_MIN_CHARS` long.
fn login_forms(login: &str) -> Vec<String> {
    let login = login.trim().to_lowercase();
    let mut forms = Vec::with_capacity(4);
    let alphanumeric: String = login.chars().filter(|c| c.is_alphanumeric()).collect();
    let digits: Vec<char> = login.chars().filter(char::is_ascii_digit).collect();
    // A login made of a phone number's digits and punctuation is a phone
    // number; its national part is what its owner would reuse.
    let phone_like = digits.len() >= 10 && login.chars().all(|c| c.is_ascii_digit() || "+-() .".contains(c));
    if phone_like && let Some(start) = digits.len().checked_sub(9) {
        forms.push(digits[start..].iter().collect());
    }
    if let Some((local, _)) = login.split_once('@') {
        forms.push(local.to_owned());
    }
    forms.push(alphanumeric);
    forms.push(login);
    forms.retain(|form| form.chars().count() >= LOGIN_MIN_CHARS);
    forms
}

/// Removes all whitespace and upper-cases, or `None` if the input is longer than `max_chars`.
fn compact_upper(raw: &str, max_chars: usize) -> Option<String> {
    if raw.chars().nth(max_chars).is_some() {
        return None;
    }
    Some(raw.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_uppercase).collect())
}

/// The separator a name may have between letters, normalised: typographic
/// apostrophes (’ and the Ukrainian ʼ) become ', typographic hyphens become -.
fn name_separator(c: char) -> Option<char> {
    match c {
        '-' | '\u{2010}' | '\u{2011}' => Some('-'),
        '\'' | '\u{2019}' | '\u{02bc}' => Some('\''),
        c if c.is_whitespace() => Some(' '),
        _ => None,
    }
}

/// Combining diacritical marks, so that a decomposed "é" (e + U+0301) counts
/// as a letter. The standard library has no general-category lookup.
fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036f}' | '\u{0483}'..='\u{0489}' | '\u{1ab0}'..='\u{1aff}' | '\u{1dc0}'..='\u{1dff}')
}

/// The capital letters of the Ukrainian alphabet, used in passport series.
fn is_ukrainian_capital(c: char) -> bool {
    matches!(c, 'А'..='Щ' | 'Ь' | 'Ю' | 'Я' | 'Є' | 'І' | 'Ї' | 'Ґ')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn by() -> CountryProfile {
        CountryProfile::belarus()
    }

    fn ua() -> CountryProfile {
        CountryProfile::by_code("UA").unwrap()
    }

    fn code<T: std::fmt::Debug>(result: Result<T, FieldProblem>) -> &'static str {
        result.unwrap_err().code
    }

    #[test]
    fn profiles_are_found_by_code() {
        assert_eq!(CountryProfile::by_code("BY"), Some(CountryProfile::belarus()));
        assert_eq!(CountryProfile::by_code(" by ").map(|p| p.code().to_owned()), Some("BY".to_owned()));
        assert_eq!(ua().code(), "UA");
        assert_eq!(CountryProfile::by_code("RU"), None);
        assert_eq!(CountryProfile::by_code(""), None);
    }

    #[test]
    fn field_problem_serialises_with_its_three_fields() {
        let problem = FieldProblem::new("phone", "phone_invalid", "enter a phone number");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"field": "phone", "code": "phone_invalid", "detail": "enter a phone number"})
        );
    }

    #[test]
    fn phone_numbers_are_normalised_to_e164() {
        for raw in [
            "+375 (29) 123-45-67",
            "8029 1234567",
            "375291234567",
            "+375291234567",
            " 80 (29) 123.45.67 ",
            "00375 29 1234567",
            "+375 (029) 123-45-67",
            "291234567",
            "(+375) 29 123 45 67",
        ] {
            assert_eq!(by().normalize_phone("phone", raw).unwrap(), "+375291234567", "{raw}");
        }
        assert_eq!(ua().normalize_phone("phone", "+38 (050) 123-45-67").unwrap(), "+380501234567");
        assert_eq!(ua().normalize_phone("phone", "050 123 45 67").unwrap(), "+380501234567");
    }

    #[test]
    fn phone_that_is_not_a_number_is_invalid() {
        for raw in [
            "",
            "   ",
            "call me",
            "+375 29 12E-45-67",
            "+375 29 ١٢٣-٤٥-٦٧",
            "+375 29 １２３-４５-６７",
            "375+291234567",
            "++375291234567",
            "+375 000000000",
            "+375 29 123 45 67 ext. 5",
        ] {
            assert_eq!(code(by().normalize_phone("phone", raw)), "phone_invalid", "{raw:?}");
        }
        let huge = "1".repeat(10_000);
        assert_eq!(code(by().normalize_phone("phone", &huge)), "phone_invalid");
    }

    #[test]
    fn phone_from_another_country_is_refused() {
        assert_eq!(code(by().normalize_phone("phone", "+7 916 123-45-67")), "phone_wrong_country");
        assert_eq!(code(by().normalize_phone("phone", "0049 30 1234567")), "phone_wrong_country");
        assert_eq!(code(by().normalize_phone("phone", "+380501234567")), "phone_wrong_country");
        assert_eq!(code(ua().normalize_phone("phone", "+375291234567")), "phone_wrong_country");
    }

    #[test]
    fn phone_with_wrong_number_of_digits_is_refused() {
        for raw in ["+375 29 123-45-6", "+375 29 123-45-678", "8029 123456", "29123456", "79161234567", "+37"] {
            assert_eq!(code(by().normalize_phone("phone", raw)), "phone_wrong_length", "{raw}");
        }
    }

    #[test]
    fn phone_problem_does_not_echo_the_input() {
        let problem = by().normalize_phone("phone", "+7 916 555-44-33").unwrap_err();
        assert_eq!(problem.field, "phone");
        assert!(!problem.detail.contains("916"));
    }

    #[test]
    fn names_are_trimmed_and_normalised() {
        let cases = [
            ("  Anna-Maria ", "Anna-Maria"),
            ("O'Neil", "O'Neil"),
            ("O’Neil", "O'Neil"),
            ("Мар\u{2bc}яна", "Мар'яна"),
            ("Ольга", "Ольга"),
            ("Jo", "Jo"),
            ("Anna   Maria", "Anna Maria"),
            ("Jose\u{301}", "Jose\u{301}"),
            ("Łukasz", "Łukasz"),
        ];
        for (raw, expected) in cases {
            assert_eq!(by().validate_name("first_name", raw).unwrap(), expected, "{raw}");
        }
    }

    #[test]
    fn name_length_is_counted_in_characters() {
        assert_eq!(code(by().validate_name("first_name", "A")), "name_too_short");
        assert_eq!(code(by().validate_name("first_name", "  ")), "name_too_short");
        assert_eq!(code(by().validate_name("first_name", "")), "name_too_short");
        // 64 Cyrillic letters are 128 bytes and still fit.
        let longest = "Я".repeat(64);
        assert_eq!(by().validate_name("first_name", &longest).unwrap(), longest);
        assert_eq!(code(by().validate_name("first_name", &"Я".repeat(65))), "name_too_long");
        assert_eq!(code(by().validate_name("first_name", &"a".repeat(100_000))), "name_too_long");
    }

    #[test]
    fn name_with_other_characters_is_refused() {
        for raw in [
            "R2D2",
            "Anna--Maria",
            "Anna- Maria",
            "-Anna",
            "Anna-",
            "O''Neil",
            "Anna_Maria",
            "Anna😀",
            "'Anna",
            "\u{301}Anna",
        ] {
            assert_eq!(code(by().validate_name("first_name", raw)), "name_invalid_characters", "{raw}");
        }
    }

    #[test]
    fn passport_numbers_are_upper_cased_without_spaces() {
        assert_eq!(by().validate_passport("passport", " mp 1234567 ").unwrap(), "MP1234567");
        assert_eq!(by().validate_passport("passport", "HB7654321").unwrap(), "HB7654321");
        assert_eq!(ua().validate_passport("passport", "123456789").unwrap(), "123456789");
        assert_eq!(ua().validate_passport("passport", "ка 123456").unwrap(), "КА123456");
    }

    #[test]
    fn malformed_passport_numbers_are_refused() {
        for raw in ["", "MP123456", "MP12345678", "M1234567", "1P1234567", "МР1234567", "MP-1234567", "MP١٢٣٤٥٦٧"]
        {
            assert_eq!(code(by().validate_passport("passport", raw)), "passport_number_invalid", "{raw}");
        }
        assert_eq!(code(ua().validate_passport("passport", "KA123456")), "passport_number_invalid");
        assert_eq!(code(by().validate_passport("passport", &"M".repeat(1000))), "passport_number_invalid");
    }

    #[test]
    fn personal_ids_are_upper_cased() {
        assert_eq!(by().validate_personal_id("personal_id", "3010190a001pb5").unwrap(), "3010190A001PB5");
        assert_eq!(by().validate_personal_id("personal_id", "3010190 A001 PB5").unwrap(), "3010190A001PB5");
        assert_eq!(ua().validate_personal_id("personal_id", "1234567890").unwrap(), "1234567890");
    }

    #[test]
    fn malformed_personal_ids_are_refused() {
        for raw in ["", "3010190A001PB", "3010190A001PB55", "3010190A001PБ5", "3010190-001PB5"] {
            assert_eq!(code(by().validate_personal_id("personal_id", raw)), "personal_id_invalid", "{raw}");
        }
        assert_eq!(code(ua().validate_personal_id("personal_id", "123456789A")), "personal_id_invalid");
    }

    #[test]
    fn email_domain_is_lower_cased() {
        assert_eq!(by().validate_email("email", " Anna.Smith@Example.COM ").unwrap(), "Anna.Smith@example.com");
        assert_eq!(by().validate_email("email", "a+tag@mail.example.by").unwrap(), "a+tag@mail.example.by");
        assert_eq!(by().validate_email("email", "иван@почта.бел").unwrap(), "иван@почта.бел");
    }

    #[test]
    fn malformed_emails_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_address = format!("{}@{}.com", "a".repeat(60), "b".repeat(190));
        for raw in [
            "",
            "anna",
            "anna@",
            "@example.com",
            "anna@example",
            "anna@@example.com",
            "anna@bob@example.com",
            "anna smith@example.com",
            "anna@exa mple.com",
            ".anna@example.com",
            "anna.@example.com",
            "an..na@example.com",
            "anna@example..com",
            "anna@.example.com",
            "anna@-example.com",
            "anna@example.c",
            "anna@127.0.0.1",
            "anna@exam_ple.com",
            "<anna>@example.com",
            "anna\u{0}@example.com",
            long_local.as_str(),
            long_address.as_str(),
        ] {
            assert_eq!(code(by().validate_email("email", raw)), "email_invalid", "{raw}");
        }
        // 254 characters is the most there may be.
        let address = |last_label: usize| {
            format!("{}@{}.{}.{}.com", "a".repeat(60), "b".repeat(63), "c".repeat(63), "d".repeat(last_label))
        };
        assert_eq!(address(61).len(), 254);
        assert_eq!(by().validate_email("email", &address(61)).unwrap(), address(61));
        assert_eq!(code(by().validate_email("email", &address(62))), "email_invalid");
        let long_label = format!("anna@{}.com", "b".repeat(64));
        assert_eq!(code(by().validate_email("email", &long_label)), "email_invalid");
    }

    #[test]
    fn known_valid_ibans_pass() {
        assert_eq!(
            normalize_account_number("account", "BY13NBRB3600900000002Z00AB00").unwrap(),
            "BY13NBRB3600900000002Z00AB00"
        );
        assert_eq!(
            normalize_account_number("account", " by13 nbrb 3600 9000 0000 2z00 ab00 ").unwrap(),
            "BY13NBRB3600900000002Z00AB00"
        );
        assert_eq!(
            normalize_account_number("account", "UA21 3223 1300 0002 6007 2335 6600 1").unwrap(),
            "UA213223130000026007233566001"
        );
        assert_eq!(
            normalize_account_number("account", "GB82 WEST 1234 5698 7654 32").unwrap(),
            "GB82WEST12345698765432"
        );
        assert_eq!(normalize_account_number("account", "DE89370400440532013000").unwrap(), "DE89370400440532013000");
    }

    #[test]
    fn a_typo_fails_the_check_digits() {
        // One changed digit, two swapped characters, changed check digits.
        for raw in [
            "BY13NBRB3600900000002Z00AB01",
            "BY13NBRB3600900000020Z00AB00",
            "BY14NBRB3600900000002Z00AB00",
            "UA213223130000026007233566002",
        ] {
            assert_eq!(code(normalize_account_number("account", raw)), "account_number_check_digits", "{raw}");
        }
    }

    #[test]
    fn check_digits_00_01_and_99_are_refused_even_when_the_remainder_fits() {
        // The correct check digits of these are 97 and 98 (computed
        // independently), congruent to 00 and 01 modulo 97.
        assert!(normalize_account_number("account", "BY97KASA30140000000000000053").is_ok());
        assert!(normalize_account_number("account", "BY98KASA30140000000000000035").is_ok());
        assert_eq!(
            code(normalize_account_number("account", "BY00KASA30140000000000000053")),
            "account_number_check_digits"
        );
        assert_eq!(
            code(normalize_account_number("account", "BY01KASA30140000000000000035")),
            "account_number_check_digits"
        );
    }

    #[test]
    fn malformed_account_numbers_are_invalid() {
        let huge = "BY".repeat(1000);
        for raw in [
            "",
            "B",
            "BY",
            "BY1",
            "BY13NBRB3600900000002Z00AB0",
            "BY13NBRB3600900000002Z00AB000",
            "BY13NBRB-3600900000002Z00AB00",
            "BY13NBRB3600900000002Z00AБ00",
            "BYX3NBRB3600900000002Z00AB00",
            "1313NBRB3600900000002Z00AB00",
            "XX13NBRB3600900000002Z00AB00",
            "BY13NBRBA600900000002Z00AB00",
            "UA21A223130000026007233566001",
            huge.as_str(),
        ] {
            assert_eq!(code(normalize_account_number("account", raw)), "account_number_invalid", "{raw}");
        }
    }

    #[test]
    fn account_numbers_match_an_independent_computation() {
        // Expected values computed with Python's arbitrary-precision integers.
        assert_eq!(by().account_number("KASA", 1), "BY46KASA30140000000000000001");
        assert_eq!(by().account_number("KASA", 1_234_567), "BY38KASA30140000000001234567");
        assert_eq!(ua().account_number("322001", 42), "UA133220010000026200000000042");
    }

    #[test]
    fn every_account_number_passes_normalisation() {
        let serials =
            (1..=3000).chain([9_999_999_999, 10_000_000_000, 9_999_999_999_999_999, i64::MAX, 0, -7, i64::MIN]);
        for serial in serials {
            for (profile, bank) in [(by(), "KASA"), (ua(), "322001")] {
                let number = profile.account_number(bank, serial);
                assert_eq!(normalize_account_number("account", &number).unwrap(), number, "{serial}");
            }
        }
        // Arguments outside the contract still give a well-formed number.
        for bank in ["", "kasa", "K", "TOOLONG", "ÄÖÜ!", "12"] {
            for profile in [by(), ua()] {
                let number = profile.account_number(bank, 5);
                assert!(normalize_account_number("account", &number).is_ok(), "{number}");
            }
        }
    }

    #[test]
    fn account_numbers_have_the_national_layout() {
        let number = by().account_number("KASA", 77);
        assert_eq!(number.len(), 28);
        assert!(number.starts_with("BY"));
        assert_eq!(&number[4..], "KASA30140000000000000077");
        let number = ua().account_number("322001", 77);
        assert_eq!(number.len(), 29);
        assert_eq!(&number[4..], "3220010000026200000000077");
        assert_ne!(by().account_number("KASA", 1), by().account_number("KASA", 2));
    }

    #[test]
    fn bank_codes_are_checked() {
        assert!(by().check_bank_code("bank_code", "KASA").is_ok());
        assert!(ua().check_bank_code("bank_code", "322001").is_ok());
        for bad in ["", "kasa", "KAS", "KASAB", "KAS1", "КАСА"] {
            assert_eq!(code(by().check_bank_code("bank_code", bad)), "bank_code_invalid", "{bad}");
        }
        assert_eq!(code(ua().check_bank_code("bank_code", "KASA")), "bank_code_invalid");
    }

    #[test]
    fn common_password_list_is_loaded() {
        assert!(COMMON_PASSWORDS.len() >= 1000, "{}", COMMON_PASSWORDS.len());
        assert!(COMMON_PASSWORDS.iter().all(|p| p.chars().count() >= PASSWORD_MIN_CHARS && *p == p.to_lowercase()));
        assert!(!COMMON_PASSWORDS.iter().any(|p| p.starts_with('#')));
    }

    #[test]
    fn good_password_passes() {
        assert_eq!(check_password("password", "correct-horse-7-battery", "+375291234567"), Ok(()));
        // Exactly twelve characters, counted as characters: these are 24 bytes.
        assert_eq!(check_password("password", "ЖёлтыйКотЮг!", "anna"), Ok(()));
        assert_eq!(check_password("password", &"ab1".repeat(42)[..126], "anna"), Ok(()));
    }

    #[test]
    fn short_password_is_refused() {
        assert_eq!(code(check_password("password", "Tr0ub4dor&3", "anna")), "password_too_short");
        assert_eq!(code(check_password("password", "", "anna")), "password_too_short");
        assert_eq!(code(check_password("password", "Жёлтый Кот!", "anna")), "password_too_short");
    }

    #[test]
    fn long_password_is_refused() {
        let longest: String = "xk7!".repeat(32);
        assert_eq!(check_password("password", &longest, "anna"), Ok(()));
        assert_eq!(code(check_password("password", &format!("{longest}z"), "anna")), "password_too_long");
        assert_eq!(code(check_password("password", &"xk7!".repeat(100_000), "anna")), "password_too_long");
    }

    #[test]
    fn common_password_is_refused_whatever_its_case() {
        for password in [
            "123456789012",
            "Password1234",
            "QWERTYUIOP123",
            "iloveyou1234",
            "1q2w3e4r5t6y",
            "Parol12345678",
            "пароль123456",
        ] {
            assert_eq!(code(check_password("password", password, "anna")), "password_too_common", "{password}");
        }
    }

    #[test]
    fn repeated_character_password_is_refused() {
        assert_eq!(code(check_password("password", "zzzzzzzzzzzzzzz", "anna")), "password_too_common");
        assert_eq!(code(check_password("password", "ЖжЖжЖжЖжЖжЖжЖж", "anna")), "password_too_common");
    }

    #[test]
    fn password_containing_the_login_is_refused() {
        let phone = "+375291234567";
        for password in ["my+375291234567pw", "375291234567-secret", "call 291234567 now!"] {
            assert_eq!(code(check_password("password", password, phone)), "password_contains_login", "{password}");
        }
        assert_eq!(code(check_password("password", "Xx-ANNASMITH-2024", "AnnaSmith")), "password_contains_login");
        assert_eq!(
            code(check_password("password", "anna.smith likes tea", "anna.smith@example.com")),
            "password_contains_login"
        );
        // A login shorter than four characters would match too much.
        assert_eq!(check_password("password", "bob the builder 7", "bob"), Ok(()));
    }

    #[test]
    fn password_problems_never_echo_the_password() {
        let password = "SecretPart-1234567";
        for (pw, login) in [(password, "secretpart"), ("Sec", "anna"), ("password1234", "anna")] {
            let problem = check_password("password", pw, login).unwrap_err();
            assert!(!problem.detail.to_lowercase().contains(&pw.to_lowercase()), "{problem:?}");
            assert!(!problem.detail.to_lowercase().contains("secretpart"));
        }
    }
}
