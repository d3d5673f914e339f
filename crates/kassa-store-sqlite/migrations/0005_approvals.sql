-- Per-account daily limits and their daily usage; four-eyes approval
-- requests. Amounts are minor units of the account's currency.

-- Each product's default daily limits (NULL: no limit).
ALTER TABLE products ADD COLUMN daily_withdrawal_limit INTEGER DEFAULT 1000000
    CHECK (daily_withdrawal_limit IS NULL OR daily_withdrawal_limit >= 0);
ALTER TABLE products ADD COLUMN daily_transfer_limit INTEGER DEFAULT 5000000
    CHECK (daily_transfer_limit IS NULL OR daily_transfer_limit >= 0);

-- A manager's override of an account's daily limits (NULL: the product's).
CREATE TABLE account_limits (
    account_id       INTEGER PRIMARY KEY REFERENCES accounts (id),
    daily_withdrawal INTEGER CHECK (daily_withdrawal IS NULL OR daily_withdrawal >= 0),
    daily_transfer   INTEGER CHECK (daily_transfer IS NULL OR daily_transfer >= 0),
    updated_by       TEXT    NOT NULL,
    updated_at_us    INTEGER NOT NULL
);

-- What an account used of a limit on a bank day (reserved before the ledger
-- is asked, given back if it refuses).
CREATE TABLE daily_usage (
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    day        TEXT    NOT NULL CHECK (length(day) = 10),
    kind       TEXT    NOT NULL CHECK (kind IN ('withdrawal', 'transfer')),
    used       INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (account_id, day, kind)
);

-- An operation waiting for a second staff member.
CREATE TABLE approvals (
    id             INTEGER PRIMARY KEY,
    kind           TEXT    NOT NULL CHECK (kind IN ('cash_withdrawal', 'staff_transfer', 'credit_limit')),
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'failed')),
    maker_id       INTEGER NOT NULL REFERENCES staff (id),
    checker_id     INTEGER REFERENCES staff (id),
    account_id     INTEGER NOT NULL REFERENCES accounts (id),
    -- The credit side of a held operation: the other customer account, or
    -- the bank's cash account for a withdrawal.
    other_account  INTEGER REFERENCES accounts (id),
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    currency       TEXT    NOT NULL CHECK (length(currency) = 3),
    description    TEXT    NOT NULL,
    -- The pending ledger transfer holding the money (16 bytes), if any.
    hold_id        BLOB    CHECK (hold_id IS NULL OR length(hold_id) = 16),
    -- The bank day whose daily usage the request reserved, if any.
    usage_day      TEXT,
    usage_kind     TEXT    CHECK (usage_kind IS NULL OR usage_kind IN ('withdrawal', 'transfer')),
    reason         TEXT    NOT NULL DEFAULT '',
    created_at_us  INTEGER NOT NULL,
    expires_at_us  INTEGER NOT NULL,
    decided_at_us  INTEGER,
    -- Set once the approved operation ran (the hold posted, the limit set).
    executed_at_us INTEGER,
    version        INTEGER NOT NULL DEFAULT 0,
    CHECK (expires_at_us > created_at_us),
    CHECK (checker_id IS NULL OR checker_id <> maker_id),
    CHECK ((status = 'pending') = (decided_at_us IS NULL)),
    CHECK (kind = 'credit_limit' OR hold_id IS NOT NULL),
    CHECK ((kind = 'credit_limit') = (other_account IS NULL))
);
CREATE INDEX approvals_by_status ON approvals (status, id);
CREATE INDEX approvals_pending_expiry ON approvals (expires_at_us) WHERE status = 'pending';
