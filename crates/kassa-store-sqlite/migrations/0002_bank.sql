-- The bank around the ledger: people, sign-in, products, account details,
-- idempotency records and the audit journal. Written to read the same in
-- both dialects; only the column types differ from the PostgreSQL file.

CREATE TABLE customers (
    id                   INTEGER PRIMARY KEY,
    first_name           TEXT    NOT NULL,
    last_name            TEXT    NOT NULL,
    phone                TEXT    NOT NULL UNIQUE,
    email                TEXT    NOT NULL,
    passport_number      TEXT    NOT NULL,
    personal_id          TEXT    NOT NULL UNIQUE,
    password_hash        TEXT    NOT NULL,
    -- Set for customers registered at the desk with a temporary password.
    must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1)),
    status               TEXT    NOT NULL CHECK (status IN ('active', 'blocked')),
    notify_sms           INTEGER NOT NULL DEFAULT 1 CHECK (notify_sms IN (0, 1)),
    notify_email         INTEGER NOT NULL DEFAULT 1 CHECK (notify_email IN (0, 1)),
    notify_login         INTEGER NOT NULL DEFAULT 0 CHECK (notify_login IN (0, 1)),
    created_by           TEXT    NOT NULL,
    created_at_us        INTEGER NOT NULL,
    last_login_at_us     INTEGER,
    -- Bumped by every change; also how a transaction locks the row on both
    -- engines (UPDATE … SET version = version + 1).
    version              INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE staff (
    id            INTEGER PRIMARY KEY,
    login         TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('teller', 'manager', 'admin')),
    status        TEXT    NOT NULL CHECK (status IN ('active', 'blocked')),
    password_hash TEXT    NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1)),
    totp_secret   BLOB,
    -- The last TOTP time step accepted, so a code cannot be replayed.
    totp_last_step INTEGER NOT NULL DEFAULT 0,
    created_at_us INTEGER NOT NULL,
    last_login_at_us INTEGER,
    version       INTEGER NOT NULL DEFAULT 0
);

-- A signed-in session. Access tokens name it and are refused once it is
-- revoked; the refresh token is stored only as a hash, with a generation so
-- a spent one is recognised (and revokes the session) when replayed.
CREATE TABLE sessions (
    id             TEXT    PRIMARY KEY,
    user_kind      TEXT    NOT NULL CHECK (user_kind IN ('customer', 'staff')),
    user_id        INTEGER NOT NULL,
    created_at_us  INTEGER NOT NULL,
    expires_at_us  INTEGER NOT NULL,
    revoked_at_us  INTEGER,
    revoked_reason TEXT,
    refresh_hash   BLOB    NOT NULL,
    generation     INTEGER NOT NULL,
    origin         TEXT    NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_kind, user_id);

-- Failed sign-ins per login and per client address, shared by every node.
CREATE TABLE login_throttle (
    key             TEXT    PRIMARY KEY,
    failures        INTEGER NOT NULL,
    window_start_us INTEGER NOT NULL,
    blocked_until_us INTEGER NOT NULL
);

CREATE TABLE products (
    id            INTEGER PRIMARY KEY,
    code          TEXT    NOT NULL UNIQUE,
    kind          TEXT    NOT NULL CHECK (kind IN ('current', 'savings', 'debit_card', 'credit_card')),
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    currencies    TEXT    NOT NULL,
    interest_rate TEXT    NOT NULL DEFAULT '0',
    consents      TEXT    NOT NULL,
    active        INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_at_us INTEGER NOT NULL,
    version       INTEGER NOT NULL DEFAULT 0
);

-- What the bank knows about a customer account beyond the ledger's row.
CREATE TABLE account_details (
    account_id    INTEGER PRIMARY KEY REFERENCES accounts (id),
    customer_id   INTEGER NOT NULL REFERENCES customers (id),
    product_id    INTEGER NOT NULL REFERENCES products (id),
    currency      TEXT    NOT NULL,
    nickname      TEXT    NOT NULL,
    is_default    INTEGER NOT NULL CHECK (is_default IN (0, 1)),
    consents      TEXT    NOT NULL,
    opened_by     TEXT    NOT NULL
);
CREATE INDEX account_details_by_customer ON account_details (customer_id);
-- At most one default account per customer and currency.
CREATE UNIQUE INDEX account_details_one_default ON account_details (customer_id, currency) WHERE is_default = 1;

-- The bank's own accounts (cash desk, fee income …), one per kind and currency.
CREATE TABLE system_accounts (
    kind       TEXT    NOT NULL,
    currency   TEXT    NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    PRIMARY KEY (kind, currency)
);

-- Responses to requests that carried an Idempotency-Key, per caller and route.
CREATE TABLE idempotency_keys (
    scope         TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    request_hash  BLOB    NOT NULL,
    status        INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

-- The audit journal: chains (one or more per process) anchor their head
-- here, outside the events, so a deleted tail is detected.
CREATE TABLE audit_chains (
    id            INTEGER PRIMARY KEY,
    node          TEXT    NOT NULL,
    created_at_us INTEGER NOT NULL,
    head_seq      INTEGER NOT NULL,
    head_hash     BLOB    NOT NULL
);

CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY,
    chain_id  INTEGER NOT NULL,
    chain_seq INTEGER NOT NULL,
    at_us     INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    role      TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    origin    TEXT    NOT NULL,
    clock     INTEGER,
    outcome   TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL,
    UNIQUE (chain_id, chain_seq)
);
CREATE INDEX audit_events_by_action ON audit_events (action, id);
CREATE INDEX audit_events_by_actor ON audit_events (actor, id);
