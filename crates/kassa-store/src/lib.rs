//! Kassa's storage boundary.
//!
//! [`LedgerStore`] is what the ledger needs from a database. It has two
//! implementations, `kassa-store-sqlite` and `kassa-store-postgres`; the
//! binary picks one from the database URL ([`DatabaseUrl::parse`]). Both run
//! the same rules, [`kassa_core::ledger::apply_batch`], inside one database
//! transaction per batch, so the rules cannot drift apart between engines.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
pub use audit::AuditDraft;
use kassa_core::ledger::{Account, AccountError, AccountStatus, NewAccount, NewTransfer, Transfer, TransferOutcome};
use kassa_core::{AccountId, Amount, TransferId};

pub mod audit;
pub mod sql;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The database could not be reached or the transaction could not
    /// commit; nothing was changed and the caller may retry.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    /// A row that the schema's constraints should have prevented.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("{0}")]
    BadUrl(String),
}

/// Which database a URL names. Anything that is not clearly SQLite or
/// PostgreSQL is refused, so a typo never silently creates a new database
/// somewhere else.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl fmt::Debug for DatabaseUrl {
    // The PostgreSQL URL may carry a password, so it is never printed whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            DatabaseUrl::Postgres(_) => write!(f, "Postgres(..)"),
        }
    }
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err(StoreError::BadUrl("a sqlite URL needs a file path: sqlite://PATH".into()));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        let scheme: String = url.split(':').next().unwrap_or("").chars().take(20).collect();
        Err(StoreError::BadUrl(format!(
            "unsupported database URL (scheme {scheme:?}): use sqlite://PATH or postgres://USER@HOST/DB"
        )))
    }
}

/// What the ledger needs from a database. Every method is one database
/// transaction; `apply` is the only one that moves money.
#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// How many batches may usefully be in flight at once. SQLite has one
    /// writer, so one; a server database can overlap one batch's round trips
    /// and commit with another's (row locks keep them correct).
    fn concurrent_batches_max(&self) -> usize {
        1
    }

    async fn create_account(&self, account: NewAccount, now_us: i64) -> Result<Account, StoreError>;
    /// Opens many accounts in one transaction, all or none.
    async fn create_accounts(&self, accounts: Vec<NewAccount>, now_us: i64) -> Result<Vec<AccountId>, StoreError>;
    async fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError>;
    async fn account_by_number(&self, number: &str) -> Result<Option<Account>, StoreError>;
    /// Several accounts read in one transaction, so their balances are one
    /// consistent snapshot. Missing ids are left out.
    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError>;
    async fn set_account_status(&self, id: AccountId, status: AccountStatus) -> Result<Account, StoreError>;
    async fn set_credit_limit(&self, id: AccountId, credit_limit: Amount) -> Result<Account, StoreError>;

    /// Applies the requests of one group-commit batch with
    /// [`kassa_core::ledger::apply_batch`] in one database transaction and
    /// returns only after it is durable. An error means nothing was written.
    async fn apply(
        &self,
        requests: Vec<Vec<NewTransfer>>,
        now_us: i64,
    ) -> Result<Vec<Vec<TransferOutcome>>, StoreError> {
        self.apply_journaled(requests, Vec::new(), now_us).await
    }

    /// [`LedgerStore::apply`], also appending to the audit journal, in the
    /// same transaction, one event for each request that has a draft
    /// (`journal[i]` belongs to `requests[i]`; a shorter list means no
    /// events for the rest). The store fills in each event's outcome: `ok`,
    /// or the code of the request's first failed transfer.
    async fn apply_journaled(
        &self,
        requests: Vec<Vec<NewTransfer>>,
        journal: Vec<Option<AuditDraft>>,
        now_us: i64,
    ) -> Result<Vec<Vec<TransferOutcome>>, StoreError>;

    async fn transfer(&self, id: TransferId) -> Result<Option<Transfer>, StoreError>;
    /// An account's transfers, newest first, starting below `before_seq`.
    async fn history(
        &self,
        account: AccountId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Transfer>, StoreError>;
    /// The posted balance the account had at `at_us` (after every transfer
    /// created at or before that moment).
    async fn balance_at(&self, account: AccountId, at_us: i64) -> Result<i64, StoreError>;
    /// Pending transfers whose timeout has passed, oldest first.
    async fn expired_pending(&self, now_us: i64, limit: u32) -> Result<Vec<Transfer>, StoreError>;
    /// Reads what `kassa check` needs, in one read transaction.
    async fn check_inputs(&self) -> Result<CheckInputs, StoreError>;
}

// ---------------------------------------------------------------- checking

/// One account as stored, beside the totals recomputed from its transfers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountCheckRow {
    pub account: Account,
    pub from_transfers: Totals,
    /// The newest transfer that names the account, by sequence.
    pub max_seq: Option<i64>,
    /// The posted balance recorded on that newest transfer.
    pub newest_balance_after: Option<i64>,
}

/// Sums of transfer amounts by effect, recomputed from the transfers table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub debits_posted: i128,
    pub credits_posted: i128,
    pub debits_pending: i128,
    pub credits_pending: i128,
}

/// History links that do not lead to an earlier transfer of the same
/// account: each row is a transfer id and the reason. Plain SQL that both
/// engines run as it is.
pub const BROKEN_HISTORY_LINKS_SQL: &str = "\
    SELECT t.id, 'its debit-side history link does not lead to an earlier transfer of the debit account' AS reason
    FROM transfers t LEFT JOIN transfers p ON p.seq = t.prev_debit_seq
    WHERE t.prev_debit_seq IS NOT NULL
      AND (p.seq IS NULL OR p.seq >= t.seq
           OR (p.debit_account_id <> t.debit_account_id AND p.credit_account_id <> t.debit_account_id))
    UNION ALL
    SELECT t.id, 'its credit-side history link does not lead to an earlier transfer of the credit account' AS reason
    FROM transfers t LEFT JOIN transfers p ON p.seq = t.prev_credit_seq
    WHERE t.prev_credit_seq IS NOT NULL
      AND (p.seq IS NULL OR p.seq >= t.seq
           OR (p.debit_account_id <> t.credit_account_id AND p.credit_account_id <> t.credit_account_id))";

/// A transfer row that breaks a rule the schema should already enforce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadTransfer {
    pub id: TransferId,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckInputs {
    pub accounts: Vec<AccountCheckRow>,
    pub transfers: u64,
    pub bad_transfers: Vec<BadTransfer>,
    /// Accounts debited by at least one flagged bank debit that went past
    /// the limit: the only accounts whose `bank_overdraft` flag is justified.
    pub overdrawn_by_bank: Vec<AccountId>,
}

/// The accounts a bank debit took past their limit ([`CheckInputs::overdrawn_by_bank`]).
pub const OVERDRAWN_BY_BANK_SQL: &str = "SELECT DISTINCT debit_account_id FROM transfers WHERE overdraft";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    CurrencyNotZero { currency: String, posted_sum: i128 },
    PendingNotBalanced { currency: String, debits: i128, credits: i128 },
    CachedTotalMismatch { account: AccountId, field: &'static str, cached: i128, from_transfers: i128 },
    BelowCreditLimit { account: AccountId, available: i128, credit_limit: i64 },
    HistoryHeadMismatch { account: AccountId, cached: Option<i64>, newest: Option<i64> },
    BalanceAfterMismatch { account: AccountId, cached: i64, newest_balance_after: i64 },
    UnbalancedTransfer { id: TransferId, reason: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::CurrencyNotZero { currency, posted_sum } => {
                write!(f, "{currency}: posted balances sum to {posted_sum} minor units, not 0")
            }
            Violation::PendingNotBalanced { currency, debits, credits } => {
                write!(f, "{currency}: pending debits {debits} differ from pending credits {credits}")
            }
            Violation::CachedTotalMismatch { account, field, cached, from_transfers } => write!(
                f,
                "account {account}: {field} is {cached} on the account but {from_transfers} from its transfers"
            ),
            Violation::BelowCreditLimit { account, available, credit_limit } => write!(
                f,
                "account {account}: available {available} is below its credit limit of -{credit_limit} with no bank overdraft recorded"
            ),
            Violation::HistoryHeadMismatch { account, cached, newest } => {
                write!(f, "account {account}: history head is {cached:?} but its newest transfer is {newest:?}")
            }
            Violation::BalanceAfterMismatch { account, cached, newest_balance_after } => write!(
                f,
                "account {account}: balance {cached} differs from {newest_balance_after} recorded on its newest transfer"
            ),
            Violation::UnbalancedTransfer { id, reason } => write!(f, "transfer {id}: {reason}"),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CurrencyTotals {
    pub accounts: u64,
    pub posted_sum: i128,
    pub debits_pending: i128,
    pub credits_pending: i128,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub accounts: u64,
    pub transfers: u64,
    pub currencies: BTreeMap<String, CurrencyTotals>,
    /// Customer accounts a flagged bank debit holds below the limit:
    /// allowed and reported, not a violation.
    pub bank_overdrafts: Vec<AccountId>,
    pub violations: Vec<Violation>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Compares what is cached on accounts with what the transfers say.
    pub fn from_inputs(inputs: CheckInputs) -> CheckReport {
        let mut report = CheckReport { transfers: inputs.transfers, ..CheckReport::default() };
        // A flag on the account is not evidence: only a recorded bank debit
        // that went past the limit excuses a balance below it.
        let overdrawn_by_bank: std::collections::HashSet<AccountId> =
            inputs.overdrawn_by_bank.iter().copied().collect();
        for row in &inputs.accounts {
            let account = &row.account;
            report.accounts += 1;
            let totals = report.currencies.entry(account.currency.code().to_owned()).or_default();
            totals.accounts += 1;
            totals.posted_sum += i128::from(account.balances.posted());
            totals.debits_pending += i128::from(account.balances.debits_pending.minor());
            totals.credits_pending += i128::from(account.balances.credits_pending.minor());
            let cached = [
                ("debits_posted", account.balances.debits_posted, row.from_transfers.debits_posted),
                ("credits_posted", account.balances.credits_posted, row.from_transfers.credits_posted),
                ("debits_pending", account.balances.debits_pending, row.from_transfers.debits_pending),
                ("credits_pending", account.balances.credits_pending, row.from_transfers.credits_pending),
            ];
            for (field, cached, from_transfers) in cached {
                if i128::from(cached.minor()) != from_transfers {
                    report.violations.push(Violation::CachedTotalMismatch {
                        account: account.id,
                        field,
                        cached: i128::from(cached.minor()),
                        from_transfers,
                    });
                }
            }
            if !account.kind.is_system() {
                let available = account.balances.available();
                let floor = -i128::from(account.credit_limit.minor());
                if available < floor {
                    if account.bank_overdraft && overdrawn_by_bank.contains(&account.id) {
                        report.bank_overdrafts.push(account.id);
                    } else {
                        report.violations.push(Violation::BelowCreditLimit {
                            account: account.id,
                            available,
                            credit_limit: account.credit_limit.minor(),
                        });
                    }
                }
            }
            if account.last_seq != row.max_seq {
                report.violations.push(Violation::HistoryHeadMismatch {
                    account: account.id,
                    cached: account.last_seq,
                    newest: row.max_seq,
                });
            }
            if let Some(newest) = row.newest_balance_after
                && newest != account.balances.posted()
            {
                report.violations.push(Violation::BalanceAfterMismatch {
                    account: account.id,
                    cached: account.balances.posted(),
                    newest_balance_after: newest,
                });
            }
        }
        for (currency, totals) in &report.currencies {
            if totals.posted_sum != 0 {
                report
                    .violations
                    .push(Violation::CurrencyNotZero { currency: currency.clone(), posted_sum: totals.posted_sum });
            }
            if totals.debits_pending != totals.credits_pending {
                report.violations.push(Violation::PendingNotBalanced {
                    currency: currency.clone(),
                    debits: totals.debits_pending,
                    credits: totals.credits_pending,
                });
            }
        }
        for bad in inputs.bad_transfers {
            report.violations.push(Violation::UnbalancedTransfer { id: bad.id, reason: bad.reason });
        }
        report
    }
}

/// Microseconds since the Unix epoch, the ledger's unit of time.
pub fn now_us() -> i64 {
    let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
}

/// The journal entries of a batch with their outcomes filled in: `ok`, or
/// the code of the request's first failed transfer (the cause, for a
/// failed linked chain). Both engines use it.
pub fn journal_with_outcomes(journal: Vec<Option<AuditDraft>>, outcomes: &[Vec<TransferOutcome>]) -> Vec<AuditDraft> {
    journal
        .into_iter()
        .zip(outcomes)
        .filter_map(|(draft, outcome)| {
            let mut draft = draft?;
            // A retry answered from the transfer already recorded is
            // journaled as such: it moved no money.
            let replayed = outcome.iter().all(|result| result.as_ref().is_ok_and(|created| created.replayed));
            // A failed linked chain reports `linked_transfer_failed` for
            // every member but the one that failed: the journal keeps that
            // member's reason.
            let codes = || outcome.iter().filter_map(|result| result.as_ref().err().map(|error| error.code()));
            draft.outcome = codes()
                .find(|code| *code != "linked_transfer_failed")
                .or_else(|| codes().next())
                .unwrap_or(if replayed && !outcome.is_empty() { "replayed" } else { "ok" })
                .to_owned();
            Some(draft)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a failure should stop the test")]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_engine_or_are_refused() {
        assert_eq!(DatabaseUrl::parse("sqlite://x/k.db").ok(), Some(DatabaseUrl::Sqlite("x/k.db".into())));
        assert_eq!(DatabaseUrl::parse("sqlite:k.db").ok(), Some(DatabaseUrl::Sqlite("k.db".into())));
        assert!(matches!(DatabaseUrl::parse("postgres://u@h/db"), Ok(DatabaseUrl::Postgres(_))));
        assert!(matches!(DatabaseUrl::parse("postgresql://u@h/db"), Ok(DatabaseUrl::Postgres(_))));
        for bad in ["mysql://u:secret@h/db", "k.db", "", "sqlite://"] {
            let error = DatabaseUrl::parse(bad).map(|_| ()).unwrap_err().to_string();
            assert!(!error.contains("secret"), "{error}");
            assert!(error.contains("sqlite"), "{error}");
        }
    }

    // ------------------------------------------------ journal_with_outcomes

    use kassa_core::Currency;
    use kassa_core::ledger::{AccountKind, AccountStatus, Balances, LedgerState, TransferError, apply_batch};

    /// A ledger with a cash desk (1, may go below zero) and two customer
    /// accounts (2 holding 100 minor units, 3 empty) that may not.
    fn ledger() -> LedgerState {
        let mut state = LedgerState::default();
        for (id, kind) in [(1, AccountKind::Cash), (2, AccountKind::Current), (3, AccountKind::Current)] {
            let account = Account {
                id: AccountId(id),
                number: format!("A{id}"),
                owner: if kind.is_system() { None } else { Some(id) },
                currency: Currency::BYN,
                kind,
                status: AccountStatus::Active,
                credit_limit: Amount::ZERO,
                balances: Balances::default(),
                bank_overdraft: false,
                last_seq: None,
                created_at_us: 0,
            };
            state.accounts.insert(AccountId(id), account);
        }
        let mut seq = 0;
        let funded = apply_batch(&mut state, &[vec![transfer(1, 1, 2, 100, false)]], 1, &mut || {
            seq += 1;
            seq
        });
        assert!(funded.outcomes[0][0].is_ok());
        state
    }

    fn transfer(id: u128, debit: i64, credit: i64, minor: i64, linked: bool) -> NewTransfer {
        NewTransfer {
            linked,
            ..NewTransfer::single(
                TransferId(id),
                AccountId(debit),
                AccountId(credit),
                Amount::from_minor(minor),
                Currency::BYN,
            )
        }
    }

    /// Runs `requests` through the ledger's batch engine (real outcomes, not
    /// hand-made ones) and journals each request with one draft.
    fn journaled(requests: &[Vec<NewTransfer>]) -> (Vec<Vec<TransferOutcome>>, Vec<AuditDraft>) {
        let mut state = ledger();
        let mut seq = 100;
        let effects = apply_batch(&mut state, requests, 2, &mut || {
            seq += 1;
            seq
        });
        let drafts = (0..requests.len())
            .map(|n| {
                Some(AuditDraft {
                    action: "transfer.create".into(),
                    subject: format!("request:{n}"),
                    ..AuditDraft::default()
                })
            })
            .collect();
        let events = journal_with_outcomes(drafts, &effects.outcomes);
        (effects.outcomes, events)
    }

    fn codes(outcomes: &[TransferOutcome]) -> Vec<&'static str> {
        outcomes.iter().map(|o| o.as_ref().err().map_or("ok", TransferError::code)).collect()
    }

    #[test]
    fn a_chain_failing_in_the_middle_is_journaled_with_the_failing_members_code() {
        // 2 → 3 (50), then 2 → 3 (80: only 50 left), then 3 → 1: the middle
        // member fails and the whole chain is undone.
        let chain = vec![transfer(10, 2, 3, 50, true), transfer(11, 2, 3, 80, true), transfer(12, 3, 1, 10, false)];
        let (outcomes, events) = journaled(&[chain]);
        assert_eq!(
            codes(&outcomes[0]),
            ["linked_transfer_failed", "insufficient_funds", "linked_transfer_failed"],
            "the ledger's own outcomes"
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, "insufficient_funds");
        assert_eq!(events[0].subject, "request:0");
    }

    #[test]
    fn two_chains_in_one_request_report_the_failed_ones_code_and_other_requests_stay_ok() {
        // Request 0: a chain that succeeds (2 → 3 → 1), then one that fails
        // on its first member (3 holds nothing once the first chain moved it
        // on). Request 1: a plain transfer that succeeds. Request 2: no
        // draft, so no event.
        let good = vec![transfer(20, 2, 3, 30, true), transfer(21, 3, 1, 30, false)];
        let bad = vec![transfer(22, 3, 2, 5, true), transfer(23, 2, 1, 5, false)];
        let request = [good, bad].concat();
        let (outcomes, events) = journaled(&[request.clone(), vec![transfer(30, 2, 1, 1, false)]]);
        assert_eq!(codes(&outcomes[0]), ["ok", "ok", "insufficient_funds", "linked_transfer_failed"]);
        assert_eq!(codes(&outcomes[1]), ["ok"]);
        assert_eq!(
            events.iter().map(|e| (e.subject.as_str(), e.outcome.as_str())).collect::<Vec<_>>(),
            [("request:0", "insufficient_funds"), ("request:1", "ok")]
        );
        // The failing chain first, the good one second: the same code.
        let swapped = [request[2..].to_vec(), request[..2].to_vec()].concat();
        let (outcomes, events) = journaled(&[swapped]);
        assert_eq!(codes(&outcomes[0]), ["insufficient_funds", "linked_transfer_failed", "ok", "ok"]);
        assert_eq!(events[0].outcome, "insufficient_funds");
    }

    #[test]
    fn a_request_without_a_draft_is_not_journaled() {
        let mut state = ledger();
        let mut seq = 100;
        let effects = apply_batch(&mut state, &[vec![transfer(40, 2, 3, 1, false)]], 2, &mut || {
            seq += 1;
            seq
        });
        assert!(journal_with_outcomes(vec![None], &effects.outcomes).is_empty());
    }
}
