//! Moving money: transfers (by account or phone), cash at the desk,
//! staff-initiated transfers, history; idempotency keys.
//!
//! Every movement goes through the ledger with its audit event, so the
//! transfer and its journal entry commit in one transaction. A request with
//! an `Idempotency-Key` gets a transfer id derived from (caller, route,
//! key): a retry, on any node, names the same transfer, and the ledger
//! answers it from the stored transfer without moving money again (the
//! response is rebuilt from that transfer, so it is the same response); a
//! retry whose transfer differs in any field is refused. The ledger keeps
//! transfers for ever, so the key is honoured for ever, and the retry costs
//! nothing beyond the ledger's own batch.

use kassa_core::ledger::{Created, NewTransfer, Transfer, TransferKind};
use kassa_core::money::{Amount, AmountPolicy, Currency};
use kassa_core::{AccountId, TransferId};
use kassa_store::sql::{self, Tx, Value};
use std::sync::Arc;

use kassa_store::{StoreError, now_us};
use serde_json::json;

use crate::accounts::{format_minor, resolve_account, system_account};
use crate::approvals::{ApprovalKind, HeldRequest};
use crate::country::FieldProblem;
use crate::limits::{self, DailyKind};
use crate::people::rfc3339;
use crate::{Bank, Caller, Page, Role, ServiceError, ServiceResult, crypto, page_cursor, page_limit};

#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct TransferForm {
    pub from_account: Option<String>,
    pub to_account: Option<String>,
    pub to_phone: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub description: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct CashForm {
    pub account: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub description: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferView {
    pub id: String,
    pub state: String,
    pub kind: String,
    pub amount: String,
    pub currency: String,
    pub debit_account: i64,
    pub credit_account: i64,
    pub description: String,
    pub created_at: String,
}

/// The staff console's filters over all transactions; empty text means
/// "any". Dates are `YYYY-MM-DD` in the bank's time zone, both inclusive;
/// an amount range is in `currency`'s units and needs it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct TransactionFilter {
    /// An account's number or id.
    pub account: Option<String>,
    pub kind: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub currency: Option<String>,
    pub min_amount: Option<String>,
    pub max_amount: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
    /// Leave out the ledger rows that post or void a pending transfer
    /// (a held withdrawal, say), whose own row then shows the outcome in
    /// its state: one line per operation, as a person reads it.
    #[serde(default)]
    pub one_line_per_operation: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Recipient {
    /// The first name and the initial of the last name: enough to confirm,
    /// not enough to learn who someone is.
    pub name: String,
    pub currency: String,
    pub account: String,
}

/// A history line: the transfer and, for the account asked about, which
/// way it went and the balance after it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HistoryItem {
    #[serde(flatten)]
    pub transfer: TransferView,
    pub direction: &'static str,
    pub balance_after: String,
}

pub fn transfer_view(transfer: &Transfer) -> TransferView {
    TransferView {
        id: transfer.id.to_string(),
        state: transfer.state.as_str().to_owned(),
        kind: transfer.kind.as_str().to_owned(),
        amount: transfer.amount.format(transfer.currency),
        currency: transfer.currency.code().to_owned(),
        debit_account: transfer.debit_account.0,
        credit_account: transfer.credit_account.0,
        description: transfer.description.clone(),
        created_at: rfc3339(transfer.created_at_us),
    }
}

/// A client's idempotency key, checked: 1–255 visible ASCII characters.
pub fn check_idempotency_key(key: &str) -> ServiceResult<()> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::invalid(
            "Idempotency-Key",
            "idempotency_key_invalid",
            "an Idempotency-Key is 1–255 visible ASCII characters",
        ));
    }
    Ok(())
}

/// The transfer id a (caller, route, key) names, the same on every node.
pub(crate) fn derived_id(scope: &str, key: &str, index: u8) -> TransferId {
    crypto::derived_transfer_id("kassa idempotency v1", &[scope, key, &index.to_string()])
}

pub(crate) fn new_id() -> ServiceResult<TransferId> {
    // A time-ordered id (UUIDv7 layout): milliseconds, then randomness.
    let random = crypto::random_bytes(10)?;
    let ms = u64::try_from(now_us() / 1000).unwrap_or(0);
    let mut bytes = [0_u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&random);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok(TransferId::from_bytes(bytes))
}

/// The id of the transfer a request asks for: derived from the caller, the
/// route and the Idempotency-Key when there is one, else new.
fn transfer_id(caller: &Caller, idempotency: Option<&Idempotency>) -> ServiceResult<TransferId> {
    match idempotency {
        Some(idempotency) => {
            check_idempotency_key(&idempotency.key)?;
            Ok(derived_id(&format!("{} {}", caller.actor(), idempotency.route), &idempotency.key, 0))
        }
        None => new_id(),
    }
}

/// Both sides hold the currency and differ.
fn check_pair(pair: &Pair, mismatch: String) -> ServiceResult<()> {
    if pair.debit.currency != pair.currency.code() || pair.credit.currency != pair.currency.code() {
        return Err(ServiceError::Refused("currency_mismatch", mismatch));
    }
    if pair.debit.id == pair.credit.id {
        return Err(ServiceError::Refused("same_account", "the two accounts are the same".into()));
    }
    Ok(())
}

/// An `Idempotency-Key` and the route it came to.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub key: String,
    /// The route, e.g. `POST /api/v1/transfers`.
    pub route: String,
}

struct Amounts {
    amount: Amount,
    currency: Currency,
}

fn parse_amount(problems: &mut Vec<FieldProblem>, amount: Option<&str>, currency: Option<&str>) -> Option<Amounts> {
    let currency = match Currency::from_code(currency.unwrap_or("")) {
        Ok(currency) => currency,
        Err(error) => {
            problems.push(FieldProblem { field: "currency".into(), code: error.code(), detail: error.to_string() });
            return None;
        }
    };
    match Amount::parse(amount.unwrap_or(""), currency, AmountPolicy::Positive) {
        Ok(amount) => Some(Amounts { amount, currency }),
        Err(error) => {
            problems.push(FieldProblem { field: "amount".into(), code: error.code(), detail: error.to_string() });
            None
        }
    }
}

fn check_description(problems: &mut Vec<FieldProblem>, description: Option<&str>) -> String {
    let text = description.unwrap_or("").trim().to_owned();
    if text.chars().count() > 140 || text.chars().any(char::is_control) {
        problems.push(FieldProblem {
            field: "description".into(),
            code: "description_invalid",
            detail: "a description is at most 140 characters, without control characters".into(),
        });
    }
    text
}

/// An account as the transfer rules need it: what never changes about an
/// account once it exists (its id, owner and currency; its number too), so
/// it may be cached. Whether it is open or blocked is the ledger's to check,
/// inside the batch that moves the money.
#[derive(Clone, Debug)]
pub(crate) struct Side {
    pub(crate) id: i64,
    pub(crate) owner: Option<i64>,
    pub(crate) currency: String,
}

/// Accounts by the reference a client gave (an id or a number), per
/// process: a payment between known accounts needs no database read before
/// the ledger's batch. Only accounts that exist are kept; they are never
/// deleted and their facts never change, so the cache cannot go stale.
#[derive(Debug, Default)]
pub(crate) struct SideCache(std::sync::Mutex<std::collections::HashMap<String, Side>>);

/// Entries before the cache starts over (a few MB).
const SIDE_CACHE_MAX: usize = 100_000;

impl SideCache {
    fn get(&self, reference: &str) -> Option<Side> {
        self.0.lock().ok()?.get(reference.trim()).cloned()
    }

    fn put(&self, reference: &str, side: Side) {
        if let Ok(mut sides) = self.0.lock() {
            if sides.len() >= SIDE_CACHE_MAX {
                sides.clear();
            }
            sides.insert(reference.trim().to_owned(), side);
        }
    }
}

pub(crate) fn side(tx: &mut dyn Tx, id: i64) -> Result<Option<Side>, StoreError> {
    tx.query_opt(
        "SELECT a.id, d.customer_id, a.currency FROM accounts a LEFT JOIN account_details d ON d.account_id = a.id \
         WHERE a.id = $1",
        &[Value::Int(id)],
    )?
    .map(|row| Ok(Side { id: row.int(0)?, owner: row.opt_int(1)?, currency: row.text(2)? }))
    .transpose()
}

/// The account a reference (id or number) names, if any.
fn find_side(tx: &mut dyn Tx, cache: &SideCache, field: &str, reference: &str) -> Result<Option<Side>, ServiceError> {
    if let Some(side) = cache.get(reference) {
        return Ok(Some(side));
    }
    let found = match resolve_account(tx, field, reference)? {
        Some(id) => side(tx, id)?,
        None => None,
    };
    if let Some(found) = &found {
        cache.put(reference, found.clone());
    }
    Ok(found)
}

/// Two accounts and what is to move between them.
struct Pair {
    debit: Side,
    credit: Side,
    amount: Amount,
    currency: Currency,
    description: String,
}

/// One transfer a service is about to ask the ledger for.
struct Movement {
    /// The journal's action, such as `transfer.create`.
    action: &'static str,
    debit: i64,
    credit: i64,
    amount: Amount,
    currency: Currency,
    kind: TransferKind,
    description: String,
    /// The request as the journal and the idempotency check see it.
    request: serde_json::Value,
    /// The daily limit it counts against (of the debit account), if any.
    usage: Option<DailyKind>,
}

impl Bank {
    /// The accounts `references` name: from the cache when it knows them
    /// all, else with one read.
    async fn sides(&self, references: Vec<(&'static str, String)>) -> ServiceResult<Vec<Option<Side>>> {
        let cached: Option<Vec<Side>> = references.iter().map(|(_, reference)| self.sides.get(reference)).collect();
        if let Some(cached) = cached {
            return Ok(cached.into_iter().map(Some).collect());
        }
        let cache = Arc::clone(&self.sides);
        sql::read(&*self.db, move |tx| {
            references.iter().map(|(field, reference)| find_side(tx, &cache, field, reference)).collect()
        })
        .await
    }

    /// Asks the ledger for one transfer, journaled. With an idempotency key
    /// the transfer's id is derived from (caller, route, key), so a retry on
    /// any node is answered from the transfer already recorded.
    async fn move_money(
        &self,
        caller: &Caller,
        idempotency: Option<Idempotency>,
        movement: Movement,
    ) -> ServiceResult<serde_json::Value> {
        let id = transfer_id(caller, idempotency.as_ref())?;
        let day = match movement.usage {
            Some(kind) => Some((
                self.reserve_daily(
                    caller,
                    movement.action,
                    &format!("transfer:{id}"),
                    movement.debit,
                    kind,
                    movement.amount,
                    movement.currency,
                    &movement.request,
                )
                .await?,
                kind,
            )),
            None => None,
        };
        let (debit, used) = (movement.debit, movement.amount.minor());
        let asked = format!("{} {}", movement.amount.format(movement.currency), movement.currency.code());
        let mut transfer = NewTransfer::single(
            id,
            AccountId(movement.debit),
            AccountId(movement.credit),
            movement.amount,
            movement.currency,
        );
        transfer.kind = movement.kind;
        transfer.description = movement.description.clone();
        let draft = caller.audit(movement.action, format!("transfer:{id}"), movement.request);
        let result = self.submit_created(transfer, draft).await;
        // A refusal, or a retry answered from the first transfer, gives the
        // reservation back (the first one counted it).
        if let Some((day, kind)) = day
            && result.as_ref().map_or(true, |created| created.replayed)
        {
            let _ = sql::write(&*self.db, move |tx| limits::release(tx, debit, kind, &day, used)).await;
        }
        match result {
            Ok(done) => Ok(json!(transfer_view(&done.transfer))),
            // The ledger counts in minor units; a person reads the amount.
            Err(ServiceError::Refused("insufficient_funds", _)) => Err(ServiceError::Refused(
                "insufficient_funds",
                format!("insufficient funds: the account does not have {asked} available"),
            )),
            // Only a derived id can be reused: the same key, another request.
            Err(ServiceError::Conflict("idempotency_key_reused", _)) => Err(ServiceError::Refused(
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request".into(),
            )),
            Err(error) => Err(error),
        }
    }

    /// A transfer between two accounts of the transfer's currency, checked
    /// and journaled as `action`.
    async fn move_between(
        &self,
        caller: &Caller,
        idempotency: Option<Idempotency>,
        action: &'static str,
        pair: Pair,
        mismatch: String,
    ) -> ServiceResult<serde_json::Value> {
        check_pair(&pair, mismatch)?;
        let Pair { debit, credit, amount, currency, description } = pair;
        let request = json!({"from": debit.id, "to": credit.id, "amount_minor": amount.minor(), "currency": currency.code(),
                             "description": description});
        let kind = TransferKind::Transfer;
        let usage = Some(DailyKind::Transfer);
        let movement = Movement {
            action,
            debit: debit.id,
            credit: credit.id,
            amount,
            currency,
            kind,
            description,
            request,
            usage,
        };
        self.move_money(caller, idempotency, movement).await
    }

    /// Reserves `amount` of `account`'s daily `kind` limit for today (the
    /// bank's day) and returns the day. Over the limit, the refusal is
    /// journaled as `action` with outcome `daily_limit_exceeded`, and the
    /// answer names the limit and what is left of it today.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn reserve_daily(
        &self,
        caller: &Caller,
        action: &str,
        subject: &str,
        account: i64,
        kind: DailyKind,
        amount: Amount,
        currency: Currency,
        request: &serde_json::Value,
    ) -> ServiceResult<String> {
        let day = self.today().to_string();
        let mut draft = caller.audit(action, subject, request.clone());
        draft.outcome = "daily_limit_exceeded".into();
        let refused = self.usage.reserve(&*self.db, account, kind, day.clone(), amount.minor(), draft).await?;
        match refused {
            Ok(()) => Ok(day),
            Err(over) => Err(ServiceError::Refused(
                "daily_limit_exceeded",
                format!(
                    "over the {} limit of {} {}: {} {} is left today",
                    over.kind.limit_name(),
                    format_minor(i128::from(over.limit), currency),
                    currency.code(),
                    format_minor(i128::from(over.left), currency),
                    currency.code()
                ),
            )),
        }
    }

    pub(crate) async fn submit_created(
        &self,
        transfer: NewTransfer,
        draft: kassa_store::AuditDraft,
    ) -> ServiceResult<Created> {
        let mut outcomes = self.ledger.submit_journaled(vec![transfer], Some(draft)).await?;
        match outcomes.pop() {
            Some(Ok(created)) => Ok(created),
            Some(Err(error)) => Err(error.into()),
            None => Err(ServiceError::Internal("the ledger gave no outcome".into())),
        }
    }

    /// A customer pays from an own account to an account (by id or number)
    /// or to a phone number's default account in the currency.
    pub async fn transfer(
        &self,
        caller: &Caller,
        form: TransferForm,
        idempotency: Option<Idempotency>,
    ) -> ServiceResult<serde_json::Value> {
        let me = caller.customer()?;
        let mut problems = Vec::new();
        let from = form.from_account.clone().filter(|f| !f.trim().is_empty());
        if from.is_none() {
            problems.push(FieldProblem {
                field: "from_account".into(),
                code: "field_required",
                detail: "from_account is required".into(),
            });
        }
        let to_phone = match (&form.to_account, &form.to_phone) {
            (Some(_), Some(_)) | (None, None) => {
                problems.push(FieldProblem {
                    field: "to_account".into(),
                    code: "recipient_required",
                    detail: "give exactly one of to_account and to_phone".into(),
                });
                None
            }
            (None, Some(phone)) => self.profile.normalize_phone("to_phone", phone).map_err(|p| problems.push(p)).ok(),
            (Some(_), None) => None,
        };
        let amounts = parse_amount(&mut problems, form.amount.as_deref(), form.currency.as_deref());
        let description = check_description(&mut problems, form.description.as_deref());
        let (Some(from), Some(Amounts { amount, currency })) = (from, amounts) else {
            return Err(ServiceError::Invalid(problems));
        };
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let not_found =
            || ServiceError::NotFound("recipient_not_found", "no account to pay was found for that recipient");
        let (debit, credit) = match (form.to_account.clone(), to_phone) {
            (Some(to), _) => {
                let mut found = self.sides(vec![("from_account", from), ("to_account", to)]).await?.into_iter();
                (found.next().flatten(), found.next().flatten())
            }
            (None, Some(phone)) => {
                let cache = Arc::clone(&self.sides);
                sql::read(&*self.db, move |tx| {
                    let from = find_side(tx, &cache, "from_account", &from)?;
                    let to = tx
                        .query_opt(
                            "SELECT d.account_id FROM customers c JOIN account_details d ON d.customer_id = c.id \
                             WHERE c.phone = $1 AND d.currency = $2 AND d.is_default = 1",
                            &[Value::from(&phone), Value::from(currency.code())],
                        )?
                        .map(|row| row.int(0))
                        .transpose()?
                        .and_then(|id| side(tx, id).transpose())
                        .transpose()?;
                    Ok::<_, ServiceError>((from, to))
                })
                .await?
            }
            (None, None) => return Err(ServiceError::Invalid(problems)),
        };
        let debit = debit
            .filter(|side| side.owner == Some(me))
            .ok_or(ServiceError::NotFound("account_not_found", "no such account of yours"))?;
        let credit = credit.filter(|side| side.owner.is_some()).ok_or_else(not_found)?;
        let mismatch =
            format!("both accounts must hold {}; use an exchange between your own accounts", currency.code());
        let pair = Pair { debit, credit, amount, currency, description };
        self.move_between(caller, idempotency, "transfer.create", pair, mismatch).await
    }

    /// Shows whose default account a phone number pays, masked. Limited per
    /// customer (`recipient_lookups_max` per `recipient_window_s`, counted
    /// on every node) and journaled, refusals included.
    pub async fn recipient(&self, caller: &Caller, phone: &str, currency: &str) -> ServiceResult<Recipient> {
        let me = caller.customer()?;
        let phone = self.profile.normalize_phone("phone", phone).map_err(|p| ServiceError::Invalid(vec![p]))?;
        let currency = Currency::from_code(currency).map_err(|error| ServiceError::money("currency", &error))?;
        let draft = caller.audit("recipient.lookup", format!("phone:{phone}"), json!({"currency": currency.code()}));
        let (max, window_s) = (self.settings.recipient_lookups_max, self.settings.recipient_window_s);
        let now = now_us();
        let (found, retry_after_s) = sql::write(&*self.db, move |tx| {
            let retry_after_s =
                crate::limits::count_use(tx, &format!("recipient-lookup customer:{me}"), max, window_s, now)?;
            let found = if retry_after_s.is_some() {
                None
            } else {
                tx.query_opt(
                    "SELECT c.first_name, c.last_name, a.number FROM customers c JOIN account_details d \
                     ON d.customer_id = c.id JOIN accounts a ON a.id = d.account_id \
                     WHERE c.phone = $1 AND d.currency = $2 AND d.is_default = 1 AND c.status = 'active'",
                    &[Value::from(&phone), Value::from(currency.code())],
                )?
                .map(|row| Ok::<_, StoreError>((row.text(0)?, row.text(1)?, row.text(2)?)))
                .transpose()?
            };
            let mut draft = draft.clone();
            draft.outcome = match (&retry_after_s, &found) {
                (Some(_), _) => "too_many_attempts",
                (None, None) => "recipient_not_found",
                (None, Some(_)) => "ok",
            }
            .into();
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            Ok::<_, ServiceError>((found, retry_after_s))
        })
        .await?;
        if let Some(retry_after_s) = retry_after_s {
            return Err(ServiceError::Throttled { retry_after_s });
        }
        let (first, last, number) = found
            .ok_or(ServiceError::NotFound("recipient_not_found", "no account to pay was found for that recipient"))?;
        let initial: String = last.chars().take(1).collect();
        let tail: String = number.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
        Ok(Recipient {
            name: format!("{first} {initial}."),
            currency: currency.code().into(),
            account: format!("•••• {tail}"),
        })
    }

    /// A teller takes cash into an account (`deposit`) or pays it out
    /// (`withdrawal`), against the bank's cash account in that currency.
    pub async fn cash(
        &self,
        caller: &Caller,
        deposit: bool,
        form: CashForm,
        idempotency: Option<Idempotency>,
    ) -> ServiceResult<serde_json::Value> {
        caller.staff(Role::Teller)?;
        let mut problems = Vec::new();
        let account = form.account.clone().filter(|a| !a.trim().is_empty());
        if account.is_none() {
            problems.push(FieldProblem {
                field: "account".into(),
                code: "field_required",
                detail: "account is required".into(),
            });
        }
        let amounts = parse_amount(&mut problems, form.amount.as_deref(), form.currency.as_deref());
        let description = check_description(&mut problems, form.description.as_deref());
        let (Some(account), Some(Amounts { amount, currency })) = (account, amounts) else {
            return Err(ServiceError::Invalid(problems));
        };
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let cache = Arc::clone(&self.sides);
        let (customer, cash) = sql::read(&*self.db, move |tx| {
            let customer = find_side(tx, &cache, "account", &account)?
                .filter(|side| side.owner.is_some())
                .ok_or(ServiceError::NotFound("account_not_found", "no such customer account"))?;
            let cash = system_account(tx, "cash", currency.code())?;
            Ok::<_, ServiceError>((customer, cash))
        })
        .await?;
        if customer.currency != currency.code() {
            return Err(ServiceError::Refused("currency_mismatch", format!("the account holds {}", customer.currency)));
        }
        let (debit, credit, kind) = if deposit {
            (cash, customer.id, TransferKind::Deposit)
        } else {
            (customer.id, cash, TransferKind::Withdrawal)
        };
        let action = if deposit { "cash.deposit" } else { "cash.withdrawal" };
        let request = json!({"account": customer.id, "amount_minor": amount.minor(), "currency": currency.code(),
                             "description": description, "customers": customer.owner.into_iter().collect::<Vec<_>>()});
        let usage = (!deposit).then_some(DailyKind::Withdrawal);
        if !deposit && self.needs_approval(ApprovalKind::CashWithdrawal, amount) {
            let hold_id = transfer_id(caller, idempotency.as_ref())?;
            let held = HeldRequest {
                kind: ApprovalKind::CashWithdrawal,
                debit,
                credit,
                amount,
                currency,
                description,
                hold_id,
                usage,
                request,
            };
            return Ok(json!(self.request_approval(caller, held).await?));
        }
        let movement = Movement { action, debit, credit, amount, currency, kind, description, request, usage };
        self.move_money(caller, idempotency, movement).await
    }

    /// The id of the account `reference` (an id, an account number or a
    /// card number) names: one of the caller's own for a customer, any
    /// customer's for staff; `account_not_found` otherwise.
    pub async fn account_id_by_reference(
        &self,
        caller: &Caller,
        field: &'static str,
        reference: &str,
    ) -> ServiceResult<i64> {
        let owner = self.visible_owner(caller)?;
        let found = self.sides(vec![(field, reference.to_owned())]).await?.into_iter().next().flatten();
        match found {
            Some(side) if side.owner.is_some() && owner.is_none_or(|owner| side.owner == Some(owner)) => Ok(side.id),
            _ => Err(ServiceError::NotFound("account_not_found", "no such account")),
        }
    }

    /// The customer's default account: the one marked default, else the
    /// first active one.
    pub async fn default_account(&self, caller: &Caller) -> ServiceResult<i64> {
        let accounts = self.accounts(caller, None, None, Some(200)).await?.items;
        accounts
            .iter()
            .find(|view| view.is_default && view.status == "active")
            .or_else(|| accounts.iter().find(|view| view.status == "active"))
            .map(|view| view.id)
            .ok_or(ServiceError::NotFound("account_not_found", "you have no active account"))
    }

    /// A customer puts cash into a registered terminal (`deposit`) or takes
    /// it out, against the terminal's own cash account in the account's
    /// currency. Withdrawals count against the account's daily withdrawal
    /// limit, as at the desk.
    pub async fn terminal_cash(
        &self,
        caller: &Caller,
        terminal: i64,
        account: i64,
        deposit: bool,
        amount: &str,
        idempotency: Option<Idempotency>,
    ) -> ServiceResult<serde_json::Value> {
        caller.customer()?;
        let view = self.account(caller, account).await?;
        let mut problems = Vec::new();
        let Some(Amounts { amount, currency }) = parse_amount(&mut problems, Some(amount), Some(&view.currency)) else {
            return Err(ServiceError::Invalid(problems));
        };
        let cash = self.terminal_cash_account(terminal, currency.code()).await?;
        let (debit, credit, kind) =
            if deposit { (cash, account, TransferKind::Deposit) } else { (account, cash, TransferKind::Withdrawal) };
        let action = if deposit { "terminal.deposit" } else { "terminal.withdrawal" };
        let request = json!({"account": account, "terminal": terminal, "amount_minor": amount.minor(),
                             "currency": currency.code(), "customers": [view.owner]});
        let usage = (!deposit).then_some(DailyKind::Withdrawal);
        let description = format!("terminal {terminal}");
        let movement = Movement { action, debit, credit, amount, currency, kind, description, request, usage };
        self.move_money(caller, idempotency, movement).await
    }

    /// Staff move money between two customer accounts (a correction, an
    /// instruction given at the desk).
    pub async fn staff_transfer(
        &self,
        caller: &Caller,
        form: TransferForm,
        idempotency: Option<Idempotency>,
    ) -> ServiceResult<serde_json::Value> {
        caller.staff(Role::Teller)?;
        let mut problems = Vec::new();
        let amounts = parse_amount(&mut problems, form.amount.as_deref(), form.currency.as_deref());
        let description = check_description(&mut problems, form.description.as_deref());
        let (Some(from), Some(to), Some(Amounts { amount, currency })) =
            (form.from_account.clone(), form.to_account.clone(), amounts)
        else {
            problems.push(FieldProblem {
                field: "to_account".into(),
                code: "field_required",
                detail: "from_account, to_account, amount and currency are required".into(),
            });
            return Err(ServiceError::Invalid(problems));
        };
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let customer_account = |side: Option<Side>| {
            side.filter(|side| side.owner.is_some())
                .ok_or(ServiceError::NotFound("account_not_found", "no such customer account"))
        };
        let mut found = self.sides(vec![("from_account", from), ("to_account", to)]).await?.into_iter();
        let debit = customer_account(found.next().flatten())?;
        let credit = customer_account(found.next().flatten())?;
        let mismatch = "both accounts must hold the transfer's currency".to_owned();
        let pair = Pair { debit, credit, amount, currency, description };
        if self.needs_approval(ApprovalKind::StaffTransfer, amount) {
            check_pair(&pair, mismatch)?;
            let Pair { debit, credit, amount, currency, description } = pair;
            let request = json!({"from": debit.id, "to": credit.id, "amount_minor": amount.minor(),
                                 "currency": currency.code(), "description": description,
                                 "customers": ([debit.owner, credit.owner].into_iter().flatten().collect::<Vec<_>>())});
            let held = HeldRequest {
                kind: ApprovalKind::StaffTransfer,
                debit: debit.id,
                credit: credit.id,
                amount,
                currency,
                description,
                hold_id: transfer_id(caller, idempotency.as_ref())?,
                usage: Some(DailyKind::Transfer),
                request,
            };
            return Ok(json!(self.request_approval(caller, held).await?));
        }
        self.move_between(caller, idempotency, "staff.transfer", pair, mismatch).await
    }

    /// An account's history, newest first.
    pub async fn history(
        &self,
        caller: &Caller,
        account: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<Page<HistoryItem>> {
        let view = self.account(caller, account).await?;
        let limit = page_limit(limit)?;
        let before = page_cursor(cursor)?;
        let currency =
            Currency::from_code(&view.currency).map_err(|error| ServiceError::Internal(error.to_string()))?;
        let transfers = self.ledger.history(AccountId(account), before, limit).await?;
        let next_cursor =
            (transfers.len() == limit as usize).then(|| transfers.last().map(|t| t.seq.to_string())).flatten();
        let items = transfers
            .iter()
            .map(|transfer| {
                let debit = transfer.debit_account.0 == account;
                HistoryItem {
                    transfer: transfer_view(transfer),
                    direction: if debit { "debit" } else { "credit" },
                    balance_after: format_minor(
                        i128::from(if debit { transfer.debit_balance_after } else { transfer.credit_balance_after }),
                        currency,
                    ),
                }
            })
            .collect();
        Ok(Page { items, next_cursor })
    }

    /// All transactions, newest first, for staff; optionally one account's
    /// or one kind's.
    pub async fn transactions(
        &self,
        caller: &Caller,
        account: Option<i64>,
        kind: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<Page<TransferView>> {
        let filter = TransactionFilter {
            kind: kind.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
            limit,
            ..TransactionFilter::default()
        };
        self.find_transactions(caller, account, filter).await
    }

    /// All transactions with every filter the staff console offers: an
    /// account (by id here, or by number or id in `filter.account`), a
    /// kind, a date range in the bank's time zone (inclusive) and an
    /// amount range in one currency. Every bad filter is named at once.
    pub async fn find_transactions(
        &self,
        caller: &Caller,
        account: Option<i64>,
        filter: TransactionFilter,
    ) -> ServiceResult<Page<TransferView>> {
        caller.staff(Role::Teller)?;
        let limit = page_limit(filter.limit)?;
        let before = page_cursor(filter.cursor.as_deref())?.unwrap_or(i64::MAX);
        let mut problems = Vec::new();
        let blank = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let kind = blank(&filter.kind);
        if kind.as_deref().is_some_and(|kind| TransferKind::parse(kind).is_none()) {
            problems.push(FieldProblem {
                field: "kind".into(),
                code: "kind_invalid",
                detail: "not a transfer kind".into(),
            });
        }
        let mut day = |field: &str, value: Option<String>| match value {
            None => None,
            Some(text) => match crate::calendar::parse_day(field, &text) {
                Ok(day) => Some(day),
                Err(ServiceError::Invalid(mut found)) => {
                    problems.append(&mut found);
                    None
                }
                Err(_) => None,
            },
        };
        let from = day("from", blank(&filter.from));
        let to = day("to", blank(&filter.to));
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            problems.push(FieldProblem {
                field: "to".into(),
                code: "range_invalid",
                detail: "to must not be before from".into(),
            });
        }
        let (min, max) = (blank(&filter.min_amount), blank(&filter.max_amount));
        let currency = match blank(&filter.currency) {
            None if min.is_some() || max.is_some() => {
                problems.push(FieldProblem {
                    field: "currency".into(),
                    code: "currency_required",
                    detail: "an amount range needs its currency".into(),
                });
                None
            }
            None => None,
            Some(code) => match Currency::from_code(&code) {
                Ok(currency) => Some(currency),
                Err(error) => {
                    problems.push(FieldProblem {
                        field: "currency".into(),
                        code: error.code(),
                        detail: error.to_string(),
                    });
                    None
                }
            },
        };
        let mut bound = |field: &str, value: Option<String>, default: i64| match (value, currency) {
            (Some(text), Some(currency)) => match Amount::parse(&text, currency, AmountPolicy::NonNegative) {
                Ok(amount) => amount.minor(),
                Err(error) => {
                    problems.push(FieldProblem { field: field.into(), code: error.code(), detail: error.to_string() });
                    default
                }
            },
            _ => default,
        };
        let min_minor = bound("min_amount", min, 0);
        let max_minor = bound("max_amount", max, i64::MAX);
        if min_minor > max_minor {
            problems.push(FieldProblem {
                field: "max_amount".into(),
                code: "range_invalid",
                detail: "the largest amount must not be below the smallest".into(),
            });
        }
        let start_us = match from {
            Some(from) => crate::calendar::day_start_us(&self.zone, from)?,
            None => i64::MIN,
        };
        let end_us = match to.map(crate::calendar::next_day) {
            Some(Some(after)) => crate::calendar::day_start_us(&self.zone, after)?,
            Some(None) | None => i64::MAX,
        };
        let reference = blank(&filter.account);
        let account = match (account, reference) {
            (Some(id), _) => Some(id),
            (None, None) => None,
            (None, Some(reference)) => {
                match sql::read(&*self.db, move |tx| resolve_account(tx, "account", &reference)).await {
                    Ok(Some(id)) => Some(id),
                    Err(ServiceError::Invalid(mut found)) => {
                        problems.append(&mut found);
                        None
                    }
                    Err(error) => return Err(error),
                    Ok(None) => {
                        problems.push(FieldProblem {
                            field: "account".into(),
                            code: "account_not_found",
                            detail: "no account has this number".into(),
                        });
                        None
                    }
                }
            }
        };
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let currency_code = currency.map(|c| c.code().to_owned()).unwrap_or_default();
        let one_line = filter.one_line_per_operation;
        let rows = sql::read(&*self.db, move |tx| {
            tx.query(
                "SELECT seq, id, debit_account_id, credit_account_id, amount, currency, kind, state, description, \
                 created_at_us FROM transfers WHERE seq < $1 AND ($2 = 0 OR debit_account_id = $2 OR credit_account_id = $2) \
                 AND ($3 = '' OR kind = $3) AND ($4 = '' OR currency = $4) AND amount >= $5 AND amount <= $6 \
                 AND created_at_us >= $7 AND created_at_us < $8 AND ($10 = 0 OR op NOT IN ('post', 'void')) \
                 ORDER BY seq DESC LIMIT $9",
                &[
                    Value::Int(before),
                    Value::Int(account.unwrap_or(0)),
                    Value::from(kind.clone().unwrap_or_default()),
                    Value::from(currency_code.clone()),
                    Value::Int(min_minor),
                    Value::Int(max_minor),
                    Value::Int(start_us),
                    Value::Int(end_us),
                    Value::Int(i64::from(limit)),
                    Value::Int(i64::from(one_line)),
                ],
            )
        })
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last_seq = None;
        for row in &rows {
            let currency =
                Currency::from_code(&row.text(5)?).map_err(|error| ServiceError::Internal(error.to_string()))?;
            let id: [u8; 16] = row
                .blob(1)?
                .try_into()
                .map_err(|_| ServiceError::Internal("a stored transfer id is not 16 bytes".into()))?;
            last_seq = Some(row.int(0)?);
            items.push(TransferView {
                id: TransferId::from_bytes(id).to_string(),
                debit_account: row.int(2)?,
                credit_account: row.int(3)?,
                amount: Amount::from_minor(row.int(4)?).format(currency),
                currency: currency.code().into(),
                kind: row.text(6)?,
                state: row.text(7)?,
                description: row.text(8)?,
                created_at: rfc3339(row.int(9)?),
            });
        }
        let next_cursor = (items.len() == limit as usize).then(|| last_seq.map(|s| s.to_string())).flatten();
        Ok(Page { items, next_cursor })
    }
}
