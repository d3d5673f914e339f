//! Cards: numbers with a Luhn digit, holder names, PINs (keyed hash), CVVs
//! derived on demand, card status; credit-card applications live in
//! applications.rs.
//!
//! A card is a customer account of kind `debit_card` or `credit_card` with
//! a row in `cards` beside it. Its status is the account's (active, blocked,
//! closed); staff may also mark it lost, which blocks the account. The card
//! key (`Settings.card_key`, kept outside the database) is split with HMAC
//! labels into a PIN key and a CVV key: the PIN is stored as
//! HMAC(PIN key, account id ‖ PIN), so the database alone does not give it
//! up to 10⁴ guesses, and the CVV is HMAC(CVV key, number ‖ valid-to),
//! computed when the owner asks and stored nowhere.

use kassa_store::sql::{self, Tx, Value};
use kassa_store::{StoreError, now_us};
use serde_json::json;

use crate::accounts::{AccountView, read_view};
use crate::country::FieldProblem;
use crate::{Bank, Caller, Role, ServiceError, ServiceResult, crypto};

/// Wrong PINs in a row, entered at registered terminals, that block a card
/// for PIN use until staff reset it (the schema's CHECK says the same).
pub const PIN_TRIES_MAX: i64 = 3;

/// Password re-entries on the card routes (reveal, PIN) per customer per
/// window: enough for real use, too few to guess a password through them.
const PASSWORD_TRIES_MAX: u32 = 10;
const PASSWORD_WINDOW_S: i64 = 600;

/// PIN checks per card and window that do not come from a registered
/// terminal: they never block the card, so they are throttled instead.
const UNREGISTERED_PIN_CHECKS_MAX: u32 = 5;
const UNREGISTERED_PIN_WINDOW_S: i64 = 3600;

/// Settings: the `[cards]` section of kassa.toml.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardSettings {
    /// The first digits of every card number (the issuer identification
    /// number): 1–8 digits.
    pub issuer_prefix: String,
    /// How long a new card is valid, in months (the valid-to month is this
    /// many months after the month of issue).
    pub validity_months: u32,
}

impl Default for CardSettings {
    fn default() -> CardSettings {
        CardSettings { issuer_prefix: "458522".into(), validity_months: 36 }
    }
}

impl CardSettings {
    /// Checks the settings; the error names the setting as spelt in the
    /// `[cards]` section.
    pub fn validate(&self) -> Result<(), String> {
        let prefix = &self.issuer_prefix;
        if prefix.is_empty() || prefix.len() > 8 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("issuer_prefix: {prefix:?} must be 1–8 digits"));
        }
        if !(1..=120).contains(&self.validity_months) {
            return Err(format!("validity_months: {} must be between 1 and 120", self.validity_months));
        }
        Ok(())
    }
}

/// A card as account views show it: the number masked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CardView {
    /// `4585 22•• •••• 0006`: the first six and the last four digits.
    pub number_masked: String,
    pub holder_name: String,
    /// The last month the card is valid, `YYYY-MM`.
    pub valid_to: String,
    pub pin_set: bool,
    pub pin_blocked: bool,
    pub lost: bool,
}

/// What the owner sees after re-entering the password.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardDetails {
    pub account: i64,
    pub number: String,
    pub holder_name: String,
    pub valid_to: String,
    pub cvv: String,
}

impl std::fmt::Debug for CardDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardDetails").field("account", &self.account).field("number", &mask(&self.number)).finish()
    }
}

#[derive(Clone, Default, serde::Deserialize)]
pub struct RevealForm {
    pub password: Option<String>,
}

#[derive(Clone, Default, serde::Deserialize)]
pub struct PinForm {
    /// The customer's password, re-entered.
    pub password: Option<String>,
    /// The new PIN: four digits.
    pub pin: Option<String>,
}

impl std::fmt::Debug for RevealForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevealForm(<redacted>)")
    }
}

impl std::fmt::Debug for PinForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinForm(<redacted>)")
    }
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct StaffCardForm {
    /// `lost` (blocks the card's account and marks the card lost) or
    /// `pin_reset` (lifts the PIN block after three wrong PINs).
    pub action: Option<String>,
}

/// A PIN that was right, for the terminal that asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinAccepted {
    pub account: i64,
    pub owner: i64,
    pub currency: String,
}

// ------------------------------------------------------------ numbers

/// The Luhn check digit for `digits` (the number without its last digit).
pub fn luhn_digit(digits: &str) -> Option<u8> {
    let mut sum = 0_u32;
    for (i, byte) in digits.bytes().rev().enumerate() {
        if !byte.is_ascii_digit() {
            return None;
        }
        let mut d = u32::from(byte - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    u8::try_from((10 - sum % 10) % 10).ok()
}

/// Whether a number of digits ends in its Luhn check digit.
pub fn luhn_valid(number: &str) -> bool {
    match number.len().checked_sub(1).and_then(|n| number.get(..n).zip(number.get(n..))) {
        Some((body, last)) if !body.is_empty() => {
            luhn_digit(body).is_some_and(|digit| last.as_bytes() == [b'0' + digit])
        }
        _ => false,
    }
}

/// `4585 22•• •••• 0006`.
pub fn mask(number: &str) -> String {
    let digits: Vec<char> = number.chars().collect();
    let shown = |i: usize| i < 6 || i + 4 >= digits.len();
    let mut out = String::new();
    for (i, c) in digits.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(if shown(i) { *c } else { '•' });
    }
    out
}

/// A card number as a client may write it (spaces or hyphens between
/// groups), if it has the shape of one: 16 digits.
pub fn normalize_card_number(reference: &str) -> Option<String> {
    let digits: String = reference.chars().filter(|c| *c != ' ' && *c != '-').collect();
    (digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

fn random_digits(count: usize) -> ServiceResult<String> {
    let mut out = String::with_capacity(count);
    while out.len() < count {
        for byte in crypto::random_bytes(32)? {
            // 250 is a multiple of 10: rejecting 250..=255 keeps digits uniform.
            if byte < 250 && out.len() < count {
                out.push(char::from(b'0' + byte % 10));
            }
        }
    }
    Ok(out)
}

/// A fresh 16-digit number: the issuer prefix, random digits, Luhn digit.
fn new_number(prefix: &str) -> ServiceResult<String> {
    if prefix.is_empty() || prefix.len() > 8 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServiceError::Internal("cards.issuer_prefix must be 1–8 digits".into()));
    }
    let mut number = format!("{prefix}{}", random_digits(15 - prefix.len())?);
    let digit = luhn_digit(&number).ok_or_else(|| ServiceError::Internal("a card number is not digits".into()))?;
    number.push(char::from(b'0' + digit));
    Ok(number)
}

// -------------------------------------------------------- holder names

/// The embossed name from a customer's name: Cyrillic transliterated
/// (Belarusian and Russian letters, passport style), capitals, only Latin
/// letters, spaces, hyphens, apostrophes and dots; `None` when too little
/// is left.
pub fn transliterate(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.chars() {
        let lower: String = c.to_lowercase().collect();
        let latin = match lower.as_str() {
            "а" => "a",
            "б" => "b",
            "в" => "v",
            "г" => "g",
            "ґ" => "g",
            "д" => "d",
            "е" => "e",
            "ё" => "e",
            "є" => "ye",
            "ж" => "zh",
            "з" => "z",
            "и" => "i",
            "і" => "i",
            "ї" => "yi",
            "й" => "y",
            "к" => "k",
            "л" => "l",
            "м" => "m",
            "н" => "n",
            "о" => "o",
            "п" => "p",
            "р" => "r",
            "с" => "s",
            "т" => "t",
            "у" => "u",
            "ў" => "u",
            "ф" => "f",
            "х" => "kh",
            "ц" => "ts",
            "ч" => "ch",
            "ш" => "sh",
            "щ" => "shch",
            "ъ" | "ь" => "",
            "ы" => "y",
            "э" => "e",
            "ю" => "yu",
            "я" => "ya",
            other if other.chars().all(|c| c.is_ascii_alphabetic()) => other,
            " " | "-" | "'" | "." => lower.as_str(),
            _ => "",
        };
        out.push_str(latin);
    }
    let embossed = out.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_uppercase();
    let embossed: String = embossed.chars().take(26).collect();
    let embossed = embossed.trim().to_owned();
    check_holder_name(&embossed).ok()
}

/// The holder name for a new card of `customer`: the one given (already
/// checked), else the customer's name transliterated; `holder_name_required`
/// when that leaves too little.
pub(crate) fn holder_name_for(tx: &mut dyn Tx, customer: i64, given: Option<&str>) -> ServiceResult<String> {
    if let Some(name) = given {
        return Ok(name.to_owned());
    }
    let row = tx.query_one("SELECT first_name, last_name FROM customers WHERE id = $1", &[Value::Int(customer)])?;
    transliterate(&format!("{} {}", row.text(0)?, row.text(1)?)).ok_or_else(|| {
        ServiceError::invalid(
            "holder_name",
            "holder_name_required",
            "the name cannot be written in Latin letters; give a holder_name",
        )
    })
}

/// A holder name as given: Latin letters (capitalised here), spaces,
/// hyphens, apostrophes and dots, 2–26 characters, starting with a letter.
pub fn check_holder_name(text: &str) -> Result<String, FieldProblem> {
    let name = text.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_uppercase();
    let valid = (2..=26).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_uppercase() || b" -'.".contains(&b));
    if valid {
        Ok(name)
    } else {
        Err(FieldProblem {
            field: "holder_name".into(),
            code: "holder_name_invalid",
            detail: "a holder name is 2–26 Latin letters, spaces, hyphens, apostrophes or dots".into(),
        })
    }
}

// ------------------------------------------------------------- secrets

fn pin_key(card_key: &[u8]) -> [u8; 32] {
    crypto::hmac_sha256(card_key, b"kassa card pin key v1")
}

fn cvv_key(card_key: &[u8]) -> [u8; 32] {
    crypto::hmac_sha256(card_key, b"kassa card cvv key v1")
}

fn pin_hash(card_key: &[u8], account: i64, pin: &str) -> [u8; 32] {
    crypto::hmac_sha256(&pin_key(card_key), format!("{account}\0{pin}").as_bytes())
}

/// The fixed label whose HMAC under the card key identifies the key.
const FINGERPRINT_LABEL: &[u8] = b"kassa card key fingerprint v1";

/// Checks the card key against the fingerprint in the database, writing it
/// if this is the first start: every node sharing a database must use the
/// same `secrets/card.key`, or they would silently disagree on PIN hashes
/// and CVVs. Call before starting the bank; a mismatch is
/// `card_key_mismatch` and the node must not start.
pub async fn check_card_key(db: &dyn sql::Database, card_key: &[u8]) -> ServiceResult<()> {
    let mine = crypto::hmac_sha256(card_key, FINGERPRINT_LABEL).to_vec();
    let now = now_us();
    let stored = sql::write(db, move |tx| {
        tx.execute(
            "INSERT INTO card_key_fingerprint (id, fingerprint, created_at_us) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
            &[Value::from(mine.clone()), Value::Int(now)],
        )?;
        let stored = tx.query_one("SELECT fingerprint FROM card_key_fingerprint WHERE id = 1", &[])?.blob(0)?;
        Ok::<_, ServiceError>(crypto::ct_eq(&stored, &mine))
    })
    .await?;
    if stored {
        Ok(())
    } else {
        Err(ServiceError::Refused(
            "card_key_mismatch",
            "the card key (secrets/card.key) is not the one this database was started with: every node sharing \
             a database needs the same card key, or PINs and CVVs would not match; copy the first node's key"
                .into(),
        ))
    }
}

/// The CVV of a card: three digits from HMAC(CVV key, number ‖ valid-to).
pub fn cvv(card_key: &[u8], number: &str, valid_to: &str) -> String {
    let mac = crypto::hmac_sha256(&cvv_key(card_key), format!("{number}\0{valid_to}").as_bytes());
    let mut head = [0_u8; 8];
    head.copy_from_slice(&mac[..8]);
    format!("{:03}", u64::from_be_bytes(head) % 1000)
}

fn check_pin(pin: &str) -> ServiceResult<()> {
    if pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ServiceError::invalid("pin", "pin_invalid", "a PIN is four digits"))
    }
}

// --------------------------------------------------------------- issue

/// The valid-to month `months` after `today`'s month, `YYYY-MM`.
fn valid_to(today: crate::calendar::Day, months: u32) -> String {
    let index = i64::from(today.year()) * 12 + i64::from(today.month()) - 1 + i64::from(months);
    format!("{:04}-{:02}", index.div_euclid(12), index.rem_euclid(12) + 1)
}

/// Gives a new card account its card: a fresh unique number (after the
/// product's issuer prefix), the holder name, the valid-to month. Runs inside the account's opening transaction.
pub(crate) fn issue(
    tx: &mut dyn Tx,
    prefix: &str,
    validity_months: u32,
    today: crate::calendar::Day,
    account: i64,
    holder_name: &str,
    now: i64,
) -> ServiceResult<CardView> {
    let valid_to = valid_to(today, validity_months);
    // A collision is about one in 10⁹ per card at a million cards; look
    // before inserting, and the UNIQUE constraint stays the last word.
    for _ in 0..8 {
        let number = new_number(prefix)?;
        if tx.query_opt("SELECT 1 FROM cards WHERE number = $1", &[Value::from(&number)])?.is_some() {
            continue;
        }
        tx.execute(
            "INSERT INTO cards (account_id, number, holder_name, valid_to, created_at_us) VALUES ($1, $2, $3, $4, $5)",
            &[
                Value::Int(account),
                Value::from(&number),
                Value::from(holder_name),
                Value::from(&valid_to),
                Value::Int(now),
            ],
        )?;
        return Ok(CardView {
            number_masked: mask(&number),
            holder_name: holder_name.to_owned(),
            valid_to,
            pin_set: false,
            pin_blocked: false,
            lost: false,
        });
    }
    Err(ServiceError::Internal("no free card number after 8 tries".into()))
}

/// The account a card number names.
pub(crate) fn account_of_card(tx: &mut dyn Tx, number: &str) -> Result<Option<i64>, StoreError> {
    tx.query_opt("SELECT account_id FROM cards WHERE number = $1", &[Value::from(number)])?
        .map(|row| row.int(0))
        .transpose()
}

struct CardRow {
    number: String,
    holder_name: String,
    valid_to: String,
    pin_hash: Option<Vec<u8>>,
    pin_failures: i64,
    pin_blocked: bool,
    lost: bool,
    owner: i64,
    status: String,
    currency: String,
}

const CARD_ROW_SQL: &str = "SELECT c.number, c.holder_name, c.valid_to, c.pin_hash, c.pin_failures, c.pin_blocked, \
     c.lost, d.customer_id, a.status, a.currency, a.id FROM cards c JOIN accounts a ON a.id = c.account_id \
     JOIN account_details d ON d.account_id = a.id";

fn card_from_row(row: &kassa_store::sql::Row) -> Result<(i64, CardRow), StoreError> {
    Ok((
        row.int(10)?,
        CardRow {
            number: row.text(0)?,
            holder_name: row.text(1)?,
            valid_to: row.text(2)?,
            pin_hash: row.opt_blob(3)?,
            pin_failures: row.int(4)?,
            pin_blocked: row.int(5)? != 0,
            lost: row.int(6)? != 0,
            owner: row.int(7)?,
            status: row.text(8)?,
            currency: row.text(9)?,
        },
    ))
}

fn card_of_account(tx: &mut dyn Tx, account: i64) -> Result<Option<CardRow>, StoreError> {
    tx.query_opt(&format!("{CARD_ROW_SQL} WHERE c.account_id = $1"), &[Value::Int(account)])?
        .map(|row| card_from_row(&row).map(|(_, card)| card))
        .transpose()
}

fn card_not_found() -> ServiceError {
    ServiceError::NotFound("card_not_found", "no such card")
}

/// Whether `valid_to` (`YYYY-MM`) is before today's month.
fn expired(valid_to: &str, today: crate::calendar::Day) -> bool {
    valid_to < format!("{:04}-{:02}", today.year(), today.month()).as_str()
}

enum PinOutcome {
    Accepted(PinAccepted),
    Refused(&'static str, String),
    Throttled(i64),
}

impl Bank {
    /// Checks the caller's password for a card route (counted per customer
    /// and window, right or wrong).
    async fn recheck_password(&self, caller: &Caller, customer: i64, password: Option<String>) -> ServiceResult<()> {
        let password = password
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ServiceError::invalid("password", "field_required", "re-enter your password"))?;
        let now = now_us();
        let key = format!("card-password customer:{customer}");
        let draft = caller.audit("card.password_check", caller.actor(), json!({}));
        let (hash, wait) = sql::write(&*self.db, move |tx| {
            let wait = crate::limits::count_use(tx, &key, PASSWORD_TRIES_MAX, PASSWORD_WINDOW_S, now)?;
            if wait.is_some() {
                sql::journal(tx, now, std::slice::from_ref(&draft))?;
            }
            let hash =
                tx.query_one("SELECT password_hash FROM customers WHERE id = $1", &[Value::Int(customer)])?.text(0)?;
            Ok::<_, ServiceError>((hash, wait))
        })
        .await?;
        if let Some(retry_after_s) = wait {
            return Err(ServiceError::Throttled { retry_after_s });
        }
        let right = tokio::task::spawn_blocking(move || crypto::verify_password(&hash, &password))
            .await
            .map_err(|error| ServiceError::Internal(format!("the hashing thread failed: {error}")))?;
        if right { Ok(()) } else { Err(ServiceError::invalid("password", "password_wrong", "the password is wrong")) }
    }

    /// The owner's card details (full number, valid-to, CVV) after the
    /// password is re-entered. Journaled as `card.reveal`, without them.
    pub async fn reveal_card(&self, caller: &Caller, account: i64, form: RevealForm) -> ServiceResult<CardDetails> {
        let owner = caller.customer()?;
        let card = sql::read(&*self.db, move |tx| card_of_account(tx, account))
            .await?
            .filter(|card| card.owner == owner)
            .ok_or_else(card_not_found)?;
        self.recheck_password(caller, owner, form.password).await?;
        let now = now_us();
        let draft = caller.audit(
            "card.reveal",
            format!("account:{account}"),
            json!({"card": mask(&card.number), "customers": [owner]}),
        );
        sql::write(&*self.db, move |tx| Ok::<_, ServiceError>(sql::journal(tx, now, std::slice::from_ref(&draft))?))
            .await?;
        let cvv = cvv(&self.settings.card_key.0, &card.number, &card.valid_to);
        Ok(CardDetails { account, number: card.number, holder_name: card.holder_name, valid_to: card.valid_to, cvv })
    }

    /// The owner sets or changes the card's PIN (password re-entered). A
    /// new PIN clears a count of wrong tries, but not a block: only staff
    /// lift that.
    pub async fn set_card_pin(&self, caller: &Caller, account: i64, form: PinForm) -> ServiceResult<AccountView> {
        let owner = caller.customer()?;
        let card = sql::read(&*self.db, move |tx| card_of_account(tx, account))
            .await?
            .filter(|card| card.owner == owner)
            .ok_or_else(card_not_found)?;
        let pin = form.pin.clone().unwrap_or_default();
        check_pin(&pin)?;
        if card.status == "closed" {
            return Err(ServiceError::Refused("account_closed", "the card's account is closed".into()));
        }
        self.recheck_password(caller, owner, form.password).await?;
        let hash = pin_hash(&self.settings.card_key.0, account, &pin).to_vec();
        let now = now_us();
        let draft = caller.audit(
            "card.pin",
            format!("account:{account}"),
            json!({"card": mask(&card.number), "first": card.pin_hash.is_none(), "customers": [owner]}),
        );
        sql::write(&*self.db, move |tx| {
            tx.execute(
                "UPDATE cards SET pin_hash = $2, pin_failures = CASE WHEN pin_blocked = 1 THEN pin_failures ELSE 0 END, \
                 version = version + 1 WHERE account_id = $1",
                &[Value::Int(account), Value::from(hash.clone())],
            )?;
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            read_view(tx, account)?.ok_or_else(card_not_found)
        })
        .await
    }

    /// Staff mark a card lost (its account is blocked: no debits, and no PIN
    /// is accepted) or lift a PIN block. Tellers may do both: a lost card is
    /// reported at the desk, and the reset follows an identity check there.
    pub async fn staff_card(&self, caller: &Caller, account: i64, form: StaffCardForm) -> ServiceResult<AccountView> {
        caller.staff(Role::Teller)?;
        let action = form.action.clone().unwrap_or_default();
        if action != "lost" && action != "pin_reset" {
            return Err(ServiceError::invalid("action", "card_action_invalid", "action must be lost or pin_reset"));
        }
        let now = now_us();
        let caller = caller.clone();
        sql::write(&*self.db, move |tx| {
            let card = card_of_account(tx, account)?.ok_or_else(card_not_found)?;
            if card.status == "closed" {
                return Err(ServiceError::Refused("account_closed", "the card's account is closed".into()));
            }
            if action == "lost" {
                tx.execute(
                    "UPDATE cards SET lost = 1, version = version + 1 WHERE account_id = $1",
                    &[Value::Int(account)],
                )?;
                tx.execute("UPDATE accounts SET status = 'blocked' WHERE id = $1", &[Value::Int(account)])?;
            } else {
                tx.execute(
                    "UPDATE cards SET pin_failures = 0, pin_blocked = 0, version = version + 1 WHERE account_id = $1",
                    &[Value::Int(account)],
                )?;
            }
            let draft = caller.audit(
                if action == "lost" { "card.lost" } else { "card.pin_reset" },
                format!("account:{account}"),
                json!({"card": mask(&card.number), "customers": [card.owner]}),
            );
            sql::journal(tx, now, &[draft])?;
            read_view(tx, account)?.ok_or_else(card_not_found)
        })
        .await
    }

    /// Checks a card's PIN, for the terminal protocol. `registered_terminal`
    /// is the id of the registered terminal the PIN was entered at: only
    /// then does a wrong PIN count towards the block (three in a row) and a
    /// right one clear the count. A PIN checked from anywhere else (`None`)
    /// never counts towards the block, so nobody can block someone else's
    /// card from outside the bank's terminals; instead such checks are
    /// limited per card (five an hour, then `Throttled`) and each is
    /// journaled as `card.pin_check` with its outcome.
    ///
    /// Refusals: `card_not_found`, `card_lost`, `account_blocked`,
    /// `account_closed`, `card_expired`, `pin_not_set`, `pin_blocked`,
    /// `pin_wrong` (with the tries left when counted).
    pub async fn verify_card_pin(
        &self,
        card_number: &str,
        pin: &str,
        registered_terminal: Option<i64>,
    ) -> ServiceResult<PinAccepted> {
        self.verify_card_pin_at(card_number, pin, registered_terminal, None).await
    }

    /// [`Bank::verify_card_pin`] with the terminal protocol's clock for the
    /// journal.
    pub async fn verify_card_pin_at(
        &self,
        card_number: &str,
        pin: &str,
        registered_terminal: Option<i64>,
        clock: Option<i64>,
    ) -> ServiceResult<PinAccepted> {
        let number = normalize_card_number(card_number).ok_or_else(card_not_found)?;
        let well_formed = pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit());
        let key = self.settings.card_key.0.clone();
        let today = self.today();
        let now = now_us();
        let origin = registered_terminal.map_or_else(|| "unregistered".to_owned(), |id| format!("terminal:{id}"));
        let caller = Caller { clock, ..Caller::anonymous(origin) };
        let pin = pin.to_owned();
        let outcome = sql::write(&*self.db, move |tx| {
            let Some(row) = tx.query_opt(&format!("{CARD_ROW_SQL} WHERE c.number = $1"), &[Value::from(&number)])?
            else {
                return Err(card_not_found());
            };
            let (account, card) = card_from_row(&row)?;
            let subject = format!("account:{account}");
            let refuse = |code: &'static str, message: &str| Ok(PinOutcome::Refused(code, message.to_owned()));
            if card.lost {
                return refuse("card_lost", "the card is reported lost");
            }
            if card.status == "closed" {
                return refuse("account_closed", "the card's account is closed");
            }
            if card.status == "blocked" {
                return refuse("account_blocked", "the card's account is blocked");
            }
            if expired(&card.valid_to, today) {
                return refuse("card_expired", "the card has expired");
            }
            if card.pin_blocked {
                return refuse("pin_blocked", "the PIN is blocked after three wrong tries; ask the bank");
            }
            let Some(stored) = card.pin_hash else { return refuse("pin_not_set", "no PIN is set for this card") };
            let Some(terminal) = registered_terminal else {
                // Not counted towards the block, so throttled per card and
                // journaled, right or wrong: no free run of 10⁴ guesses.
                let key_name = format!("card-pin-check account:{account}");
                let wait = crate::limits::count_use(
                    tx,
                    &key_name,
                    UNREGISTERED_PIN_CHECKS_MAX,
                    UNREGISTERED_PIN_WINDOW_S,
                    now,
                )?;
                let right = wait.is_none() && well_formed && crypto::ct_eq(&stored, &pin_hash(&key, account, &pin));
                let mut draft = caller.audit(
                    "card.pin_check",
                    subject,
                    json!({"card": mask(&card.number), "customers": [card.owner]}),
                );
                draft.outcome = match (wait, right) {
                    (Some(_), _) => "throttled",
                    (None, true) => "ok",
                    (None, false) => "pin_wrong",
                }
                .into();
                sql::journal(tx, now, &[draft])?;
                return Ok(match wait {
                    Some(seconds) => PinOutcome::Throttled(seconds),
                    None if right => {
                        PinOutcome::Accepted(PinAccepted { account, owner: card.owner, currency: card.currency })
                    }
                    None => PinOutcome::Refused("pin_wrong", "the PIN is wrong".into()),
                });
            };
            let right = well_formed && crypto::ct_eq(&stored, &pin_hash(&key, account, &pin));
            let blocked_now = || refuse("pin_blocked", "the PIN is blocked after three wrong tries; ask the bank");
            if right {
                // Not if another terminal blocked the PIN meanwhile.
                if card.pin_failures > 0
                    && tx.execute(
                        "UPDATE cards SET pin_failures = 0, version = version + 1 \
                         WHERE account_id = $1 AND pin_blocked = 0",
                        &[Value::Int(account)],
                    )? == 0
                {
                    return blocked_now();
                }
                return Ok(PinOutcome::Accepted(PinAccepted { account, owner: card.owner, currency: card.currency }));
            }
            // Counted under the row's lock and only while not blocked: two
            // terminals at once cannot both see two failures and each add a
            // third, and on PostgreSQL (READ COMMITTED) the condition is
            // checked again on the row as the other terminal left it.
            let Some(counted) = tx.query_opt(
                "UPDATE cards SET pin_failures = pin_failures + 1, \
                 pin_blocked = CASE WHEN pin_failures + 1 >= $2 THEN 1 ELSE 0 END, version = version + 1 \
                 WHERE account_id = $1 AND pin_blocked = 0 RETURNING pin_failures",
                &[Value::Int(account), Value::Int(PIN_TRIES_MAX)],
            )?
            else {
                return blocked_now();
            };
            let failures = counted.int(0)?;
            let blocked = failures >= PIN_TRIES_MAX;
            let draft = caller.audit(
                if blocked { "card.pin_blocked" } else { "card.pin_wrong" },
                subject,
                json!({"card": mask(&card.number), "terminal": terminal, "failures": failures,
                       "customers": [card.owner]}),
            );
            sql::journal(tx, now, &[draft])?;
            if blocked {
                refuse("pin_blocked", "the PIN is wrong; it is now blocked after three wrong tries; ask the bank")
            } else {
                Ok(PinOutcome::Refused(
                    "pin_wrong",
                    format!("the PIN is wrong; {} tries left", PIN_TRIES_MAX - failures),
                ))
            }
        })
        .await?;
        match outcome {
            PinOutcome::Accepted(accepted) => Ok(accepted),
            PinOutcome::Refused(code, message) => Err(ServiceError::Refused(code, message)),
            PinOutcome::Throttled(retry_after_s) => Err(ServiceError::Throttled { retry_after_s }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn luhn_matches_known_numbers() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("4585220000000006") == (luhn_digit("458522000000000") == Some(6)));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("7"));
        assert_eq!(luhn_digit("7992739871"), Some(3));
    }

    #[test]
    fn new_numbers_pass_luhn_and_carry_the_prefix() {
        for _ in 0..200 {
            let number = new_number("458522").unwrap();
            assert_eq!(number.len(), 16);
            assert!(number.starts_with("458522"));
            assert!(luhn_valid(&number), "{number}");
        }
        assert!(new_number("").is_err());
        assert!(new_number("12a").is_err());
    }

    #[test]
    fn masks_like_the_issue_says() {
        assert_eq!(mask("4585220000000006"), "4585 22•• •••• 0006");
        assert_eq!(normalize_card_number("4585 2200-0000 0006").as_deref(), Some("4585220000000006"));
        assert_eq!(normalize_card_number("458522000000000"), None);
    }

    #[test]
    fn holder_names() {
        assert_eq!(transliterate("Ivan Petrov").as_deref(), Some("IVAN PETROV"));
        assert_eq!(transliterate("Алесь Шчыткоў").as_deref(), Some("ALES SHCHYTKOU"));
        assert_eq!(transliterate("Юлия Щукина").as_deref(), Some("YULIYA SHCHUKINA"));
        assert_eq!(transliterate("李"), None);
        assert_eq!(check_holder_name(" anna  ivanova ").unwrap(), "ANNA IVANOVA");
        assert!(check_holder_name("Анна").is_err());
        assert!(check_holder_name("A").is_err());
        assert!(check_holder_name(&"A".repeat(27)).is_err());
    }

    #[test]
    fn cvv_is_reproducible_and_keyed() {
        let a = cvv(b"key one", "4585220000000006", "2029-11");
        assert_eq!(a, cvv(b"key one", "4585220000000006", "2029-11"));
        assert_eq!(a.len(), 3);
        // Another key, number or expiry gives another CVV for most inputs.
        let others: Vec<String> =
            (0..20).map(|i| cvv(format!("key {i}").as_bytes(), "4585220000000006", "2029-11")).collect();
        assert!(others.iter().any(|o| *o != a));
    }

    #[test]
    fn settings_are_checked() {
        assert!(CardSettings::default().validate().is_ok());
        let bad = CardSettings { issuer_prefix: "45a".into(), ..CardSettings::default() };
        assert!(bad.validate().unwrap_err().starts_with("issuer_prefix"));
        let bad = CardSettings { validity_months: 0, ..CardSettings::default() };
        assert!(bad.validate().unwrap_err().starts_with("validity_months"));
    }

    #[test]
    fn valid_to_is_months_later() {
        let day: crate::calendar::Day = "2026-11-22".parse().unwrap();
        assert_eq!(valid_to(day, 36), "2029-11");
        assert_eq!(valid_to(day, 2), "2027-01");
        assert!(!expired("2026-11", day));
        assert!(expired("2026-10", day));
    }
}
