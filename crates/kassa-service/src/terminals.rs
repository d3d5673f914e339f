//! Registered terminals (ATMs, kiosks) and what the terminal protocol needs
//! from the bank beyond the customer and staff use-cases: a terminal's
//! identity, card sign-in at a terminal, sessions bound to a terminal and a
//! card, each terminal's own cash accounts, and the protocol's logical clock
//! high-water mark (docs/terminal-protocol.md).

use kassa_store::sql::{self, Tx, Value};
use serde_json::json;

use crate::auth::{Tokens, create_session, short};
use crate::people::rfc3339;
use crate::{Bank, Caller, Page, Role, ServiceError, ServiceResult, SignedIn, crypto, page_cursor, page_limit};
use kassa_store::now_us;

/// A registered terminal as admins see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TerminalView {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub created_at: String,
}

/// A terminal just registered, with its key: shown once, never again.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewTerminal {
    pub terminal: TerminalView,
    pub key: String,
}

impl std::fmt::Debug for NewTerminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewTerminal").field("terminal", &self.terminal).field("key", &"[redacted]").finish()
    }
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct TerminalForm {
    pub name: Option<String>,
}

/// A sign-in at a terminal: the tokens and, after a card login, the card's
/// account (the only one the session may use).
#[derive(Clone, Debug)]
pub struct TerminalLogin {
    pub tokens: Tokens,
    pub caller: Caller,
    pub card_account: Option<i64>,
}

/// The step by which the clock's high-water mark is reserved ahead: one
/// database write per 2²⁰ ticks.
pub const CLOCK_RESERVE_STEP: i64 = 1 << 20;

const TERMINAL_COLUMNS: &str = "id, name, status, created_at_us";

fn terminal_from_row(row: &sql::Row) -> Result<TerminalView, kassa_store::StoreError> {
    Ok(TerminalView { id: row.int(0)?, name: row.text(1)?, status: row.text(2)?, created_at: rfc3339(row.int(3)?) })
}

fn key_hash(key: &str) -> [u8; 32] {
    crypto::sha256(format!("kassa terminal key v1\n{key}").as_bytes())
}

fn terminal_unknown() -> ServiceError {
    ServiceError::Unauthorized("terminal_unknown", "the terminal id or key is not valid")
}

/// Admins, or the command line on the server's machine.
fn admin_or_cli(caller: &Caller) -> ServiceResult<()> {
    if caller.user.is_none() && caller.origin == "cli" {
        return Ok(());
    }
    caller.staff(Role::Admin).map(|_| ())
}

impl Bank {
    /// Registers a terminal and returns its key, once.
    pub async fn register_terminal(&self, caller: &Caller, form: TerminalForm) -> ServiceResult<NewTerminal> {
        admin_or_cli(caller)?;
        let name = form.name.unwrap_or_default().trim().to_owned();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ServiceError::invalid("name", "name_invalid", "a terminal name is 1–64 printable characters"));
        }
        let key = crypto::random_token(32)?;
        let hash = key_hash(&key);
        let now = now_us();
        let caller = caller.clone();
        let terminal = sql::write(&*self.db, move |tx| {
            let id = tx
                .query_one(
                    "INSERT INTO terminals (name, key_hash, status, created_at_us) VALUES ($1, $2, 'active', $3) \
                     RETURNING id",
                    &[Value::from(&name), Value::Blob(hash.to_vec()), Value::Int(now)],
                )?
                .int(0)?;
            sql::journal(
                tx,
                now,
                &[caller.audit("terminal.register", format!("terminal:{id}"), json!({"name": name}))],
            )?;
            Ok::<_, ServiceError>(TerminalView {
                id,
                name: name.clone(),
                status: "active".into(),
                created_at: rfc3339(now),
            })
        })
        .await?;
        Ok(NewTerminal { terminal, key })
    }

    pub async fn list_terminals(
        &self,
        caller: &Caller,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<Page<TerminalView>> {
        admin_or_cli(caller)?;
        let limit = page_limit(limit)?;
        let after = page_cursor(cursor)?.unwrap_or(0);
        let items = sql::read(&*self.db, move |tx| {
            tx.query(
                &format!("SELECT {TERMINAL_COLUMNS} FROM terminals WHERE id > $1 ORDER BY id LIMIT $2"),
                &[Value::Int(after), Value::Int(i64::from(limit))],
            )?
            .iter()
            .map(terminal_from_row)
            .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(Page::from_rows(items, limit, |terminal| terminal.id.to_string()))
    }

    /// Disables a terminal (its `hello` is refused from then on) or enables
    /// it again.
    pub async fn set_terminal_status(&self, caller: &Caller, id: i64, status: &str) -> ServiceResult<TerminalView> {
        admin_or_cli(caller)?;
        if !["active", "disabled"].contains(&status) {
            return Err(ServiceError::invalid("status", "status_invalid", "status must be active or disabled"));
        }
        let status = status.to_owned();
        let caller = caller.clone();
        let now = now_us();
        sql::write(&*self.db, move |tx| {
            if tx.execute("UPDATE terminals SET status = $2 WHERE id = $1", &[Value::Int(id), Value::from(&status)])?
                == 0
            {
                return Err(ServiceError::NotFound("terminal_not_found", "no such terminal"));
            }
            sql::journal(
                tx,
                now,
                &[caller.audit("terminal.status", format!("terminal:{id}"), json!({"status": status}))],
            )?;
            let row =
                tx.query_one(&format!("SELECT {TERMINAL_COLUMNS} FROM terminals WHERE id = $1"), &[Value::Int(id)])?;
            Ok(terminal_from_row(&row)?)
        })
        .await
    }

    /// Checks a terminal's id and key (`hello`): the terminal, if it is
    /// registered and active.
    pub async fn authenticate_terminal(&self, id: i64, key: &str) -> ServiceResult<TerminalView> {
        if key.is_empty() || key.len() > 256 {
            return Err(terminal_unknown());
        }
        let hash = key_hash(key);
        let found = sql::read(&*self.db, move |tx| {
            tx.query_opt(
                &format!("SELECT {TERMINAL_COLUMNS}, key_hash FROM terminals WHERE id = $1"),
                &[Value::Int(id)],
            )?
            .map(|row| Ok::<_, kassa_store::StoreError>((terminal_from_row(&row)?, row.blob(4)?)))
            .transpose()
        })
        .await?;
        match found {
            Some((terminal, stored)) if crypto::ct_eq(&stored, &hash) && terminal.status == "active" => Ok(terminal),
            _ => Err(terminal_unknown()),
        }
    }

    /// Signs a customer in with a card and PIN at a registered terminal:
    /// the PIN is checked (wrong ones count towards the card's block), and
    /// the session is bound to the terminal and the card's account.
    pub async fn card_login(
        &self,
        from: &Caller,
        terminal: i64,
        card: &str,
        pin: &str,
    ) -> ServiceResult<TerminalLogin> {
        let accepted = self.verify_card_pin_at(card, pin, Some(terminal), from.clock).await?;
        let now = now_us();
        let ttl = self.settings.session_ttl_s;
        let origin = from.origin.clone();
        let clock = from.clock;
        let owner = accepted.owner;
        let account = accepted.account;
        let (session, refresh) = sql::write(&*self.db, move |tx| {
            let active = tx
                .query_opt("SELECT status FROM customers WHERE id = $1", &[Value::Int(owner)])?
                .map(|row| row.text(0))
                .transpose()?;
            if active.as_deref() != Some("active") {
                return Err(ServiceError::Unauthorized("invalid_credentials", "this card cannot be used"));
            }
            let (session, refresh) = create_session(tx, "customer", owner, &origin, now, ttl)?;
            tx.execute(
                "INSERT INTO terminal_sessions (session_id, terminal_id, card_account, created_at_us) \
                 VALUES ($1, $2, $3, $4)",
                &[Value::from(&session), Value::Int(terminal), Value::Int(account), Value::Int(now)],
            )?;
            let caller = Caller {
                user: Some(SignedIn {
                    id: owner,
                    role: Role::Customer,
                    session_id: session.clone(),
                    restricted: false,
                }),
                origin: origin.clone(),
                clock,
            };
            sql::journal(
                tx,
                now,
                &[caller.audit(
                    "auth.card_login",
                    format!("account:{account}"),
                    json!({"session": short(&session), "terminal": terminal}),
                )],
            )?;
            Ok::<_, ServiceError>((session, refresh))
        })
        .await?;
        let user = SignedIn { id: owner, role: Role::Customer, session_id: session, restricted: false };
        let tokens = self.issue_tokens(&user, refresh, now, false)?;
        let caller = Caller { user: Some(user), origin: from.origin.clone(), clock: from.clock };
        Ok(TerminalLogin { tokens, caller, card_account: Some(account) })
    }

    /// The terminal binding of a session: `(terminal, card account)` if the
    /// session was opened with a card.
    pub async fn terminal_session(&self, session_id: &str) -> ServiceResult<Option<(Option<i64>, Option<i64>)>> {
        let session_id = session_id.to_owned();
        Ok(sql::read(&*self.db, move |tx| {
            tx.query_opt(
                "SELECT terminal_id, card_account FROM terminal_sessions WHERE session_id = $1",
                &[Value::from(&session_id)],
            )?
            .map(|row| Ok::<_, kassa_store::StoreError>((row.opt_int(0)?, row.opt_int(1)?)))
            .transpose()
        })
        .await?)
    }

    /// The terminal's cash account in `currency`, created at first use.
    pub(crate) async fn terminal_cash_account(&self, terminal: i64, currency: &str) -> ServiceResult<i64> {
        let currency = currency.to_owned();
        let lookup = currency.clone();
        let found = sql::read(&*self.db, move |tx| {
            tx.query_opt(
                "SELECT account_id FROM terminal_cash WHERE terminal_id = $1 AND currency = $2",
                &[Value::Int(terminal), Value::from(&lookup)],
            )?
            .map(|row| row.int(0))
            .transpose()
        })
        .await?;
        if let Some(id) = found {
            return Ok(id);
        }
        let profile = self.profile.clone();
        let bank_code = self.settings.bank.bank_code.clone();
        let now = now_us();
        sql::write(&*self.db, move |tx| {
            // Two first uses at once: the terminal's row is locked first, so
            // the second waits and then finds the account the first made.
            lock_terminal(tx, terminal)?;
            if let Some(row) = tx.query_opt(
                "SELECT account_id FROM terminal_cash WHERE terminal_id = $1 AND currency = $2",
                &[Value::Int(terminal), Value::from(&currency)],
            )? {
                return Ok(row.int(0)?);
            }
            let id = crate::accounts::insert_ledger_account(tx, &profile, &bank_code, None, "cash", &currency, now)?;
            tx.execute(
                "INSERT INTO terminal_cash (terminal_id, currency, account_id) VALUES ($1, $2, $3)",
                &[Value::Int(terminal), Value::from(&currency), Value::Int(id)],
            )?;
            Ok::<_, ServiceError>(id)
        })
        .await
    }

    /// The clock's reserved high-water mark, as stored.
    pub async fn terminal_clock_mark(&self) -> ServiceResult<i64> {
        Ok(sql::read(&*self.db, |tx| tx.query_one("SELECT high_water FROM terminal_clock WHERE id = 1", &[])?.int(0))
            .await?)
    }

    /// Raises the clock's high-water mark to at least `mark` (never lowers
    /// it: another node may have reserved further).
    pub async fn reserve_terminal_clock(&self, mark: i64) -> ServiceResult<i64> {
        Ok(sql::write(&*self.db, move |tx| {
            tx.execute(
                "UPDATE terminal_clock SET high_water = $1 WHERE id = 1 AND high_water < $1",
                &[Value::Int(mark)],
            )?;
            tx.query_one("SELECT high_water FROM terminal_clock WHERE id = 1", &[])?.int(0)
        })
        .await?)
    }
}

fn lock_terminal(tx: &mut dyn Tx, terminal: i64) -> ServiceResult<()> {
    let locked = if tx.backend() == "postgres" {
        tx.query_opt("SELECT id FROM terminals WHERE id = $1 FOR UPDATE", &[Value::Int(terminal)])?
    } else {
        tx.query_opt("SELECT id FROM terminals WHERE id = $1", &[Value::Int(terminal)])?
    };
    locked.map(|_| ()).ok_or(ServiceError::NotFound("terminal_not_found", "no such terminal"))
}
