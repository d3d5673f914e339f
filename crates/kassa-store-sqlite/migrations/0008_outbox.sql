-- The notification outbox. A journaled event that may interest customers
-- (AuditDraft.notify, outcome ok) gets an outbox_events row in the same
-- transaction; the worker fans each one out into outbox_messages (one per
-- channel and recipient, with an id derived from the three, so a repeated
-- fan-out makes no new ids) and delivers those at least once.

CREATE TABLE outbox_events (
    id               INTEGER PRIMARY KEY,
    chain_id         INTEGER NOT NULL,
    chain_seq        INTEGER NOT NULL,
    created_at_us    INTEGER NOT NULL,
    fanned_out_at_us INTEGER,
    -- The event it is for (audit_events (chain_id, chain_seq)); no foreign
    -- key, so the journal stays append-only with nothing pointing into it.
    UNIQUE (chain_id, chain_seq)
);
CREATE INDEX outbox_events_waiting ON outbox_events (id) WHERE fanned_out_at_us IS NULL;

CREATE TABLE outbox_messages (
    seq             INTEGER PRIMARY KEY,
    -- The message's id: the receivers' deduplication key.
    id              TEXT    NOT NULL UNIQUE CHECK (length(id) BETWEEN 8 AND 64),
    event_id        INTEGER NOT NULL REFERENCES outbox_events (id),
    channel         TEXT    NOT NULL CHECK (channel IN ('sms', 'email')),
    customer_id     INTEGER NOT NULL REFERENCES customers (id),
    recipient       TEXT    NOT NULL CHECK (length(recipient) > 0),
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL CHECK (length(body) > 0),
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_us INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until_us  INTEGER,
    last_error      TEXT,
    created_at_us   INTEGER NOT NULL,
    delivered_at_us INTEGER,
    dead_at_us      INTEGER,
    CHECK ((state = 'delivered') = (delivered_at_us IS NOT NULL)),
    CHECK ((state = 'dead') = (dead_at_us IS NOT NULL)),
    CHECK ((lease_owner IS NULL) = (lease_until_us IS NULL)),
    UNIQUE (event_id, channel, customer_id)
);
CREATE INDEX outbox_messages_due ON outbox_messages (next_attempt_us) WHERE state = 'pending';
CREATE INDEX outbox_messages_by_state ON outbox_messages (state, seq);
