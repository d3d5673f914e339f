//! The audit journal: append-only, hash-chained, with each chain's head
//! anchored in a separate row.
//!
//! Every process appends to chains of its own (one row in `audit_chains`
//! each, created when it starts), so journaling never becomes a bank-wide
//! lock: a chain's row is locked only for the transaction that appends to
//! it. An event's hash covers the previous event's hash and every field of
//! its own, so an altered or inserted event breaks the chain where it sits,
//! and the anchored head (sequence and hash) catches a deleted tail.

use sha2::{Digest, Sha256};

use crate::StoreError;
use crate::sql::{Tx, Value};

/// What a service wants journaled; the journal adds the chain position,
/// the time and the hashes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuditDraft {
    /// Who acted: `customer:42`, `staff:7`, `system`, `anonymous`.
    pub actor: String,
    /// The actor's role at the time: `customer`, `teller`, `manager`,
    /// `admin`, `system`, `anonymous`.
    pub role: String,
    /// What was done, `noun.verb`: `customer.register`, `transfer.create`.
    pub action: String,
    /// What it was done to: `account:12`, `transfer:…`, `login:+375…`.
    pub subject: String,
    /// Where it came from: a client address, `terminal:3`, `cli`.
    pub origin: String,
    /// The terminal protocol's logical clock, when the event came from it.
    pub clock: Option<i64>,
    /// `ok`, or the stable error code the actor was given.
    pub outcome: String,
    /// A small JSON object with the facts worth keeping. Never a secret.
    pub detail: String,
    /// The event may interest the customers it concerns: the journal also
    /// writes an outbox row for it, in the same transaction, from which
    /// the notification worker delivers messages (kassa-service `notify`).
    /// Not part of the stored event or its hash.
    pub notify: bool,
}

/// One stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub chain_id: i64,
    pub chain_seq: i64,
    pub at_us: i64,
    pub draft: AuditDraft,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

pub const AUDIT_COLUMNS: &str =
    "id, chain_id, chain_seq, at_us, actor, role, action, subject, origin, clock, outcome, detail, prev_hash, hash";

pub fn event_from_row(row: &crate::sql::Row) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: row.int(0)?,
        chain_id: row.int(1)?,
        chain_seq: row.int(2)?,
        at_us: row.int(3)?,
        draft: AuditDraft {
            actor: row.text(4)?,
            role: row.text(5)?,
            action: row.text(6)?,
            subject: row.text(7)?,
            origin: row.text(8)?,
            clock: row.opt_int(9)?,
            outcome: row.text(10)?,
            detail: row.text(11)?,
            notify: false,
        },
        prev_hash: row.blob(12)?,
        hash: row.blob(13)?,
    })
}

/// The hash of the chain before its first event.
pub fn genesis_hash(chain_id: i64) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(b"kassa audit chain v1");
    hasher.update(chain_id.to_be_bytes());
    hasher.finalize().to_vec()
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// The hash of one event: every field, length-prefixed so no two different
/// events can encode alike, after the previous event's hash.
pub fn event_hash(prev_hash: &[u8], chain_id: i64, chain_seq: i64, at_us: i64, draft: &AuditDraft) -> Vec<u8> {
    let mut hasher = Sha256::new();
    field(&mut hasher, prev_hash);
    hasher.update(chain_id.to_be_bytes());
    hasher.update(chain_seq.to_be_bytes());
    hasher.update(at_us.to_be_bytes());
    for text in [&draft.actor, &draft.role, &draft.action, &draft.subject, &draft.origin, &draft.outcome, &draft.detail]
    {
        field(&mut hasher, text.as_bytes());
    }
    match draft.clock {
        Some(clock) => {
            hasher.update([1]);
            hasher.update(clock.to_be_bytes());
        }
        None => hasher.update([0]),
    }
    hasher.finalize().to_vec()
}

/// Creates a new chain for a process (`node` names it for people) and
/// returns its id.
pub fn open_chain(tx: &mut dyn Tx, node: &str, now_us: i64) -> Result<i64, StoreError> {
    let row = tx.query_one(
        "INSERT INTO audit_chains (node, created_at_us, head_seq, head_hash) VALUES ($1, $2, 0, $3) RETURNING id",
        &[Value::from(node), Value::Int(now_us), Value::Blob(Vec::new())],
    )?;
    let id = row.int(0)?;
    tx.execute(
        "UPDATE audit_chains SET head_hash = $2 WHERE id = $1",
        &[Value::Int(id), Value::Blob(genesis_hash(id))],
    )?;
    Ok(id)
}

/// Whether an event gets an outbox row: the service asked for it and the
/// operation succeeded (refusals and replays notify nobody).
pub fn wants_outbox(draft: &AuditDraft) -> bool {
    draft.notify && draft.outcome == "ok"
}

/// Appends events to a chain inside the caller's transaction. The first
/// statement locks the chain's row until the transaction ends. Each event
/// that [`wants_outbox`] also gets its `outbox_events` row here, in the
/// same transaction, so nothing is sent for a change that did not commit.
pub fn append(tx: &mut dyn Tx, chain_id: i64, at_us: i64, drafts: &[AuditDraft]) -> Result<(), StoreError> {
    if drafts.is_empty() {
        return Ok(());
    }
    let count = i64::try_from(drafts.len()).map_err(|_| StoreError::Database("too many audit events".into()))?;
    let head = tx
        .query_opt(
            "UPDATE audit_chains SET head_seq = head_seq + $2 WHERE id = $1 RETURNING head_seq, head_hash",
            &[Value::Int(chain_id), Value::Int(count)],
        )?
        .ok_or_else(|| StoreError::Corrupt(format!("audit chain {chain_id} does not exist")))?;
    let mut seq = head.int(0)? - count;
    let mut prev = head.blob(1)?;
    for draft in drafts {
        seq += 1;
        let hash = event_hash(&prev, chain_id, seq, at_us, draft);
        tx.execute(
            "INSERT INTO audit_events (chain_id, chain_seq, at_us, actor, role, action, subject, origin, clock, \
             outcome, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                Value::Int(chain_id),
                Value::Int(seq),
                Value::Int(at_us),
                Value::from(&draft.actor),
                Value::from(&draft.role),
                Value::from(&draft.action),
                Value::from(&draft.subject),
                Value::from(&draft.origin),
                Value::from(draft.clock),
                Value::from(&draft.outcome),
                Value::from(&draft.detail),
                Value::Blob(prev),
                Value::Blob(hash.clone()),
            ],
        )?;
        if wants_outbox(draft) {
            tx.execute(
                "INSERT INTO outbox_events (chain_id, chain_seq, created_at_us) VALUES ($1, $2, $3)",
                &[Value::Int(chain_id), Value::Int(seq), Value::Int(at_us)],
            )?;
        }
        prev = hash;
    }
    tx.execute("UPDATE audit_chains SET head_hash = $2 WHERE id = $1", &[Value::Int(chain_id), Value::Blob(prev)])?;
    Ok(())
}

/// One thing wrong with the journal, naming the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditProblem {
    pub chain_id: i64,
    pub chain_seq: i64,
    /// The event's row id, when the event exists.
    pub event_id: Option<i64>,
    pub problem: String,
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.event_id {
            Some(id) => write!(f, "event {id} (chain {} #{}): {}", self.chain_id, self.chain_seq, self.problem),
            None => write!(f, "chain {} #{}: {}", self.chain_id, self.chain_seq, self.problem),
        }
    }
}

/// What `kassa audit verify` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub chains: u64,
    pub events: u64,
    pub problems: Vec<AuditProblem>,
}

const VERIFY_PAGE: i64 = 5_000;
const PROBLEMS_MAX: usize = 1_000;

/// Walks every chain from its genesis to its anchored head and reports each
/// altered, inserted, reordered or missing event.
pub fn verify(tx: &mut dyn Tx) -> Result<AuditReport, StoreError> {
    let mut report = AuditReport::default();
    let chains = tx.query("SELECT id, head_seq, head_hash FROM audit_chains ORDER BY id", &[])?;
    // Events on chains that do not exist are insertions too.
    for row in tx.query(
        "SELECT e.id, e.chain_id, e.chain_seq FROM audit_events e LEFT JOIN audit_chains c ON c.id = e.chain_id \
         WHERE c.id IS NULL LIMIT 100",
        &[],
    )? {
        report.problems.push(AuditProblem {
            chain_id: row.int(1)?,
            chain_seq: row.int(2)?,
            event_id: Some(row.int(0)?),
            problem: "the event belongs to no known chain (inserted)".into(),
        });
    }
    for chain in chains {
        let chain_id = chain.int(0)?;
        let head_seq = chain.int(1)?;
        let head_hash = chain.blob(2)?;
        report.chains += 1;
        let mut expected_seq = 1;
        let mut prev = genesis_hash(chain_id);
        loop {
            let rows = tx.query(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE chain_id = $1 AND chain_seq >= $2 \
                     ORDER BY chain_seq LIMIT $3"
                ),
                &[Value::Int(chain_id), Value::Int(expected_seq), Value::Int(VERIFY_PAGE)],
            )?;
            let page_len = rows.len();
            for row in rows {
                let event = event_from_row(&row)?;
                report.events += 1;
                let mut problem = |problem: String| {
                    if report.problems.len() < PROBLEMS_MAX {
                        report.problems.push(AuditProblem {
                            chain_id,
                            chain_seq: event.chain_seq,
                            event_id: Some(event.id),
                            problem,
                        });
                    }
                };
                if event.chain_seq != expected_seq {
                    problem(format!(
                        "events #{expected_seq}..#{} of the chain are missing (deleted)",
                        event.chain_seq - 1
                    ));
                }
                if event.prev_hash != prev {
                    problem("its link to the previous event does not match (an event was inserted or removed)".into());
                }
                let computed = event_hash(&event.prev_hash, chain_id, event.chain_seq, event.at_us, &event.draft);
                if computed != event.hash {
                    problem("its contents do not match its hash (altered)".into());
                }
                prev = event.hash;
                expected_seq = event.chain_seq + 1;
            }
            if i64::try_from(page_len).unwrap_or(i64::MAX) < VERIFY_PAGE {
                break;
            }
        }
        let last_seq = expected_seq - 1;
        if last_seq < head_seq {
            report.problems.push(AuditProblem {
                chain_id,
                chain_seq: last_seq + 1,
                event_id: None,
                problem: format!(
                    "events #{}..#{head_seq} are missing: the anchored head is #{head_seq} (deleted)",
                    last_seq + 1
                ),
            });
        } else if last_seq > head_seq {
            report.problems.push(AuditProblem {
                chain_id,
                chain_seq: head_seq + 1,
                event_id: None,
                problem: format!("events after the anchored head #{head_seq} (appended outside the journal)"),
            });
        } else if prev != head_hash {
            report.problems.push(AuditProblem {
                chain_id,
                chain_seq: head_seq,
                event_id: None,
                problem: "the newest event does not match the anchored head hash (altered)".into(),
            });
        }
    }
    Ok(report)
}
