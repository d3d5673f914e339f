//! Reading and verifying the audit journal.

use kassa_store::StoreError;
use kassa_store::audit::{self, AUDIT_COLUMNS, AuditReport};
use kassa_store::sql::{self, Value};

use crate::people::rfc3339;
use crate::{Bank, Caller, Page, Role, ServiceResult, page_cursor, page_limit};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JournalEvent {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub subject: String,
    pub origin: String,
    pub clock: Option<i64>,
    pub outcome: String,
    pub detail: serde_json::Value,
    pub chain: i64,
    pub chain_seq: i64,
}

/// Filters for the journal; each is an exact match.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct JournalFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub subject: Option<String>,
    pub outcome: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

impl Bank {
    /// Managers read the journal, newest first, filtered and paged.
    pub async fn journal(&self, caller: &Caller, filter: JournalFilter) -> ServiceResult<Page<JournalEvent>> {
        caller.staff(Role::Manager)?;
        let limit = page_limit(filter.limit)?;
        let before = page_cursor(filter.cursor.as_deref())?.unwrap_or(i64::MAX);
        let events = sql::read(&*self.db, move |tx| {
            let rows = tx.query(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE id < $1 AND ($2 = '' OR actor = $2) \
                     AND ($3 = '' OR action = $3) AND ($4 = '' OR subject = $4) AND ($5 = '' OR outcome = $5) \
                     ORDER BY id DESC LIMIT $6"
                ),
                &[
                    Value::Int(before),
                    Value::from(filter.actor.clone().unwrap_or_default()),
                    Value::from(filter.action.clone().unwrap_or_default()),
                    Value::from(filter.subject.clone().unwrap_or_default()),
                    Value::from(filter.outcome.clone().unwrap_or_default()),
                    Value::Int(i64::from(limit)),
                ],
            )?;
            rows.iter().map(audit::event_from_row).collect::<Result<Vec<_>, StoreError>>()
        })
        .await?;
        let next_cursor = (events.len() == limit as usize).then(|| events.last().map(|e| e.id.to_string())).flatten();
        let items = events
            .into_iter()
            .map(|event| JournalEvent {
                id: event.id,
                at: rfc3339(event.at_us),
                actor: event.draft.actor,
                role: event.draft.role,
                action: event.draft.action,
                subject: event.draft.subject,
                origin: event.draft.origin,
                clock: event.draft.clock,
                outcome: event.draft.outcome,
                detail: serde_json::from_str(&event.draft.detail).unwrap_or(serde_json::Value::Null),
                chain: event.chain_id,
                chain_seq: event.chain_seq,
            })
            .collect();
        Ok(Page { items, next_cursor })
    }

    /// Walks every chain; the result of `kassa audit verify`.
    pub async fn verify_journal(&self, caller: &Caller) -> ServiceResult<AuditReport> {
        if caller.user.is_some() {
            caller.staff(Role::Manager)?;
        }
        Ok(sql::read(&*self.db, audit::verify).await?)
    }
}
