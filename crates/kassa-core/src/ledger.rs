//! Accounts, transfers and the rules of the ledger.
//!
//! [`apply_batch`] is the single place where a transfer is judged and its
//! effect on balances computed. A storage engine loads the part of the
//! database a batch touches into a [`LedgerState`], calls `apply_batch`, and
//! writes back what it returns in one database transaction. Because the rules
//! run on that in-memory state, a hot account that appears in a thousand
//! transfers of one batch is read once and written once.

use std::collections::{HashMap, HashSet};

use crate::ids::{AccountId, TransferId};
use crate::money::{Amount, Currency};

/// The longest description a transfer may carry, in bytes.
pub const DESCRIPTION_MAX_BYTES: usize = 512;
/// The longest a pending transfer may wait before it voids itself: 30 days.
pub const PENDING_TIMEOUT_MAX_S: u32 = 30 * 24 * 3600;
/// The most transfers one client request may carry (as TigerBeetle's 8190).
pub const REQUEST_TRANSFERS_MAX: usize = 8190;

// ---------------------------------------------------------------- accounts

/// What an account is for. Customer kinds obey the credit limit; system kinds
/// (the bank's own books) may go negative, because they mirror money that
/// entered or left the bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountKind {
    Current,
    Savings,
    DebitCard,
    CreditCard,
    Cash,
    FeeIncome,
    InterestExpense,
    FxPosition,
    Settlement,
}

impl AccountKind {
    pub const ALL: [AccountKind; 9] = [
        AccountKind::Current,
        AccountKind::Savings,
        AccountKind::DebitCard,
        AccountKind::CreditCard,
        AccountKind::Cash,
        AccountKind::FeeIncome,
        AccountKind::InterestExpense,
        AccountKind::FxPosition,
        AccountKind::Settlement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Current => "current",
            AccountKind::Savings => "savings",
            AccountKind::DebitCard => "debit_card",
            AccountKind::CreditCard => "credit_card",
            AccountKind::Cash => "cash",
            AccountKind::FeeIncome => "fee_income",
            AccountKind::InterestExpense => "interest_expense",
            AccountKind::FxPosition => "fx_position",
            AccountKind::Settlement => "settlement",
        }
    }

    pub fn parse(text: &str) -> Option<AccountKind> {
        AccountKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// System accounts are the bank's own books and have no credit limit.
    pub fn is_system(self) -> bool {
        matches!(
            self,
            AccountKind::Cash
                | AccountKind::FeeIncome
                | AccountKind::InterestExpense
                | AccountKind::FxPosition
                | AccountKind::Settlement
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    Active,
    Blocked,
    Closed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Blocked => "blocked",
            AccountStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<AccountStatus> {
        [AccountStatus::Active, AccountStatus::Blocked, AccountStatus::Closed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// The four running totals of an account. Each only grows by posting or
/// holding and shrinks only when a hold is released, so none is ever
/// negative; the balance is derived from them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    pub debits_posted: Amount,
    pub credits_posted: Amount,
    pub debits_pending: Amount,
    pub credits_pending: Amount,
}

impl Balances {
    /// Posted balance: credits minus debits. Customer money is a liability of
    /// the bank, so a customer's deposit is a credit and the balance is
    /// positive; the cash account that received the notes goes negative.
    pub fn posted(&self) -> i64 {
        // Both totals are in 0..=i64::MAX, so their difference always fits.
        self.credits_posted.minor() - self.debits_posted.minor()
    }

    /// What may still be debited before the credit limit: the posted balance
    /// less the holds on outgoing pending transfers. Incoming pending credits
    /// are not spendable until posted.
    pub fn available(&self) -> i128 {
        i128::from(self.posted()) - i128::from(self.debits_pending.minor())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub number: String,
    /// The customer who owns it; `None` for the bank's system accounts.
    pub owner: Option<i64>,
    pub currency: Currency,
    pub kind: AccountKind,
    pub status: AccountStatus,
    /// How far below zero the available balance may go (non-negative).
    pub credit_limit: Amount,
    pub balances: Balances,
    /// Set while a flagged bank debit (interest, fee) holds the account below
    /// its limit; cleared once the balance is back within it.
    pub bank_overdraft: bool,
    /// The sequence number of the newest transfer that touched this account:
    /// the head of its history chain.
    pub last_seq: Option<i64>,
    pub created_at_us: i64,
}

impl Account {
    fn within_limit(&self) -> bool {
        self.kind.is_system() || self.balances.available() >= -i128::from(self.credit_limit.minor())
    }
}

/// What a caller supplies to open an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    pub number: String,
    pub owner: Option<i64>,
    pub currency: Currency,
    pub kind: AccountKind,
    pub credit_limit: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the account was not found")]
    NotFound,
    #[error("an account number must be 1 to 64 printable characters")]
    InvalidNumber,
    #[error("an account with this number already exists")]
    NumberTaken,
    #[error("a credit limit may not be negative")]
    NegativeCreditLimit,
    #[error("a closed account cannot be changed")]
    Closed,
    #[error("an account can only be closed with a zero balance")]
    HasBalance,
    #[error("an account with pending transfers cannot be closed")]
    HasPendingTransfers,
}

impl AccountError {
    pub fn code(&self) -> &'static str {
        match self {
            AccountError::NotFound => "account_not_found",
            AccountError::InvalidNumber => "invalid_account_number",
            AccountError::NumberTaken => "account_number_taken",
            AccountError::NegativeCreditLimit => "negative_credit_limit",
            AccountError::Closed => "account_closed",
            AccountError::HasBalance => "account_has_balance",
            AccountError::HasPendingTransfers => "account_has_pending_transfers",
        }
    }
}

impl NewAccount {
    pub fn validate(&self) -> Result<(), AccountError> {
        let number_ok =
            !self.number.is_empty() && self.number.len() <= 64 && self.number.chars().all(|c| c.is_ascii_graphic());
        if !number_ok {
            return Err(AccountError::InvalidNumber);
        }
        if self.credit_limit.is_negative() {
            return Err(AccountError::NegativeCreditLimit);
        }
        Ok(())
    }
}

/// Decides whether `account` may move to `status`. Closing needs a zero
/// balance and no holds in either direction; a closed account stays closed.
pub fn check_status_change(account: &Account, status: AccountStatus) -> Result<(), AccountError> {
    if account.status == AccountStatus::Closed {
        return Err(AccountError::Closed);
    }
    if status == AccountStatus::Closed {
        if account.balances.posted() != 0 {
            return Err(AccountError::HasBalance);
        }
        if !account.balances.debits_pending.is_zero() || !account.balances.credits_pending.is_zero() {
            return Err(AccountError::HasPendingTransfers);
        }
    }
    Ok(())
}

// --------------------------------------------------------------- transfers

/// Why money moved; reported in history and statements. Only `Fee` and
/// `Interest` may carry the bank-debit flag, and only when they credit the
/// bank's own fee-income or interest-expense account respectively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    Transfer,
    Deposit,
    Withdrawal,
    Fx,
    Fee,
    Interest,
    Reversal,
    Settlement,
    Adjustment,
}

impl TransferKind {
    pub const ALL: [TransferKind; 9] = [
        TransferKind::Transfer,
        TransferKind::Deposit,
        TransferKind::Withdrawal,
        TransferKind::Fx,
        TransferKind::Fee,
        TransferKind::Interest,
        TransferKind::Reversal,
        TransferKind::Settlement,
        TransferKind::Adjustment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Transfer => "transfer",
            TransferKind::Deposit => "deposit",
            TransferKind::Withdrawal => "withdrawal",
            TransferKind::Fx => "fx",
            TransferKind::Fee => "fee",
            TransferKind::Interest => "interest",
            TransferKind::Reversal => "reversal",
            TransferKind::Settlement => "settlement",
            TransferKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(text: &str) -> Option<TransferKind> {
        TransferKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// What a transfer does to balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferOp {
    /// Posts at once.
    Single,
    /// Holds the amount: the debit side's available balance drops now; a
    /// later `Post` or `Void` resolves it. With a timeout it voids itself.
    Pending { timeout_s: Option<u32> },
    /// Posts a pending transfer, for its amount or less.
    Post { pending_id: TransferId },
    /// Releases a pending transfer.
    Void { pending_id: TransferId },
    /// Undoes a posted transfer with a new one in the opposite direction.
    Reverse { original_id: TransferId },
}

impl TransferOp {
    /// The storage name of the operation.
    pub fn name(self) -> &'static str {
        match self {
            TransferOp::Single => "single",
            TransferOp::Pending { .. } => "pending",
            TransferOp::Post { .. } => "post",
            TransferOp::Void { .. } => "void",
            TransferOp::Reverse { .. } => "reverse",
        }
    }

    /// The transfer this one refers to, if any.
    pub fn reference(self) -> Option<TransferId> {
        match self {
            TransferOp::Post { pending_id } | TransferOp::Void { pending_id } => Some(pending_id),
            TransferOp::Reverse { original_id } => Some(original_id),
            TransferOp::Single | TransferOp::Pending { .. } => None,
        }
    }

    pub fn timeout_s(self) -> Option<u32> {
        match self {
            TransferOp::Pending { timeout_s } => timeout_s,
            _ => None,
        }
    }

    /// Rebuilds an operation from its stored columns.
    pub fn from_parts(name: &str, reference: Option<TransferId>, timeout_s: Option<u32>) -> Option<TransferOp> {
        match (name, reference) {
            ("single", None) => Some(TransferOp::Single),
            ("pending", None) => Some(TransferOp::Pending { timeout_s }),
            ("post", Some(pending_id)) => Some(TransferOp::Post { pending_id }),
            ("void", Some(pending_id)) => Some(TransferOp::Void { pending_id }),
            ("reverse", Some(original_id)) => Some(TransferOp::Reverse { original_id }),
            _ => None,
        }
    }

    /// Whether a transfer with this operation counts in the posted totals.
    pub fn moves_posted(self) -> bool {
        matches!(self, TransferOp::Single | TransferOp::Post { .. } | TransferOp::Reverse { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferState {
    Posted,
    Pending,
    Voided,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Posted => "posted",
            TransferState::Pending => "pending",
            TransferState::Voided => "voided",
        }
    }

    pub fn parse(text: &str) -> Option<TransferState> {
        [TransferState::Posted, TransferState::Pending, TransferState::Voided]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// A transfer as a client asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTransfer {
    pub id: TransferId,
    pub debit_account: AccountId,
    pub credit_account: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub kind: TransferKind,
    pub op: TransferOp,
    /// Links this transfer with the next one in the same request: the chain
    /// succeeds or fails as a whole.
    pub linked: bool,
    /// The bank's own interest or fee debit, which may take a customer
    /// account past its credit limit (and is reported when it does). Only a
    /// `Fee` crediting a `FeeIncome` account or an `Interest` crediting an
    /// `InterestExpense` account may carry it.
    pub bank_debit: bool,
    pub description: String,
}

impl NewTransfer {
    /// A plain transfer that posts at once: no link, no bank-debit flag, no
    /// description. Other shapes start here and change fields.
    pub fn single(
        id: TransferId,
        debit_account: AccountId,
        credit_account: AccountId,
        amount: Amount,
        currency: Currency,
    ) -> NewTransfer {
        NewTransfer {
            id,
            debit_account,
            credit_account,
            amount,
            currency,
            kind: TransferKind::Transfer,
            op: TransferOp::Single,
            linked: false,
            bank_debit: false,
            description: String::new(),
        }
    }
}

/// A transfer as recorded. Immutable once posted; a pending transfer's state
/// changes exactly once, when it is posted, voided or expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Position in the ledger, assigned at commit; history is ordered by it.
    pub seq: i64,
    pub id: TransferId,
    pub debit_account: AccountId,
    pub credit_account: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub kind: TransferKind,
    pub op: TransferOp,
    pub state: TransferState,
    pub linked: bool,
    pub bank_debit: bool,
    pub description: String,
    /// The id of the first transfer of the linked chain it belongs to.
    pub chain_id: Option<TransferId>,
    pub expires_at_us: Option<i64>,
    pub created_at_us: i64,
    /// Posted balances of both accounts right after this transfer.
    pub debit_balance_after: i64,
    pub credit_balance_after: i64,
    /// The previous transfer of each account: each account's history is a
    /// chain through the transfers table, so no per-account index is needed.
    pub prev_debit_seq: Option<i64>,
    pub prev_credit_seq: Option<i64>,
    /// A flagged bank debit took the debit account past its credit limit.
    pub overdraft: bool,
}

impl Transfer {
    /// Whether `request` asks for exactly this transfer (an idempotent retry).
    pub fn matches(&self, request: &NewTransfer) -> bool {
        self.id == request.id
            && self.debit_account == request.debit_account
            && self.credit_account == request.credit_account
            && self.amount == request.amount
            && self.currency == request.currency
            && self.kind == request.kind
            && self.op == request.op
            && self.linked == request.linked
            && self.bank_debit == request.bank_debit
            && self.description == request.description
    }

    /// The previous transfer in `account`'s history chain.
    pub fn prev_seq_for(&self, account: AccountId) -> Option<i64> {
        if self.debit_account == account { self.prev_debit_seq } else { self.prev_credit_seq }
    }

    /// `account`'s posted balance right after this transfer.
    pub fn balance_after_for(&self, account: AccountId) -> i64 {
        if self.debit_account == account { self.debit_balance_after } else { self.credit_balance_after }
    }
}

/// Why the ledger refused a transfer. Every rule has its own variant and
/// stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("another transfer linked with this one failed")]
    LinkedTransferFailed,
    #[error("the last transfer of the request is marked as linked, so its chain never closes")]
    LinkedChainOpen,
    #[error("this transfer id was already used for a different transfer")]
    IdReusedWithDifferentContent,
    #[error("the amount must be greater than zero")]
    AmountMustBePositive,
    #[error("the debit and credit accounts must be different")]
    SameAccount,
    #[error("the description is longer than {DESCRIPTION_MAX_BYTES} bytes")]
    DescriptionTooLong,
    #[error("a pending transfer may wait at most {PENDING_TIMEOUT_MAX_S} seconds")]
    TimeoutTooLong,
    #[error(
        "only the bank's own fee or interest debits, credited to its fee-income or interest account, may be flagged as bank debits"
    )]
    BankDebitNotAllowed,
    #[error("the debit account does not exist")]
    DebitAccountNotFound,
    #[error("the credit account does not exist")]
    CreditAccountNotFound,
    #[error("the two accounts hold different currencies")]
    AccountsCurrencyMismatch,
    #[error("the transfer's currency is not the accounts' currency")]
    TransferCurrencyMismatch,
    #[error("the debit account is blocked")]
    DebitAccountBlocked,
    #[error("the debit account is closed")]
    DebitAccountClosed,
    #[error("the credit account is closed")]
    CreditAccountClosed,
    #[error("insufficient funds: {available} available, {requested} requested (minor units)")]
    InsufficientFunds { available: i64, requested: i64 },
    #[error("the pending transfer does not exist")]
    PendingTransferNotFound,
    #[error("the referenced transfer is not a pending transfer")]
    NotPending,
    #[error("the pending transfer was already posted")]
    PendingTransferAlreadyPosted,
    #[error("the pending transfer was already voided")]
    PendingTransferAlreadyVoided,
    #[error("the pending transfer expired")]
    PendingTransferExpired,
    #[error("accounts, currency or amount differ from the pending transfer")]
    PendingTransferMismatch,
    #[error("the amount exceeds the pending amount")]
    ExceedsPendingAmount,
    #[error("the transfer to reverse does not exist")]
    TransferToReverseNotFound,
    #[error("only a posted single or post transfer can be reversed")]
    ReversalNotAllowed,
    #[error("the transfer was already reversed")]
    AlreadyReversed,
    #[error("a reversal must swap the accounts of the original and carry its amount and currency")]
    ReversalMismatch,
    #[error("the balance would overflow")]
    Overflow,
}

impl TransferError {
    pub fn code(&self) -> &'static str {
        match self {
            TransferError::LinkedTransferFailed => "linked_transfer_failed",
            TransferError::LinkedChainOpen => "linked_chain_open",
            TransferError::IdReusedWithDifferentContent => "id_reused_with_different_content",
            TransferError::AmountMustBePositive => "amount_must_be_positive",
            TransferError::SameAccount => "accounts_must_be_different",
            TransferError::DescriptionTooLong => "description_too_long",
            TransferError::TimeoutTooLong => "timeout_too_long",
            TransferError::BankDebitNotAllowed => "bank_debit_not_allowed",
            TransferError::DebitAccountNotFound => "debit_account_not_found",
            TransferError::CreditAccountNotFound => "credit_account_not_found",
            TransferError::AccountsCurrencyMismatch => "accounts_currency_mismatch",
            TransferError::TransferCurrencyMismatch => "currency_mismatch",
            TransferError::DebitAccountBlocked => "debit_account_blocked",
            TransferError::DebitAccountClosed => "debit_account_closed",
            TransferError::CreditAccountClosed => "credit_account_closed",
            TransferError::InsufficientFunds { .. } => "insufficient_funds",
            TransferError::PendingTransferNotFound => "pending_transfer_not_found",
            TransferError::NotPending => "not_a_pending_transfer",
            TransferError::PendingTransferAlreadyPosted => "pending_transfer_already_posted",
            TransferError::PendingTransferAlreadyVoided => "pending_transfer_already_voided",
            TransferError::PendingTransferExpired => "pending_transfer_expired",
            TransferError::PendingTransferMismatch => "pending_transfer_mismatch",
            TransferError::ExceedsPendingAmount => "exceeds_pending_amount",
            TransferError::TransferToReverseNotFound => "transfer_to_reverse_not_found",
            TransferError::ReversalNotAllowed => "reversal_not_allowed",
            TransferError::AlreadyReversed => "already_reversed",
            TransferError::ReversalMismatch => "reversal_mismatch",
            TransferError::Overflow => "overflow",
        }
    }
}

/// A transfer the ledger accepted: newly created, or found already recorded
/// under the same id with the same content (`replayed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub transfer: Transfer,
    pub replayed: bool,
}

pub type TransferOutcome = Result<Created, TransferError>;

// ------------------------------------------------------------ batch engine

/// The slice of the database a batch needs, loaded by the storage engine:
/// every account named by the batch (and by the transfers it refers to),
/// every already recorded transfer whose id appears in the batch (as its own
/// id or as a reference), and which of those have been reversed.
#[derive(Clone, Debug, Default)]
pub struct LedgerState {
    pub accounts: HashMap<AccountId, Account>,
    pub transfers: HashMap<TransferId, Transfer>,
    pub reversed: HashSet<TransferId>,
}

impl LedgerState {
    /// Every transfer id a batch needs looked up: its own ids and the ids it
    /// refers to.
    pub fn transfer_ids_needed(requests: &[Vec<NewTransfer>]) -> Vec<TransferId> {
        let mut ids: Vec<TransferId> =
            requests.iter().flatten().flat_map(|t| std::iter::once(t.id).chain(t.op.reference())).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Every account id a batch names directly. The accounts of referenced
    /// transfers are the same by the matching rules, so these suffice.
    pub fn account_ids_needed(requests: &[Vec<NewTransfer>]) -> Vec<AccountId> {
        let mut ids: Vec<AccountId> =
            requests.iter().flatten().flat_map(|t| [t.debit_account, t.credit_account]).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// What a batch changed, for the storage engine to write in one transaction.
#[derive(Clone, Debug, Default)]
pub struct BatchEffects {
    /// One list of outcomes per request, in request order.
    pub outcomes: Vec<Vec<TransferOutcome>>,
    /// New transfer rows, in sequence order.
    pub inserted: Vec<Transfer>,
    /// Pending transfers (possibly inserted by this very batch) whose state
    /// changed; write them after `inserted`.
    pub resolved: Vec<(TransferId, TransferState)>,
    /// Accounts whose balances or history head changed, each once, in id
    /// order (the lock order).
    pub touched_accounts: Vec<AccountId>,
}

/// Applies `requests` to `state` in order, as the single writer of money.
///
/// `next_seq` yields the sequence numbers for new transfers in increasing
/// order; a number drawn for a transfer that a failed chain undid is simply
/// left unused. `now_us` is the commit's timestamp (microseconds since the
/// epoch) used for new rows and for pending expiry.
pub fn apply_batch(
    state: &mut LedgerState,
    requests: &[Vec<NewTransfer>],
    now_us: i64,
    next_seq: &mut dyn FnMut() -> i64,
) -> BatchEffects {
    let mut effects = BatchEffects::default();
    let mut touched: HashSet<AccountId> = HashSet::new();
    for request in requests {
        let mut outcomes: Vec<TransferOutcome> = Vec::with_capacity(request.len());
        let mut index = 0;
        while index < request.len() {
            // A chain runs from `index` through the first transfer that is
            // not marked linked; a lone transfer is a chain of one.
            let end = request[index..].iter().position(|t| !t.linked).map(|offset| index + offset);
            let Some(end) = end else {
                outcomes.extend((index..request.len()).map(|_| Err(TransferError::LinkedChainOpen)));
                break;
            };
            let chain = &request[index..=end];
            if chain.len() == 1 {
                let mut applier = Applier { state, effects: &mut effects, touched: &mut touched, undo: None, now_us };
                outcomes.push(applier.apply_one(&chain[0], None, next_seq));
            } else {
                apply_chain(state, &mut effects, &mut touched, chain, now_us, next_seq, &mut outcomes);
            }
            index = end + 1;
        }
        effects.outcomes.push(outcomes);
    }
    let mut touched: Vec<AccountId> = touched.into_iter().collect();
    touched.sort_unstable();
    effects.touched_accounts = touched;
    effects
}

/// What a linked chain changed, so a failure can put it all back.
#[derive(Default)]
struct Undo {
    accounts: Vec<Account>,
    saved: HashSet<AccountId>,
    inserted_len: usize,
    resolved: Vec<(TransferId, TransferState)>,
    resolved_len: usize,
    reversed: Vec<TransferId>,
}

fn apply_chain(
    state: &mut LedgerState,
    effects: &mut BatchEffects,
    touched: &mut HashSet<AccountId>,
    chain: &[NewTransfer],
    now_us: i64,
    next_seq: &mut dyn FnMut() -> i64,
    outcomes: &mut Vec<TransferOutcome>,
) {
    let chain_id = chain.first().map(|t| t.id);
    let mut undo =
        Undo { inserted_len: effects.inserted.len(), resolved_len: effects.resolved.len(), ..Undo::default() };
    let touched_before = touched.clone();
    let mut results: Vec<TransferOutcome> = Vec::with_capacity(chain.len());
    let mut failed_at = None;
    for (position, transfer) in chain.iter().enumerate() {
        let mut applier = Applier {
            state: &mut *state,
            effects: &mut *effects,
            touched: &mut *touched,
            undo: Some(&mut undo),
            now_us,
        };
        let outcome = applier.apply_one(transfer, chain_id, next_seq);
        let failed = outcome.is_err();
        results.push(outcome);
        if failed {
            failed_at = Some(position);
            break;
        }
    }
    let Some(failed_at) = failed_at else {
        outcomes.extend(results);
        return;
    };
    // Put back everything the chain did, newest first.
    for account in undo.accounts.drain(..) {
        state.accounts.insert(account.id, account);
    }
    for transfer in effects.inserted.drain(undo.inserted_len..) {
        state.transfers.remove(&transfer.id);
    }
    effects.resolved.truncate(undo.resolved_len);
    for (id, previous) in undo.resolved.into_iter().rev() {
        if let Some(pending) = state.transfers.get_mut(&id) {
            pending.state = previous;
        }
    }
    for id in undo.reversed {
        state.reversed.remove(&id);
    }
    *touched = touched_before;
    for (position, result) in results.into_iter().enumerate() {
        outcomes.push(match result {
            Err(error) if position == failed_at => Err(error),
            _ => Err(TransferError::LinkedTransferFailed),
        });
    }
    outcomes.extend((failed_at + 1..chain.len()).map(|_| Err(TransferError::LinkedTransferFailed)));
}

struct Applier<'a> {
    state: &'a mut LedgerState,
    effects: &'a mut BatchEffects,
    touched: &'a mut HashSet<AccountId>,
    undo: Option<&'a mut Undo>,
    now_us: i64,
}

/// The new totals of both accounts, computed in full before anything is
/// written so that a refusal (even an overflow) changes nothing.
struct Plan {
    debit: Balances,
    credit: Balances,
    overdraft: bool,
    resolves: Option<(TransferId, TransferState)>,
    state: TransferState,
}

fn add(a: Amount, b: Amount) -> Result<Amount, TransferError> {
    a.checked_add(b).map_err(|_| TransferError::Overflow)
}

fn sub(a: Amount, b: Amount) -> Result<Amount, TransferError> {
    let result = a.checked_sub(b).map_err(|_| TransferError::Overflow)?;
    // A total never goes below zero; if it would, the pending bookkeeping
    // is inconsistent and the transfer must not proceed.
    if result.is_negative() { Err(TransferError::Overflow) } else { Ok(result) }
}

impl Applier<'_> {
    fn apply_one(
        &mut self,
        request: &NewTransfer,
        chain_id: Option<TransferId>,
        next_seq: &mut dyn FnMut() -> i64,
    ) -> TransferOutcome {
        if let Some(existing) = self.state.transfers.get(&request.id) {
            return if existing.matches(request) {
                Ok(Created { transfer: existing.clone(), replayed: true })
            } else {
                Err(TransferError::IdReusedWithDifferentContent)
            };
        }
        let plan = self.plan(request)?;
        Ok(Created { transfer: self.commit(request, chain_id, plan, next_seq), replayed: false })
    }

    /// Judges `request` and computes both accounts' new totals, changing
    /// nothing. Rules are checked in a fixed order and the first that fails
    /// is the answer: the request's own fields (including that only a `Fee`
    /// or `Interest` may be a bank debit), then the accounts' existence and
    /// currencies, then the bank-debit rule's credit account (a bank debit
    /// must credit the bank's own `FeeIncome` account for a fee, its
    /// `InterestExpense` account for interest; it needs the account, so it
    /// comes after the look-ups and before the status checks), then the
    /// accounts' statuses, the operation's own rules and the credit limit.
    fn plan(&self, request: &NewTransfer) -> Result<Plan, TransferError> {
        if !request.amount.is_positive() {
            return Err(TransferError::AmountMustBePositive);
        }
        if request.debit_account == request.credit_account {
            return Err(TransferError::SameAccount);
        }
        if request.description.len() > DESCRIPTION_MAX_BYTES {
            return Err(TransferError::DescriptionTooLong);
        }
        if request.op.timeout_s().is_some_and(|timeout| timeout > PENDING_TIMEOUT_MAX_S) {
            return Err(TransferError::TimeoutTooLong);
        }
        if request.bank_debit && !matches!(request.kind, TransferKind::Fee | TransferKind::Interest) {
            return Err(TransferError::BankDebitNotAllowed);
        }
        let debit = self.state.accounts.get(&request.debit_account).ok_or(TransferError::DebitAccountNotFound)?;
        let credit = self.state.accounts.get(&request.credit_account).ok_or(TransferError::CreditAccountNotFound)?;
        if debit.currency != credit.currency {
            return Err(TransferError::AccountsCurrencyMismatch);
        }
        if request.currency != debit.currency {
            return Err(TransferError::TransferCurrencyMismatch);
        }
        // A bank debit may overdraw a customer, so it must pay the bank
        // itself: otherwise any caller could move one customer's money past
        // the limit to another by calling it a fee.
        if request.bank_debit {
            let own_account = match request.kind {
                TransferKind::Fee => AccountKind::FeeIncome,
                TransferKind::Interest => AccountKind::InterestExpense,
                _ => return Err(TransferError::BankDebitNotAllowed),
            };
            if credit.kind != own_account {
                return Err(TransferError::BankDebitNotAllowed);
            }
        }
        let releases_only = matches!(request.op, TransferOp::Void { .. });
        if !releases_only {
            match debit.status {
                AccountStatus::Blocked => return Err(TransferError::DebitAccountBlocked),
                AccountStatus::Closed => return Err(TransferError::DebitAccountClosed),
                AccountStatus::Active => {}
            }
            if credit.status == AccountStatus::Closed {
                return Err(TransferError::CreditAccountClosed);
            }
        }
        let amount = request.amount;
        let mut debit_totals = debit.balances;
        let mut credit_totals = credit.balances;
        let mut resolves = None;
        let mut checks_limit = true;
        let state = match request.op {
            TransferOp::Single => {
                debit_totals.debits_posted = add(debit_totals.debits_posted, amount)?;
                credit_totals.credits_posted = add(credit_totals.credits_posted, amount)?;
                TransferState::Posted
            }
            TransferOp::Pending { .. } => {
                debit_totals.debits_pending = add(debit_totals.debits_pending, amount)?;
                credit_totals.credits_pending = add(credit_totals.credits_pending, amount)?;
                TransferState::Pending
            }
            TransferOp::Post { pending_id } | TransferOp::Void { pending_id } => {
                let pending = self.pending_to_resolve(request, pending_id)?;
                debit_totals.debits_pending = sub(debit_totals.debits_pending, pending.amount)?;
                credit_totals.credits_pending = sub(credit_totals.credits_pending, pending.amount)?;
                // Posting no more than was held can only raise the available
                // balance, so the limit was already checked when it was held.
                checks_limit = false;
                if let TransferOp::Post { .. } = request.op {
                    debit_totals.debits_posted = add(debit_totals.debits_posted, amount)?;
                    credit_totals.credits_posted = add(credit_totals.credits_posted, amount)?;
                    resolves = Some((pending_id, TransferState::Posted));
                    TransferState::Posted
                } else {
                    resolves = Some((pending_id, TransferState::Voided));
                    TransferState::Voided
                }
            }
            TransferOp::Reverse { original_id } => {
                let original =
                    self.state.transfers.get(&original_id).ok_or(TransferError::TransferToReverseNotFound)?;
                if !original.op.moves_posted()
                    || original.state != TransferState::Posted
                    || matches!(original.op, TransferOp::Reverse { .. })
                {
                    return Err(TransferError::ReversalNotAllowed);
                }
                if self.state.reversed.contains(&original_id) {
                    return Err(TransferError::AlreadyReversed);
                }
                if original.debit_account != request.credit_account
                    || original.credit_account != request.debit_account
                    || original.amount != amount
                    || original.currency != request.currency
                {
                    return Err(TransferError::ReversalMismatch);
                }
                debit_totals.debits_posted = add(debit_totals.debits_posted, amount)?;
                credit_totals.credits_posted = add(credit_totals.credits_posted, amount)?;
                TransferState::Posted
            }
        };
        let mut overdraft = false;
        if checks_limit && !debit.kind.is_system() {
            let floor = -i128::from(debit.credit_limit.minor());
            if debit_totals.available() < floor {
                if request.bank_debit {
                    overdraft = true;
                } else {
                    return Err(TransferError::InsufficientFunds {
                        available: i64::try_from((debit.balances.available() - floor).max(0)).unwrap_or(i64::MAX),
                        requested: amount.minor(),
                    });
                }
            }
        }
        Ok(Plan { debit: debit_totals, credit: credit_totals, overdraft, resolves, state })
    }

    fn pending_to_resolve(&self, request: &NewTransfer, pending_id: TransferId) -> Result<&Transfer, TransferError> {
        let pending = self.state.transfers.get(&pending_id).ok_or(TransferError::PendingTransferNotFound)?;
        if !matches!(pending.op, TransferOp::Pending { .. }) {
            return Err(TransferError::NotPending);
        }
        match pending.state {
            TransferState::Posted => return Err(TransferError::PendingTransferAlreadyPosted),
            TransferState::Voided => return Err(TransferError::PendingTransferAlreadyVoided),
            TransferState::Pending => {}
        }
        if pending.debit_account != request.debit_account
            || pending.credit_account != request.credit_account
            || pending.currency != request.currency
        {
            return Err(TransferError::PendingTransferMismatch);
        }
        match request.op {
            TransferOp::Post { .. } => {
                if pending.expires_at_us.is_some_and(|expires| expires <= self.now_us) {
                    return Err(TransferError::PendingTransferExpired);
                }
                if request.amount > pending.amount {
                    return Err(TransferError::ExceedsPendingAmount);
                }
            }
            _ => {
                if request.amount != pending.amount {
                    return Err(TransferError::PendingTransferMismatch);
                }
            }
        }
        Ok(pending)
    }

    fn save_account(&mut self, id: AccountId) {
        if let Some(undo) = self.undo.as_deref_mut()
            && undo.saved.insert(id)
            && let Some(account) = self.state.accounts.get(&id)
        {
            undo.accounts.push(account.clone());
        }
    }

    fn commit(
        &mut self,
        request: &NewTransfer,
        chain_id: Option<TransferId>,
        plan: Plan,
        next_seq: &mut dyn FnMut() -> i64,
    ) -> Transfer {
        let seq = next_seq();
        self.save_account(request.debit_account);
        self.save_account(request.credit_account);
        let mut links = [(None, 0_i64); 2];
        for (slot, (account_id, totals)) in
            [(request.debit_account, plan.debit), (request.credit_account, plan.credit)].into_iter().enumerate()
        {
            if let Some(account) = self.state.accounts.get_mut(&account_id) {
                links[slot] = (account.last_seq, totals.posted());
                account.balances = totals;
                account.last_seq = Some(seq);
                if slot == 0 && plan.overdraft {
                    account.bank_overdraft = true;
                } else if account.bank_overdraft && account.within_limit() {
                    account.bank_overdraft = false;
                }
            }
            self.touched.insert(account_id);
        }
        if let Some((pending_id, new_state)) = plan.resolves
            && let Some(pending) = self.state.transfers.get_mut(&pending_id)
        {
            if let Some(undo) = self.undo.as_deref_mut() {
                undo.resolved.push((pending_id, pending.state));
            }
            pending.state = new_state;
            self.effects.resolved.push((pending_id, new_state));
        }
        if let TransferOp::Reverse { original_id } = request.op {
            self.state.reversed.insert(original_id);
            if let Some(undo) = self.undo.as_deref_mut() {
                undo.reversed.push(original_id);
            }
        }
        let expires_at_us = request
            .op
            .timeout_s()
            .map(|timeout| self.now_us.saturating_add(i64::from(timeout).saturating_mul(1_000_000)));
        let transfer = Transfer {
            seq,
            id: request.id,
            debit_account: request.debit_account,
            credit_account: request.credit_account,
            amount: request.amount,
            currency: request.currency,
            kind: request.kind,
            op: request.op,
            state: plan.state,
            linked: request.linked,
            bank_debit: request.bank_debit,
            description: request.description.clone(),
            chain_id,
            expires_at_us,
            created_at_us: self.now_us,
            debit_balance_after: links[0].1,
            credit_balance_after: links[1].1,
            prev_debit_seq: links[0].0,
            prev_credit_seq: links[1].0,
            overdraft: plan.overdraft,
        };
        self.state.transfers.insert(transfer.id, transfer.clone());
        self.effects.inserted.push(transfer.clone());
        transfer
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code: a failure should stop the test")]
mod tests {
    use super::*;

    fn account(id: i64, kind: AccountKind) -> Account {
        Account {
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
        }
    }

    fn single(id: u128, debit: i64, credit: i64, amount: i64) -> NewTransfer {
        NewTransfer::single(
            TransferId(id),
            AccountId(debit),
            AccountId(credit),
            Amount::from_minor(amount),
            Currency::BYN,
        )
    }

    /// A hot account credited by a thousand transfers of one batch is one
    /// entry in the batch's write set (the engines write each entry once),
    /// its history chain links all thousand, and its total is exact.
    #[test]
    fn a_hot_account_is_written_once_per_batch() {
        let mut state = LedgerState::default();
        state.accounts.insert(AccountId(1), account(1, AccountKind::Cash));
        state.accounts.insert(AccountId(2), account(2, AccountKind::Current));
        for id in 10..20 {
            state.accounts.insert(AccountId(id), account(id, AccountKind::Cash));
        }
        let requests: Vec<Vec<NewTransfer>> =
            (0..1000_i64).map(|n| vec![single(u128::try_from(n + 1).unwrap(), 10 + n % 10, 2, 3)]).collect();
        let mut next = 100;
        let effects = apply_batch(&mut state, &requests, 1, &mut || {
            next += 1;
            next
        });
        assert!(effects.outcomes.iter().flatten().all(Result::is_ok));
        assert_eq!(effects.touched_accounts.iter().filter(|id| **id == AccountId(2)).count(), 1);
        assert_eq!(effects.touched_accounts.len(), 11, "the hot account and the ten payers, each once");
        let hot = &state.accounts[&AccountId(2)];
        assert_eq!(hot.balances.credits_posted, Amount::from_minor(3000));
        // Walking the hot account's chain back from its head visits all 1000.
        let by_seq: HashMap<i64, &Transfer> = effects.inserted.iter().map(|t| (t.seq, t)).collect();
        let mut cursor = hot.last_seq;
        let mut walked = 0;
        while let Some(seq) = cursor {
            let transfer = by_seq[&seq];
            assert_eq!(transfer.balance_after_for(AccountId(2)), 3 * (1000 - walked));
            cursor = transfer.prev_seq_for(AccountId(2));
            walked += 1;
        }
        assert_eq!(walked, 1000);
    }
}
