//! Interest: daily accrual on savings (and on negative credit-card balances)
//! with exact maths, monthly posting, idempotent per account and day; the
//! schedule. The decisions are written down in docs/interest.md.
//!
//! - **Day count**: actual/actual — a day accrues `rate / 365`, or
//!   `rate / 366` when the day lies in a leap year.
//! - **Base**: the account's end-of-day posted balance in the bank's zone
//!   (`balance_at` the last microsecond of the day), so a run for a past day
//!   is reproducible. Savings (`pay`) accrue on a positive balance; credit
//!   cards (`charge`) on a negative one.
//! - **Exact maths, one rounding rule**: a day's interest is an exact
//!   fraction. It is added to the carry (what the account accrued below one
//!   minor unit so far); the whole minor units of the sum are the day's
//!   `accrued_minor` and what is left is the new carry. That is: the running
//!   total is **truncated toward zero**, and the remainder is carried, never
//!   dropped. Fractions are kept in units of `1 / CARRY_UNITS_PER_MINOR` of a
//!   minor unit, a common denominator of every rate (12 decimals) and both
//!   year lengths, so nothing is ever rounded before truncation.
//! - **Posting**: once a month's last day is accrued, the month's whole
//!   units move in one ledger transfer (`kind = interest`) from (or, for a
//!   charge, to) the bank's `interest_expense` account. The transfer id is
//!   derived from (account, month), so a second attempt is answered by the
//!   ledger's replay and never pays twice. Charges are flagged bank debits:
//!   they may take a card past its limit, and the posting says so.
//! - **Idempotency**: an accrual row per (account, day) (primary key),
//!   written once; a posting row per (account, month). A run that dies
//!   between any two steps leaves either rows that the next run skips or a
//!   transfer that the next run's replay finds.

use std::time::Duration;

use jiff::ToSpan as _;
use kassa_core::ledger::{NewTransfer, TransferKind};
use kassa_core::money::{Amount, Currency};
use kassa_core::{AccountId, TransferId};
use kassa_store::sql::{self, Value};
use kassa_store::{StoreError, now_us};
use serde_json::json;

use crate::calendar::{self, Day};
use crate::{Bank, Caller, Role, ServiceError, ServiceResult};

/// Settings: the `[interest]` section of kassa.toml.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterestSettings {
    /// Run the job every day at `run_at` (bank time) for the day before.
    pub enabled: bool,
    /// `HH:MM` in the bank's time zone.
    pub run_at: String,
    /// Lets a run accrue days that have not ended yet (today and later), on
    /// the balance as it is now. For tests and demos only: a production run
    /// accrues only days that are over.
    pub future_days_allowed: bool,
}

impl Default for InterestSettings {
    fn default() -> InterestSettings {
        InterestSettings { enabled: true, run_at: "01:00".into(), future_days_allowed: false }
    }
}

/// Decimal places a rate may have.
pub const RATE_DECIMALS: u32 = 12;
/// The highest annual rate the job applies (1000 %); a product with more
/// is reported and skipped, not applied.
pub const RATE_MAX_UNITS: i128 = 10 * 10_i128.pow(RATE_DECIMALS);
/// Carry units in one minor unit: `10^12 * 365 * 366`, a multiple of every
/// day's denominator (`10^12 * 365` or `10^12 * 366`).
pub const CARRY_UNITS_PER_MINOR: i128 = 1_000_000_000_000 * 365 * 366;
/// Times a run re-reads an account that another run is accruing at the
/// same time before leaving it to that run.
const RACES_MAX: u32 = 8;
/// Accounts read per page of a run.
const ACCOUNTS_PAGE: i64 = 200;

/// An annual rate as a fraction: `units / 10^12` (so `0.05` is
/// `50_000_000_000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub units: i128,
}

impl Rate {
    /// Parses a product's rate: digits with at most one point and at most
    /// 12 decimals, at most 10 (1000 %).
    pub fn parse(text: &str) -> Option<Rate> {
        let text = text.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        let decimals_max = RATE_DECIMALS as usize;
        if (whole.is_empty() && fraction.is_empty())
            || !digits(whole)
            || !digits(fraction)
            || whole.len() > 3
            || fraction.len() > decimals_max
        {
            return None;
        }
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut fraction_units: i128 = if fraction.is_empty() { 0 } else { fraction.parse().ok()? };
        for _ in fraction.len()..decimals_max {
            fraction_units *= 10;
        }
        let units = whole.checked_mul(10_i128.pow(RATE_DECIMALS))?.checked_add(fraction_units)?;
        (units <= RATE_MAX_UNITS).then_some(Rate { units })
    }
}

/// Days in the calendar year `day` falls in (actual/actual).
pub fn year_days(day: Day) -> i64 {
    if day.in_leap_year() { 366 } else { 365 }
}

/// What one day accrued: whole minor units and the carry after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayAccrual {
    pub accrued_minor: i64,
    /// In units of `1 / CARRY_UNITS_PER_MINOR` minor unit; below one minor unit.
    pub carry: i64,
}

/// One day's interest on `base_minor` (the magnitude the day accrues on,
/// not negative) at `rate`, added to `carry`, truncated toward zero; the
/// remainder is the new carry.
pub fn accrue_day(base_minor: i64, rate: Rate, day: Day, carry: i64) -> Option<DayAccrual> {
    if base_minor < 0 || carry < 0 || i128::from(carry) >= CARRY_UNITS_PER_MINOR {
        return None;
    }
    // base * rate_units / (10^12 * Y), in carry units: multiply by
    // 10^12 * 365 * 366 / (10^12 * Y) = 365 * 366 / Y.
    let per_rate_unit: i128 = if year_days(day) == 366 { 365 } else { 366 };
    let day_units = i128::from(base_minor).checked_mul(rate.units)?.checked_mul(per_rate_unit)?;
    let total = day_units.checked_add(i128::from(carry))?;
    Some(DayAccrual {
        accrued_minor: i64::try_from(total / CARRY_UNITS_PER_MINOR).ok()?,
        carry: i64::try_from(total % CARRY_UNITS_PER_MINOR).ok()?,
    })
}

/// Which way interest goes on an account of `kind`, if at all.
fn direction_of(kind: &str) -> Option<&'static str> {
    match kind {
        "savings" => Some("pay"),
        "credit_card" => Some("charge"),
        _ => None,
    }
}

/// The magnitude a day accrues on: a positive balance for `pay`, a negative
/// one for `charge`; otherwise nothing.
fn base_of(direction: &str, balance_minor: i64) -> i64 {
    match direction {
        "pay" => balance_minor.max(0),
        _ => balance_minor.checked_neg().unwrap_or(i64::MAX).max(0),
    }
}

/// The posting transfer's id for (account, month): the same on every node
/// and every run, so a repeat is the ledger's replay.
pub fn posting_id(account: i64, month: &str) -> TransferId {
    crate::crypto::derived_transfer_id("kassa interest posting v1", &[&account.to_string(), month])
}

fn last_day_of_month(day: Day) -> Day {
    day.last_of_month()
}

/// A month's posting, as a run reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PostingReport {
    pub account: i64,
    pub month: String,
    /// `pay` or `charge`.
    pub direction: String,
    pub amount: String,
    pub currency: String,
    /// `None` when the month accrued less than one minor unit.
    pub transfer_id: Option<String>,
    /// The transfer was already in the ledger (an earlier run was
    /// interrupted after posting it); nothing moved this time.
    pub replayed: bool,
    /// The charge took the account past its credit limit.
    pub overdraft: bool,
}

/// An account the run could not finish, and why (it is retried next run).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunFailure {
    pub account: i64,
    pub month: Option<String>,
    pub code: String,
    pub detail: String,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunReport {
    pub as_of: String,
    /// Interest-bearing accounts looked at.
    pub accounts: u64,
    /// Accrual rows written by this run (days already accrued are skipped).
    pub days_accrued: u64,
    pub postings: Vec<PostingReport>,
    pub failures: Vec<RunFailure>,
    /// Accounts left to another run that was accruing them at the same
    /// time (another node's schedule): not a failure, that run posts them.
    pub raced: u64,
    /// `false` when the run stopped at `steps_max` before finishing.
    pub complete: bool,
}

/// One interest-bearing account, as a run needs it.
#[derive(Clone, Debug)]
struct Candidate {
    id: i64,
    direction: &'static str,
    currency: Currency,
    opened: Day,
    rate: String,
    customer: i64,
}

/// Counts the commits of a run against an optional bound.
struct Steps {
    left: Option<u32>,
}

impl Steps {
    /// Takes a step; `false` when the budget is spent.
    fn take(&mut self) -> bool {
        match &mut self.left {
            None => true,
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }
}

/// The run's form: `{as_of?}` (default: yesterday in the bank's zone).
/// Unknown fields are refused: a run moves money, so a misspelt `as_of`
/// must not silently become "yesterday".
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunForm {
    pub as_of: Option<String>,
}

enum Stop {
    /// The step budget is spent.
    Budget,
}

impl Bank {
    /// Runs the interest job up to and including `as_of` (see the module
    /// docs): accrues every day not yet accrued and posts every month whose
    /// last day is accrued. Admins, or the system (the CLI, the schedule).
    pub async fn run_interest(&self, caller: &Caller, form: RunForm) -> ServiceResult<RunReport> {
        self.run_interest_bounded(caller, form, None).await
    }

    /// [`Bank::run_interest`], stopping after `steps_max` commits (accrual
    /// chunks, ledger postings, posting records): a bounded run, and how the
    /// tests stop a run between any two of its steps.
    pub async fn run_interest_bounded(
        &self,
        caller: &Caller,
        form: RunForm,
        steps_max: Option<u32>,
    ) -> ServiceResult<RunReport> {
        let system = caller.user.is_none() && caller.origin == "cli";
        if !system {
            caller.staff(Role::Admin)?;
        }
        let today = self.today();
        let as_of = match form.as_of.as_deref() {
            Some(text) => calendar::parse_day("as_of", text)?,
            None => today.yesterday().map_err(|_| ServiceError::Internal("no day before today".into()))?,
        };
        if as_of >= today && !self.settings.interest.future_days_allowed {
            return Err(ServiceError::invalid(
                "as_of",
                "as_of_not_past",
                format!("as_of must be a day that is over (before {today})"),
            ));
        }
        let mut report = RunReport { as_of: as_of.to_string(), ..RunReport::default() };
        let mut steps = Steps { left: steps_max };
        let stopped = self.run_all(caller, as_of, &mut steps, &mut report).await?;
        report.complete = stopped.is_none();
        let postings = report.postings.iter().filter(|p| p.transfer_id.is_some() && !p.replayed).count();
        let overdrafts: Vec<i64> = report.postings.iter().filter(|p| p.overdraft).map(|p| p.account).collect();
        let draft = caller.audit(
            "interest.run",
            format!("interest:{as_of}"),
            json!({"as_of": report.as_of, "accounts": report.accounts, "days_accrued": report.days_accrued,
                   "postings": postings, "overdrafts": overdrafts, "failures": report.failures.len(),
                   "raced": report.raced,
                   "complete": report.complete}),
        );
        let now = now_us();
        sql::write(&*self.db, move |tx| sql::journal(tx, now, std::slice::from_ref(&draft))).await?;
        for posting in report.postings.iter().filter(|p| p.overdraft) {
            tracing::warn!(account = posting.account, month = %posting.month, "an interest charge took the account past its credit limit");
        }
        Ok(report)
    }

    async fn run_all(
        &self,
        caller: &Caller,
        as_of: Day,
        steps: &mut Steps,
        report: &mut RunReport,
    ) -> ServiceResult<Option<Stop>> {
        let mut after = 0_i64;
        loop {
            let page = self.candidates(after).await?;
            let Some(last) = page.last() else {
                return Ok(None);
            };
            after = last.id;
            for candidate in page {
                report.accounts += 1;
                if let Some(stop) = self.run_account(caller, &candidate, as_of, steps, report).await? {
                    return Ok(Some(stop));
                }
            }
        }
    }

    async fn candidates(&self, after: i64) -> ServiceResult<Vec<Candidate>> {
        let zone = self.zone.clone();
        let rows = sql::read(&*self.db, move |tx| {
            tx.query(
                "SELECT a.id, a.kind, a.currency, a.created_at_us, p.interest_rate, d.customer_id FROM accounts a \
                 JOIN account_details d ON d.account_id = a.id JOIN products p ON p.id = d.product_id \
                 WHERE a.kind IN ('savings', 'credit_card') AND a.status <> 'closed' AND a.id > $1 \
                 ORDER BY a.id LIMIT $2",
                &[Value::Int(after), Value::Int(ACCOUNTS_PAGE)],
            )
        })
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kind = row.text(1)?;
            let Some(direction) = direction_of(&kind) else { continue };
            out.push(Candidate {
                id: row.int(0)?,
                direction,
                currency: Currency::from_code(&row.text(2)?).map_err(|e| ServiceError::Internal(e.to_string()))?,
                opened: calendar::day_of(&zone, row.int(3)?),
                rate: row.text(4)?,
                customer: row.int(5)?,
            });
        }
        Ok(out)
    }

    /// Accrues one account month by month up to `as_of`, posting each
    /// month as soon as its last day is accrued.
    async fn run_account(
        &self,
        caller: &Caller,
        account: &Candidate,
        as_of: Day,
        steps: &mut Steps,
        report: &mut RunReport,
    ) -> ServiceResult<Option<Stop>> {
        let fail = |report: &mut RunReport, month: Option<String>, code: &str, detail: String| {
            report.failures.push(RunFailure { account: account.id, month, code: code.into(), detail });
        };
        let Some(rate) = Rate::parse(&account.rate) else {
            fail(
                report,
                None,
                "interest_rate_invalid",
                format!("the product's rate {:?} cannot be applied", account.rate),
            );
            return Ok(None);
        };
        // Months whose posting the ledger refused in this run (a blocked
        // card): reported once, tried again by the next run.
        let mut refused = Vec::new();
        let mut races = 0_u32;
        loop {
            let id = account.id;
            let last = sql::read(&*self.db, move |tx| {
                tx.query_opt(
                    "SELECT day, carry FROM interest_accruals WHERE account_id = $1 ORDER BY day DESC LIMIT 1",
                    &[Value::Int(id)],
                )?
                .map(|row| Ok::<_, StoreError>((row.text(0)?, row.int(1)?)))
                .transpose()
            })
            .await?;
            // Post every month accrued in full up to `last` (by an earlier,
            // interrupted or concurrent run too) before reading the
            // balances of the next days, so a posting is always in the
            // balance of the days after its month, whoever posted it.
            if let Some(stop) = self.post_due_months(caller, account, steps, report, &mut refused).await? {
                return Ok(Some(stop));
            }
            let start = match &last {
                Some((day, _)) => calendar::next_day(calendar::parse_day("day", day)?)
                    .ok_or_else(|| ServiceError::Internal("no day after an accrual".into()))?,
                None => account.opened,
            };
            if start > as_of {
                return Ok(None);
            }
            let end = last_day_of_month(start).min(as_of);
            let mut days = Vec::new();
            let mut day = start;
            while day <= end {
                let next = calendar::next_day(day).ok_or_else(|| ServiceError::Internal("no next day".into()))?;
                let end_us = calendar::day_start_us(&self.zone, next)? - 1;
                let balance = self.ledger.balance_at(AccountId(account.id), end_us).await?;
                days.push((day, balance));
                day = next;
            }
            if !steps.take() {
                return Ok(Some(Stop::Budget));
            }
            match self.write_accruals(account, rate, last, days).await {
                Ok(written) => report.days_accrued += written,
                // Another run got there first; it will post what it accrued.
                // Another run (another node, or a write of an aborted
                // run still landing) accrued this account meanwhile: read
                // again and go on from where it got to. Each race means
                // that run made progress; still, give up after a few and
                // leave the account to it.
                Err(ServiceError::Conflict("interest_run_raced", _)) => {
                    races += 1;
                    if races >= RACES_MAX {
                        report.raced += 1;
                        return Ok(None);
                    }
                }
                Err(ServiceError::Refused(code, detail)) => {
                    fail(report, None, code, detail);
                    return Ok(None);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Writes a chunk of days (all in one month) in one transaction, after
    /// checking that the account's last accrual is still the one the chunk
    /// follows.
    async fn write_accruals(
        &self,
        account: &Candidate,
        rate: Rate,
        last: Option<(String, i64)>,
        days: Vec<(Day, i64)>,
    ) -> ServiceResult<u64> {
        let (id, direction, rate_text) = (account.id, account.direction, account.rate.clone());
        let now = now_us();
        sql::write(&*self.db, move |tx| {
            let current = tx
                .query_opt(
                    "SELECT day, carry FROM interest_accruals WHERE account_id = $1 ORDER BY day DESC LIMIT 1",
                    &[Value::Int(id)],
                )?
                .map(|row| Ok::<_, StoreError>((row.text(0)?, row.int(1)?)))
                .transpose()?;
            let raced = || ServiceError::Conflict("interest_run_raced", "another run accrued this account".into());
            if current != last {
                return Err(raced());
            }
            let mut carry = last.as_ref().map_or(0, |(_, carry)| *carry);
            for (day, balance) in &days {
                let base = base_of(direction, *balance);
                let accrual = accrue_day(base, rate, *day, carry).ok_or_else(|| {
                    ServiceError::Refused("interest_overflow", format!("the interest on {base} minor units overflows"))
                })?;
                carry = accrual.carry;
                let inserted = tx.execute(
                    "INSERT INTO interest_accruals (account_id, day, direction, balance_minor, rate, year_days, \
                     accrued_minor, carry, created_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (account_id, day) DO NOTHING",
                    &[
                        Value::Int(id),
                        Value::from(day.to_string()),
                        Value::from(direction),
                        Value::Int(*balance),
                        Value::from(rate_text.as_str()),
                        Value::Int(year_days(*day)),
                        Value::Int(accrual.accrued_minor),
                        Value::Int(accrual.carry),
                        Value::Int(now),
                    ],
                )?;
                if inserted == 0 {
                    return Err(raced());
                }
            }
            Ok(u64::try_from(days.len()).unwrap_or(u64::MAX))
        })
        .await
    }

    /// Posts every month of the account that is accrued to its last day and
    /// has no posting row yet.
    async fn post_due_months(
        &self,
        caller: &Caller,
        account: &Candidate,
        steps: &mut Steps,
        report: &mut RunReport,
        refused: &mut Vec<String>,
    ) -> ServiceResult<Option<Stop>> {
        let id = account.id;
        let currency = account.currency;
        let (months, expense) = sql::read(&*self.db, move |tx| {
            let months = tx
                .query(
                    "SELECT substr(a.day, 1, 7), CAST(SUM(a.accrued_minor) AS BIGINT), MIN(a.direction), MAX(a.day) \
                     FROM interest_accruals a WHERE a.account_id = $1 AND NOT EXISTS (SELECT 1 FROM \
                     interest_postings p WHERE p.account_id = a.account_id AND p.month = substr(a.day, 1, 7)) \
                     GROUP BY substr(a.day, 1, 7) ORDER BY 1",
                    &[Value::Int(id)],
                )?
                .iter()
                .map(|row| Ok::<_, StoreError>((row.text(0)?, row.int(1)?, row.text(2)?, row.text(3)?)))
                .collect::<Result<Vec<_>, _>>()?;
            let expense = crate::accounts::system_account(tx, "interest_expense", currency.code())?;
            Ok::<_, ServiceError>((months, expense))
        })
        .await?;
        for (month, amount_minor, direction, max_day) in months {
            let max_day = calendar::parse_day("day", &max_day)?;
            if max_day != last_day_of_month(max_day) || refused.contains(&month) {
                continue; // still accruing, or refused earlier in this run
            }
            let mut posting = PostingReport {
                account: id,
                month: month.clone(),
                direction: direction.clone(),
                amount: Amount::from_minor(amount_minor).format(currency),
                currency: currency.code().into(),
                transfer_id: None,
                replayed: false,
                overdraft: false,
            };
            if amount_minor > 0 {
                if !steps.take() {
                    return Ok(Some(Stop::Budget));
                }
                let transfer_id = posting_id(id, &month);
                let charge = direction == "charge";
                let (debit, credit) = if charge { (id, expense) } else { (expense, id) };
                let mut transfer = NewTransfer::single(
                    transfer_id,
                    AccountId(debit),
                    AccountId(credit),
                    Amount::from_minor(amount_minor),
                    currency,
                );
                transfer.kind = TransferKind::Interest;
                transfer.bank_debit = charge;
                transfer.description =
                    if charge { format!("Interest charged for {month}") } else { format!("Interest for {month}") };
                let draft = caller.audit(
                    "interest.post",
                    format!("account:{id}"),
                    json!({"account": id, "month": month, "direction": direction, "amount_minor": amount_minor,
                           "currency": currency.code(), "transfer": transfer_id.to_string(),
                           "customers": [account.customer]}),
                );
                let mut outcomes = self.ledger.submit_journaled(vec![transfer], Some(draft)).await?;
                match outcomes.pop() {
                    Some(Ok(created)) => {
                        posting.transfer_id = Some(transfer_id.to_string());
                        posting.replayed = created.replayed;
                        posting.overdraft = created.transfer.overdraft;
                    }
                    Some(Err(error)) => {
                        report.failures.push(RunFailure {
                            account: id,
                            month: Some(month.clone()),
                            code: error.code().into(),
                            detail: error.to_string(),
                        });
                        refused.push(month);
                        continue;
                    }
                    None => return Err(ServiceError::Internal("the ledger gave no outcome".into())),
                }
            }
            if !steps.take() {
                return Ok(Some(Stop::Budget));
            }
            let (direction, transfer_text, overdraft, now) =
                (direction.clone(), posting.transfer_id.clone(), posting.overdraft, now_us());
            let month_key = month.clone();
            sql::write(&*self.db, move |tx| {
                tx.execute(
                    "INSERT INTO interest_postings (account_id, month, direction, amount_minor, transfer_id, \
                     overdraft, posted_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (account_id, month) DO NOTHING",
                    &[
                        Value::Int(id),
                        Value::from(month_key.as_str()),
                        Value::from(direction.as_str()),
                        Value::Int(amount_minor),
                        Value::from(transfer_text.clone()),
                        Value::Int(i64::from(overdraft)),
                        Value::Int(now),
                    ],
                )
            })
            .await?;
            report.postings.push(posting);
        }
        Ok(None)
    }
}

/// The first instant (µs) after `now_us` at which the clock in `zone`
/// shows `run_at` (a time inside a DST gap runs when the gap ends).
pub fn next_run_us(zone: &jiff::tz::TimeZone, now_us: i64, run_at: (i8, i8)) -> ServiceResult<i64> {
    let today = calendar::day_of(zone, now_us);
    for day in [today, today.checked_add(1.day()).map_err(|e| ServiceError::Internal(e.to_string()))?] {
        let at = day
            .at(run_at.0, run_at.1, 0, 0)
            .to_zoned(zone.clone())
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .timestamp()
            .as_microsecond();
        if at > now_us {
            return Ok(at);
        }
    }
    Err(ServiceError::Internal("no next run time".into()))
}

fn until_next_run(bank: &Bank, run_at: (i8, i8)) -> ServiceResult<Duration> {
    let now = now_us();
    let at = next_run_us(&bank.zone, now, run_at)?;
    Ok(Duration::from_micros(u64::try_from(at - now).unwrap_or(0)))
}

/// Parses `HH:MM`.
pub fn parse_run_at(text: &str) -> Option<(i8, i8)> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i8 = hours.parse().ok()?;
    let minutes: i8 = minutes.parse().ok()?;
    ((0..24).contains(&hours) && (0..60).contains(&minutes)).then_some((hours, minutes))
}

/// Starts the schedule: every day at `run_at` (bank time), a run for the
/// day before. Every node may run it; the runs are idempotent.
pub fn spawn(bank: &crate::Bank) -> Vec<tokio::task::JoinHandle<()>> {
    let settings = &bank.settings.interest;
    if !settings.enabled {
        return Vec::new();
    }
    let Some(run_at) = parse_run_at(&settings.run_at) else {
        tracing::error!(run_at = %settings.run_at, "interest.run_at is not HH:MM; the interest schedule is off");
        return Vec::new();
    };
    let bank = bank.clone();
    vec![tokio::spawn(async move {
        loop {
            let wait = until_next_run(&bank, run_at).unwrap_or(Duration::from_secs(3600));
            tokio::time::sleep(wait).await;
            match bank.run_interest(&Caller::anonymous("cli"), RunForm::default()).await {
                Ok(report) => tracing::info!(
                    as_of = %report.as_of,
                    accounts = report.accounts,
                    days = report.days_accrued,
                    postings = report.postings.len(),
                    failures = report.failures.len(),
                    "interest run"
                ),
                Err(error) => tracing::error!(%error, "the interest run failed; the next run catches up"),
            }
            // Never twice in the same minute.
            tokio::time::sleep(Duration::from_secs(61)).await;
        }
    })]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rates_parse_exactly() {
        assert_eq!(Rate::parse("0.05").unwrap().units, 50_000_000_000);
        assert_eq!(Rate::parse("5").unwrap().units, 5_000_000_000_000);
        assert_eq!(Rate::parse("0.000000000001").unwrap().units, 1);
        assert_eq!(Rate::parse("10").unwrap().units, RATE_MAX_UNITS);
        for bad in ["", ".", "-0.05", "0.0000000000001", "10.01", "1e3", "0,05", "1.2.3"] {
            assert!(Rate::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_year_of_days_pays_the_annual_rate() {
        let mut carry = 0;
        let mut total = 0;
        let mut day: Day = "2023-01-01".parse().unwrap();
        let rate = Rate::parse("0.05").unwrap();
        while day.year() == 2023 {
            let accrual = accrue_day(100_000, rate, day, carry).unwrap();
            total += accrual.accrued_minor;
            carry = accrual.carry;
            day = calendar::next_day(day).unwrap();
        }
        // 1000.00 at 5 % for a whole year is exactly 50.00.
        assert_eq!((total, carry), (5_000, 0));
    }

    #[test]
    fn the_next_run_is_the_next_run_at_in_the_bank_zone() {
        let minsk = calendar::zone("Europe/Minsk").unwrap();
        // 2026-03-01 00:30 in Minsk (UTC+3) is 2026-02-28T21:30Z.
        let now = calendar::day_start_us(&minsk, "2026-03-01".parse().unwrap()).unwrap() + 30 * 60 * 1_000_000;
        let at = next_run_us(&minsk, now, (1, 0)).unwrap();
        assert_eq!(at - now, 30 * 60 * 1_000_000);
        // Just after: tomorrow at 01:00.
        let later = next_run_us(&minsk, at, (1, 0)).unwrap();
        assert_eq!(later - at, 24 * 3600 * 1_000_000);
        // Across a DST change (Kyiv, 2026-03-29 has 23 hours).
        let kyiv = calendar::zone("Europe/Kyiv").unwrap();
        let start = calendar::day_start_us(&kyiv, "2026-03-29".parse().unwrap()).unwrap();
        let first = next_run_us(&kyiv, start, (12, 0)).unwrap();
        assert_eq!(next_run_us(&kyiv, first, (12, 0)).unwrap() - first, 24 * 3600 * 1_000_000);
        assert_eq!(first - start, 11 * 3600 * 1_000_000, "03:00 never happened that night");
    }

    #[test]
    fn run_at_is_hh_mm() {
        assert_eq!(parse_run_at("01:00"), Some((1, 0)));
        assert_eq!(parse_run_at("23:59"), Some((23, 59)));
        for bad in ["24:00", "1:00", "01:60", "", "0100"] {
            assert!(parse_run_at(bad).is_none(), "{bad}");
        }
    }
}
