//! Limits kept in the database, so every node sharing it counts together:
//! fixed-window rate limits (`rate_limits`: one counter per key, reset when
//! its window has passed) and per-account daily limits (`daily_usage`).

use kassa_store::StoreError;
use kassa_store::sql::{Tx, Value};

/// Counts one use of `key` inside `tx`. Returns `Some(seconds)` to wait if
/// this use is over `max` in the current window of `window_s` seconds
/// (the use is still counted, so hammering does not help), else `None`.
pub fn count_use(tx: &mut dyn Tx, key: &str, max: u32, window_s: i64, now_us: i64) -> Result<Option<i64>, StoreError> {
    let window_us = window_s.max(1).saturating_mul(1_000_000);
    let row = tx.query_one(
        "INSERT INTO rate_limits (key, window_start_us, count) VALUES ($1, $2, 1) \
         ON CONFLICT (key) DO UPDATE SET \
           count = CASE WHEN rate_limits.window_start_us <= $3 THEN 1 ELSE rate_limits.count + 1 END, \
           window_start_us = CASE WHEN rate_limits.window_start_us <= $4 THEN $5 ELSE rate_limits.window_start_us END \
         RETURNING window_start_us, count",
        &[
            Value::from(key),
            Value::Int(now_us),
            Value::Int(now_us - window_us),
            Value::Int(now_us - window_us),
            Value::Int(now_us),
        ],
    )?;
    let (started, count) = (row.int(0)?, row.int(1)?);
    if count <= i64::from(max) {
        return Ok(None);
    }
    let left_us = (started + window_us - now_us).max(0);
    Ok(Some(((left_us + 999_999) / 1_000_000).max(1)))
}

/// Which daily limit an operation counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DailyKind {
    /// Cash paid out at the desk (and later ATM withdrawals).
    Withdrawal,
    /// Customer and staff transfers debiting the account.
    Transfer,
}

impl DailyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DailyKind::Withdrawal => "withdrawal",
            DailyKind::Transfer => "transfer",
        }
    }

    pub fn parse(text: &str) -> Option<DailyKind> {
        [DailyKind::Withdrawal, DailyKind::Transfer].into_iter().find(|kind| kind.as_str() == text)
    }

    /// The limit's name on the wire and in refusals.
    pub fn limit_name(self) -> &'static str {
        match self {
            DailyKind::Withdrawal => "daily_withdrawal",
            DailyKind::Transfer => "daily_transfer",
        }
    }
}

/// An account's daily limits: the account's own, else its product's
/// (`None`: no limit), and whether each came from the account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DailyLimits {
    pub withdrawal: Option<i64>,
    pub transfer: Option<i64>,
    pub withdrawal_own: bool,
    pub transfer_own: bool,
}

impl DailyLimits {
    pub fn of(&self, kind: DailyKind) -> Option<i64> {
        match kind {
            DailyKind::Withdrawal => self.withdrawal,
            DailyKind::Transfer => self.transfer,
        }
    }
}

/// The daily limits of a customer account (`None` for an account without
/// a product: the bank's own).
pub fn daily_limits(tx: &mut dyn Tx, account: i64) -> Result<Option<DailyLimits>, StoreError> {
    tx.query_opt(
        "SELECT p.daily_withdrawal_limit, p.daily_transfer_limit, l.daily_withdrawal, l.daily_transfer \
         FROM account_details d JOIN products p ON p.id = d.product_id \
         LEFT JOIN account_limits l ON l.account_id = d.account_id WHERE d.account_id = $1",
        &[Value::Int(account)],
    )?
    .map(|row| {
        let (own_withdrawal, own_transfer) = (row.opt_int(2)?, row.opt_int(3)?);
        Ok(DailyLimits {
            withdrawal: own_withdrawal.or(row.opt_int(0)?),
            transfer: own_transfer.or(row.opt_int(1)?),
            withdrawal_own: own_withdrawal.is_some(),
            transfer_own: own_transfer.is_some(),
        })
    })
    .transpose()
}

/// What an account used of a daily limit on `day`.
pub fn used_on(tx: &mut dyn Tx, account: i64, kind: DailyKind, day: &str) -> Result<i64, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT used FROM daily_usage WHERE account_id = $1 AND day = $2 AND kind = $3",
            &[Value::Int(account), Value::from(day), Value::from(kind.as_str())],
        )?
        .map(|row| row.int(0))
        .transpose()?
        .unwrap_or(0))
}

/// A refused reservation: the limit and what is left of it today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverLimit {
    pub kind: DailyKind,
    pub limit: i64,
    pub left: i64,
}

/// Reserves `amount` of `account`'s daily `kind` limit on `day`, inside
/// `tx`: the usage row is raised only if it stays within the limit, in one
/// conditional UPDATE, so two concurrent operations cannot both pass
/// (SQLite has one writer; on PostgreSQL the row lock and the repeatable
/// read re-run serialize them). Usage is counted even without a limit.
pub fn reserve(
    tx: &mut dyn Tx,
    account: i64,
    kind: DailyKind,
    day: &str,
    amount: i64,
) -> Result<Result<(), OverLimit>, StoreError> {
    let limit = daily_limits(tx, account)?.and_then(|limits| limits.of(kind));
    let cap = limit.unwrap_or(i64::MAX);
    // One statement: a new row starts at `amount`, an existing one grows
    // only while it stays within the limit (0 rows changed: refused).
    let changed = if amount > cap {
        0
    } else {
        tx.execute(
            "INSERT INTO daily_usage (account_id, day, kind, used) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, day, kind) DO UPDATE SET used = daily_usage.used + excluded.used \
             WHERE daily_usage.used <= $5",
            &[
                Value::Int(account),
                Value::from(day),
                Value::from(kind.as_str()),
                Value::Int(amount),
                Value::Int(cap - amount),
            ],
        )?
    };
    if changed == 1 {
        return Ok(Ok(()));
    }
    let used = used_on(tx, account, kind, day)?;
    Ok(Err(OverLimit { kind, limit: cap, left: (cap - used).max(0) }))
}

/// Gives back a reservation (the ledger refused, or a held operation was
/// rejected or expired). Never takes usage below zero.
pub fn release(tx: &mut dyn Tx, account: i64, kind: DailyKind, day: &str, amount: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE daily_usage SET used = CASE WHEN used >= $4 THEN used - $4 ELSE 0 END \
         WHERE account_id = $1 AND day = $2 AND kind = $3",
        &[Value::Int(account), Value::from(day), Value::from(kind.as_str()), Value::Int(amount)],
    )?;
    Ok(())
}

/// The code refusing a credit limit on an account that is not a credit card.
pub(crate) const CREDIT_LIMIT_NOT_ALLOWED: &str = "credit_limit_not_allowed";
pub(crate) const CREDIT_LIMIT_NOT_ALLOWED_DETAIL: &str = "only a credit_card account has a credit limit";

/// A manager's change to an account's limits: each field absent is left as
/// it is. Amounts are decimal strings in the account's currency.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct LimitsForm {
    pub daily_withdrawal: Option<String>,
    pub daily_transfer: Option<String>,
    pub credit_limit: Option<String>,
}

/// One daily limit of an account, as of today.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DailyLimitView {
    /// `None`: no limit.
    pub limit: Option<String>,
    /// `account` (a manager set it) or `product` (the product's default).
    pub source: &'static str,
    pub used_today: String,
    pub left_today: Option<String>,
}

/// An account's limits.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LimitsView {
    pub account: i64,
    pub currency: String,
    /// The bank's day the usage is counted for.
    pub day: String,
    pub daily_withdrawal: DailyLimitView,
    pub daily_transfer: DailyLimitView,
    pub credit_limit: String,
    /// A credit-limit change above the threshold waits for approval here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::approvals::ApprovalView>,
}

fn limits_view(tx: &mut dyn Tx, account: i64, day: &str) -> Result<Option<LimitsView>, crate::ServiceError> {
    use crate::ServiceError;
    let Some(row) = tx.query_opt(
        "SELECT d.currency, a.credit_limit FROM account_details d JOIN accounts a ON a.id = d.account_id \
         WHERE d.account_id = $1",
        &[Value::Int(account)],
    )?
    else {
        return Ok(None);
    };
    let currency = kassa_core::money::Currency::from_code(&row.text(0)?)
        .map_err(|error| ServiceError::Internal(error.to_string()))?;
    let credit_limit = row.int(1)?;
    let limits = daily_limits(tx, account)?.unwrap_or_default();
    let format = |minor: i64| crate::accounts::format_minor(i128::from(minor), currency);
    let mut one = |kind: DailyKind, own: bool| -> Result<DailyLimitView, StoreError> {
        let used = used_on(tx, account, kind, day)?;
        let limit = limits.of(kind);
        Ok(DailyLimitView {
            limit: limit.map(format),
            source: if own { "account" } else { "product" },
            used_today: format(used),
            left_today: limit.map(|limit| format((limit - used).max(0))),
        })
    };
    let daily_withdrawal = one(DailyKind::Withdrawal, limits.withdrawal_own)?;
    let daily_transfer = one(DailyKind::Transfer, limits.transfer_own)?;
    Ok(Some(LimitsView {
        account,
        currency: currency.code().to_owned(),
        day: day.to_owned(),
        daily_withdrawal,
        daily_transfer,
        credit_limit: format(credit_limit),
        approval: None,
    }))
}

impl crate::Bank {
    /// A customer account's daily limits, today's usage and credit limit,
    /// for staff.
    pub async fn account_limits(&self, caller: &crate::Caller, account: i64) -> crate::ServiceResult<LimitsView> {
        caller.staff(crate::Role::Teller)?;
        let day = self.today().to_string();
        kassa_store::sql::read(&*self.db, move |tx| limits_view(tx, account, &day))
            .await?
            .ok_or(crate::ServiceError::NotFound("account_not_found", "no such customer account"))
    }

    /// A manager sets an account's daily limits (overriding its product's)
    /// and its credit limit. A credit limit above the approval threshold is
    /// not set but becomes an approval request, returned in `approval`.
    pub async fn set_account_limits(
        &self,
        caller: &crate::Caller,
        account: i64,
        form: LimitsForm,
    ) -> crate::ServiceResult<LimitsView> {
        use crate::ServiceError;
        use crate::approvals::ApprovalKind;
        use kassa_core::money::{Amount, AmountPolicy, Currency};
        caller.staff(crate::Role::Manager)?;
        if form.daily_withdrawal.is_none() && form.daily_transfer.is_none() && form.credit_limit.is_none() {
            return Err(ServiceError::invalid(
                "daily_withdrawal",
                "field_required",
                "give at least one of daily_withdrawal, daily_transfer and credit_limit",
            ));
        }
        let (currency, kind) = kassa_store::sql::read(&*self.db, move |tx| {
            tx.query_opt(
                "SELECT d.currency, a.kind FROM account_details d JOIN accounts a ON a.id = d.account_id \
                 WHERE d.account_id = $1",
                &[Value::Int(account)],
            )?
            .map(|row| Ok::<_, StoreError>((row.text(0)?, row.text(1)?)))
            .transpose()
        })
        .await?
        .ok_or(ServiceError::NotFound("account_not_found", "no such customer account"))?;
        let currency = Currency::from_code(&currency).map_err(|error| ServiceError::Internal(error.to_string()))?;
        let mut problems = Vec::new();
        let mut parse = |field: &str, text: Option<&String>| {
            text.and_then(|text| match Amount::parse(text, currency, AmountPolicy::NonNegative) {
                Ok(amount) => Some(amount),
                Err(error) => {
                    problems.push(crate::country::FieldProblem {
                        field: field.into(),
                        code: error.code(),
                        detail: error.to_string(),
                    });
                    None
                }
            })
        };
        let withdrawal = parse("daily_withdrawal", form.daily_withdrawal.as_ref());
        let transfer = parse("daily_transfer", form.daily_transfer.as_ref());
        let credit = parse("credit_limit", form.credit_limit.as_ref());
        if form.credit_limit.is_some() && kind != crate::approvals::CREDIT_KIND {
            problems.push(crate::country::FieldProblem {
                field: "credit_limit".into(),
                code: CREDIT_LIMIT_NOT_ALLOWED,
                detail: CREDIT_LIMIT_NOT_ALLOWED_DETAIL.into(),
            });
        }
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let deferred = credit.filter(|credit| self.needs_approval(ApprovalKind::CreditLimit, *credit));
        let direct_credit = credit.filter(|_| deferred.is_none());
        let now = kassa_store::now_us();
        let day = self.today().to_string();
        let draft = caller.audit(
            "account.limits",
            format!("account:{account}"),
            serde_json::json!({"daily_withdrawal_minor": withdrawal.map(Amount::minor),
                               "daily_transfer_minor": transfer.map(Amount::minor),
                               "credit_limit_minor": direct_credit.map(Amount::minor),
                               "currency": currency.code()}),
        );
        let actor = caller.actor();
        let mut view = kassa_store::sql::write(&*self.db, move |tx| {
            if withdrawal.is_some() || transfer.is_some() {
                let value = |amount: Option<Amount>| amount.map_or(Value::Null, |amount| Value::Int(amount.minor()));
                tx.execute(
                    "INSERT INTO account_limits (account_id, daily_withdrawal, daily_transfer, updated_by, updated_at_us) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id) DO UPDATE SET \
                     daily_withdrawal = COALESCE(excluded.daily_withdrawal, account_limits.daily_withdrawal), \
                     daily_transfer = COALESCE(excluded.daily_transfer, account_limits.daily_transfer), \
                     updated_by = excluded.updated_by, updated_at_us = excluded.updated_at_us",
                    &[Value::Int(account), value(withdrawal), value(transfer), Value::from(&actor), Value::Int(now)],
                )?;
            }
            if let Some(credit) = direct_credit {
                crate::approvals::set_credit_limit(tx, account, credit.minor())?;
            }
            if withdrawal.is_some() || transfer.is_some() || direct_credit.is_some() {
                kassa_store::sql::journal(tx, now, std::slice::from_ref(&draft))?;
            }
            limits_view(tx, account, &day)?.ok_or(ServiceError::NotFound("account_not_found", "no such customer account"))
        })
        .await?;
        if let Some(credit) = deferred {
            view.approval = Some(self.request_credit_limit(caller, account, credit, currency).await?);
        }
        Ok(view)
    }
}

/// One reservation waiting for the next group commit.
struct Pending {
    account: i64,
    kind: DailyKind,
    day: String,
    amount: i64,
    /// Journaled (with outcome `daily_limit_exceeded`) if refused.
    refusal: kassa_store::AuditDraft,
    reply: tokio::sync::oneshot::Sender<Result<Result<(), OverLimit>, StoreError>>,
}

/// Reservations of daily usage, group-committed: whoever finds no commit
/// in progress takes every reservation queued so far and makes them in one
/// transaction, each still its own conditional UPDATE (so they are as
/// exact as one at a time: each sees the ones before it), then answers
/// each. Concurrent operations share one commit instead of paying one
/// fsync each before their ledger batch.
#[derive(Debug, Default)]
pub(crate) struct UsageBatcher {
    queue: std::sync::Mutex<Vec<Pending>>,
    /// Held by the caller that is committing a group.
    committing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("account", &self.account).field("kind", &self.kind).finish()
    }
}

/// The most reservations one transaction makes.
const USAGE_GROUP_MAX: usize = 1024;

impl UsageBatcher {
    /// Reserves `amount` of `account`'s `kind` limit on `day`; a refusal is
    /// journaled as `refusal` in the same transaction.
    pub(crate) async fn reserve(
        &self,
        db: &dyn kassa_store::sql::Database,
        account: i64,
        kind: DailyKind,
        day: String,
        amount: i64,
        refusal: kassa_store::AuditDraft,
    ) -> Result<Result<(), OverLimit>, StoreError> {
        // PostgreSQL runs reservations side by side on its pool; grouping
        // them would queue every statement behind one connection. SQLite
        // has one writer, where a commit per reservation is what costs.
        if db.backend() == "postgres" {
            let mut results = reserve_group(db, vec![(account, kind, day, amount, refusal)]).await?;
            return results.pop().ok_or_else(|| StoreError::Database("no reservation result".into()));
        }
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.queue.lock().map_err(|_| StoreError::Database("the usage queue is poisoned".into()))?.push(Pending {
            account,
            kind,
            day,
            amount,
            refusal,
            reply,
        });
        loop {
            use tokio::sync::oneshot::error::TryRecvError;
            // Whoever gets the turn commits everything queued, its own
            // request among them unless a group before it already took it
            // (then that group has answered by the time the turn comes).
            let turn = self.committing.lock().await;
            match answer.try_recv() {
                Ok(result) => return result,
                Err(TryRecvError::Closed) => return Err(StoreError::Database("a usage group was lost".into())),
                Err(TryRecvError::Empty) => {}
            }
            let group: Vec<Pending> = {
                let mut queue =
                    self.queue.lock().map_err(|_| StoreError::Database("the usage queue is poisoned".into()))?;
                let take = queue.len().min(USAGE_GROUP_MAX);
                queue.drain(..take).collect()
            };
            if !group.is_empty() {
                commit_group(db, group).await;
            }
            drop(turn);
        }
    }
}

type Reservation = (i64, DailyKind, String, i64, kassa_store::AuditDraft);

/// Makes `requests` in order in one transaction, journaling the refused
/// ones; one result per request.
async fn reserve_group(
    db: &dyn kassa_store::sql::Database,
    requests: Vec<Reservation>,
) -> Result<Vec<Result<(), OverLimit>>, StoreError> {
    let now = kassa_store::now_us();
    kassa_store::sql::write(db, move |tx| {
        let mut results = Vec::with_capacity(requests.len());
        let mut refusals = Vec::new();
        for (account, kind, day, amount, refusal) in &requests {
            let result = reserve(tx, *account, *kind, day, *amount)?;
            if result.is_err() {
                refusals.push(refusal.clone());
            }
            results.push(result);
        }
        if !refusals.is_empty() {
            kassa_store::sql::journal(tx, now, &refusals)?;
        }
        Ok::<_, StoreError>(results)
    })
    .await
}

async fn commit_group(db: &dyn kassa_store::sql::Database, group: Vec<Pending>) {
    let requests: Vec<Reservation> = group
        .iter()
        .map(|pending| (pending.account, pending.kind, pending.day.clone(), pending.amount, pending.refusal.clone()))
        .collect();
    match reserve_group(db, requests).await {
        Ok(results) => {
            for (pending, result) in group.into_iter().zip(results) {
                let _ = pending.reply.send(Ok(result));
            }
        }
        Err(error) => {
            for pending in group {
                let _ = pending.reply.send(Err(error.clone()));
            }
        }
    }
}
