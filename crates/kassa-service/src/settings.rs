//! What the services need to know about the bank they run: its identity
//! and the limits it chose. The binary fills this from its configuration
//! layers; tests build it directly.

use std::fmt;

/// The bank's identity, shown wherever the bank speaks to people.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BankIdentity {
    pub name: String,
    pub address: String,
    pub phone: String,
    /// The country profile's code (`BY`): validation rules and IBAN format.
    pub country: String,
    /// An IANA zone name (`Europe/Minsk`), for "today" in limits and dates.
    pub timezone: String,
    /// The four-letter bank code inside the bank's IBANs.
    pub bank_code: String,
}

impl Default for BankIdentity {
    fn default() -> BankIdentity {
        BankIdentity {
            name: "Kassa Bank".into(),
            address: "1 Main Street, Minsk".into(),
            phone: "+375170000000".into(),
            country: "BY".into(),
            timezone: "Europe/Minsk".into(),
            bank_code: "KASA".into(),
        }
    }
}

/// A secret's bytes; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub bank: BankIdentity,
    /// The key access tokens are signed with (HS256); at least 32 bytes.
    /// Every node sharing a database must have the same key.
    pub token_key: SecretBytes,
    /// Lifetime of an access token; at most 15 minutes.
    pub access_token_ttl_s: i64,
    /// Lifetime of a session (and so of its refresh tokens).
    pub session_ttl_s: i64,
    /// How many open accounts a customer may hold.
    pub accounts_per_customer_max: u32,
    /// Failed sign-ins per login before answers become 429.
    pub login_failures_free: u32,
    /// The longest a login is throttled after failures.
    pub login_throttle_max_s: i64,
    /// Failed sign-ins per client address within `address_window_s`.
    pub address_failures_max: u32,
    pub address_window_s: i64,
    /// Argon2id memory in KiB (at least 19 MiB in production; tests may
    /// lower it to keep the suite fast, never below the crate's minimum).
    pub argon2_memory_kib: u32,
    /// Recipient look-ups (`GET /recipients`) per customer within
    /// `recipient_window_s`: enough to check a few payees, too few to walk
    /// the phone book for names.
    pub recipient_lookups_max: u32,
    pub recipient_window_s: i64,
    /// The key card PINs are hashed with and CVVs derived from; at least 32
    /// bytes, the same on every node, kept apart from the database (a
    /// stolen database alone gives up neither).
    pub card_key: SecretBytes,
    pub cards: crate::cards::CardSettings,
    pub approvals: crate::approvals::ApprovalSettings,
    pub fx: crate::fx::FxSettings,
    pub interest: crate::interest::InterestSettings,
    pub notifications: crate::notify::NotifySettings,
}

impl Settings {
    /// Settings with the defaults; `card_key` is derived from `token_key`
    /// until the caller sets its own (the server reads it from
    /// `secrets/card.key`).
    pub fn new(bank: BankIdentity, token_key: SecretBytes) -> Settings {
        let card_key = SecretBytes(crate::crypto::hmac_sha256(&token_key.0, b"kassa card key").to_vec());
        Settings {
            bank,
            token_key,
            access_token_ttl_s: 900,
            session_ttl_s: 30 * 24 * 3600,
            accounts_per_customer_max: 8,
            login_failures_free: 5,
            login_throttle_max_s: 15 * 60,
            address_failures_max: 100,
            address_window_s: 600,
            argon2_memory_kib: 19 * 1024,
            recipient_lookups_max: 20,
            recipient_window_s: 3600,
            card_key,
            cards: Default::default(),
            approvals: Default::default(),
            fx: Default::default(),
            interest: Default::default(),
            notifications: Default::default(),
        }
    }
}
