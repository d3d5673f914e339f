//! Kassa's application services: the use-cases behind every interface.
//!
//! Each public method of [`Bank`] is one use-case. It takes the [`Caller`]
//! (who is asking, with which role, from where), checks what that caller may
//! do — including "this account is yours" — runs its database work in one
//! transaction that also writes the audit event, and returns plain data.
//! The HTTP API, the web pages, the terminal protocol and the CLI all call
//! these methods, so none of them can forget a rule.

pub mod accounts;
pub mod applications;
pub mod approvals;
pub mod auth;
pub mod calendar;
pub mod cards;
pub mod country;
pub mod crypto;
pub mod error;
pub mod fx;
pub mod interest;
pub mod journal;
pub mod limits;
pub mod mask;
pub mod money;
pub mod notify;
pub mod people;
pub mod settings;
pub mod statements;
pub mod terminals;

use std::sync::Arc;

use kassa_ledger::Ledger;
use kassa_store::sql::Database;
use kassa_store::{AuditDraft, LedgerStore};

pub use error::{ServiceError, ServiceResult};
pub use settings::{BankIdentity, SecretBytes, Settings};

use crate::auth::SessionCache;
use crate::country::CountryProfile;
use crate::crypto::TokenKeys;

/// A role: what a signed-in user may do (DESIGN.md section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Teller,
    Manager,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Teller => "teller",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "customer" => Some(Role::Customer),
            "teller" => Some(Role::Teller),
            "manager" => Some(Role::Manager),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn is_staff(self) -> bool {
        self != Role::Customer
    }
}

/// Who is asking: a signed-in user (customer or staff), or nobody yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// `None` before sign-in.
    pub user: Option<SignedIn>,
    /// The client address (after trusted-proxy resolution), a terminal, or
    /// `cli`.
    pub origin: String,
    /// The terminal protocol's logical clock at the request's receipt, for
    /// the journal; `None` for every other interface.
    pub clock: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    /// A customer id for customers, a staff id for staff.
    pub id: i64,
    pub role: Role,
    pub session_id: String,
    /// The user must change the password before doing anything else.
    pub restricted: bool,
}

impl Caller {
    pub fn anonymous(origin: impl Into<String>) -> Caller {
        Caller { user: None, origin: origin.into(), clock: None }
    }

    /// The journal's name for the actor: `customer:12`, `staff:3`,
    /// `anonymous`.
    pub fn actor(&self) -> String {
        match &self.user {
            Some(SignedIn { id, role: Role::Customer, .. }) => format!("customer:{id}"),
            Some(SignedIn { id, .. }) => format!("staff:{id}"),
            None if self.origin == "cli" => "system".into(),
            None => "anonymous".into(),
        }
    }

    pub fn role_name(&self) -> &'static str {
        match &self.user {
            Some(user) => user.role.as_str(),
            None if self.origin == "cli" => "system",
            None => "anonymous",
        }
    }

    /// A journal entry by this caller; the outcome defaults to `ok`.
    pub fn audit(&self, action: &str, subject: impl Into<String>, detail: serde_json::Value) -> AuditDraft {
        AuditDraft {
            actor: self.actor(),
            role: self.role_name().to_owned(),
            action: action.to_owned(),
            subject: subject.into(),
            origin: self.origin.clone(),
            clock: self.clock,
            outcome: "ok".into(),
            detail: detail.to_string(),
            notify: notify::wants(action),
        }
    }

    fn unrestricted(&self) -> ServiceResult<()> {
        match &self.user {
            Some(user) if user.restricted => Err(ServiceError::Forbidden(
                "password_change_required",
                "change your password first (POST /api/v1/auth/password)",
            )),
            _ => Ok(()),
        }
    }

    /// The signed-in customer's id, or 403 for anyone else.
    pub fn customer(&self) -> ServiceResult<i64> {
        self.unrestricted()?;
        match &self.user {
            Some(SignedIn { id, role: Role::Customer, .. }) => Ok(*id),
            Some(_) => Err(ServiceError::Forbidden("customers_only", "this is for customers")),
            None => Err(ServiceError::Unauthorized("unauthorized", "sign in first")),
        }
    }

    /// The signed-in staff member's id if their role is at least `least`.
    pub fn staff(&self, least: Role) -> ServiceResult<(i64, Role)> {
        self.unrestricted()?;
        match &self.user {
            Some(SignedIn { id, role, .. }) if role.is_staff() && *role >= least => Ok((*id, *role)),
            Some(_) => Err(ServiceError::Forbidden("forbidden", "your role may not do this")),
            None => Err(ServiceError::Unauthorized("unauthorized", "sign in first")),
        }
    }
}

/// The bank: everything the services need, cheap to clone.
#[derive(Clone)]
pub struct Bank {
    pub(crate) db: Arc<dyn Database>,
    pub(crate) ledger: Ledger,
    pub(crate) settings: Arc<Settings>,
    pub(crate) profile: CountryProfile,
    pub(crate) tokens: Arc<TokenKeys>,
    pub(crate) sessions: Arc<SessionCache>,
    pub(crate) sides: Arc<money::SideCache>,
    /// Daily-limit reservations, group-committed.
    pub(crate) usage: Arc<limits::UsageBatcher>,
    /// The bank's time zone, for "today" (see [`calendar`]).
    pub(crate) zone: jiff::tz::TimeZone,
}

impl std::fmt::Debug for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bank").field("bank", &self.settings.bank.name).finish()
    }
}

impl Bank {
    /// Builds the services over a database and a running ledger (both on
    /// the same store), and makes sure the bank's own accounts and default
    /// products exist.
    pub async fn start(db: Arc<dyn Database>, ledger: Ledger, settings: Settings) -> ServiceResult<Bank> {
        let profile = CountryProfile::by_code(&settings.bank.country)
            .ok_or_else(|| ServiceError::Internal(format!("unknown country profile {:?}", settings.bank.country)))?;
        let tokens = Arc::new(TokenKeys::new(settings.token_key.0.clone(), "kassa", "kassa-api"));
        let zone = calendar::zone(&settings.bank.timezone)?;
        let bank = Bank {
            db,
            ledger,
            settings: Arc::new(settings),
            profile,
            tokens,
            sessions: Arc::new(SessionCache::default()),
            sides: Arc::default(),
            usage: Arc::default(),
            zone,
        };
        accounts::bootstrap(&bank).await?;
        Ok(bank)
    }

    /// Starts the background work of the products (approval expiry, rate
    /// polling, the interest schedule, notification delivery), as the
    /// settings ask. The tasks stop when their handles are aborted.
    pub fn spawn_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = approvals::spawn(self);
        tasks.extend(fx::spawn(self));
        tasks.extend(interest::spawn(self));
        tasks.extend(notify::spawn(self));
        tasks
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn store(&self) -> &Arc<dyn LedgerStore> {
        self.ledger.store()
    }

    pub fn database(&self) -> &Arc<dyn Database> {
        &self.db
    }

    pub fn profile(&self) -> &CountryProfile {
        &self.profile
    }
}

/// A page of a list: `{items, next_cursor}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `items` read with `LIMIT limit`: a full page may have a
    /// next one, named by `cursor_of` its last item; a shorter page is the
    /// last.
    pub fn from_rows(items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Page<T> {
        let full = usize::try_from(limit).is_ok_and(|limit| items.len() == limit);
        let next_cursor = if full { items.last().map(cursor_of) } else { None };
        Page { items, next_cursor }
    }
}

/// Reads a `limit` parameter: 1..=200, default 50.
pub fn page_limit(limit: Option<u32>) -> ServiceResult<u32> {
    match limit {
        None => Ok(50),
        Some(limit @ 1..=200) => Ok(limit),
        Some(_) => Err(ServiceError::invalid("limit", "limit_out_of_range", "limit must be between 1 and 200")),
    }
}

/// Reads an opaque cursor (a decimal sequence number).
pub fn page_cursor(cursor: Option<&str>) -> ServiceResult<Option<i64>> {
    match cursor {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|value| *value > 0 && text.bytes().all(|byte| byte.is_ascii_digit()))
            .map(Some)
            .ok_or_else(|| {
                ServiceError::invalid("cursor", "cursor_invalid", "the cursor is not one this server gave out")
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn a_full_page_names_its_last_item_a_shorter_one_is_the_last() {
        let full = Page::from_rows(vec![9, 7, 4], 3, |id| id.to_string());
        assert_eq!((full.items.as_slice(), full.next_cursor.as_deref()), (&[9, 7, 4][..], Some("4")));
        let short = Page::from_rows(vec![3, 1], 3, |id| id.to_string());
        assert_eq!(short.next_cursor, None);
        let empty = Page::from_rows(Vec::<i64>::new(), 3, |id| id.to_string());
        assert_eq!(empty.next_cursor, None);
    }
}
