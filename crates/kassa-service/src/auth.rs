//! Sign-in: passwords, sessions, access and refresh tokens, throttling.
//!
//! An access token is a short-lived JWT naming a server-side session; every
//! request checks that the session is live and the user active (with a
//! half-second cache per process, so a revocation reaches every node within
//! a second). The refresh token is `{session}.{generation}.{random}`, stored
//! only as a hash; presenting a spent generation revokes the session, since
//! only a thief replays an old refresh token.
//!
//! Failed sign-ins are counted in the database, so every node sees them:
//! per login (after `login_failures_free` failures, 429 with a growing
//! `Retry-After`, capped — never a permanent lock) and per client address
//! (a much higher limit; over it, only logins without recent failures are
//! still checked, so a stranger flooding from an address shared with a
//! customer never stops that customer's correct first attempt).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kassa_store::sql::{self, Tx, Value};
use kassa_store::{StoreError, now_us};
use serde_json::json;

use crate::crypto::{self, Claims, TokenError};
use crate::{Bank, Caller, Role, ServiceError, ServiceResult, SignedIn};

/// How long a session check is trusted before the database is asked again.
const SESSION_CACHE_TTL: Duration = Duration::from_millis(500);
const SESSION_CACHE_MAX: usize = 100_000;
/// The first block after the free failures; doubles with each further one.
const FIRST_BLOCK_S: i64 = 30;
/// Failures older than this are forgotten.
const LOGIN_WINDOW_S: i64 = 3600;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    /// Set when the user must change the password before anything else.
    pub password_change_required: bool,
}

#[derive(Clone, Debug)]
struct SessionInfo {
    caller_user: SignedIn,
}

/// Per-process cache of recent session checks.
#[derive(Debug, Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<String, (Instant, Option<SessionInfo>)>>,
}

impl SessionCache {
    fn get(&self, session: &str) -> Option<Option<SessionInfo>> {
        let entries = self.entries.lock().ok()?;
        let (at, info) = entries.get(session)?;
        (at.elapsed() < SESSION_CACHE_TTL).then(|| info.clone())
    }

    fn put(&self, session: &str, info: Option<SessionInfo>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= SESSION_CACHE_MAX {
                entries.retain(|_, (at, _)| at.elapsed() < SESSION_CACHE_TTL);
                if entries.len() >= SESSION_CACHE_MAX {
                    entries.clear();
                }
            }
            entries.insert(session.to_owned(), (Instant::now(), info));
        }
    }

    fn forget(&self, session: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(session);
        }
    }

    fn forget_all(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// A user as sign-in sees it.
#[derive(Clone, Debug)]
struct Account {
    kind: &'static str,
    id: i64,
    role: Role,
    password_hash: String,
    active: bool,
    must_change_password: bool,
    totp_secret: Option<Vec<u8>>,
    totp_last_step: i64,
}

fn unix_s(now_us: i64) -> i64 {
    now_us.div_euclid(1_000_000)
}

/// Hashes a password on a blocking thread (argon2id is deliberately slow).
pub(crate) async fn hash_password(bank: &Bank, password: String) -> ServiceResult<String> {
    let memory = bank.settings.argon2_memory_kib;
    tokio::task::spawn_blocking(move || crypto::hash_password(&password, memory))
        .await
        .map_err(|error| ServiceError::Internal(format!("the hashing thread failed: {error}")))?
        .map_err(ServiceError::from)
}

async fn verify_password(bank: &Bank, hash: Option<String>, password: String) -> ServiceResult<bool> {
    let memory = bank.settings.argon2_memory_kib;
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => crypto::verify_password(&hash, &password),
        None => {
            crypto::dummy_verify(&password, memory);
            false
        }
    })
    .await
    .map_err(|error| ServiceError::Internal(format!("the hashing thread failed: {error}")))
}

/// Creates a session and returns its id and first refresh token.
pub(crate) fn create_session(
    tx: &mut dyn Tx,
    kind: &str,
    user_id: i64,
    origin: &str,
    now_us: i64,
    ttl_s: i64,
) -> Result<(String, String), ServiceError> {
    let session = crypto::random_token(16)?;
    let refresh = format!("{session}.1.{}", crypto::random_token(32)?);
    tx.execute(
        "INSERT INTO sessions (id, user_kind, user_id, created_at_us, expires_at_us, refresh_hash, generation, origin) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
        &[
            Value::from(&session),
            Value::from(kind),
            Value::Int(user_id),
            Value::Int(now_us),
            Value::Int(now_us.saturating_add(ttl_s.saturating_mul(1_000_000))),
            Value::Blob(crypto::sha256(refresh.as_bytes()).to_vec()),
            Value::from(origin),
        ],
    )?;
    Ok((session, refresh))
}

impl Bank {
    pub(crate) fn issue_tokens(
        &self,
        user: &SignedIn,
        refresh_token: String,
        now_us: i64,
        password_change_required: bool,
    ) -> ServiceResult<Tokens> {
        let iat = unix_s(now_us);
        let ttl = self.settings.access_token_ttl_s.clamp(1, 900);
        let sub = match user.role {
            Role::Customer => format!("customer:{}", user.id),
            _ => format!("staff:{}", user.id),
        };
        let claims = Claims {
            iss: "kassa".into(),
            aud: "kassa-api".into(),
            sub,
            sid: user.session_id.clone(),
            role: user.role.as_str().into(),
            iat,
            exp: iat + ttl,
        };
        Ok(Tokens {
            access_token: self.tokens.sign(&claims)?,
            refresh_token,
            token_type: "Bearer",
            expires_in: ttl,
            password_change_required,
        })
    }

    /// Signs in with a phone number (customers) or a staff login, a
    /// password and, for staff with a second factor, a TOTP code.
    pub async fn login(&self, origin: &str, login: &str, password: &str, totp: Option<&str>) -> ServiceResult<Tokens> {
        self.login_from(&Caller::anonymous(origin), login, password, totp).await
    }

    /// [`Bank::login`] for a caller that is not signed in yet but carries
    /// more than an address: the terminal protocol's clock for the journal.
    pub async fn login_from(
        &self,
        from: &Caller,
        login: &str,
        password: &str,
        totp: Option<&str>,
    ) -> ServiceResult<Tokens> {
        let origin = from.origin.as_str();
        let clock = from.clock;
        let now = now_us();
        // Phones are normalised so that every spelling of one number shares
        // one throttle; anything else is a staff login, compared in lower case.
        let (kind, login_key) = match self.profile.normalize_phone("login", login) {
            Ok(phone) => ("customer", phone),
            Err(_) => ("staff", login.trim().to_lowercase()),
        };
        if login_key.is_empty() || login_key.len() > 128 || password.len() > 1024 {
            return Err(invalid_credentials());
        }
        let throttle = self.throttle_state(&login_key, origin, now).await?;
        if let Some(retry_after_s) = throttle.login_blocked_s {
            return Err(ServiceError::Throttled { retry_after_s });
        }
        if throttle.address_over && throttle.login_failures > 0 {
            return Err(ServiceError::Throttled { retry_after_s: self.settings.address_window_s });
        }
        let account = self.sign_in_account(kind, &login_key).await?;
        let ok = verify_password(self, account.as_ref().map(|a| a.password_hash.clone()), password.to_owned()).await?;
        let account = match account {
            Some(account) if ok && account.active => account,
            _ => {
                self.record_failure(from, &login_key, now, "invalid_credentials").await?;
                if throttle.address_over {
                    return Err(ServiceError::Throttled { retry_after_s: self.settings.address_window_s });
                }
                return Err(invalid_credentials());
            }
        };
        // The second factor: required for every staff member who has one
        // (all admins do).
        let mut totp_step = None;
        if let Some(secret) = &account.totp_secret {
            let Some(code) = totp.filter(|code| !code.is_empty()) else {
                return Err(ServiceError::Unauthorized("totp_required", "enter the code from your authenticator app"));
            };
            match crypto::totp::verify(secret, code, unix_s(now)) {
                Some(step) if step > account.totp_last_step => totp_step = Some(step),
                _ => {
                    self.record_failure(from, &login_key, now, "totp_invalid").await?;
                    return Err(ServiceError::Unauthorized("totp_invalid", "the authenticator code is not valid"));
                }
            }
        }
        let role = account.role;
        let account_id = account.id;
        let must_change = account.must_change_password;
        let origin_owned = origin.to_owned();
        let ttl = self.settings.session_ttl_s;
        let (session, refresh) = sql::write(&*self.db, move |tx| {
            tx.execute("DELETE FROM login_throttle WHERE key = $1", &[Value::from(format!("login:{login_key}"))])?;
            let table = if account.kind == "customer" { "customers" } else { "staff" };
            tx.execute(
                &format!("UPDATE {table} SET last_login_at_us = $2 WHERE id = $1"),
                &[Value::Int(account.id), Value::Int(now)],
            )?;
            if let Some(step) = totp_step {
                // Refuses a second use of the same code, even on another node.
                let changed = tx.execute(
                    "UPDATE staff SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2",
                    &[Value::Int(account.id), Value::Int(step)],
                )?;
                if changed == 0 {
                    return Err(ServiceError::Unauthorized("totp_invalid", "the authenticator code is not valid"));
                }
            }
            let (session, refresh) = create_session(tx, account.kind, account.id, &origin_owned, now, ttl)?;
            let caller = Caller {
                user: Some(SignedIn { id: account.id, role, session_id: session.clone(), restricted: false }),
                origin: origin_owned.clone(),
                clock,
            };
            sql::journal(tx, now, &[caller.audit("auth.login", caller.actor(), json!({"session": short(&session)}))])?;
            Ok::<_, ServiceError>((session, refresh))
        })
        .await?;
        let user = SignedIn { id: account_id, role, session_id: session, restricted: must_change };
        self.issue_tokens(&user, refresh, now, must_change)
    }

    async fn sign_in_account(&self, kind: &'static str, login: &str) -> ServiceResult<Option<Account>> {
        let login = login.to_owned();
        sql::read(&*self.db, move |tx| {
            if kind == "customer" {
                let Some(row) = tx.query_opt(
                    "SELECT id, password_hash, status, must_change_password FROM customers WHERE phone = $1",
                    &[Value::from(&login)],
                )?
                else {
                    return Ok(None);
                };
                return Ok(Some(Account {
                    kind: "customer",
                    id: row.int(0)?,
                    role: Role::Customer,
                    password_hash: row.text(1)?,
                    active: row.text(2)? == "active",
                    must_change_password: row.int(3)? != 0,
                    totp_secret: None,
                    totp_last_step: 0,
                }));
            }
            let Some(row) = tx.query_opt(
                "SELECT id, password_hash, status, must_change_password, role, totp_secret, totp_last_step \
                 FROM staff WHERE login = $1",
                &[Value::from(&login)],
            )?
            else {
                return Ok(None);
            };
            Ok::<_, StoreError>(Some(Account {
                kind: "staff",
                id: row.int(0)?,
                role: Role::parse(&row.text(4)?).ok_or_else(|| StoreError::Corrupt("a staff role".into()))?,
                password_hash: row.text(1)?,
                active: row.text(2)? == "active",
                must_change_password: row.int(3)? != 0,
                totp_secret: row.opt_blob(5)?,
                totp_last_step: row.int(6)?,
            }))
        })
        .await
        .map_err(ServiceError::from)
    }

    async fn throttle_state(&self, login_key: &str, origin: &str, now: i64) -> ServiceResult<Throttle> {
        let keys = [format!("login:{login_key}"), format!("addr:{origin}")];
        let window_us = self.settings.address_window_s.saturating_mul(1_000_000);
        let address_max = i64::from(self.settings.address_failures_max);
        sql::read(&*self.db, move |tx| {
            let mut state = Throttle::default();
            for row in tx.query(
                "SELECT key, failures, window_start_us, blocked_until_us FROM login_throttle WHERE key IN ($1, $2)",
                &[Value::from(&keys[0]), Value::from(&keys[1])],
            )? {
                let key = row.text(0)?;
                let failures = row.int(1)?;
                let window_start = row.int(2)?;
                let blocked_until = row.int(3)?;
                if key == keys[0] {
                    if now - window_start < LOGIN_WINDOW_S * 1_000_000 {
                        state.login_failures = failures;
                    }
                    if blocked_until > now {
                        state.login_blocked_s = Some((blocked_until - now + 999_999) / 1_000_000);
                    }
                } else if now - window_start < window_us && failures >= address_max {
                    state.address_over = true;
                }
            }
            Ok::<_, StoreError>(state)
        })
        .await
        .map_err(ServiceError::from)
    }

    /// Counts a failed sign-in against the login and the address and
    /// journals it, in one transaction.
    async fn record_failure(&self, from: &Caller, login_key: &str, now: i64, outcome: &str) -> ServiceResult<()> {
        let origin = from.origin.as_str();
        let login = format!("login:{login_key}");
        let address = format!("addr:{origin}");
        let free = i64::from(self.settings.login_failures_free);
        let cap_us = self.settings.login_throttle_max_s.saturating_mul(1_000_000);
        let window_us = self.settings.address_window_s.saturating_mul(1_000_000);
        let mut draft = from.audit("auth.login", format!("login:{login_key}"), json!({}));
        draft.outcome = outcome.to_owned();
        sql::write(&*self.db, move |tx| {
            bump(tx, &login, now, LOGIN_WINDOW_S * 1_000_000, |failures| {
                // After the free failures each one blocks for twice as long
                // as the last, up to the cap.
                if failures < free {
                    return 0;
                }
                let doublings = u32::try_from((failures - free).min(20)).unwrap_or(20);
                (FIRST_BLOCK_S * 1_000_000).saturating_mul(1_i64 << doublings).min(cap_us)
            })?;
            bump(tx, &address, now, window_us, |_| 0)?;
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            Ok::<_, ServiceError>(())
        })
        .await
    }

    /// Checks an access token and its session; the caller it names.
    pub async fn authenticate(&self, token: &str, origin: &str) -> ServiceResult<Caller> {
        let now = now_us();
        let claims = self.tokens.verify(token, unix_s(now)).map_err(|error| match error {
            TokenError::Expired => {
                ServiceError::Unauthorized("token_expired", "the access token has expired; refresh it")
            }
            _ => ServiceError::Unauthorized("invalid_token", "the access token is not valid"),
        })?;
        let info = match self.sessions.get(&claims.sid) {
            Some(info) => info,
            None => {
                let info = self.load_session(&claims.sid, now).await?;
                self.sessions.put(&claims.sid, info.clone());
                info
            }
        };
        let Some(info) = info else {
            return Err(ServiceError::Unauthorized("session_revoked", "the session has ended; sign in again"));
        };
        // The token's subject and role must be the session's.
        if claims.sub != subject(&info.caller_user) || claims.role != info.caller_user.role.as_str() {
            return Err(ServiceError::Unauthorized("invalid_token", "the access token is not valid"));
        }
        Ok(Caller { user: Some(info.caller_user), origin: origin.to_owned(), clock: None })
    }

    async fn load_session(&self, session: &str, now: i64) -> ServiceResult<Option<SessionInfo>> {
        let session = session.to_owned();
        sql::read(&*self.db, move |tx| {
            let Some(row) = tx.query_opt(
                "SELECT user_kind, user_id, revoked_at_us, expires_at_us FROM sessions WHERE id = $1",
                &[Value::from(&session)],
            )?
            else {
                return Ok(None);
            };
            if row.opt_int(2)?.is_some() || row.int(3)? <= now {
                return Ok(None);
            }
            let kind = row.text(0)?;
            let id = row.int(1)?;
            let (role, status, must_change) = if kind == "customer" {
                let Some(user) = tx
                    .query_opt("SELECT status, must_change_password FROM customers WHERE id = $1", &[Value::Int(id)])?
                else {
                    return Ok(None);
                };
                (Role::Customer, user.text(0)?, user.int(1)? != 0)
            } else {
                let Some(user) = tx.query_opt(
                    "SELECT status, must_change_password, role FROM staff WHERE id = $1",
                    &[Value::Int(id)],
                )?
                else {
                    return Ok(None);
                };
                let role = Role::parse(&user.text(2)?).ok_or_else(|| StoreError::Corrupt("a staff role".into()))?;
                (role, user.text(0)?, user.int(1)? != 0)
            };
            if status != "active" {
                return Ok(None);
            }
            Ok::<_, StoreError>(Some(SessionInfo {
                caller_user: SignedIn { id, role, session_id: session.clone(), restricted: must_change },
            }))
        })
        .await
        .map_err(ServiceError::from)
    }

    /// Exchanges a refresh token for new tokens, rotating it. A spent
    /// generation revokes the whole session.
    pub async fn refresh(&self, origin: &str, refresh_token: &str) -> ServiceResult<Tokens> {
        let now = now_us();
        let invalid = || ServiceError::Unauthorized("invalid_refresh_token", "the refresh token is not valid");
        let mut parts = refresh_token.splitn(3, '.');
        let (Some(session), Some(generation), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let generation: i64 = generation.parse().map_err(|_| invalid())?;
        if session.len() > 64 || refresh_token.len() > 256 {
            return Err(invalid());
        }
        let session = session.to_owned();
        let presented = crypto::sha256(refresh_token.as_bytes()).to_vec();
        let origin = origin.to_owned();
        let rotating = session.clone();
        // `None`: a spent token came back and the session was revoked.
        let rotated = sql::write(&*self.db, move |tx| {
            let Some(row) = tx.query_opt(
                "SELECT user_kind, user_id, revoked_at_us, expires_at_us, refresh_hash, generation FROM sessions \
                 WHERE id = $1",
                &[Value::from(&rotating)],
            )?
            else {
                return Err(invalid());
            };
            let kind = row.text(0)?;
            let user_id = row.int(1)?;
            if row.opt_int(2)?.is_some() || row.int(3)? <= now {
                return Err(ServiceError::Unauthorized("session_revoked", "the session has ended; sign in again"));
            }
            let current = row.int(5)?;
            if !crypto::ct_eq(&row.blob(4)?, &presented) {
                if generation < current {
                    // A spent token came back: someone holds a copy.
                    tx.execute(
                        "UPDATE sessions SET revoked_at_us = $2, revoked_reason = 'refresh_token_reused' WHERE id = $1",
                        &[Value::from(&rotating), Value::Int(now)],
                    )?;
                    let caller = Caller::anonymous(origin.clone());
                    let mut draft = caller.audit(
                        "auth.refresh",
                        format!("{kind}:{user_id}"),
                        json!({"session": short(&rotating), "revoked": true}),
                    );
                    draft.outcome = "refresh_token_reused".into();
                    sql::journal(tx, now, &[draft])?;
                    return Ok(None);
                }
                return Err(invalid());
            }
            let next = current + 1;
            let refresh = format!("{rotating}.{next}.{}", crypto::random_token(32)?);
            tx.execute(
                "UPDATE sessions SET refresh_hash = $2, generation = $3 WHERE id = $1 AND generation = $4",
                &[
                    Value::from(&rotating),
                    Value::Blob(crypto::sha256(refresh.as_bytes()).to_vec()),
                    Value::Int(next),
                    Value::Int(current),
                ],
            )?;
            Ok::<_, ServiceError>(Some(refresh))
        })
        .await?;
        let Some(refresh) = rotated else {
            self.sessions.forget_all();
            return Err(ServiceError::Unauthorized(
                "refresh_token_reused",
                "this refresh token was already used; the session has been ended for safety",
            ));
        };
        let Some(info) = self.load_session(&session, now).await? else {
            return Err(ServiceError::Unauthorized("session_revoked", "the session has ended; sign in again"));
        };
        let restricted = info.caller_user.restricted;
        self.issue_tokens(&info.caller_user, refresh, now, restricted)
    }

    /// Ends the caller's session (or every session of the caller's, with
    /// `everywhere`).
    pub async fn logout(&self, caller: &Caller, everywhere: bool) -> ServiceResult<()> {
        let user = caller.user.clone().ok_or(ServiceError::Unauthorized("unauthorized", "sign in first"))?;
        let now = now_us();
        let kind = if user.role == Role::Customer { "customer" } else { "staff" };
        let draft = caller.audit(
            if everywhere { "auth.logout_all" } else { "auth.logout" },
            caller.actor(),
            json!({"session": short(&user.session_id)}),
        );
        let session = user.session_id.clone();
        sql::write(&*self.db, move |tx| {
            if everywhere {
                tx.execute(
                    "UPDATE sessions SET revoked_at_us = $3, revoked_reason = 'logout_all' \
                     WHERE user_kind = $1 AND user_id = $2 AND revoked_at_us IS NULL",
                    &[Value::from(kind), Value::Int(user.id), Value::Int(now)],
                )?;
            } else {
                tx.execute(
                    "UPDATE sessions SET revoked_at_us = $2, revoked_reason = 'logout' WHERE id = $1 \
                     AND revoked_at_us IS NULL",
                    &[Value::from(&session), Value::Int(now)],
                )?;
            }
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            Ok::<_, ServiceError>(())
        })
        .await?;
        if everywhere {
            self.sessions.forget_all();
        } else {
            self.sessions.forget(&user.session_id);
        }
        Ok(())
    }

    /// Changes the caller's password after checking the current one; every
    /// other session of theirs ends.
    pub async fn change_password(&self, caller: &Caller, current: &str, new: &str) -> ServiceResult<()> {
        let user = caller.user.clone().ok_or(ServiceError::Unauthorized("unauthorized", "sign in first"))?;
        let now = now_us();
        let (table, kind, login_column) =
            if user.role == Role::Customer { ("customers", "customer", "phone") } else { ("staff", "staff", "login") };
        let id = user.id;
        let (hash, login) = sql::read(&*self.db, move |tx| {
            let row = tx.query_one(
                &format!("SELECT password_hash, {login_column} FROM {table} WHERE id = $1"),
                &[Value::Int(id)],
            )?;
            Ok::<_, StoreError>((row.text(0)?, row.text(1)?))
        })
        .await?;
        if !verify_password(self, Some(hash), current.to_owned()).await? {
            return Err(ServiceError::invalid(
                "current_password",
                "current_password_wrong",
                "the current password is wrong",
            ));
        }
        crate::country::check_password("new_password", new, &login).map_err(|p| ServiceError::Invalid(vec![p]))?;
        if new == current {
            return Err(ServiceError::invalid(
                "new_password",
                "password_unchanged",
                "the new password must differ from the current one",
            ));
        }
        let hash = hash_password(self, new.to_owned()).await?;
        let draft = caller.audit("auth.password_change", caller.actor(), json!({}));
        let session = user.session_id.clone();
        sql::write(&*self.db, move |tx| {
            tx.execute(
                &format!(
                    "UPDATE {table} SET password_hash = $2, must_change_password = 0, version = version + 1 WHERE id = $1"
                ),
                &[Value::Int(id), Value::from(&hash)],
            )?;
            tx.execute(
                "UPDATE sessions SET revoked_at_us = $4, revoked_reason = 'password_changed' \
                 WHERE user_kind = $1 AND user_id = $2 AND id <> $3 AND revoked_at_us IS NULL",
                &[Value::from(kind), Value::Int(id), Value::from(&session), Value::Int(now)],
            )?;
            sql::journal(tx, now, std::slice::from_ref(&draft))?;
            Ok::<_, ServiceError>(())
        })
        .await?;
        self.sessions.forget_all();
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Throttle {
    login_failures: i64,
    login_blocked_s: Option<i64>,
    address_over: bool,
}

/// Adds one failure to a throttle row, restarting its window when the old
/// one has passed, and sets its block from `block_us(failures)`.
fn bump(tx: &mut dyn Tx, key: &str, now: i64, window_us: i64, block_us: impl Fn(i64) -> i64) -> Result<(), StoreError> {
    let row =
        tx.query_opt("SELECT failures, window_start_us FROM login_throttle WHERE key = $1", &[Value::from(key)])?;
    let (failures, start) = match row {
        Some(row) if now - row.int(1)? < window_us => (row.int(0)? + 1, row.int(1)?),
        _ => (1, now),
    };
    let blocked_until = match block_us(failures) {
        0 => 0,
        block => now.saturating_add(block),
    };
    tx.execute(
        "INSERT INTO login_throttle (key, failures, window_start_us, blocked_until_us) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, window_start_us = excluded.window_start_us, \
         blocked_until_us = excluded.blocked_until_us",
        &[Value::from(key), Value::Int(failures), Value::Int(start), Value::Int(blocked_until)],
    )?;
    Ok(())
}

fn invalid_credentials() -> ServiceError {
    ServiceError::Unauthorized("invalid_credentials", "the login or the password is wrong")
}

fn subject(user: &SignedIn) -> String {
    match user.role {
        Role::Customer => format!("customer:{}", user.id),
        _ => format!("staff:{}", user.id),
    }
}

/// The first characters of a session id: enough to tell sessions apart in
/// the journal, useless to anyone who reads it.
pub(crate) fn short(session: &str) -> String {
    session.chars().take(8).collect()
}

impl Bank {
    pub(crate) fn sessions_forget_all(&self) {
        self.sessions.forget_all();
    }
}
