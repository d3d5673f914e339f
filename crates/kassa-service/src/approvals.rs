//! Four-eyes approval requests: a cash withdrawal or a staff transfer above
//! its threshold, or a credit-limit change above its threshold, waits for a
//! second staff member with the approver role. The money it would move is
//! held meanwhile (a pending ledger transfer); approving posts the hold,
//! rejecting or expiring voids it. The maker can never approve their own
//! request. See docs/approvals.md.
//!
//! A request's status changes once, from `pending`, by a conditional UPDATE
//! in the transaction that also journals the decision, so two concurrent
//! approvals cannot both win; the winner then posts the hold with an id
//! derived from the hold, so even a retried post moves the money once.

use kassa_core::ledger::{NewTransfer, TransferKind, TransferOp};
use kassa_core::money::{Amount, Currency};
use kassa_core::{AccountId, TransferId};
use kassa_store::sql::{self, Row, Tx, Value};
use kassa_store::{AuditDraft, StoreError, now_us};
use serde_json::json;

use crate::limits::{self, DailyKind};
use crate::people::rfc3339;
use crate::{Bank, Caller, Page, Role, ServiceError, ServiceResult, page_cursor, page_limit};

/// Settings: the `[approvals]` section of kassa.toml. Thresholds are in
/// minor units of the operation's currency; an operation strictly above its
/// threshold needs a second staff member.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalSettings {
    /// A cash withdrawal above this (minor units) needs approval.
    pub cash_withdrawal_over: i64,
    /// A staff-initiated transfer above this (minor units) needs approval.
    pub staff_transfer_over: i64,
    /// A credit limit set above this (minor units) needs approval.
    pub credit_limit_over: i64,
    /// How long a request waits before it expires, in seconds.
    pub expiry_s: u32,
    /// How often the background task expires overdue requests, in seconds.
    pub sweep_every_s: u32,
    /// The least role that may approve or reject.
    pub approver_role: Role,
}

impl Default for ApprovalSettings {
    fn default() -> ApprovalSettings {
        ApprovalSettings {
            cash_withdrawal_over: 500_000,
            staff_transfer_over: 500_000,
            credit_limit_over: 100_000,
            expiry_s: 86_400,
            sweep_every_s: 60,
            approver_role: Role::Manager,
        }
    }
}

/// The ledger's own timeout on a hold is this much longer than the
/// request's expiry, so the ledger's sweeper never voids a hold a checker
/// could still approve; it only catches holds this service failed to void.
pub const HOLD_GRACE_S: u32 = 3600;

/// Starts the expiry task: every `sweep_every_s` it expires overdue
/// requests (releasing their holds) and finishes approved holds whose post
/// was interrupted.
pub fn spawn(bank: &crate::Bank) -> Vec<tokio::task::JoinHandle<()>> {
    let bank = bank.clone();
    let every = std::time::Duration::from_secs(u64::from(bank.settings.approvals.sweep_every_s.max(1)));
    vec![tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticker.tick().await;
            if let Err(error) = bank.expire_approvals().await {
                tracing::warn!(%error, "expiring approval requests failed");
            }
            if let Err(error) = bank.finish_approved().await {
                tracing::warn!(%error, "finishing approved requests failed");
            }
        }
    })]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalKind {
    CashWithdrawal,
    StaffTransfer,
    CreditLimit,
}

impl ApprovalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalKind::CashWithdrawal => "cash_withdrawal",
            ApprovalKind::StaffTransfer => "staff_transfer",
            ApprovalKind::CreditLimit => "credit_limit",
        }
    }

    pub fn parse(text: &str) -> Option<ApprovalKind> {
        [ApprovalKind::CashWithdrawal, ApprovalKind::StaffTransfer, ApprovalKind::CreditLimit]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The journal action of the operation once it runs.
    fn action(self) -> &'static str {
        match self {
            ApprovalKind::CashWithdrawal => "cash.withdrawal",
            ApprovalKind::StaffTransfer => "staff.transfer",
            ApprovalKind::CreditLimit => "account.credit_limit",
        }
    }

    fn transfer_kind(self) -> TransferKind {
        match self {
            ApprovalKind::CashWithdrawal => TransferKind::Withdrawal,
            _ => TransferKind::Transfer,
        }
    }
}

const STATUSES: [&str; 5] = ["pending", "approved", "rejected", "expired", "failed"];

/// An approval request as staff see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalView {
    /// Always `approval`: tells a request waiting for approval apart from a
    /// transfer in a money route's answer.
    pub object: &'static str,
    pub id: i64,
    pub kind: String,
    pub status: String,
    /// The staff id of who asked.
    pub maker: i64,
    /// The staff id of who approved or rejected.
    pub checker: Option<i64>,
    pub account: i64,
    /// The credit side: the other account of a transfer, the bank's cash
    /// account of a withdrawal.
    pub to_account: Option<i64>,
    /// The amount to move, or the credit limit asked for.
    pub amount: String,
    pub currency: String,
    pub description: String,
    /// The pending transfer holding the money.
    pub hold: Option<String>,
    pub reason: String,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    pub executed_at: Option<String>,
}

/// A request as stored.
#[derive(Clone, Debug)]
struct Stored {
    id: i64,
    kind: ApprovalKind,
    status: String,
    maker: i64,
    checker: Option<i64>,
    account: i64,
    other: Option<i64>,
    amount: i64,
    currency: String,
    description: String,
    hold: Option<TransferId>,
    usage: Option<(String, DailyKind)>,
    reason: String,
    created_at_us: i64,
    expires_at_us: i64,
    decided_at_us: Option<i64>,
    executed_at_us: Option<i64>,
}

const COLUMNS: &str = "id, kind, status, maker_id, checker_id, account_id, other_account, amount, currency, \
    description, hold_id, usage_day, usage_kind, reason, created_at_us, expires_at_us, decided_at_us, executed_at_us";

fn corrupt(what: &str) -> StoreError {
    StoreError::Database(format!("a stored approval request has a bad {what}"))
}

fn stored_from_row(row: &Row) -> Result<Stored, StoreError> {
    let hold = match row.opt_blob(10)? {
        Some(bytes) => Some(TransferId::from_bytes(bytes.as_slice().try_into().map_err(|_| corrupt("hold id"))?)),
        None => None,
    };
    let usage = match (row.opt_text(11)?, row.opt_text(12)?) {
        (Some(day), Some(kind)) => Some((day, DailyKind::parse(&kind).ok_or_else(|| corrupt("usage kind"))?)),
        _ => None,
    };
    Ok(Stored {
        id: row.int(0)?,
        kind: ApprovalKind::parse(&row.text(1)?).ok_or_else(|| corrupt("kind"))?,
        status: row.text(2)?,
        maker: row.int(3)?,
        checker: row.opt_int(4)?,
        account: row.int(5)?,
        other: row.opt_int(6)?,
        amount: row.int(7)?,
        currency: row.text(8)?,
        description: row.text(9)?,
        hold,
        usage,
        reason: row.text(13)?,
        created_at_us: row.int(14)?,
        expires_at_us: row.int(15)?,
        decided_at_us: row.opt_int(16)?,
        executed_at_us: row.opt_int(17)?,
    })
}

fn load(tx: &mut dyn Tx, id: i64) -> Result<Option<Stored>, StoreError> {
    tx.query_opt(&format!("SELECT {COLUMNS} FROM approvals WHERE id = $1"), &[Value::Int(id)])?
        .map(|row| stored_from_row(&row))
        .transpose()
}

fn currency_of(code: &str) -> ServiceResult<Currency> {
    Currency::from_code(code).map_err(|error| ServiceError::Internal(error.to_string()))
}

fn view(stored: &Stored) -> ServiceResult<ApprovalView> {
    let currency = currency_of(&stored.currency)?;
    Ok(ApprovalView {
        object: "approval",
        id: stored.id,
        kind: stored.kind.as_str().to_owned(),
        status: stored.status.clone(),
        maker: stored.maker,
        checker: stored.checker,
        account: stored.account,
        to_account: stored.other,
        amount: Amount::from_minor(stored.amount).format(currency),
        currency: stored.currency.clone(),
        description: stored.description.clone(),
        hold: stored.hold.map(|hold| hold.to_string()),
        reason: stored.reason.clone(),
        created_at: rfc3339(stored.created_at_us),
        expires_at: rfc3339(stored.expires_at_us),
        decided_at: stored.decided_at_us.map(rfc3339),
        executed_at: stored.executed_at_us.map(rfc3339),
    })
}

/// The customers owning the accounts of a request, for notifications.
fn customers_of(tx: &mut dyn Tx, accounts: &[i64]) -> Result<Vec<i64>, StoreError> {
    let mut customers = Vec::new();
    for account in accounts {
        if let Some(row) =
            tx.query_opt("SELECT customer_id FROM account_details WHERE account_id = $1", &[Value::Int(*account)])?
        {
            let customer = row.int(0)?;
            if !customers.contains(&customer) {
                customers.push(customer);
            }
        }
    }
    Ok(customers)
}

/// An entry by the bank itself (the expiry task).
fn system_draft(action: &str, subject: String, detail: serde_json::Value) -> AuditDraft {
    let mut draft = Caller::anonymous("cli").audit(action, subject, detail);
    draft.origin = "system".into();
    draft
}

/// A derived id for the transfer that resolves `hold` (post or void): the
/// same on every retry and node, so the ledger resolves it once.
pub(crate) fn resolution_id(hold: TransferId, post: bool) -> TransferId {
    let tag = if post { "post" } else { "void" };
    crate::crypto::derived_transfer_id("kassa approval v1", &[tag, &hold.to_string()])
}

/// A held operation as the money services hand it over.
pub(crate) struct HeldRequest {
    pub kind: ApprovalKind,
    pub debit: i64,
    pub credit: i64,
    pub amount: Amount,
    pub currency: Currency,
    pub description: String,
    pub hold_id: TransferId,
    pub usage: Option<DailyKind>,
    /// The request as the journal sees it.
    pub request: serde_json::Value,
}

/// What a decision transaction decided.
enum Decided {
    Done(Stored),
    Expired(Stored),
}

/// A request a decision opened: still pending, or found overdue and expired.
enum Opened {
    Pending(Stored),
    Expired(Stored),
}

impl Stored {
    /// The request's accounts: the debit side and, if any, the credit side.
    fn accounts(&self) -> Vec<i64> {
        [Some(self.account), self.other].into_iter().flatten().collect()
    }
}

/// Opens a decision on request `id` inside `tx`: refuses a missing request,
/// then a caller `may_decide` refuses, then a request no longer pending. An
/// overdue request is expired here (the transaction should commit that and
/// the caller answer `approval_expired`).
fn open_decision(
    tx: &mut dyn Tx,
    id: i64,
    now: i64,
    may_decide: impl FnOnce(&Stored) -> ServiceResult<()>,
) -> ServiceResult<Opened> {
    let stored = load(tx, id)?.ok_or(ServiceError::NotFound("approval_not_found", "no such approval request"))?;
    may_decide(&stored)?;
    if stored.status != "pending" {
        return Err(ServiceError::Conflict(
            "approval_not_pending",
            format!("the request is already {}", stored.status),
        ));
    }
    if stored.expires_at_us <= now {
        expire_in(tx, &stored, now)?;
        return Ok(Opened::Expired(stored));
    }
    Ok(Opened::Pending(stored))
}

/// Moves a pending request to `status`, once: if a concurrent decision got
/// there first, `approval_not_pending`.
fn mark_decided(
    tx: &mut dyn Tx,
    id: i64,
    status: &str,
    checker: Option<i64>,
    now: i64,
    reason: &str,
) -> ServiceResult<()> {
    let changed = tx.execute(
        "UPDATE approvals SET status = $2, checker_id = $3, decided_at_us = $4, reason = $5, version = version + 1 \
         WHERE id = $1 AND status = 'pending'",
        &[
            Value::Int(id),
            Value::from(status),
            checker.map_or(Value::Null, Value::Int),
            Value::Int(now),
            Value::from(reason),
        ],
    )?;
    if changed != 1 {
        return Err(ServiceError::Conflict("approval_not_pending", "the request was decided meanwhile".into()));
    }
    Ok(())
}

/// Journals a decision on `stored` inside `tx`: the request's kind,
/// accounts, amount and maker, the customers owning `accounts` (the ones to
/// tell), and the fields of `extra`.
fn journal_decision(
    tx: &mut dyn Tx,
    now: i64,
    draft: &AuditDraft,
    stored: &Stored,
    accounts: &[i64],
    extra: serde_json::Value,
) -> Result<(), StoreError> {
    let customers = customers_of(tx, accounts)?;
    let mut detail = json!({"kind": stored.kind.as_str(), "account": stored.account, "to_account": stored.other,
                            "amount_minor": stored.amount, "currency": stored.currency, "maker": stored.maker,
                            "customers": customers});
    if let (Some(detail), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
        detail.extend(extra);
    }
    let mut draft = draft.clone();
    draft.detail = detail.to_string();
    sql::journal(tx, now, std::slice::from_ref(&draft))
}

/// Marks a pending request expired inside `tx`, gives back its daily usage
/// and journals it. The hold is voided after the commit.
fn expire_in(tx: &mut dyn Tx, stored: &Stored, now: i64) -> Result<bool, StoreError> {
    let changed = tx.execute(
        "UPDATE approvals SET status = 'expired', decided_at_us = $2, version = version + 1 \
         WHERE id = $1 AND status = 'pending'",
        &[Value::Int(stored.id), Value::Int(now)],
    )?;
    if changed != 1 {
        return Ok(false);
    }
    if let Some((day, kind)) = &stored.usage {
        limits::release(tx, stored.account, *kind, day, stored.amount)?;
    }
    let customers = customers_of(tx, &[stored.account])?;
    let draft = system_draft(
        "approval.expire",
        format!("approval:{}", stored.id),
        json!({"kind": stored.kind.as_str(), "account": stored.account, "amount_minor": stored.amount,
               "currency": stored.currency, "maker": stored.maker, "customers": customers}),
    );
    sql::journal(tx, now, std::slice::from_ref(&draft))?;
    Ok(true)
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ApprovalFilter {
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

impl Bank {
    /// The approver's role as configured, never below teller.
    fn approver_role(&self) -> Role {
        self.settings.approvals.approver_role.max(Role::Teller)
    }

    /// The threshold for a held operation kind.
    pub(crate) fn needs_approval(&self, kind: ApprovalKind, amount: Amount) -> bool {
        let settings = &self.settings.approvals;
        let over = match kind {
            ApprovalKind::CashWithdrawal => settings.cash_withdrawal_over,
            ApprovalKind::StaffTransfer => settings.staff_transfer_over,
            ApprovalKind::CreditLimit => settings.credit_limit_over,
        };
        amount.minor() > over
    }

    fn expiry_us(&self) -> i64 {
        i64::from(self.settings.approvals.expiry_s.max(1)) * 1_000_000
    }

    /// Turns an operation above its threshold into a request: reserves the
    /// daily limit, holds the money (a pending transfer, journaled as
    /// `approval.request`) and records the request. A retry with the same
    /// Idempotency-Key names the same hold and gets the same request.
    pub(crate) async fn request_approval(&self, caller: &Caller, held: HeldRequest) -> ServiceResult<ApprovalView> {
        let (maker, _) = caller.staff(Role::Teller)?;
        let subject = format!("transfer:{}", held.hold_id);
        let day = match held.usage {
            Some(kind) => Some((
                self.reserve_daily(
                    caller,
                    "approval.request",
                    &subject,
                    held.debit,
                    kind,
                    held.amount,
                    held.currency,
                    &held.request,
                )
                .await?,
                kind,
            )),
            None => None,
        };
        let timeout_s = self.settings.approvals.expiry_s.max(1).saturating_add(HOLD_GRACE_S);
        let mut hold = NewTransfer::single(
            held.hold_id,
            AccountId(held.debit),
            AccountId(held.credit),
            held.amount,
            held.currency,
        );
        hold.kind = held.kind.transfer_kind();
        hold.op = TransferOp::Pending { timeout_s: Some(timeout_s) };
        hold.description = held.description.clone();
        let draft =
            caller.audit("approval.request", subject, json!({"kind": held.kind.as_str(), "request": held.request}));
        let release = |bank: Bank, day: Option<(String, DailyKind)>, account: i64, amount: i64| async move {
            if let Some((day, kind)) = day {
                let _ = sql::write(&*bank.db, move |tx| limits::release(tx, account, kind, &day, amount)).await;
            }
        };
        let created = match self.submit_created(hold, draft).await {
            Ok(created) => created,
            Err(error) => {
                release(self.clone(), day, held.debit, held.amount.minor()).await;
                return Err(match error {
                    ServiceError::Conflict("idempotency_key_reused", message) => {
                        ServiceError::Refused("idempotency_key_reused", message)
                    }
                    other => other,
                });
            }
        };
        if created.replayed {
            // The retry reserved the limit again; the first request holds it.
            release(self.clone(), day.clone(), held.debit, held.amount.minor()).await;
        }
        let now = now_us();
        let expires = now + self.expiry_us();
        let hold_bytes = held.hold_id.to_bytes().to_vec();
        let (kind, debit, credit, amount) = (held.kind, held.debit, held.credit, held.amount.minor());
        let (currency, description) = (held.currency.code().to_owned(), held.description.clone());
        let usage = day.clone();
        let recorded = sql::write(&*self.db, move |tx| {
            if let Some(row) =
                tx.query_opt(&format!("SELECT {COLUMNS} FROM approvals WHERE hold_id = $1"), &[Value::Blob(hold_bytes.clone())])?
            {
                return Ok::<_, ServiceError>(stored_from_row(&row)?);
            }
            let row = tx.query_one(
                "INSERT INTO approvals (kind, status, maker_id, account_id, other_account, amount, currency, description, \
                 hold_id, usage_day, usage_kind, created_at_us, expires_at_us) \
                 VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                &[
                    Value::from(kind.as_str()),
                    Value::Int(maker),
                    Value::Int(debit),
                    Value::Int(credit),
                    Value::Int(amount),
                    Value::from(&currency),
                    Value::from(&description),
                    Value::Blob(hold_bytes.clone()),
                    usage.as_ref().map_or(Value::Null, |(day, _)| Value::from(day)),
                    usage.as_ref().map_or(Value::Null, |(_, kind)| Value::from(kind.as_str())),
                    Value::Int(now),
                    Value::Int(expires),
                ],
            )?;
            let id = row.int(0)?;
            load(tx, id)?.ok_or_else(|| ServiceError::Internal("an approval request vanished".into()))
        })
        .await;
        match recorded {
            Ok(stored) => view(&stored),
            Err(error) => {
                if !created.replayed {
                    let _ =
                        self.resolve_hold(debit, credit, held.amount, held.currency, kind, held.hold_id, false).await;
                    release(self.clone(), day, debit, amount).await;
                }
                Err(error)
            }
        }
    }

    /// Posts (`post`) or voids a hold with the derived resolution id.
    #[allow(clippy::too_many_arguments)]
    async fn resolve_hold(
        &self,
        debit: i64,
        credit: i64,
        amount: Amount,
        currency: Currency,
        kind: ApprovalKind,
        hold: TransferId,
        post: bool,
    ) -> ServiceResult<()> {
        let mut transfer =
            NewTransfer::single(resolution_id(hold, post), AccountId(debit), AccountId(credit), amount, currency);
        transfer.kind = kind.transfer_kind();
        transfer.op = if post { TransferOp::Post { pending_id: hold } } else { TransferOp::Void { pending_id: hold } };
        transfer.description = if post { "approved" } else { "released" }.to_owned();
        let outcome = self.ledger.transfer(transfer).await?;
        match outcome {
            Ok(_) => Ok(()),
            // Already resolved (the ledger's own timeout voided it, or
            // another node got there first): nothing is held any more.
            Err(kassa_core::ledger::TransferError::PendingTransferAlreadyVoided) if !post => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    async fn void_stored(&self, stored: &Stored) {
        if let (Some(hold), Some(other)) = (stored.hold, stored.other)
            && let Ok(currency) = currency_of(&stored.currency)
        {
            let amount = Amount::from_minor(stored.amount);
            if let Err(error) =
                self.resolve_hold(stored.account, other, amount, currency, stored.kind, hold, false).await
            {
                tracing::warn!(%error, approval = stored.id, "releasing a hold failed; the ledger's timeout will");
            }
        }
    }

    /// Runs an approved request's hold: posts it, journaled as the
    /// operation itself, and marks the request executed (or failed).
    async fn execute(&self, caller_draft: AuditDraft, stored: &Stored) -> ServiceResult<()> {
        let (Some(hold), Some(other)) = (stored.hold, stored.other) else {
            return Ok(());
        };
        let currency = currency_of(&stored.currency)?;
        let amount = Amount::from_minor(stored.amount);
        let mut post = NewTransfer::single(
            resolution_id(hold, true),
            AccountId(stored.account),
            AccountId(other),
            amount,
            currency,
        );
        post.kind = stored.kind.transfer_kind();
        post.op = TransferOp::Post { pending_id: hold };
        post.description = stored.description.clone();
        let result = self.submit_created(post, caller_draft).await;
        let id = stored.id;
        let now = now_us();
        match &result {
            Ok(_) => {
                sql::write(&*self.db, move |tx| {
                    tx.execute(
                        "UPDATE approvals SET executed_at_us = $2, version = version + 1 \
                         WHERE id = $1 AND executed_at_us IS NULL",
                        &[Value::Int(id), Value::Int(now)],
                    )
                })
                .await?;
            }
            // A transient failure leaves the request approved: the sweep
            // (`finish_approved`) posts it later with the same derived id.
            Err(ServiceError::Unavailable(_)) => {}
            Err(error) => {
                let code = error.code().to_owned();
                let usage = stored.usage.clone();
                let (account, used) = (stored.account, stored.amount);
                let failed = sql::write(&*self.db, move |tx| {
                    let changed = tx.execute(
                        "UPDATE approvals SET status = 'failed', reason = $2, version = version + 1 \
                         WHERE id = $1 AND status = 'approved' AND executed_at_us IS NULL",
                        &[Value::Int(id), Value::from(&code)],
                    )?;
                    if changed == 1
                        && let Some((day, kind)) = &usage
                    {
                        limits::release(tx, account, *kind, day, used)?;
                    }
                    Ok::<_, StoreError>(changed == 1)
                })
                .await?;
                // The request will never run: release its hold now, not at
                // the ledger's timeout (voiding ignores the account's status).
                if failed {
                    self.void_stored(stored).await;
                }
            }
        }
        result.map(|_| ())
    }

    /// A checker approves a pending request: the status changes once (a
    /// concurrent second approval gets `approval_not_pending`), the decision
    /// is journaled, then the hold is posted (or the credit limit set, in
    /// the same transaction as the decision).
    pub async fn approve(&self, caller: &Caller, id: i64) -> ServiceResult<ApprovalView> {
        let (checker, _) = caller.staff(self.approver_role())?;
        let now = now_us();
        let draft = caller.audit("approval.approve", format!("approval:{id}"), json!({}));
        let decided = sql::write(&*self.db, move |tx| {
            let may_approve = |stored: &Stored| {
                if stored.maker == checker {
                    return Err(ServiceError::Forbidden(
                        "maker_cannot_approve",
                        "the maker of a request cannot approve it",
                    ));
                }
                Ok(())
            };
            let stored = match open_decision(tx, id, now, may_approve)? {
                Opened::Pending(stored) => stored,
                Opened::Expired(stored) => return Ok::<_, ServiceError>(Decided::Expired(stored)),
            };
            mark_decided(tx, id, "approved", Some(checker), now, "")?;
            if stored.kind == ApprovalKind::CreditLimit {
                set_credit_limit(tx, stored.account, stored.amount)?;
                tx.execute(
                    "UPDATE approvals SET executed_at_us = $2 WHERE id = $1",
                    &[Value::Int(id), Value::Int(now)],
                )?;
            }
            journal_decision(tx, now, &draft, &stored, &stored.accounts(), json!({}))?;
            Ok(Decided::Done(stored))
        })
        .await?;
        let stored = match decided {
            Decided::Expired(stored) => return Err(self.expired(&stored).await),
            Decided::Done(stored) => stored,
        };
        if stored.hold.is_some() {
            let accounts = stored.accounts();
            let customers = sql::read(&*self.db, move |tx| customers_of(tx, &accounts)).await?;
            let draft = caller.audit(
                stored.kind.action(),
                format!("approval:{id}"),
                json!({"approval": id, "from": stored.account, "to": stored.other, "amount_minor": stored.amount,
                       "currency": stored.currency, "description": stored.description, "maker": stored.maker,
                       "customers": customers}),
            );
            self.execute(draft, &stored).await?;
        }
        self.approval(caller, id).await
    }

    /// A checker (or the maker, withdrawing it) rejects a pending request
    /// with a reason; its hold is released and its daily usage given back.
    pub async fn reject(&self, caller: &Caller, id: i64, reason: Option<String>) -> ServiceResult<ApprovalView> {
        let (checker, role) = caller.staff(Role::Teller)?;
        let reason = reason.unwrap_or_default().trim().to_owned();
        if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(ServiceError::invalid(
                "reason",
                "reason_invalid",
                "a reason is at most 500 characters, without control characters",
            ));
        }
        let approver = self.approver_role();
        let now = now_us();
        let draft = caller.audit("approval.reject", format!("approval:{id}"), json!({}));
        let decided = sql::write(&*self.db, move |tx| {
            let may_reject = |stored: &Stored| {
                if stored.maker != checker && role < approver {
                    return Err(ServiceError::Forbidden("forbidden", "your role may not do this"));
                }
                Ok(())
            };
            let stored = match open_decision(tx, id, now, may_reject)? {
                Opened::Pending(stored) => stored,
                Opened::Expired(stored) => return Ok::<_, ServiceError>(Decided::Expired(stored)),
            };
            // The maker withdrawing their own request is no checker.
            let by = (stored.maker != checker).then_some(checker);
            mark_decided(tx, id, "rejected", by, now, &reason)?;
            if let Some((day, kind)) = &stored.usage {
                limits::release(tx, stored.account, *kind, day, stored.amount)?;
            }
            journal_decision(tx, now, &draft, &stored, &[stored.account], json!({"reason": reason}))?;
            Ok(Decided::Done(stored))
        })
        .await?;
        match decided {
            Decided::Expired(stored) => Err(self.expired(&stored).await),
            Decided::Done(stored) => {
                self.void_stored(&stored).await;
                self.approval(caller, id).await
            }
        }
    }

    /// The answer to a decision that found its request overdue (and expired
    /// it): the hold is released first.
    async fn expired(&self, stored: &Stored) -> ServiceError {
        self.void_stored(stored).await;
        ServiceError::Refused("approval_expired", "the request expired; its hold was released".into())
    }

    /// One request, for staff (overdue requests are expired first).
    pub async fn approval(&self, caller: &Caller, id: i64) -> ServiceResult<ApprovalView> {
        caller.staff(Role::Teller)?;
        self.expire_approvals().await?;
        let stored = sql::read(&*self.db, move |tx| load(tx, id))
            .await?
            .ok_or(ServiceError::NotFound("approval_not_found", "no such approval request"))?;
        view(&stored)
    }

    /// Requests, newest first, optionally with one status. Overdue
    /// requests are expired first, so the list never shows them pending.
    pub async fn approvals(&self, caller: &Caller, filter: ApprovalFilter) -> ServiceResult<Page<ApprovalView>> {
        caller.staff(Role::Teller)?;
        let limit = page_limit(filter.limit)?;
        let before = page_cursor(filter.cursor.as_deref())?.unwrap_or(i64::MAX);
        let status = filter.status.unwrap_or_default();
        if !status.is_empty() && !STATUSES.contains(&status.as_str()) {
            return Err(ServiceError::invalid(
                "status",
                "status_invalid",
                "status is pending, approved, rejected, expired or failed",
            ));
        }
        self.expire_approvals().await?;
        let rows = sql::read(&*self.db, move |tx| {
            tx.query(
                &format!(
                    "SELECT {COLUMNS} FROM approvals WHERE id < $1 AND ($2 = '' OR status = $2) ORDER BY id DESC LIMIT $3"
                ),
                &[Value::Int(before), Value::from(&status), Value::Int(i64::from(limit))],
            )?
            .iter()
            .map(stored_from_row)
            .collect::<Result<Vec<_>, StoreError>>()
        })
        .await?;
        let items = rows.iter().map(view).collect::<ServiceResult<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |item| item.id.to_string()))
    }

    /// Expires every overdue pending request (journaled as
    /// `approval.expire` by the system) and releases its hold. Safe on
    /// several nodes at once: each request changes status once. Returns how
    /// many it expired.
    pub async fn expire_approvals(&self) -> ServiceResult<usize> {
        let now = now_us();
        let expired = sql::write(&*self.db, move |tx| {
            let due = tx
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM approvals WHERE status = 'pending' AND expires_at_us <= $1 \
                         ORDER BY expires_at_us LIMIT 100"
                    ),
                    &[Value::Int(now)],
                )?
                .iter()
                .map(stored_from_row)
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut expired = Vec::new();
            for stored in due {
                if expire_in(tx, &stored, now)? {
                    expired.push(stored);
                }
            }
            Ok::<_, StoreError>(expired)
        })
        .await?;
        for stored in &expired {
            self.void_stored(stored).await;
        }
        Ok(expired.len())
    }

    /// Posts the holds of requests approved over a minute ago whose post
    /// did not happen (the process stopped between the decision and the
    /// post). The post's derived id makes a repeat harmless.
    pub async fn finish_approved(&self) -> ServiceResult<usize> {
        let before = now_us() - 60_000_000;
        let due = sql::read(&*self.db, move |tx| {
            tx.query(
                &format!(
                    "SELECT {COLUMNS} FROM approvals WHERE status = 'approved' AND executed_at_us IS NULL \
                     AND hold_id IS NOT NULL AND decided_at_us < $1 ORDER BY id LIMIT 100"
                ),
                &[Value::Int(before)],
            )?
            .iter()
            .map(stored_from_row)
            .collect::<Result<Vec<_>, StoreError>>()
        })
        .await?;
        let mut done = 0;
        for stored in &due {
            let draft = system_draft(
                stored.kind.action(),
                format!("approval:{}", stored.id),
                json!({"approval": stored.id, "from": stored.account, "to": stored.other,
                       "amount_minor": stored.amount, "currency": stored.currency, "resumed": true}),
            );
            if self.execute(draft, stored).await.is_ok() {
                done += 1;
            }
        }
        Ok(done)
    }

    /// Records a credit-limit change waiting for approval (no money moves,
    /// so nothing is held), journaled as `approval.request`.
    pub(crate) async fn request_credit_limit(
        &self,
        caller: &Caller,
        account: i64,
        limit: Amount,
        currency: Currency,
    ) -> ServiceResult<ApprovalView> {
        let (maker, _) = caller.staff(Role::Manager)?;
        let now = now_us();
        let expires = now + self.expiry_us();
        let code = currency.code().to_owned();
        let draft = caller.audit(
            "approval.request",
            format!("account:{account}"),
            json!({"kind": "credit_limit", "account": account, "credit_limit_minor": limit.minor(), "currency": code}),
        );
        let stored = sql::write(&*self.db, move |tx| {
            let row = tx.query_one(
                "INSERT INTO approvals (kind, status, maker_id, account_id, amount, currency, description, \
                 created_at_us, expires_at_us) VALUES ('credit_limit', 'pending', $1, $2, $3, $4, '', $5, $6) RETURNING id",
                &[
                    Value::Int(maker),
                    Value::Int(account),
                    Value::Int(limit.minor()),
                    Value::from(&code),
                    Value::Int(now),
                    Value::Int(expires),
                ],
            )?;
            let id = row.int(0)?;
            let mut draft = draft.clone();
            draft.subject = format!("approval:{id}");
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            load(tx, id)?.ok_or_else(|| ServiceError::Internal("an approval request vanished".into()))
        })
        .await?;
        view(&stored)
    }
}

/// The only account kind that has a credit limit.
pub(crate) const CREDIT_KIND: &str = "credit_card";

/// Sets a customer account's credit limit inside `tx`, the way the ledger's
/// rules allow: only on a credit card, not on a closed account, and not
/// below what the account already uses (the row's own CHECK says the same).
pub(crate) fn set_credit_limit(tx: &mut dyn Tx, account: i64, limit: i64) -> ServiceResult<()> {
    let kind = tx
        .query_opt("SELECT kind FROM accounts WHERE id = $1", &[Value::Int(account)])?
        .map(|row| row.text(0))
        .transpose()?
        .ok_or(ServiceError::NotFound("account_not_found", "no such customer account"))?;
    if kind != CREDIT_KIND {
        return Err(ServiceError::invalid(
            "credit_limit",
            limits::CREDIT_LIMIT_NOT_ALLOWED,
            limits::CREDIT_LIMIT_NOT_ALLOWED_DETAIL,
        ));
    }
    let changed = tx.execute(
        "UPDATE accounts SET credit_limit = $2 WHERE id = $1 AND status <> 'closed' \
         AND credits_posted - debits_posted - debits_pending + $2 >= 0",
        &[Value::Int(account), Value::Int(limit)],
    )?;
    if changed != 1 {
        return Err(ServiceError::Refused(
            "credit_limit_below_usage",
            "the account is closed, or already uses more credit than that limit".into(),
        ));
    }
    Ok(())
}
