//! An independent, deliberately simple reference model of the ledger.
//!
//! The model is written from the ledger's rules as they are stated in prose,
//! not from `kassa_core::ledger::apply_batch`: the point of a model-based
//! test is to compare two implementations that were written separately, so
//! a mistake in one shows up as a disagreement instead of being copied into
//! the other. It therefore uses none of the core's rule code, only its plain
//! data types (ids, currencies, the request type) so that requests can be
//! handed to both sides unchanged.
//!
//! Everything here favours being obviously right over being fast: balances
//! are plain `i64` totals, a failed linked chain is undone by restoring a
//! clone of the whole model, and every lookup is a map access.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kassa_core::ledger::{
    Account, AccountKind, AccountStatus, NewTransfer, Transfer, TransferKind, TransferOp, TransferState,
};
use kassa_core::{AccountId, Currency, TransferId};

/// The longest description, in bytes. Restated here rather than imported so
/// that a silent change of the ledger's constant makes the models disagree.
pub const DESCRIPTION_MAX_BYTES: usize = 512;
/// The longest a pending transfer may wait: 30 days, restated for the same
/// reason.
pub const PENDING_TIMEOUT_MAX_S: u32 = 30 * 24 * 3600;

/// One account as the model sees it: the attributes it was opened with and
/// its four running totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelAccount {
    pub id: AccountId,
    pub currency: Currency,
    pub kind: AccountKind,
    pub status: AccountStatus,
    pub credit_limit: i64,
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
    pub bank_overdraft: bool,
}

impl ModelAccount {
    /// Customer accounts obey the credit limit; the bank's own books (cash,
    /// fee income, interest expense, FX position, settlement) do not.
    pub fn is_customer(&self) -> bool {
        matches!(
            self.kind,
            AccountKind::Current | AccountKind::Savings | AccountKind::DebitCard | AccountKind::CreditCard
        )
    }

    /// Credits minus debits, counting only what is posted.
    pub fn posted(&self) -> i64 {
        self.credits_posted - self.debits_posted
    }

    /// What the credit limit is measured against: the posted balance less
    /// outgoing holds. Computed in `i128` so that it can never overflow.
    pub fn available(&self) -> i128 {
        i128::from(self.credits_posted) - i128::from(self.debits_posted) - i128::from(self.debits_pending)
    }

    pub fn within_limit(&self) -> bool {
        !self.is_customer() || self.available() >= -i128::from(self.credit_limit)
    }

    /// Every field on which the stored account differs from the model, as
    /// readable lines; empty when they agree.
    pub fn differences(&self, real: &Account) -> Vec<String> {
        let mut found = Vec::new();
        let mut compare = |field: &str, model: String, stored: String| {
            if model != stored {
                found.push(format!("account {}: {field} is {stored} in the ledger but {model} in the model", self.id));
            }
        };
        compare("id", format!("{}", self.id), format!("{}", real.id));
        compare("currency", self.currency.code().to_owned(), real.currency.code().to_owned());
        compare("kind", self.kind.as_str().to_owned(), real.kind.as_str().to_owned());
        compare("status", self.status.as_str().to_owned(), real.status.as_str().to_owned());
        compare("credit_limit", self.credit_limit.to_string(), real.credit_limit.minor().to_string());
        compare("debits_posted", self.debits_posted.to_string(), real.balances.debits_posted.minor().to_string());
        compare("credits_posted", self.credits_posted.to_string(), real.balances.credits_posted.minor().to_string());
        compare("debits_pending", self.debits_pending.to_string(), real.balances.debits_pending.minor().to_string());
        compare("credits_pending", self.credits_pending.to_string(), real.balances.credits_pending.minor().to_string());
        compare("bank_overdraft", self.bank_overdraft.to_string(), real.bank_overdraft.to_string());
        found
    }
}

/// A committed transfer: the request exactly as it was submitted, plus what
/// the ledger records about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelTransfer {
    pub request: NewTransfer,
    pub state: TransferState,
    /// The id of the first transfer of the linked chain (of two or more) it
    /// was committed in; `None` for a transfer that stood alone.
    pub chain_id: Option<TransferId>,
    pub expires_at_us: Option<i64>,
    pub created_at_us: i64,
    pub debit_balance_after: i64,
    pub credit_balance_after: i64,
    pub overdraft: bool,
}

impl ModelTransfer {
    /// Every field on which the stored transfer differs from the model.
    /// Sequence numbers and history links are not modelled: they depend on
    /// how the writer grouped requests into batches, which the model does
    /// not know.
    pub fn differences(&self, real: &Transfer) -> Vec<String> {
        let r = &self.request;
        let mut found = Vec::new();
        let mut compare = |field: &str, model: String, stored: String| {
            if model != stored {
                found.push(format!("transfer {}: {field} is {stored} in the ledger but {model} in the model", r.id));
            }
        };
        compare("id", format!("{}", r.id), format!("{}", real.id));
        compare("debit_account", r.debit_account.to_string(), real.debit_account.to_string());
        compare("credit_account", r.credit_account.to_string(), real.credit_account.to_string());
        compare("amount", r.amount.minor().to_string(), real.amount.minor().to_string());
        compare("currency", r.currency.code().to_owned(), real.currency.code().to_owned());
        compare("kind", r.kind.as_str().to_owned(), real.kind.as_str().to_owned());
        compare("op", format!("{:?}", r.op), format!("{:?}", real.op));
        compare("linked", r.linked.to_string(), real.linked.to_string());
        compare("bank_debit", r.bank_debit.to_string(), real.bank_debit.to_string());
        compare("description", r.description.clone(), real.description.clone());
        compare("state", self.state.as_str().to_owned(), real.state.as_str().to_owned());
        compare("chain_id", format!("{:?}", self.chain_id), format!("{:?}", real.chain_id));
        compare("expires_at_us", format!("{:?}", self.expires_at_us), format!("{:?}", real.expires_at_us));
        compare("created_at_us", self.created_at_us.to_string(), real.created_at_us.to_string());
        compare("debit_balance_after", self.debit_balance_after.to_string(), real.debit_balance_after.to_string());
        compare("credit_balance_after", self.credit_balance_after.to_string(), real.credit_balance_after.to_string());
        compare("overdraft", self.overdraft.to_string(), real.overdraft.to_string());
        found
    }
}

/// A transfer the model accepted, newly or as an idempotent replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCreated {
    pub transfer: ModelTransfer,
    pub replayed: bool,
}

/// The model's answer for one transfer: what it created, or the stable error
/// code (`TransferError::code`) of the first rule it broke.
pub type ModelOutcome = Result<ModelCreated, &'static str>;

/// The reference ledger.
#[derive(Clone, Debug, Default)]
pub struct Model {
    accounts: BTreeMap<AccountId, ModelAccount>,
    transfers: HashMap<TransferId, ModelTransfer>,
    /// Originals that a committed reversal has undone.
    reversed: BTreeSet<TransferId>,
}

/// The four totals of the two accounts a transfer touches, computed in full
/// before anything is changed so that a refusal leaves the model as it was.
struct Plan {
    debit: ModelAccount,
    credit: ModelAccount,
    state: TransferState,
    overdraft: bool,
}

fn plus(total: i64, amount: i64) -> Result<i64, &'static str> {
    total.checked_add(amount).ok_or("overflow")
}

fn minus(total: i64, amount: i64) -> Result<i64, &'static str> {
    // A total never goes below zero; the ledger treats the impossible case of
    // releasing more than is held like an overflow.
    match total.checked_sub(amount) {
        Some(result) if result >= 0 => Ok(result),
        _ => Err("overflow"),
    }
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// Records an account the real ledger opened under `id`. New accounts
    /// are active and hold nothing.
    pub fn open_account(&mut self, id: AccountId, currency: Currency, kind: AccountKind, credit_limit: i64) {
        self.accounts.insert(
            id,
            ModelAccount {
                id,
                currency,
                kind,
                status: AccountStatus::Active,
                credit_limit,
                debits_posted: 0,
                credits_posted: 0,
                debits_pending: 0,
                credits_pending: 0,
                bank_overdraft: false,
            },
        );
    }

    /// Changes an account's status, returning the `AccountError` code the
    /// ledger should give when the change is refused: a closed account
    /// stays closed, and only an account with a zero balance and no holds in
    /// either direction may be closed.
    pub fn set_status(&mut self, id: AccountId, status: AccountStatus) -> Result<(), &'static str> {
        let account = self.accounts.get_mut(&id).ok_or("account_not_found")?;
        if account.status == AccountStatus::Closed {
            return Err("account_closed");
        }
        if status == AccountStatus::Closed {
            if account.posted() != 0 {
                return Err("account_has_balance");
            }
            if account.debits_pending != 0 || account.credits_pending != 0 {
                return Err("account_has_pending_transfers");
            }
        }
        account.status = status;
        Ok(())
    }

    pub fn account(&self, id: AccountId) -> Option<&ModelAccount> {
        self.accounts.get(&id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &ModelAccount> {
        self.accounts.values()
    }

    pub fn transfer(&self, id: TransferId) -> Option<&ModelTransfer> {
        self.transfers.get(&id)
    }

    pub fn transfers(&self) -> impl Iterator<Item = &ModelTransfer> {
        self.transfers.values()
    }

    /// Pending transfers still on hold whose expiry is at or before
    /// `now_us`: what an expiry sweep at that moment must void.
    pub fn expired_pending(&self, now_us: i64) -> Vec<TransferId> {
        let mut ids: Vec<TransferId> = self
            .transfers
            .values()
            .filter(|t| t.state == TransferState::Pending && t.expires_at_us.is_some_and(|at| at <= now_us))
            .map(|t| t.request.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Conservation, per currency: posted balances sum to zero and pending
    /// debits equal pending credits. Returns the broken ones as lines.
    pub fn conservation_violations(&self) -> Vec<String> {
        let mut sums: BTreeMap<String, (i128, i128, i128)> = BTreeMap::new();
        for account in self.accounts.values() {
            let entry = sums.entry(account.currency.code().to_owned()).or_default();
            entry.0 += i128::from(account.posted());
            entry.1 += i128::from(account.debits_pending);
            entry.2 += i128::from(account.credits_pending);
        }
        sums.into_iter()
            .filter(|(_, (posted, debits, credits))| *posted != 0 || debits != credits)
            .map(|(currency, (posted, debits, credits))| {
                format!("{currency}: posted sum {posted}, pending debits {debits}, pending credits {credits}")
            })
            .collect()
    }

    /// Applies one client request at `now_us`, returning one outcome per
    /// transfer in request order.
    ///
    /// A request is cut into chains: a chain runs up to and including the
    /// first transfer not marked `linked`, and a lone transfer is a chain of
    /// one. A chain commits whole or not at all. Transfers after the last
    /// closed chain, when the request ends on a linked one, all fail with
    /// `linked_chain_open`.
    pub fn submit(&mut self, request: &[NewTransfer], now_us: i64) -> Vec<ModelOutcome> {
        let mut outcomes = Vec::with_capacity(request.len());
        let mut start = 0;
        while start < request.len() {
            let mut end = start;
            while end < request.len() && request[end].linked {
                end += 1;
            }
            if end == request.len() {
                for _ in start..request.len() {
                    outcomes.push(Err("linked_chain_open"));
                }
                break;
            }
            let chain = &request[start..=end];
            let chain_id = if chain.len() > 1 { Some(chain[0].id) } else { None };
            let before = self.clone();
            let mut results = Vec::with_capacity(chain.len());
            let mut failed_at = None;
            for (position, transfer) in chain.iter().enumerate() {
                let result = self.apply_one(transfer, chain_id, now_us);
                let failed = result.is_err();
                results.push(result);
                if failed {
                    failed_at = Some(position);
                    break;
                }
            }
            match failed_at {
                None => outcomes.extend(results),
                Some(failed_at) => {
                    // All or nothing: forget everything the chain did.
                    *self = before;
                    for position in 0..chain.len() {
                        if position == failed_at {
                            outcomes.push(results[failed_at].clone());
                        } else {
                            outcomes.push(Err("linked_transfer_failed"));
                        }
                    }
                }
            }
            start = end + 1;
        }
        outcomes
    }

    fn apply_one(&mut self, t: &NewTransfer, chain_id: Option<TransferId>, now_us: i64) -> ModelOutcome {
        // Idempotency comes before every other rule: a transfer id names one
        // transfer forever.
        if let Some(existing) = self.transfers.get(&t.id) {
            return if existing.request == *t {
                Ok(ModelCreated { transfer: existing.clone(), replayed: true })
            } else {
                Err("id_reused_with_different_content")
            };
        }
        let plan = self.plan(t, now_us)?;
        let created = self.commit(t, chain_id, plan, now_us);
        Ok(ModelCreated { transfer: created, replayed: false })
    }

    /// Judges one transfer against the rules in the ledger's order and
    /// computes both accounts' new totals, changing nothing.
    fn plan(&self, t: &NewTransfer, now_us: i64) -> Result<Plan, &'static str> {
        let amount = t.amount.minor();
        if amount <= 0 {
            return Err("amount_must_be_positive");
        }
        if t.debit_account == t.credit_account {
            return Err("accounts_must_be_different");
        }
        if t.description.len() > DESCRIPTION_MAX_BYTES {
            return Err("description_too_long");
        }
        if let TransferOp::Pending { timeout_s: Some(timeout) } = t.op
            && timeout > PENDING_TIMEOUT_MAX_S
        {
            return Err("timeout_too_long");
        }
        if t.bank_debit && t.kind != TransferKind::Fee && t.kind != TransferKind::Interest {
            return Err("bank_debit_not_allowed");
        }
        let mut debit = self.accounts.get(&t.debit_account).ok_or("debit_account_not_found")?.clone();
        let mut credit = self.accounts.get(&t.credit_account).ok_or("credit_account_not_found")?.clone();
        if debit.currency != credit.currency {
            return Err("accounts_currency_mismatch");
        }
        if t.currency != debit.currency {
            return Err("currency_mismatch");
        }
        // A bank debit may overdraw a customer, so the money must go to the
        // bank itself: a fee to its fee-income account, interest to its
        // interest-expense account. This needs the credit account, so it is
        // judged after the look-ups and before the statuses.
        if t.bank_debit {
            let allowed = match t.kind {
                TransferKind::Fee => credit.kind == AccountKind::FeeIncome,
                TransferKind::Interest => credit.kind == AccountKind::InterestExpense,
                _ => false,
            };
            if !allowed {
                return Err("bank_debit_not_allowed");
            }
        }
        // A void only gives money back, so it is allowed whatever the state
        // of the accounts.
        let is_void = matches!(t.op, TransferOp::Void { .. });
        if !is_void {
            if debit.status == AccountStatus::Blocked {
                return Err("debit_account_blocked");
            }
            if debit.status == AccountStatus::Closed {
                return Err("debit_account_closed");
            }
            if credit.status == AccountStatus::Closed {
                return Err("credit_account_closed");
            }
        }
        let state;
        let mut limited = false;
        match t.op {
            TransferOp::Single => {
                debit.debits_posted = plus(debit.debits_posted, amount)?;
                credit.credits_posted = plus(credit.credits_posted, amount)?;
                state = TransferState::Posted;
                limited = true;
            }
            TransferOp::Pending { .. } => {
                debit.debits_pending = plus(debit.debits_pending, amount)?;
                credit.credits_pending = plus(credit.credits_pending, amount)?;
                state = TransferState::Pending;
                limited = true;
            }
            TransferOp::Post { pending_id } | TransferOp::Void { pending_id } => {
                let pending = self.transfers.get(&pending_id).ok_or("pending_transfer_not_found")?;
                if !matches!(pending.request.op, TransferOp::Pending { .. }) {
                    return Err("not_a_pending_transfer");
                }
                if pending.state == TransferState::Posted {
                    return Err("pending_transfer_already_posted");
                }
                if pending.state == TransferState::Voided {
                    return Err("pending_transfer_already_voided");
                }
                let held = &pending.request;
                if held.debit_account != t.debit_account
                    || held.credit_account != t.credit_account
                    || held.currency != t.currency
                {
                    return Err("pending_transfer_mismatch");
                }
                if is_void {
                    if amount != held.amount.minor() {
                        return Err("pending_transfer_mismatch");
                    }
                } else {
                    if pending.expires_at_us.is_some_and(|at| at <= now_us) {
                        return Err("pending_transfer_expired");
                    }
                    if amount > held.amount.minor() {
                        return Err("exceeds_pending_amount");
                    }
                }
                // Resolving releases the whole hold, whatever part of it is
                // posted.
                debit.debits_pending = minus(debit.debits_pending, held.amount.minor())?;
                credit.credits_pending = minus(credit.credits_pending, held.amount.minor())?;
                if is_void {
                    state = TransferState::Voided;
                } else {
                    debit.debits_posted = plus(debit.debits_posted, amount)?;
                    credit.credits_posted = plus(credit.credits_posted, amount)?;
                    state = TransferState::Posted;
                }
            }
            TransferOp::Reverse { original_id } => {
                let original = self.transfers.get(&original_id).ok_or("transfer_to_reverse_not_found")?;
                let reversible = matches!(original.request.op, TransferOp::Single | TransferOp::Post { .. })
                    && original.state == TransferState::Posted;
                if !reversible {
                    return Err("reversal_not_allowed");
                }
                if self.reversed.contains(&original_id) {
                    return Err("already_reversed");
                }
                let o = &original.request;
                if o.debit_account != t.credit_account
                    || o.credit_account != t.debit_account
                    || o.amount != t.amount
                    || o.currency != t.currency
                {
                    return Err("reversal_mismatch");
                }
                debit.debits_posted = plus(debit.debits_posted, amount)?;
                credit.credits_posted = plus(credit.credits_posted, amount)?;
                state = TransferState::Posted;
                limited = true;
            }
        }
        let mut overdraft = false;
        if limited && debit.is_customer() && !debit.within_limit() {
            if t.bank_debit {
                overdraft = true;
            } else {
                return Err("insufficient_funds");
            }
        }
        Ok(Plan { debit, credit, state, overdraft })
    }

    fn commit(&mut self, t: &NewTransfer, chain_id: Option<TransferId>, plan: Plan, now_us: i64) -> ModelTransfer {
        let Plan { mut debit, mut credit, state, overdraft } = plan;
        // The overdraft flag is raised by a bank debit that went past the
        // limit and lowered by any later transfer that leaves the account
        // back within it.
        if overdraft {
            debit.bank_overdraft = true;
        } else if debit.within_limit() {
            debit.bank_overdraft = false;
        }
        if credit.within_limit() {
            credit.bank_overdraft = false;
        }
        let created = ModelTransfer {
            request: t.clone(),
            state,
            chain_id,
            expires_at_us: match t.op {
                TransferOp::Pending { timeout_s: Some(timeout) } => Some(now_us + i64::from(timeout) * 1_000_000),
                _ => None,
            },
            created_at_us: now_us,
            debit_balance_after: debit.posted(),
            credit_balance_after: credit.posted(),
            overdraft,
        };
        self.accounts.insert(debit.id, debit);
        self.accounts.insert(credit.id, credit);
        match t.op {
            TransferOp::Post { pending_id } => {
                if let Some(pending) = self.transfers.get_mut(&pending_id) {
                    pending.state = TransferState::Posted;
                }
            }
            TransferOp::Void { pending_id } => {
                if let Some(pending) = self.transfers.get_mut(&pending_id) {
                    pending.state = TransferState::Voided;
                }
            }
            TransferOp::Reverse { original_id } => {
                self.reversed.insert(original_id);
            }
            TransferOp::Single | TransferOp::Pending { .. } => {}
        }
        self.transfers.insert(t.id, created.clone());
        created
    }
}

#[cfg(test)]
mod tests {
    use kassa_core::Amount;

    use super::*;

    fn transfer(id: u128, debit: i64, credit: i64, amount: i64) -> NewTransfer {
        NewTransfer::single(
            TransferId(id),
            AccountId(debit),
            AccountId(credit),
            Amount::from_minor(amount),
            Currency::BYN,
        )
    }

    fn model() -> Model {
        let mut model = Model::new();
        model.open_account(AccountId(1), Currency::BYN, AccountKind::Cash, 0);
        model.open_account(AccountId(2), Currency::BYN, AccountKind::Current, 0);
        model.open_account(AccountId(3), Currency::BYN, AccountKind::Current, 10);
        model.open_account(AccountId(4), Currency::BYN, AccountKind::FeeIncome, 0);
        model.open_account(AccountId(5), Currency::BYN, AccountKind::InterestExpense, 0);
        model
    }

    fn codes(outcomes: &[ModelOutcome]) -> Vec<&'static str> {
        outcomes.iter().map(|o| o.as_ref().map(|_| "ok").unwrap_or_else(|code| code)).collect()
    }

    #[test]
    fn a_failed_chain_leaves_nothing_behind() {
        let mut model = model();
        let mut first = transfer(1, 1, 2, 50);
        first.linked = true;
        let second = transfer(2, 2, 3, 80);
        let outcomes = model.submit(&[first, second], 0);
        assert_eq!(codes(&outcomes), ["linked_transfer_failed", "insufficient_funds"]);
        assert_eq!(model.account(AccountId(2)).map(ModelAccount::posted), Some(0));
        assert!(model.transfer(TransferId(1)).is_none());
        assert!(model.conservation_violations().is_empty());
    }

    #[test]
    fn an_open_chain_fails_only_its_own_transfers() {
        let mut model = model();
        let mut last = transfer(2, 1, 3, 5);
        last.linked = true;
        let outcomes = model.submit(&[transfer(1, 1, 2, 5), last], 0);
        assert_eq!(codes(&outcomes), ["ok", "linked_chain_open"]);
    }

    #[test]
    fn the_credit_limit_counts_holds_and_bank_debits_may_pass_it() {
        let mut model = model();
        let mut hold = transfer(1, 3, 2, 8);
        hold.op = TransferOp::Pending { timeout_s: None };
        assert_eq!(codes(&model.submit(&[hold, transfer(2, 3, 2, 3)], 0)), ["ok", "insufficient_funds"]);
        let mut fee = transfer(3, 3, 4, 3);
        fee.kind = TransferKind::Fee;
        fee.bank_debit = true;
        let outcomes = model.submit(&[fee], 0);
        assert!(matches!(&outcomes[0], Ok(created) if created.transfer.overdraft));
        assert_eq!(model.account(AccountId(3)).map(|a| a.bank_overdraft), Some(true));
        let mut interest = transfer(4, 3, 5, 1);
        interest.kind = TransferKind::Interest;
        interest.bank_debit = true;
        assert!(matches!(&model.submit(&[interest], 0)[0], Ok(created) if created.transfer.overdraft));
    }

    #[test]
    fn a_bank_debit_must_credit_the_banks_own_account() {
        let mut model = model();
        let flagged = |id, credit, kind| NewTransfer { kind, bank_debit: true, ..transfer(id, 3, credit, 3) };
        let refused = [
            flagged(1, 2, TransferKind::Fee),
            flagged(2, 2, TransferKind::Interest),
            flagged(3, 1, TransferKind::Fee),
            flagged(4, 5, TransferKind::Fee),
            flagged(5, 4, TransferKind::Interest),
            flagged(6, 4, TransferKind::Transfer),
        ];
        for request in refused {
            assert_eq!(codes(&model.submit(&[request], 0)), ["bank_debit_not_allowed"]);
        }
        // The kind is judged before the accounts are looked up; the credit
        // account after them.
        assert_eq!(codes(&model.submit(&[flagged(7, 99, TransferKind::Transfer)], 0)), ["bank_debit_not_allowed"]);
        assert_eq!(codes(&model.submit(&[flagged(8, 99, TransferKind::Fee)], 0)), ["credit_account_not_found"]);
        assert_eq!(model.account(AccountId(2)).map(ModelAccount::posted), Some(0));
        assert_eq!(model.account(AccountId(3)).map(ModelAccount::posted), Some(0));
        assert_eq!(model.transfers().count(), 0);
    }
}
