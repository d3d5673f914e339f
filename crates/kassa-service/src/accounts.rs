//! Products and customer accounts: open, list, read, rename, default,
//! close; staff status changes; the bank's own system accounts.

use kassa_core::money::{Amount, Currency};
use kassa_store::sql::{self, Row, Tx, Value};
use kassa_store::{StoreError, now_us};
use serde_json::json;

use crate::people::rfc3339;
use crate::{Bank, Caller, Page, Role, ServiceError, ServiceResult};

/// A consent document a product requires, by version.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Consent {
    pub document: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Product {
    pub id: i64,
    pub code: String,
    pub kind: String,
    pub name: String,
    pub description: String,
    pub currencies: Vec<String>,
    pub interest_rate: String,
    pub consents: Vec<Consent>,
    pub active: bool,
    /// A card product's issuer prefix, if it has its own (else the
    /// `[cards] issuer_prefix` setting's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_prefix: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ProductForm {
    pub code: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub currencies: Option<Vec<String>>,
    pub interest_rate: Option<String>,
    pub consents: Option<Vec<Consent>>,
    pub active: Option<bool>,
    /// Card kinds only: 1–8 digits starting this product's card numbers.
    pub card_prefix: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccountView {
    pub id: i64,
    pub number: String,
    pub kind: String,
    pub currency: String,
    pub status: String,
    /// The posted balance.
    pub balance: String,
    /// What may be spent: posted balance, less holds, plus the credit limit.
    pub available: String,
    pub pending_debits: String,
    pub credit_limit: String,
    /// The bank's own interest or fee debits took the account past its
    /// credit limit (the only way there): reported, never silent.
    pub over_limit: bool,
    pub is_default: bool,
    pub nickname: String,
    pub product: String,
    pub owner: i64,
    pub created_at: String,
    /// For a card account: the card, its number masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<crate::cards::CardView>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct OpenAccount {
    pub kind: Option<String>,
    pub currency: Option<String>,
    pub nickname: Option<String>,
    pub holder_name: Option<String>,
    pub product: Option<String>,
    pub consents: Option<Vec<Consent>>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct AccountUpdate {
    pub nickname: Option<String>,
    pub is_default: Option<bool>,
}

/// The kinds of the bank's own accounts, one per currency each.
pub const SYSTEM_KINDS: [&str; 4] = ["cash", "fee_income", "interest_expense", "fx_position"];
const CUSTOMER_KINDS: [&str; 4] = ["current", "savings", "debit_card", "credit_card"];
/// The kinds that carry a card.
pub(crate) const CARD_KINDS: [&str; 2] = ["debit_card", "credit_card"];

pub(crate) const ACCOUNT_VIEW_SQL: &str = "SELECT a.id, a.number, a.kind, a.currency, a.status, a.credit_limit, \
     a.debits_posted, a.credits_posted, a.debits_pending, a.created_at_us, d.nickname, d.is_default, d.customer_id, \
     p.code, c.number, c.holder_name, c.valid_to, c.pin_hash IS NOT NULL, c.pin_blocked, c.lost \
     FROM accounts a JOIN account_details d ON d.account_id = a.id JOIN products p ON p.id = d.product_id \
     LEFT JOIN cards c ON c.account_id = a.id";

pub(crate) fn format_minor(minor: i128, currency: Currency) -> String {
    i64::try_from(minor).map_or_else(|_| minor.to_string(), |minor| Amount::from_minor(minor).format(currency))
}

pub(crate) fn view_from_row(row: &Row) -> Result<AccountView, StoreError> {
    let currency_code = row.text(3)?;
    let currency = Currency::from_code(&currency_code).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let credit_limit = i128::from(row.int(5)?);
    let debits = i128::from(row.int(6)?);
    let credits = i128::from(row.int(7)?);
    let pending = i128::from(row.int(8)?);
    Ok(AccountView {
        id: row.int(0)?,
        number: row.text(1)?,
        kind: row.text(2)?,
        currency: currency_code,
        status: row.text(4)?,
        balance: format_minor(credits - debits, currency),
        available: format_minor(credits - debits - pending + credit_limit, currency),
        pending_debits: format_minor(pending, currency),
        credit_limit: format_minor(credit_limit, currency),
        over_limit: credits - debits - pending + credit_limit < 0,
        created_at: rfc3339(row.int(9)?),
        nickname: row.text(10)?,
        is_default: row.int(11)? != 0,
        owner: row.int(12)?,
        product: row.text(13)?,
        card: card_from_view_row(row)?,
    })
}

/// The card columns of `ACCOUNT_VIEW_SQL`, if the row has them and the
/// account is a card; the full number never leaves this function.
fn card_from_view_row(row: &Row) -> Result<Option<crate::cards::CardView>, StoreError> {
    if row.0.len() < 20 {
        return Ok(None);
    }
    let Some(number) = row.opt_text(14)? else { return Ok(None) };
    let flag = |index: usize| -> Result<bool, StoreError> {
        match row.0.get(index) {
            Some(Value::Int(value)) => Ok(*value != 0),
            Some(Value::Text(text)) => Ok(text == "t" || text == "true"),
            _ => Ok(false),
        }
    };
    Ok(Some(crate::cards::CardView {
        number_masked: crate::cards::mask(&number),
        holder_name: row.text(15)?,
        valid_to: row.text(16)?,
        pin_set: flag(17)?,
        pin_blocked: flag(18)?,
        lost: flag(19)?,
    }))
}

pub(crate) fn read_view(tx: &mut dyn Tx, id: i64) -> Result<Option<AccountView>, StoreError> {
    tx.query_opt(&format!("{ACCOUNT_VIEW_SQL} WHERE a.id = $1"), &[Value::Int(id)])?
        .map(|row| view_from_row(&row))
        .transpose()
}

/// The active product of `kind` a customer opens or applies for (the one
/// named by `code`, else the first), checked to be offered in `currency`
/// and to have all its documents among the `consents` given.
pub(crate) fn offered_product(
    tx: &mut dyn Tx,
    kind: &str,
    code: Option<&str>,
    currency: Currency,
    consents: &[Consent],
) -> ServiceResult<Product> {
    let product = match code {
        Some(code) => tx.query_opt(
            &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE code = $1 AND kind = $2 AND active = 1"),
            &[Value::from(code), Value::from(kind)],
        )?,
        None => tx.query_opt(
            &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE kind = $1 AND active = 1 ORDER BY id LIMIT 1"),
            &[Value::from(kind)],
        )?,
    }
    .map(|row| product_from_row(&row))
    .transpose()?
    .ok_or(ServiceError::NotFound("product_not_found", "no such product is offered"))?;
    if !product.currencies.iter().any(|c| c == currency.code()) {
        return Err(ServiceError::Refused(
            "currency_not_offered",
            format!("{} is offered in {}", product.name, product.currencies.join(", ")),
        ));
    }
    if let Some(first) = product.consents.iter().find(|needed| !consents.contains(needed)) {
        return Err(ServiceError::invalid(
            "consents",
            "consent_required",
            format!("accept the document {:?}, version {:?}", first.document, first.version),
        ));
    }
    Ok(product)
}

fn product_from_row(row: &Row) -> Result<Product, StoreError> {
    Ok(Product {
        id: row.int(0)?,
        code: row.text(1)?,
        kind: row.text(2)?,
        name: row.text(3)?,
        description: row.text(4)?,
        currencies: row.text(5)?.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect(),
        interest_rate: row.text(6)?,
        consents: serde_json::from_str(&row.text(7)?).map_err(|error| StoreError::Corrupt(error.to_string()))?,
        active: row.int(8)? != 0,
        card_prefix: row.opt_text(9)?,
    })
}

const PRODUCT_COLUMNS: &str =
    "id, code, kind, name, description, currencies, interest_rate, consents, active, card_prefix";

/// Resolves an account given by id (digits), by number (IBAN, spaces
/// allowed) or by card number (16 digits, spaces or hyphens allowed; never
/// read as an id) to its id; `None` when no such account exists.
pub(crate) fn resolve_account(tx: &mut dyn Tx, field: &str, reference: &str) -> Result<Option<i64>, ServiceError> {
    let reference = reference.trim();
    if let Some(number) = crate::cards::normalize_card_number(reference) {
        return Ok(crate::cards::account_of_card(tx, &number)?);
    }
    if !reference.is_empty() && reference.len() <= 20 && reference.bytes().all(|b| b.is_ascii_digit()) {
        let id: i64 =
            reference.parse().map_err(|_| ServiceError::invalid(field, "account_invalid", "not an account"))?;
        return Ok(tx
            .query_opt("SELECT id FROM accounts WHERE id = $1", &[Value::Int(id)])?
            .map(|r| r.int(0))
            .transpose()?);
    }
    let number =
        crate::country::normalize_account_number(field, reference).map_err(|p| ServiceError::Invalid(vec![p]))?;
    Ok(tx
        .query_opt("SELECT id FROM accounts WHERE number = $1", &[Value::from(&number)])?
        .map(|r| r.int(0))
        .transpose()?)
}

struct DefaultProduct {
    code: &'static str,
    kind: &'static str,
    name: &'static str,
    description: &'static str,
    currencies: &'static str,
    interest_rate: &'static str,
    consents: serde_json::Value,
}

/// The products a new bank offers. The credit card's rate is what the
/// interest job charges on a negative balance (annual, 24%).
fn default_products() -> Vec<DefaultProduct> {
    let terms = json!({"document": "terms", "version": "2026-01"});
    vec![
        DefaultProduct {
            code: "current",
            kind: "current",
            name: "Current account",
            description: "An everyday account for payments and transfers.",
            currencies: "BYN,USD,EUR,RUB",
            interest_rate: "0",
            consents: json!([terms]),
        },
        DefaultProduct {
            code: "savings",
            kind: "savings",
            name: "Savings account",
            description: "Savings with interest paid monthly.",
            currencies: "BYN,USD,EUR",
            interest_rate: "0.05",
            consents: json!([terms, {"document": "savings", "version": "2026-01"}]),
        },
        DefaultProduct {
            code: "debit_card",
            kind: "debit_card",
            name: "Debit card",
            description: "A card on its own account: pay, withdraw cash at the bank's ATMs.",
            currencies: "BYN,USD,EUR,RUB",
            interest_rate: "0",
            consents: json!([terms, {"document": "cards", "version": "2026-01"}]),
        },
        DefaultProduct {
            code: "credit_card",
            kind: "credit_card",
            name: "Credit card",
            description: "A card with a credit limit decided on application; 24% a year on a negative balance.",
            currencies: "BYN,USD,EUR",
            interest_rate: "0.24",
            consents: json!([terms, {"document": "cards", "version": "2026-01"}, {"document": "credit", "version": "2026-01"}]),
        },
    ]
}

/// Makes sure the bank's system accounts and default products exist.
pub(crate) async fn bootstrap(bank: &Bank) -> ServiceResult<()> {
    // Usually everything is there already: a read keeps a restart (or
    // `kassa audit verify`) from writing anything.
    let expected = i64::try_from(Currency::ALL.len() * SYSTEM_KINDS.len()).unwrap_or(i64::MAX);
    let complete = sql::read(&*bank.db, move |tx| {
        let system = tx.query_one("SELECT COUNT(*) FROM system_accounts", &[])?.int(0)?;
        let mut products = true;
        for product in default_products() {
            products &= tx.query_opt("SELECT 1 FROM products WHERE code = $1", &[Value::from(product.code)])?.is_some();
        }
        Ok::<_, StoreError>(system == expected && products)
    })
    .await?;
    if complete {
        return Ok(());
    }
    let profile = bank.profile.clone();
    let bank_code = bank.settings.bank.bank_code.clone();
    let now = now_us();
    sql::write(&*bank.db, move |tx| {
        // Several nodes may start at once; one of them does the work.
        if tx.backend() == "postgres" {
            tx.query("SELECT pg_advisory_xact_lock(7340032)", &[])?;
        }
        for currency in Currency::ALL {
            for kind in SYSTEM_KINDS {
                let exists = tx.query_opt(
                    "SELECT 1 FROM system_accounts WHERE kind = $1 AND currency = $2",
                    &[Value::from(kind), Value::from(currency.code())],
                )?;
                if exists.is_some() {
                    continue;
                }
                let id = insert_ledger_account(tx, &profile, &bank_code, None, kind, currency.code(), now)?;
                tx.execute(
                    "INSERT INTO system_accounts (kind, currency, account_id) VALUES ($1, $2, $3)",
                    &[Value::from(kind), Value::from(currency.code()), Value::Int(id)],
                )?;
            }
        }
        // Each default product is inserted by code when missing, so a
        // database from before a product existed gets it too; one an admin
        // changed (or switched off) is left alone.
        for product in default_products() {
            if tx.query_opt("SELECT 1 FROM products WHERE code = $1", &[Value::from(product.code)])?.is_some() {
                continue;
            }
            tx.execute(
                "INSERT INTO products (code, kind, name, description, currencies, interest_rate, consents, active, \
                 created_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)",
                &[
                    Value::from(product.code),
                    Value::from(product.kind),
                    Value::from(product.name),
                    Value::from(product.description),
                    Value::from(product.currencies),
                    Value::from(product.interest_rate),
                    Value::from(product.consents.to_string()),
                    Value::Int(now),
                ],
            )?;
        }
        Ok::<_, ServiceError>(())
    })
    .await
}

/// Inserts a ledger account row (zero balances) and gives it its IBAN.
pub(crate) fn insert_ledger_account(
    tx: &mut dyn Tx,
    profile: &crate::country::CountryProfile,
    bank_code: &str,
    owner: Option<i64>,
    kind: &str,
    currency: &str,
    now: i64,
) -> Result<i64, ServiceError> {
    let placeholder = format!("new-{}", crate::crypto::random_token(12)?);
    let id = tx
        .query_one(
            "INSERT INTO accounts (number, owner_id, currency, kind, status, credit_limit, created_at_us) \
             VALUES ($1, $2, $3, $4, 'active', 0, $5) RETURNING id",
            &[Value::from(&placeholder), Value::from(owner), Value::from(currency), Value::from(kind), Value::Int(now)],
        )?
        .int(0)?;
    tx.execute(
        "UPDATE accounts SET number = $2 WHERE id = $1",
        &[Value::Int(id), Value::from(profile.account_number(bank_code, id))],
    )?;
    Ok(id)
}

/// The bank's system account of `kind` in `currency`.
pub(crate) fn system_account(tx: &mut dyn Tx, kind: &str, currency: &str) -> Result<i64, ServiceError> {
    tx.query_opt(
        "SELECT account_id FROM system_accounts WHERE kind = $1 AND currency = $2",
        &[Value::from(kind), Value::from(currency)],
    )?
    .map(|row| row.int(0))
    .transpose()?
    .ok_or_else(|| ServiceError::Refused("currency_not_supported", format!("the bank does not keep {currency}")))
}

/// What opening an account needs from the bank's settings.
pub(crate) struct OpenContext {
    profile: crate::country::CountryProfile,
    bank_code: String,
    max: i64,
    cards: crate::cards::CardSettings,
    today: crate::calendar::Day,
}

/// An account to open, its fields already checked.
#[derive(Clone, Debug)]
pub(crate) struct NewAccount {
    pub owner: i64,
    pub kind: String,
    pub currency: Currency,
    pub nickname: String,
    /// For a card; `None` transliterates the customer's name.
    pub holder_name: Option<String>,
    /// A product code; `None` takes the first active product of the kind.
    pub product: Option<String>,
    pub consents: Vec<Consent>,
    /// In minor units; only a credit card has one.
    pub credit_limit: i64,
}

/// Opens an account inside `tx`: the customer's account count, the
/// product, its currencies and consents, the ledger row, the details, the
/// card for a card kind; journaled as `account.open`. Returns the id and
/// the product.
pub(crate) fn open_in_tx(
    tx: &mut dyn Tx,
    context: &OpenContext,
    caller: &Caller,
    new: &NewAccount,
    now: i64,
) -> ServiceResult<(i64, Product)> {
    let owner = new.owner;
    let max = context.max;
    // Locks the customer, so two opens cannot both pass the count.
    if tx.execute(
        "UPDATE customers SET version = version + 1 WHERE id = $1 AND status = 'active'",
        &[Value::Int(owner)],
    )? == 0
    {
        return Err(ServiceError::NotFound("customer_not_found", "no such active customer"));
    }
    let open = tx
        .query_one("SELECT COUNT(*) FROM accounts WHERE owner_id = $1 AND status <> 'closed'", &[Value::Int(owner)])?
        .int(0)?;
    if open >= max {
        return Err(ServiceError::Refused(
            "account_limit_reached",
            format!("a customer may hold at most {max} open accounts"),
        ));
    }
    let kind = &new.kind;
    let currency = new.currency;
    let product = offered_product(tx, kind, new.product.as_deref(), currency, &new.consents)?;
    let holder_name = if CARD_KINDS.contains(&kind.as_str()) {
        Some(crate::cards::holder_name_for(tx, owner, new.holder_name.as_deref())?)
    } else {
        None
    };
    let id = insert_ledger_account(tx, &context.profile, &context.bank_code, Some(owner), kind, currency.code(), now)?;
    if new.credit_limit > 0 {
        tx.execute(
            "UPDATE accounts SET credit_limit = $2 WHERE id = $1",
            &[Value::Int(id), Value::Int(new.credit_limit)],
        )?;
    }
    let has_default = tx
        .query_opt(
            "SELECT 1 FROM account_details WHERE customer_id = $1 AND currency = $2 AND is_default = 1",
            &[Value::Int(owner), Value::from(currency.code())],
        )?
        .is_some();
    tx.execute(
        "INSERT INTO account_details (account_id, customer_id, product_id, currency, nickname, is_default, \
         consents, opened_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            Value::Int(id),
            Value::Int(owner),
            Value::Int(product.id),
            Value::from(currency.code()),
            Value::from(&new.nickname),
            Value::from(!has_default),
            Value::from(serde_json::to_string(&product.consents).unwrap_or_default()),
            Value::from(caller.actor()),
        ],
    )?;
    let card = match &holder_name {
        Some(name) => {
            let prefix = product.card_prefix.as_deref().unwrap_or(&context.cards.issuer_prefix);
            let card = crate::cards::issue(tx, prefix, context.cards.validity_months, context.today, id, name, now)?;
            Some(card.number_masked)
        }
        None => None,
    };
    sql::journal(
        tx,
        now,
        &[caller.audit(
            "account.open",
            format!("account:{id}"),
            json!({"owner": owner, "kind": kind, "currency": currency.code(), "product": product.code,
                   "consents": product.consents, "card": card, "credit_limit_minor": new.credit_limit,
                   "customers": [owner]}),
        )],
    )?;
    Ok((id, product))
}

impl Bank {
    pub async fn products(&self) -> ServiceResult<Vec<Product>> {
        sql::read(&*self.db, |tx| {
            tx.query(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE active = 1 ORDER BY id"), &[])?
                .iter()
                .map(product_from_row)
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(ServiceError::from)
    }

    /// Admins add a product or change one (by code).
    pub async fn put_product(&self, caller: &Caller, form: ProductForm) -> ServiceResult<Product> {
        caller.staff(Role::Admin)?;
        let mut problems = Vec::new();
        let code = form.code.clone().unwrap_or_default();
        if code.is_empty()
            || code.len() > 32
            || !code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            problems.push(problem("code", "product_code_invalid", "a product code is 1–32 of a-z, 0-9, _"));
        }
        let kind = form.kind.clone().unwrap_or_default();
        if !CUSTOMER_KINDS.contains(&kind.as_str()) {
            problems.push(problem(
                "kind",
                "product_kind_invalid",
                "kind must be current, savings, debit_card or credit_card",
            ));
        }
        let name = form.name.clone().unwrap_or_default();
        if name.trim().is_empty() || name.chars().count() > 64 {
            problems.push(problem("name", "product_name_invalid", "a name of 1–64 characters is required"));
        }
        let currencies = form.currencies.clone().unwrap_or_default();
        if currencies.is_empty() || currencies.iter().any(|c| Currency::from_code(c).is_err()) {
            problems.push(problem("currencies", "unknown_currency", "list one or more supported currency codes"));
        }
        let consents = form.consents.clone().unwrap_or_default();
        if consents
            .iter()
            .any(|c| c.document.is_empty() || c.version.is_empty() || c.document.len() > 64 || c.version.len() > 32)
        {
            problems.push(problem("consents", "consent_invalid", "each consent needs a document and a version"));
        }
        let rate = form.interest_rate.clone().unwrap_or_else(|| "0".into());
        if rate.len() > 12 || rate.parse::<u64>().is_err() && !is_decimal(&rate) {
            problems.push(problem(
                "interest_rate",
                "interest_rate_invalid",
                "an annual rate as a decimal, such as 0.05",
            ));
        }
        let card_prefix = form.card_prefix.clone().filter(|prefix| !prefix.is_empty());
        if let Some(prefix) = &card_prefix {
            let digits = (1..=8).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_digit());
            if !digits || !CARD_KINDS.contains(&kind.as_str()) {
                problems.push(problem(
                    "card_prefix",
                    "card_prefix_invalid",
                    "a card product's issuer prefix is 1–8 digits",
                ));
            }
        }
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let description = form.description.clone().unwrap_or_default().chars().take(512).collect::<String>();
        let active = form.active.unwrap_or(true);
        let now = now_us();
        let draft =
            caller.audit("product.put", format!("product:{code}"), json!({"kind": kind, "currencies": currencies}));
        let consents_json =
            serde_json::to_string(&consents).map_err(|error| ServiceError::Internal(error.to_string()))?;
        sql::write(&*self.db, move |tx| {
            let params = [
                Value::from(&code),
                Value::from(&kind),
                Value::from(&name),
                Value::from(&description),
                Value::from(currencies.join(",")),
                Value::from(&rate),
                Value::from(&consents_json),
                Value::from(active),
                Value::Int(now),
                Value::from(card_prefix.clone()),
            ];
            if tx.query_opt("SELECT 1 FROM products WHERE code = $1", &[Value::from(&code)])?.is_some() {
                tx.execute(
                    "UPDATE products SET kind = $2, name = $3, description = $4, currencies = $5, interest_rate = $6, \
                     consents = $7, active = $8, card_prefix = $10, version = version + 1 WHERE code = $1 AND $9 = $9",
                    &params,
                )?;
            } else {
                tx.execute(
                    "INSERT INTO products (code, kind, name, description, currencies, interest_rate, consents, active, \
                     created_at_us, card_prefix) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &params,
                )?;
            }
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            let row = tx
                .query_one(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE code = $1"), &[Value::from(&code)])?;
            Ok::<_, ServiceError>(product_from_row(&row)?)
        })
        .await
    }

    /// A customer opens an account (or staff open one for `customer`). A
    /// debit card gets its card (number, holder name, valid-to) in the same
    /// transaction; a credit card is applied for (`/applications`) instead.
    pub async fn open_account(
        &self,
        caller: &Caller,
        customer: Option<i64>,
        form: OpenAccount,
    ) -> ServiceResult<AccountView> {
        let owner = match customer {
            None => caller.customer()?,
            Some(id) => {
                caller.staff(Role::Teller)?;
                id
            }
        };
        let mut problems = Vec::new();
        let kind = form.kind.clone().unwrap_or_default();
        if !CUSTOMER_KINDS.contains(&kind.as_str()) {
            problems.push(problem(
                "kind",
                "account_kind_invalid",
                "kind must be current, savings, debit_card or credit_card",
            ));
        }
        let currency = match Currency::from_code(form.currency.as_deref().unwrap_or("")) {
            Ok(currency) => Some(currency),
            Err(error) => {
                problems.push(problem("currency", error.code(), &error.to_string()));
                None
            }
        };
        let nickname = form.nickname.clone().unwrap_or_default().trim().to_owned();
        if nickname.chars().count() > 64 || nickname.chars().any(char::is_control) {
            problems.push(problem("nickname", "nickname_invalid", "a nickname is at most 64 characters"));
        }
        let holder_name = match form.holder_name.as_deref() {
            Some(text) if !text.trim().is_empty() => match crate::cards::check_holder_name(text) {
                Ok(name) => Some(name),
                Err(bad) => {
                    problems.push(bad);
                    None
                }
            },
            _ => None,
        };
        let Some(currency) = currency else { return Err(ServiceError::Invalid(problems)) };
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        if kind == "credit_card" {
            return Err(ServiceError::Refused(
                "application_required",
                "a credit card is applied for (POST /api/v1/applications) and opened when a manager approves".into(),
            ));
        }
        let new = NewAccount {
            owner,
            kind,
            currency,
            nickname,
            holder_name,
            product: form.product.clone(),
            consents: form.consents.clone().unwrap_or_default(),
            credit_limit: 0,
        };
        let context = self.open_context();
        let caller = caller.clone();
        let now = now_us();
        sql::write(&*self.db, move |tx| {
            let id = open_in_tx(tx, &context, &caller, &new, now)?.0;
            read_view(tx, id)?.ok_or_else(|| ServiceError::Internal("a new account vanished".into()))
        })
        .await
    }

    pub(crate) fn open_context(&self) -> OpenContext {
        OpenContext {
            profile: self.profile.clone(),
            bank_code: self.settings.bank.bank_code.clone(),
            max: i64::from(self.settings.accounts_per_customer_max),
            cards: self.settings.cards.clone(),
            today: self.today(),
        }
    }

    /// The caller's accounts (or, for staff, a customer's).
    pub async fn accounts(
        &self,
        caller: &Caller,
        customer: Option<i64>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<Page<AccountView>> {
        let owner = match customer {
            None => caller.customer()?,
            Some(id) => {
                caller.staff(Role::Teller)?;
                id
            }
        };
        let limit = crate::page_limit(limit)?;
        let after = crate::page_cursor(cursor)?.unwrap_or(0);
        let items = sql::read(&*self.db, move |tx| {
            tx.query(
                &format!("{ACCOUNT_VIEW_SQL} WHERE d.customer_id = $1 AND a.id > $2 ORDER BY a.id LIMIT $3"),
                &[Value::Int(owner), Value::Int(after), Value::Int(i64::from(limit))],
            )?
            .iter()
            .map(view_from_row)
            .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|a| a.id.to_string())).flatten();
        Ok(Page { items, next_cursor })
    }

    /// One account: the owner's, or any for staff. Someone else's account
    /// is "not found", exactly like a missing one.
    pub async fn account(&self, caller: &Caller, id: i64) -> ServiceResult<AccountView> {
        let owner = self.visible_owner(caller)?;
        sql::read(&*self.db, move |tx| read_view(tx, id))
            .await?
            .filter(|view| owner.is_none_or(|owner| view.owner == owner))
            .ok_or(ServiceError::NotFound("account_not_found", "no such account"))
    }

    /// `Some(customer)` for a customer (who sees only their own), `None`
    /// for staff (who see all).
    pub(crate) fn visible_owner(&self, caller: &Caller) -> ServiceResult<Option<i64>> {
        match caller.customer() {
            Ok(id) => Ok(Some(id)),
            Err(ServiceError::Forbidden("customers_only", _)) => caller.staff(Role::Teller).map(|_| None),
            Err(error) => Err(error),
        }
    }

    /// Renames an own account or makes it the default for its currency.
    pub async fn update_account(&self, caller: &Caller, id: i64, update: AccountUpdate) -> ServiceResult<AccountView> {
        let owner = caller.customer()?;
        let nickname = update.nickname.map(|n| n.trim().to_owned());
        if nickname.as_ref().is_some_and(|n| n.chars().count() > 64 || n.chars().any(char::is_control)) {
            return Err(ServiceError::invalid("nickname", "nickname_invalid", "a nickname is at most 64 characters"));
        }
        if update.is_default == Some(false) {
            return Err(ServiceError::invalid(
                "is_default",
                "default_required",
                "make another account the default instead; each currency keeps one",
            ));
        }
        let make_default = update.is_default == Some(true);
        let now = now_us();
        let draft = caller.audit(
            "account.update",
            format!("account:{id}"),
            json!({"nickname": nickname, "is_default": update.is_default}),
        );
        sql::write(&*self.db, move |tx| {
            let view = read_view(tx, id)?
                .filter(|view| view.owner == owner)
                .ok_or(ServiceError::NotFound("account_not_found", "no such account"))?;
            if view.status == "closed" {
                return Err(ServiceError::Refused("account_closed", "the account is closed".into()));
            }
            if let Some(nickname) = &nickname {
                tx.execute("UPDATE account_details SET nickname = $2 WHERE account_id = $1", &[Value::Int(id), Value::from(nickname)])?;
            }
            if make_default && !view.is_default {
                tx.execute(
                    "UPDATE account_details SET is_default = 0 WHERE customer_id = $1 AND currency = $2 AND is_default = 1",
                    &[Value::Int(owner), Value::from(&view.currency)],
                )?;
                tx.execute("UPDATE account_details SET is_default = 1 WHERE account_id = $1", &[Value::Int(id)])?;
            }
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            read_view(tx, id)?.ok_or(ServiceError::NotFound("account_not_found", "no such account"))
        })
        .await
    }

    /// Closes an own account (customers) or any account (managers); only a
    /// zero balance with nothing pending can be closed.
    pub async fn close_account(&self, caller: &Caller, id: i64) -> ServiceResult<AccountView> {
        self.change_status(caller, id, "closed").await
    }

    /// Managers block, unblock or close any customer account.
    pub async fn set_account_status(&self, caller: &Caller, id: i64, status: &str) -> ServiceResult<AccountView> {
        caller.staff(Role::Manager)?;
        if !["active", "blocked", "closed"].contains(&status) {
            return Err(ServiceError::invalid("status", "status_invalid", "status must be active, blocked or closed"));
        }
        self.change_status(caller, id, status).await
    }

    async fn change_status(&self, caller: &Caller, id: i64, status: &str) -> ServiceResult<AccountView> {
        let owner = match caller.customer() {
            Ok(owner) => Some(owner),
            Err(ServiceError::Forbidden("customers_only", _)) => {
                caller.staff(Role::Manager)?;
                None
            }
            Err(error) => return Err(error),
        };
        let status = status.to_owned();
        let now = now_us();
        let draft = caller.audit(
            if status == "closed" { "account.close" } else { "account.status" },
            format!("account:{id}"),
            json!({"status": status}),
        );
        sql::write(&*self.db, move |tx| {
            let view = read_view(tx, id)?
                .filter(|view| owner.is_none_or(|owner| view.owner == owner))
                .ok_or(ServiceError::NotFound("account_not_found", "no such account"))?;
            if view.status == "closed" {
                return Err(ServiceError::Refused("account_closed", "the account is already closed".into()));
            }
            if view.status == status {
                return Ok(view);
            }
            let changed = if status == "closed" {
                // Interest accrued but not yet posted would be forfeited
                // (or, on a card, never charged) by closing now.
                if tx
                    .query_opt(
                        "SELECT 1 FROM interest_accruals a WHERE a.account_id = $1 AND a.accrued_minor > 0 \
                         AND NOT EXISTS (SELECT 1 FROM interest_postings p WHERE p.account_id = a.account_id \
                         AND p.month = substr(a.day, 1, 7)) LIMIT 1",
                        &[Value::Int(id)],
                    )?
                    .is_some()
                {
                    return Err(ServiceError::Refused(
                        "interest_pending",
                        "interest is accrued on this account but not yet posted; close it after the month's posting"
                            .into(),
                    ));
                }
                // The ledger's own rule, checked on the row itself: nothing
                // posted, nothing pending.
                let changed = tx.execute(
                    "UPDATE accounts SET status = 'closed' WHERE id = $1 AND debits_posted = credits_posted \
                     AND debits_pending = 0 AND credits_pending = 0",
                    &[Value::Int(id)],
                )?;
                if changed == 0 {
                    return Err(ServiceError::Conflict(
                        "account_not_empty",
                        "only an account with a zero balance and nothing pending can be closed".into(),
                    ));
                }
                tx.execute("UPDATE account_details SET is_default = 0 WHERE account_id = $1", &[Value::Int(id)])?;
                changed
            } else {
                tx.execute("UPDATE accounts SET status = $2 WHERE id = $1", &[Value::Int(id), Value::from(&status)])?
            };
            if changed != 1 {
                return Err(ServiceError::Internal("an account status change touched no row".into()));
            }
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            read_view(tx, id)?.ok_or(ServiceError::NotFound("account_not_found", "no such account"))
        })
        .await
    }
}

fn problem(field: &str, code: &'static str, detail: &str) -> crate::country::FieldProblem {
    crate::country::FieldProblem { field: field.into(), code, detail: detail.into() }
}

fn is_decimal(text: &str) -> bool {
    let mut parts = text.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next().unwrap_or("0");
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && !fraction.is_empty()
        && fraction.bytes().all(|b| b.is_ascii_digit())
}
