//! Customers and staff: registration, profiles, staff users.

use kassa_store::sql::{self, Tx, Value};
use kassa_store::{StoreError, now_us};
use serde_json::json;

use crate::auth::{Tokens, create_session, hash_password};
use crate::country::FieldProblem;
use crate::{Bank, Caller, Page, Role, ServiceError, ServiceResult, SignedIn, crypto, page_cursor, page_limit};

/// What a registration form carries. Every field is optional here so that a
/// missing one gets its own problem instead of a parse error.
#[derive(Clone, Default, serde::Deserialize)]
pub struct Registration {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub passport_number: Option<String>,
    pub personal_id: Option<String>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("phone", &self.phone).field("password", &"<redacted>").finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Customer {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub phone: String,
    pub email: String,
    pub passport_number: String,
    pub personal_id: String,
    pub status: String,
    pub notifications: NotificationPrefs,
    pub created_at: String,
    pub last_login_at: Option<String>,
}

/// A customer's notification preferences: four opt-in switches, SMS and
/// e-mail, each per transaction and per sign-in. All off for a new customer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NotificationPrefs {
    pub sms_per_transaction: bool,
    pub email_per_transaction: bool,
    pub sms_on_login: bool,
    pub email_on_login: bool,
    /// Whether any sign-in notice is on (`sms_on_login || email_on_login`);
    /// the first API version's one sign-in switch.
    pub on_login: bool,
}

impl NotificationPrefs {
    fn new(sms_per_transaction: bool, email_per_transaction: bool, sms_on_login: bool, email_on_login: bool) -> Self {
        NotificationPrefs {
            sms_per_transaction,
            email_per_transaction,
            sms_on_login,
            email_on_login,
            on_login: sms_on_login || email_on_login,
        }
    }

    /// These preferences with `update` applied: an absent field keeps its
    /// value. `on_login` (the first API version's switch) sets both sign-in
    /// switches: off turns both off; on sends sign-in notices to the
    /// channels that are on per transaction (after this update), as it
    /// always did. An explicit `sms_on_login` / `email_on_login` wins over it.
    pub fn updated(self, update: NotificationsUpdate) -> NotificationPrefs {
        let sms = update.sms_per_transaction.unwrap_or(self.sms_per_transaction);
        let email = update.email_per_transaction.unwrap_or(self.email_per_transaction);
        let (mut sms_login, mut email_login) = (self.sms_on_login, self.email_on_login);
        if let Some(on) = update.on_login {
            (sms_login, email_login) = (on && sms, on && email);
        }
        NotificationPrefs::new(
            sms,
            email,
            update.sms_on_login.unwrap_or(sms_login),
            update.email_on_login.unwrap_or(email_login),
        )
    }
}

/// A change of notification preferences (PATCH `/me/notifications`): each
/// field optional, an absent one unchanged. See [`NotificationPrefs::updated`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotificationsUpdate {
    pub sms_per_transaction: Option<bool>,
    pub email_per_transaction: Option<bool>,
    pub sms_on_login: Option<bool>,
    pub email_on_login: Option<bool>,
    pub on_login: Option<bool>,
}

/// The name the HTTP layer's PATCH handler reads the body as.
pub type Notifications = NotificationsUpdate;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Registered {
    pub customer: Customer,
    #[serde(flatten)]
    pub tokens: Tokens,
}

/// A customer registered at the desk: the temporary password is shown to
/// the teller once and must be changed at the first sign-in.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RegisteredAtDesk {
    pub customer: Customer,
    pub temporary_password: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StaffUser {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub role: Role,
    pub status: String,
    pub totp_enabled: bool,
    pub created_at: String,
}

/// A new staff user; `totp_uri` is shown once (the secret is not shown again).
#[derive(Clone, Debug, serde::Serialize)]
pub struct NewStaff {
    pub staff: StaffUser,
    pub totp_uri: Option<String>,
}

#[derive(Clone, Default, serde::Deserialize)]
pub struct StaffForm {
    pub login: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
    pub password: Option<String>,
    /// Whether to require TOTP; always on for admins.
    pub totp: Option<bool>,
}

impl std::fmt::Debug for StaffForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffForm").field("login", &self.login).field("role", &self.role).finish()
    }
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ProfileUpdate {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// Formats microseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const CUSTOMER_COLUMNS: &str = "id, first_name, last_name, phone, email, passport_number, personal_id, status, \
     notify_sms, notify_email, notify_sms_login, notify_email_login, created_at_us, last_login_at_us";

fn customer_from_row(row: &kassa_store::sql::Row) -> Result<Customer, StoreError> {
    Ok(Customer {
        id: row.int(0)?,
        first_name: row.text(1)?,
        last_name: row.text(2)?,
        phone: row.text(3)?,
        email: row.text(4)?,
        passport_number: row.text(5)?,
        personal_id: row.text(6)?,
        status: row.text(7)?,
        notifications: NotificationPrefs::new(row.int(8)? != 0, row.int(9)? != 0, row.int(10)? != 0, row.int(11)? != 0),
        created_at: rfc3339(row.int(12)?),
        last_login_at: row.opt_int(13)?.map(rfc3339),
    })
}

pub(crate) fn read_customer(tx: &mut dyn Tx, id: i64) -> Result<Option<Customer>, StoreError> {
    tx.query_opt(&format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1"), &[Value::Int(id)])?
        .map(|row| customer_from_row(&row))
        .transpose()
}

fn required<'a>(problems: &mut Vec<FieldProblem>, field: &str, value: &'a Option<String>) -> Option<&'a str> {
    match value.as_deref() {
        Some(value) if !value.trim().is_empty() => Some(value),
        _ => {
            problems.push(FieldProblem {
                field: field.into(),
                code: "field_required",
                detail: format!("{field} is required"),
            });
            None
        }
    }
}

fn collect<T>(problems: &mut Vec<FieldProblem>, result: Result<T, FieldProblem>) -> Option<T> {
    result.map_err(|problem| problems.push(problem)).ok()
}

/// A registration's fields, normalised and validated.
struct Valid {
    first_name: String,
    last_name: String,
    phone: String,
    email: String,
    passport_number: String,
    personal_id: String,
    password: Option<String>,
}

fn unique_conflict(error: &StoreError) -> Option<ServiceError> {
    let StoreError::Database(message) = error else { return None };
    let lower = message.to_lowercase();
    if !lower.contains("unique") {
        return None;
    }
    if lower.contains("phone") {
        return Some(ServiceError::Conflict("phone_taken", "a customer with this phone number already exists".into()));
    }
    if lower.contains("personal_id") {
        return Some(ServiceError::Conflict(
            "personal_id_taken",
            "a customer with this personal id already exists".into(),
        ));
    }
    if lower.contains("login") {
        return Some(ServiceError::Conflict("login_taken", "a staff user with this login already exists".into()));
    }
    None
}

impl Bank {
    fn validate_registration(&self, form: &Registration, with_password: bool) -> ServiceResult<Valid> {
        let mut problems = Vec::new();
        let p = &self.profile;
        let first_name = required(&mut problems, "first_name", &form.first_name)
            .and_then(|v| collect(&mut problems, p.validate_name("first_name", v)));
        let last_name = required(&mut problems, "last_name", &form.last_name)
            .and_then(|v| collect(&mut problems, p.validate_name("last_name", v)));
        let phone = required(&mut problems, "phone", &form.phone)
            .and_then(|v| collect(&mut problems, p.normalize_phone("phone", v)));
        let email = required(&mut problems, "email", &form.email)
            .and_then(|v| collect(&mut problems, p.validate_email("email", v)));
        let passport_number = required(&mut problems, "passport_number", &form.passport_number)
            .and_then(|v| collect(&mut problems, p.validate_passport("passport_number", v)));
        let personal_id = required(&mut problems, "personal_id", &form.personal_id)
            .and_then(|v| collect(&mut problems, p.validate_personal_id("personal_id", v)));
        let password = if with_password {
            match required(&mut problems, "password", &form.password) {
                Some(password) => {
                    let login = phone.clone().unwrap_or_default();
                    collect(&mut problems, crate::country::check_password("password", password, &login))
                        .map(|()| password.to_owned())
                }
                None => None,
            }
        } else {
            None
        };
        match (first_name, last_name, phone, email, passport_number, personal_id) {
            (Some(first_name), Some(last_name), Some(phone), Some(email), Some(passport_number), Some(personal_id))
                if problems.is_empty() =>
            {
                Ok(Valid { first_name, last_name, phone, email, passport_number, personal_id, password })
            }
            _ => Err(ServiceError::Invalid(problems)),
        }
    }

    async fn insert_customer(
        &self,
        caller: &Caller,
        valid: Valid,
        password_hash: String,
        must_change: bool,
        with_session: bool,
    ) -> ServiceResult<(Customer, Option<(String, String)>)> {
        let now = now_us();
        let caller = caller.clone();
        let ttl = self.settings.session_ttl_s;
        sql::write(&*self.db, move |tx| {
            if tx.query_opt("SELECT 1 FROM customers WHERE phone = $1", &[Value::from(&valid.phone)])?.is_some() {
                return Err(ServiceError::Conflict(
                    "phone_taken",
                    "a customer with this phone number already exists".into(),
                ));
            }
            if tx
                .query_opt("SELECT 1 FROM customers WHERE personal_id = $1", &[Value::from(&valid.personal_id)])?
                .is_some()
            {
                return Err(ServiceError::Conflict(
                    "personal_id_taken",
                    "a customer with this personal id already exists".into(),
                ));
            }
            let row = tx
                .query_one(
                    "INSERT INTO customers (first_name, last_name, phone, email, passport_number, personal_id, \
                     password_hash, must_change_password, status, created_by, created_at_us, \
                     notify_sms, notify_email, notify_login, notify_sms_login, notify_email_login) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, 0, 0, 0, 0, 0) RETURNING id",
                    &[
                        Value::from(&valid.first_name),
                        Value::from(&valid.last_name),
                        Value::from(&valid.phone),
                        Value::from(&valid.email),
                        Value::from(&valid.passport_number),
                        Value::from(&valid.personal_id),
                        Value::from(&password_hash),
                        Value::from(must_change),
                        Value::from(caller.actor()),
                        Value::Int(now),
                    ],
                )
                .map_err(|error| unique_conflict(&error).unwrap_or_else(|| error.into()))?;
            let id = row.int(0)?;
            let session =
                if with_session { Some(create_session(tx, "customer", id, &caller.origin, now, ttl)?) } else { None };
            sql::journal(
                tx,
                now,
                &[caller.audit(
                    "customer.register",
                    format!("customer:{id}"),
                    serde_json::json!({"at_desk": !with_session}),
                )],
            )?;
            let customer =
                read_customer(tx, id)?.ok_or_else(|| ServiceError::Internal("a new customer vanished".into()))?;
            Ok((customer, session))
        })
        .await
    }

    /// Self-registration: a new customer, signed in.
    pub async fn register(&self, caller: &Caller, form: Registration) -> ServiceResult<Registered> {
        let valid = self.validate_registration(&form, true)?;
        let password = valid.password.clone().unwrap_or_default();
        let hash = hash_password(self, password).await?;
        let (customer, session) = self.insert_customer(caller, valid, hash, false, true).await?;
        let (session, refresh) = session.ok_or_else(|| ServiceError::Internal("no session".into()))?;
        let user = SignedIn { id: customer.id, role: Role::Customer, session_id: session, restricted: false };
        let tokens = self.issue_tokens(&user, refresh, now_us(), false)?;
        Ok(Registered { customer, tokens })
    }

    /// A teller registers a customer at the desk with a temporary password
    /// the customer must change at the first sign-in.
    pub async fn register_at_desk(&self, caller: &Caller, form: Registration) -> ServiceResult<RegisteredAtDesk> {
        caller.staff(Role::Teller)?;
        let valid = self.validate_registration(&form, false)?;
        let temporary_password = temporary_password()?;
        let hash = hash_password(self, temporary_password.clone()).await?;
        let (customer, _) = self.insert_customer(caller, valid, hash, true, false).await?;
        Ok(RegisteredAtDesk { customer, temporary_password })
    }

    pub async fn me(&self, caller: &Caller) -> ServiceResult<Customer> {
        let id = caller.customer()?;
        self.customer_by_id(id).await
    }

    async fn customer_by_id(&self, id: i64) -> ServiceResult<Customer> {
        sql::read(&*self.db, move |tx| read_customer(tx, id))
            .await?
            .ok_or(ServiceError::NotFound("customer_not_found", "no such customer"))
    }

    /// Updates the caller's e-mail and names (phone, passport and personal
    /// id change only at the desk).
    pub async fn update_me(&self, caller: &Caller, update: ProfileUpdate) -> ServiceResult<Customer> {
        let id = caller.customer()?;
        let mut problems = Vec::new();
        let email =
            update.email.as_deref().and_then(|v| collect(&mut problems, self.profile.validate_email("email", v)));
        let first = update
            .first_name
            .as_deref()
            .and_then(|v| collect(&mut problems, self.profile.validate_name("first_name", v)));
        let last = update
            .last_name
            .as_deref()
            .and_then(|v| collect(&mut problems, self.profile.validate_name("last_name", v)));
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let now = now_us();
        let draft = caller.audit(
            "customer.update",
            format!("customer:{id}"),
            json!({"fields": [email.as_ref().map(|_| "email"), first.as_ref().map(|_| "first_name"), last.as_ref().map(|_| "last_name")]}),
        );
        sql::write(&*self.db, move |tx| {
            tx.execute(
                "UPDATE customers SET email = COALESCE($2, email), first_name = COALESCE($3, first_name), \
                 last_name = COALESCE($4, last_name), version = version + 1 WHERE id = $1",
                &[Value::Int(id), Value::from(email.clone()), Value::from(first.clone()), Value::from(last.clone())],
            )?;
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            read_customer(tx, id)?.ok_or(ServiceError::NotFound("customer_not_found", "no such customer"))
        })
        .await
    }

    pub async fn notifications(&self, caller: &Caller) -> ServiceResult<NotificationPrefs> {
        Ok(self.me(caller).await?.notifications)
    }

    /// Changes the caller's notification preferences (absent fields keep
    /// their values); journaled with the result.
    pub async fn set_notifications(
        &self,
        caller: &Caller,
        update: NotificationsUpdate,
    ) -> ServiceResult<NotificationPrefs> {
        let id = caller.customer()?;
        let now = now_us();
        let draft = caller.audit("customer.notifications", format!("customer:{id}"), json!({}));
        sql::write(&*self.db, move |tx| {
            let current =
                read_customer(tx, id)?.ok_or(ServiceError::NotFound("customer_not_found", "no such customer"))?;
            let prefs = current.notifications.updated(update);
            tx.execute(
                "UPDATE customers SET notify_sms = $2, notify_email = $3, notify_sms_login = $4, \
                 notify_email_login = $5, notify_login = $6, version = version + 1 WHERE id = $1",
                &[
                    Value::Int(id),
                    Value::from(prefs.sms_per_transaction),
                    Value::from(prefs.email_per_transaction),
                    Value::from(prefs.sms_on_login),
                    Value::from(prefs.email_on_login),
                    Value::from(prefs.on_login),
                ],
            )?;
            let mut draft = draft.clone();
            draft.detail = json!(prefs).to_string();
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            Ok::<_, ServiceError>(prefs)
        })
        .await
    }

    /// Staff look customers up by name, phone or passport number.
    pub async fn search_customers(
        &self,
        caller: &Caller,
        query: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<Page<Customer>> {
        caller.staff(Role::Teller)?;
        let limit = page_limit(limit)?;
        let after = page_cursor(cursor)?.unwrap_or(0);
        let pattern = format!("%{}%", query.unwrap_or("").trim().to_lowercase().replace(['%', '_'], ""));
        let items = sql::read(&*self.db, move |tx| {
            tx.query(
                &format!(
                    "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id > $1 AND (lower(first_name) LIKE $2 OR \
                     lower(last_name) LIKE $2 OR phone LIKE $2 OR lower(passport_number) LIKE $2) ORDER BY id LIMIT $3"
                ),
                &[Value::Int(after), Value::from(&pattern), Value::Int(i64::from(limit))],
            )?
            .iter()
            .map(customer_from_row)
            .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|c| c.id.to_string())).flatten();
        Ok(Page { items, next_cursor })
    }

    pub async fn staff_customer(&self, caller: &Caller, id: i64) -> ServiceResult<Customer> {
        caller.staff(Role::Teller)?;
        self.customer_by_id(id).await
    }

    /// A manager blocks or unblocks a customer; a block ends their sessions.
    pub async fn set_customer_status(&self, caller: &Caller, id: i64, status: &str) -> ServiceResult<Customer> {
        caller.staff(Role::Manager)?;
        if status != "active" && status != "blocked" {
            return Err(ServiceError::invalid("status", "status_invalid", "status must be active or blocked"));
        }
        let status = status.to_owned();
        let now = now_us();
        let draft = caller.audit("customer.status", format!("customer:{id}"), json!({"status": status}));
        let customer = sql::write(&*self.db, move |tx| {
            let changed = tx.execute(
                "UPDATE customers SET status = $2, version = version + 1 WHERE id = $1",
                &[Value::Int(id), Value::from(&status)],
            )?;
            if changed == 0 {
                return Err(ServiceError::NotFound("customer_not_found", "no such customer"));
            }
            if status == "blocked" {
                tx.execute(
                    "UPDATE sessions SET revoked_at_us = $2, revoked_reason = 'blocked' \
                     WHERE user_kind = 'customer' AND user_id = $1 AND revoked_at_us IS NULL",
                    &[Value::Int(id), Value::Int(now)],
                )?;
            }
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            read_customer(tx, id)?.ok_or(ServiceError::NotFound("customer_not_found", "no such customer"))
        })
        .await?;
        self.sessions_forget_all();
        Ok(customer)
    }

    /// Creates a staff user (admins only, or the CLI acting as the system).
    pub async fn create_staff(&self, caller: &Caller, form: StaffForm) -> ServiceResult<NewStaff> {
        if caller.user.is_some() {
            caller.staff(Role::Admin)?;
        } else if caller.origin != "cli" {
            return Err(ServiceError::Unauthorized("unauthorized", "sign in first"));
        }
        let mut problems = Vec::new();
        let login = required(&mut problems, "login", &form.login).map(|l| l.trim().to_lowercase());
        if let Some(login) = &login {
            let ok_chars =
                login.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' || c == '-');
            if !(3..=32).contains(&login.len()) || !ok_chars || !login.starts_with(|c: char| c.is_ascii_lowercase()) {
                problems.push(FieldProblem {
                    field: "login".into(),
                    code: "login_invalid",
                    detail:
                        "a staff login is 3–32 lower-case letters, digits, '.', '_' or '-', starting with a letter \
                             (never a phone number)"
                            .into(),
                });
            }
        }
        let role = match form.role.as_deref().map(Role::parse) {
            Some(Some(role)) if role.is_staff() => Some(role),
            _ => {
                problems.push(FieldProblem {
                    field: "role".into(),
                    code: "role_invalid",
                    detail: "role must be teller, manager or admin".into(),
                });
                None
            }
        };
        let name = form.name.clone().unwrap_or_default().trim().to_owned();
        if name.chars().count() > 128 {
            problems.push(FieldProblem {
                field: "name".into(),
                code: "name_too_long",
                detail: "at most 128 characters".into(),
            });
        }
        let password = required(&mut problems, "password", &form.password).map(str::to_owned);
        if let (Some(password), Some(login)) = (&password, &login) {
            collect(&mut problems, crate::country::check_password("password", password, login));
        }
        let (Some(login), Some(role), Some(password)) = (login, role, password) else {
            return Err(ServiceError::Invalid(problems));
        };
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        let totp = role == Role::Admin || form.totp.unwrap_or(false);
        let secret = if totp { Some(crypto::totp::new_secret()?) } else { None };
        let hash = hash_password(self, password).await?;
        let now = now_us();
        let draft =
            caller.audit("staff.create", format!("staff_login:{login}"), json!({"role": role.as_str(), "totp": totp}));
        let name = if name.is_empty() { login.clone() } else { name };
        let login_for_uri = login.clone();
        let staff = sql::write(&*self.db, move |tx| {
            if tx.query_opt("SELECT 1 FROM staff WHERE login = $1", &[Value::from(&login)])?.is_some() {
                return Err(ServiceError::Conflict(
                    "login_taken",
                    "a staff user with this login already exists".into(),
                ));
            }
            let row = tx
                .query_one(
                    "INSERT INTO staff (login, name, role, status, password_hash, totp_secret, created_at_us) \
                     VALUES ($1, $2, $3, 'active', $4, $5, $6) RETURNING id",
                    &[
                        Value::from(&login),
                        Value::from(&name),
                        Value::from(role.as_str()),
                        Value::from(&hash),
                        Value::from(secret.clone()),
                        Value::Int(now),
                    ],
                )
                .map_err(|error| unique_conflict(&error).unwrap_or_else(|| error.into()))?;
            let id = row.int(0)?;
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            Ok((read_staff(tx, id)?, secret.clone()))
        })
        .await?;
        let (staff, secret) = staff;
        let totp_uri =
            secret.map(|secret| crypto::totp::otpauth_uri(&secret, &self.settings.bank.name, &login_for_uri));
        Ok(NewStaff { staff, totp_uri })
    }

    pub async fn list_staff(
        &self,
        caller: &Caller,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<Page<StaffUser>> {
        caller.staff(Role::Admin)?;
        let limit = page_limit(limit)?;
        let after = page_cursor(cursor)?.unwrap_or(0);
        let items = sql::read(&*self.db, move |tx| {
            let ids = tx.query(
                "SELECT id FROM staff WHERE id > $1 ORDER BY id LIMIT $2",
                &[Value::Int(after), Value::Int(i64::from(limit))],
            )?;
            ids.iter().map(|row| read_staff(tx, row.int(0)?)).collect::<Result<Vec<_>, ServiceError>>()
        })
        .await?;
        let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|s| s.id.to_string())).flatten();
        Ok(Page { items, next_cursor })
    }

    /// An admin blocks or unblocks a staff user (never themself).
    pub async fn set_staff_status(&self, caller: &Caller, id: i64, status: &str) -> ServiceResult<StaffUser> {
        let (me, _) = caller.staff(Role::Admin)?;
        if status != "active" && status != "blocked" {
            return Err(ServiceError::invalid("status", "status_invalid", "status must be active or blocked"));
        }
        if me == id {
            return Err(ServiceError::Refused("cannot_block_self", "you cannot change your own status".into()));
        }
        let status = status.to_owned();
        let now = now_us();
        let draft = caller.audit("staff.status", format!("staff:{id}"), json!({"status": status}));
        let staff = sql::write(&*self.db, move |tx| {
            if tx.execute(
                "UPDATE staff SET status = $2, version = version + 1 WHERE id = $1",
                &[Value::Int(id), Value::from(&status)],
            )? == 0
            {
                return Err(ServiceError::NotFound("staff_not_found", "no such staff user"));
            }
            if status == "blocked" {
                tx.execute(
                    "UPDATE sessions SET revoked_at_us = $2, revoked_reason = 'blocked' \
                     WHERE user_kind = 'staff' AND user_id = $1 AND revoked_at_us IS NULL",
                    &[Value::Int(id), Value::Int(now)],
                )?;
            }
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            read_staff(tx, id)
        })
        .await?;
        self.sessions_forget_all();
        Ok(staff)
    }

    /// Creates the first admin if there is no staff user yet; returns the
    /// generated password (shown once) and the TOTP URI.
    pub async fn ensure_first_admin(&self) -> ServiceResult<Option<(String, String)>> {
        let any =
            sql::read(&*self.db, |tx| Ok::<_, StoreError>(tx.query_opt("SELECT 1 FROM staff LIMIT 1", &[])?.is_some()))
                .await?;
        if any {
            return Ok(None);
        }
        let password = temporary_password()?;
        let created = self
            .create_staff(
                &Caller::anonymous("cli"),
                StaffForm {
                    login: Some("admin".into()),
                    name: Some("Administrator".into()),
                    role: Some("admin".into()),
                    password: Some(password.clone()),
                    totp: Some(true),
                },
            )
            .await?;
        Ok(Some((password, created.totp_uri.unwrap_or_default())))
    }
}

pub(crate) fn read_staff(tx: &mut dyn Tx, id: i64) -> Result<StaffUser, ServiceError> {
    let row = tx
        .query_opt(
            "SELECT id, login, name, role, status, totp_secret IS NOT NULL, created_at_us FROM staff WHERE id = $1",
            &[Value::Int(id)],
        )?
        .ok_or(ServiceError::NotFound("staff_not_found", "no such staff user"))?;
    Ok(StaffUser {
        id: row.int(0)?,
        login: row.text(1)?,
        name: row.text(2)?,
        role: Role::parse(&row.text(3)?).ok_or_else(|| ServiceError::Internal("a stored role is unknown".into()))?,
        status: row.text(4)?,
        totp_enabled: row.int(5)? != 0,
        created_at: rfc3339(row.int(6)?),
    })
}

/// A generated password: 20 characters from an alphabet without look-alikes,
/// about 115 bits.
pub fn temporary_password() -> ServiceResult<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = crypto::random_bytes(20)?;
    Ok(bytes.iter().map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: serde_json::Value) -> NotificationsUpdate {
        serde_json::from_value(json).unwrap_or_default()
    }

    #[test]
    fn notification_switches_change_one_by_one() {
        let off = NotificationPrefs::default();
        assert!(!off.on_login);
        let sms_login = off.updated(update(json!({"sms_on_login": true})));
        assert_eq!(sms_login, NotificationPrefs::new(false, false, true, false));
        assert!(sms_login.on_login);
        let email = sms_login.updated(update(json!({"email_per_transaction": true})));
        assert_eq!(email, NotificationPrefs::new(false, true, true, false));
        assert_eq!(email.updated(update(json!({}))), email);
    }

    #[test]
    fn on_login_keeps_its_first_meaning() {
        // The first API version's three fields: sign-in notices go to the
        // channels that are on per transaction.
        let old = update(json!({"sms_per_transaction": false, "email_per_transaction": true, "on_login": true}));
        assert_eq!(NotificationPrefs::default().updated(old), NotificationPrefs::new(false, true, false, true));
        let all = NotificationPrefs::new(true, true, true, true);
        assert_eq!(all.updated(update(json!({"on_login": false}))), NotificationPrefs::new(true, true, false, false));
        // An explicit channel switch wins over on_login.
        let both = update(json!({"on_login": false, "sms_on_login": true}));
        assert_eq!(all.updated(both), NotificationPrefs::new(true, true, true, false));
    }
}
