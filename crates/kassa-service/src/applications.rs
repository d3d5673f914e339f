//! Applications: a customer asks for a credit card or a higher limit; a
//! manager approves (setting the limit) or rejects with a reason.
//!
//! An application is decided once: the decision locks the row with
//! `UPDATE … WHERE status = 'submitted'`, so two managers approving at the
//! same moment open one card — the second finds the application decided.
//! Approving a credit card opens the card account with the decided limit in
//! the decision's own transaction (journaled `account.open` and
//! `application.approve`); a rejection changes nothing but the application.

use kassa_core::money::{Amount, AmountPolicy, Currency};
use kassa_store::sql::{self, Row, Tx, Value};
use kassa_store::{StoreError, now_us};
use serde_json::json;

use crate::accounts::{Consent, NewAccount, format_minor, open_in_tx, resolve_account};
use crate::people::rfc3339;
use crate::{Bank, Caller, Page, Role, ServiceError, ServiceResult, page_cursor, page_limit};

/// The largest credit limit an application may ask for or be granted, in
/// major units of any currency (a bound, not a policy: managers decide).
const CREDIT_LIMIT_MAX_MAJOR: i64 = 1_000_000;

/// A customer's application form.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ApplicationForm {
    /// `credit_card` (a new card) or `credit_limit` (a higher limit on an
    /// own credit card).
    pub kind: Option<String>,
    /// The limit asked for, a decimal string in the card's currency.
    pub requested_limit: Option<String>,
    /// credit_card: the card's currency.
    pub currency: Option<String>,
    /// credit_limit: the credit card (id, account number or card number).
    pub account: Option<String>,
    /// credit_card: the product code (default: the first credit-card
    /// product), the embossed name, a nickname, the consents.
    pub product: Option<String>,
    pub holder_name: Option<String>,
    pub nickname: Option<String>,
    pub consents: Option<Vec<Consent>>,
}

/// A manager's decision.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct DecisionForm {
    /// Approving: the limit granted (decimal string in the currency).
    pub credit_limit: Option<String>,
    /// Rejecting: why (shown to the customer).
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ApplicationQuery {
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApplicationView {
    pub id: i64,
    pub customer: i64,
    pub kind: String,
    pub status: String,
    pub currency: String,
    /// The card: for a credit_limit application, the card it is for; for a
    /// credit_card application, the card opened on approval.
    pub account: Option<i64>,
    pub requested_limit: String,
    pub decided_limit: Option<String>,
    pub reason: Option<String>,
    pub decided_by: Option<i64>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

const COLUMNS: &str = "id, customer_id, kind, status, currency, account_id, requested_limit, decided_limit, reason, \
     decided_by, created_at_us, decided_at_us, product_id, holder_name, nickname, consents";

fn view_from_row(row: &Row) -> Result<ApplicationView, StoreError> {
    let currency_code = row.text(4)?;
    let currency = Currency::from_code(&currency_code).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    Ok(ApplicationView {
        id: row.int(0)?,
        customer: row.int(1)?,
        kind: row.text(2)?,
        status: row.text(3)?,
        currency: currency_code,
        account: row.opt_int(5)?,
        requested_limit: format_minor(i128::from(row.int(6)?), currency),
        decided_limit: row.opt_int(7)?.map(|limit| format_minor(i128::from(limit), currency)),
        reason: row.opt_text(8)?,
        decided_by: row.opt_int(9)?,
        created_at: rfc3339(row.int(10)?),
        decided_at: row.opt_int(11)?.map(rfc3339),
    })
}

fn read(tx: &mut dyn Tx, id: i64) -> Result<Option<(ApplicationView, Row)>, StoreError> {
    tx.query_opt(&format!("SELECT {COLUMNS} FROM applications WHERE id = $1"), &[Value::Int(id)])?
        .map(|row| Ok((view_from_row(&row)?, row)))
        .transpose()
}

fn parse_limit(field: &str, text: Option<&str>, currency: Currency) -> ServiceResult<Amount> {
    let amount = Amount::parse(text.unwrap_or("").trim(), currency, AmountPolicy::Positive)
        .map_err(|error| ServiceError::invalid(field, error.code(), error.to_string()))?;
    let max = Amount::parse(&CREDIT_LIMIT_MAX_MAJOR.to_string(), currency, AmountPolicy::Positive)
        .map_err(|error| ServiceError::Internal(error.to_string()))?;
    if amount.minor() > max.minor() {
        return Err(ServiceError::invalid(
            field,
            "credit_limit_too_large",
            format!("a credit limit is at most {}", max.format(currency)),
        ));
    }
    Ok(amount)
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("application_not_found", "no such application")
}

/// `application_pending` when an application of `kind` by the row named
/// by `column` (`customer_id` or `account_id`) waits for a decision.
fn refuse_if_pending(tx: &mut dyn Tx, column: &str, id: i64, kind: &str, message: &str) -> ServiceResult<()> {
    let pending = tx.query_opt(
        &format!("SELECT 1 FROM applications WHERE {column} = $1 AND kind = $2 AND status = 'submitted'"),
        &[Value::Int(id), Value::from(kind)],
    )?;
    match pending {
        Some(_) => Err(ServiceError::Conflict("application_pending", message.to_owned())),
        None => Ok(()),
    }
}

impl Bank {
    /// A customer applies for a credit card or a higher limit on one. One
    /// application of a kind (per card, for limits) may wait at a time.
    pub async fn apply(&self, caller: &Caller, form: ApplicationForm) -> ServiceResult<ApplicationView> {
        let customer = caller.customer()?;
        let kind = form.kind.clone().unwrap_or_default();
        let now = now_us();
        let caller = caller.clone();
        match kind.as_str() {
            "credit_card" => {
                let currency = Currency::from_code(form.currency.as_deref().unwrap_or(""))
                    .map_err(|error| ServiceError::invalid("currency", error.code(), error.to_string()))?;
                let requested = parse_limit("requested_limit", form.requested_limit.as_deref(), currency)?;
                let holder_name = match form.holder_name.as_deref() {
                    Some(text) if !text.trim().is_empty() => Some(
                        crate::cards::check_holder_name(text)
                            .map_err(|problem| ServiceError::Invalid(vec![problem]))?,
                    ),
                    _ => None,
                };
                let nickname = form.nickname.clone().unwrap_or_default().trim().to_owned();
                if nickname.chars().count() > 64 || nickname.chars().any(char::is_control) {
                    return Err(ServiceError::invalid(
                        "nickname",
                        "nickname_invalid",
                        "a nickname is at most 64 characters",
                    ));
                }
                let consents = form.consents.clone().unwrap_or_default();
                let product_code = form.product.clone();
                sql::write(&*self.db, move |tx| {
                    tx.execute(
                        "UPDATE customers SET version = version + 1 WHERE id = $1 AND status = 'active'",
                        &[Value::Int(customer)],
                    )?;
                    let product = crate::accounts::offered_product(
                        tx,
                        "credit_card",
                        product_code.as_deref(),
                        currency,
                        &consents,
                    )?;
                    let (product_id, needed) = (product.id, product.consents);
                    refuse_if_pending(
                        tx,
                        "customer_id",
                        customer,
                        "credit_card",
                        "a credit-card application of yours is already waiting for a decision",
                    )?;
                    // The embossed name is settled now, so an approval cannot
                    // fail on it later.
                    let holder_name = crate::cards::holder_name_for(tx, customer, holder_name.as_deref())?;
                    let id = tx
                        .query_one(
                            "INSERT INTO applications (customer_id, kind, product_id, currency, requested_limit, \
                             holder_name, nickname, consents, status, created_at_us) \
                             VALUES ($1, 'credit_card', $2, $3, $4, $5, $6, $7, 'submitted', $8) RETURNING id",
                            &[
                                Value::Int(customer),
                                Value::Int(product_id),
                                Value::from(currency.code()),
                                Value::Int(requested.minor()),
                                Value::from(&holder_name),
                                Value::from(&nickname),
                                Value::from(serde_json::to_string(&needed).unwrap_or_default()),
                                Value::Int(now),
                            ],
                        )?
                        .int(0)?;
                    let draft = caller.audit(
                        "application.submit",
                        format!("application:{id}"),
                        json!({"kind": "credit_card", "currency": currency.code(),
                               "requested_limit_minor": requested.minor(), "customers": [customer]}),
                    );
                    sql::journal(tx, now, &[draft])?;
                    Ok(read(tx, id)?.ok_or_else(not_found)?.0)
                })
                .await
            }
            "credit_limit" => {
                let reference = form
                    .account
                    .clone()
                    .filter(|a| !a.trim().is_empty())
                    .ok_or_else(|| ServiceError::invalid("account", "field_required", "name the credit card"))?;
                let requested_text = form.requested_limit.clone();
                sql::write(&*self.db, move |tx| {
                    let account = resolve_account(tx, "account", &reference)?
                        .ok_or(ServiceError::NotFound("account_not_found", "no such account"))?;
                    let row = tx
                        .query_opt(
                            "SELECT a.kind, a.currency, a.status, a.credit_limit, d.customer_id FROM accounts a \
                             JOIN account_details d ON d.account_id = a.id WHERE a.id = $1",
                            &[Value::Int(account)],
                        )?
                        .filter(|row| row.int(4).is_ok_and(|owner| owner == customer))
                        .ok_or(ServiceError::NotFound("account_not_found", "no such account"))?;
                    if row.text(0)? != "credit_card" {
                        return Err(ServiceError::Refused(
                            "not_a_credit_card",
                            "a limit is applied for on a credit card".into(),
                        ));
                    }
                    if row.text(2)? != "active" {
                        return Err(ServiceError::Refused("account_not_active", "the card is not active".into()));
                    }
                    let currency =
                        Currency::from_code(&row.text(1)?).map_err(|error| StoreError::Corrupt(error.to_string()))?;
                    let requested = parse_limit("requested_limit", requested_text.as_deref(), currency)?;
                    if requested.minor() <= row.int(3)? {
                        return Err(ServiceError::invalid(
                            "requested_limit",
                            "limit_not_higher",
                            "ask for more than the current limit",
                        ));
                    }
                    refuse_if_pending(
                        tx,
                        "account_id",
                        account,
                        "credit_limit",
                        "a limit application for this card is already waiting for a decision",
                    )?;
                    let id = tx
                        .query_one(
                            "INSERT INTO applications (customer_id, kind, currency, account_id, requested_limit, \
                             status, created_at_us) VALUES ($1, 'credit_limit', $2, $3, $4, 'submitted', $5) \
                             RETURNING id",
                            &[
                                Value::Int(customer),
                                Value::from(currency.code()),
                                Value::Int(account),
                                Value::Int(requested.minor()),
                                Value::Int(now),
                            ],
                        )?
                        .int(0)?;
                    let draft = caller.audit(
                        "application.submit",
                        format!("application:{id}"),
                        json!({"kind": "credit_limit", "account": account,
                               "requested_limit_minor": requested.minor(), "customers": [customer]}),
                    );
                    sql::journal(tx, now, &[draft])?;
                    Ok(read(tx, id)?.ok_or_else(not_found)?.0)
                })
                .await
            }
            _ => Err(ServiceError::invalid(
                "kind",
                "application_kind_invalid",
                "kind must be credit_card or credit_limit",
            )),
        }
    }

    /// The caller's own applications, newest first, with the decisions.
    pub async fn applications(&self, caller: &Caller, query: ApplicationQuery) -> ServiceResult<Page<ApplicationView>> {
        let customer = caller.customer()?;
        self.list_applications(Some(customer), query).await
    }

    /// Managers: every application, optionally by status.
    pub async fn staff_applications(
        &self,
        caller: &Caller,
        query: ApplicationQuery,
    ) -> ServiceResult<Page<ApplicationView>> {
        caller.staff(Role::Manager)?;
        self.list_applications(None, query).await
    }

    async fn list_applications(
        &self,
        customer: Option<i64>,
        query: ApplicationQuery,
    ) -> ServiceResult<Page<ApplicationView>> {
        let limit = page_limit(query.limit)?;
        let before = page_cursor(query.cursor.as_deref())?.unwrap_or(i64::MAX);
        let status = query.status.clone().filter(|s| !s.is_empty());
        if status.as_deref().is_some_and(|s| !["submitted", "approved", "rejected"].contains(&s)) {
            return Err(ServiceError::invalid(
                "status",
                "status_invalid",
                "status must be submitted, approved or rejected",
            ));
        }
        let items = sql::read(&*self.db, move |tx| {
            tx.query(
                &format!(
                    "SELECT {COLUMNS} FROM applications WHERE id < $1 AND ($2 = 0 OR customer_id = $3) \
                     AND ($4 = '' OR status = $4) ORDER BY id DESC LIMIT $5"
                ),
                &[
                    Value::Int(before),
                    Value::Int(i64::from(customer.is_some())),
                    Value::Int(customer.unwrap_or(0)),
                    Value::from(status.clone().unwrap_or_default()),
                    Value::Int(i64::from(limit)),
                ],
            )?
            .iter()
            .map(view_from_row)
            .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        let full = usize::try_from(limit).is_ok_and(|limit| items.len() == limit);
        let next_cursor = full.then(|| items.last().map(|a| a.id.to_string())).flatten();
        Ok(Page { items, next_cursor })
    }

    /// A manager approves with the limit granted: a credit card is opened
    /// with it, or the card's limit is raised to it — once.
    pub async fn approve_application(
        &self,
        caller: &Caller,
        id: i64,
        form: DecisionForm,
    ) -> ServiceResult<ApplicationView> {
        let (staff, _) = caller.staff(Role::Manager)?;
        let context = self.open_context();
        let caller = caller.clone();
        let now = now_us();
        sql::write(&*self.db, move |tx| {
            let (view, row) = lock_submitted(tx, id)?;
            let currency =
                Currency::from_code(&view.currency).map_err(|error| StoreError::Corrupt(error.to_string()))?;
            let limit = parse_limit("credit_limit", form.credit_limit.as_deref(), currency)?;
            let account = if view.kind == "credit_card" {
                let consents: Vec<Consent> =
                    serde_json::from_str(&row.text(15)?).map_err(|error| StoreError::Corrupt(error.to_string()))?;
                let product_code = match row.opt_int(12)? {
                    Some(product) => {
                        Some(tx.query_one("SELECT code FROM products WHERE id = $1", &[Value::Int(product)])?.text(0)?)
                    }
                    None => None,
                };
                let new = NewAccount {
                    owner: view.customer,
                    kind: "credit_card".into(),
                    currency,
                    nickname: row.text(14)?,
                    holder_name: row.opt_text(13)?,
                    product: product_code,
                    consents,
                    credit_limit: limit.minor(),
                };
                open_in_tx(tx, &context, &caller, &new, now)?.0
            } else {
                let account =
                    view.account.ok_or_else(|| StoreError::Corrupt("a limit application without a card".into()))?;
                // An application for a higher limit is granted a higher one
                // or rejected; it never lowers the limit.
                let current = tx
                    .query_opt("SELECT credit_limit FROM accounts WHERE id = $1", &[Value::Int(account)])?
                    .map(|row| row.int(0))
                    .transpose()?
                    .unwrap_or(0);
                if limit.minor() <= current {
                    return Err(ServiceError::invalid(
                        "credit_limit",
                        "limit_not_higher",
                        format!("grant more than the current limit, {}", format_minor(i128::from(current), currency)),
                    ));
                }
                // The ledger's CHECK, asked first: the card must not be left
                // past the limit (unless a bank debit already took it there).
                let changed = tx.execute(
                    "UPDATE accounts SET credit_limit = $2 WHERE id = $1 AND status <> 'closed' \
                     AND (CAST(bank_overdraft AS INTEGER) = 1 OR credits_posted - debits_posted - debits_pending + $2 >= 0)",
                    &[Value::Int(account), Value::Int(limit.minor())],
                )?;
                if changed != 1 {
                    return Err(ServiceError::Refused(
                        "credit_limit_refused",
                        "the card is closed, or owes more than this limit".into(),
                    ));
                }
                account
            };
            tx.execute(
                "UPDATE applications SET status = 'approved', decided_limit = $2, decided_by = $3, decided_at_us = $4, \
                 account_id = $5 WHERE id = $1",
                &[Value::Int(id), Value::Int(limit.minor()), Value::Int(staff), Value::Int(now), Value::Int(account)],
            )?;
            let draft = caller.audit(
                "application.approve",
                format!("application:{id}"),
                json!({"kind": view.kind, "account": account, "credit_limit_minor": limit.minor(),
                       "currency": view.currency, "customers": [view.customer]}),
            );
            sql::journal(tx, now, &[draft])?;
            Ok(read(tx, id)?.ok_or_else(not_found)?.0)
        })
        .await
    }

    /// A manager rejects with a reason the customer sees; nothing else
    /// changes.
    pub async fn reject_application(
        &self,
        caller: &Caller,
        id: i64,
        form: DecisionForm,
    ) -> ServiceResult<ApplicationView> {
        let (staff, _) = caller.staff(Role::Manager)?;
        let reason = form.reason.clone().unwrap_or_default().trim().to_owned();
        if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(ServiceError::invalid("reason", "reason_required", "give a reason of 1–500 characters"));
        }
        let caller = caller.clone();
        let now = now_us();
        sql::write(&*self.db, move |tx| {
            let (view, _) = lock_submitted(tx, id)?;
            tx.execute(
                "UPDATE applications SET status = 'rejected', reason = $2, decided_by = $3, decided_at_us = $4 \
                 WHERE id = $1",
                &[Value::Int(id), Value::from(&reason), Value::Int(staff), Value::Int(now)],
            )?;
            let draft = caller.audit(
                "application.reject",
                format!("application:{id}"),
                json!({"kind": view.kind, "reason": reason, "customers": [view.customer]}),
            );
            sql::journal(tx, now, &[draft])?;
            Ok(read(tx, id)?.ok_or_else(not_found)?.0)
        })
        .await
    }
}

/// Locks a submitted application for its decision; a decided one is a
/// conflict (so the second of two concurrent approvals changes nothing).
fn lock_submitted(tx: &mut dyn Tx, id: i64) -> ServiceResult<(ApplicationView, Row)> {
    let locked = tx.execute(
        "UPDATE applications SET version = version + 1 WHERE id = $1 AND status = 'submitted'",
        &[Value::Int(id)],
    )?;
    let (view, row) = read(tx, id)?.ok_or_else(not_found)?;
    if locked == 0 {
        return Err(ServiceError::Conflict(
            "application_decided",
            format!("the application was already {}", view.status),
        ));
    }
    Ok((view, row))
}
