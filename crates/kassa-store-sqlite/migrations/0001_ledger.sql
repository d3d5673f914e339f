-- The ledger: accounts with cached running totals, and immutable transfers.
-- Every rule the ledger enforces in code that a row can express is repeated
-- here as a constraint, so a bug above cannot silently corrupt money.

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    number          TEXT    NOT NULL UNIQUE,
    owner_id        INTEGER,
    currency        TEXT    NOT NULL CHECK (length(currency) = 3),
    kind            TEXT    NOT NULL CHECK (kind IN ('current', 'savings', 'debit_card', 'credit_card',
                                    'cash', 'fee_income', 'interest_expense', 'fx_position', 'settlement')),
    status          TEXT    NOT NULL CHECK (status IN ('active', 'blocked', 'closed')),
    credit_limit    INTEGER NOT NULL CHECK (credit_limit >= 0),
    debits_posted   INTEGER NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted  INTEGER NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending  INTEGER NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending INTEGER NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    bank_overdraft  INTEGER NOT NULL DEFAULT 0 CHECK (bank_overdraft IN (0, 1)),
    last_seq        INTEGER,
    created_at_us   INTEGER NOT NULL,
    -- Lets transfers reference (account, currency), so the database itself
    -- refuses a transfer whose sides hold different currencies.
    UNIQUE (id, currency),
    -- A customer account stays within its credit limit, counting holds,
    -- unless a flagged bank debit (interest, fee) took it past the limit.
    CHECK (kind IN ('cash', 'fee_income', 'interest_expense', 'fx_position', 'settlement')
           OR bank_overdraft = 1
           OR credits_posted - debits_posted - debits_pending >= -credit_limit),
    -- A closed account holds nothing.
    CHECK (status <> 'closed'
           OR (debits_posted = credits_posted AND debits_pending = 0 AND credits_pending = 0))
);

CREATE TABLE transfers (
    -- Ledger position; also the history-chain link target.
    seq                  INTEGER PRIMARY KEY,
    -- The client-chosen id (16 bytes, big-endian): the idempotency key.
    id                   BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    debit_account_id     INTEGER NOT NULL,
    credit_account_id    INTEGER NOT NULL,
    amount               INTEGER NOT NULL CHECK (amount > 0),
    currency             TEXT    NOT NULL,
    kind                 TEXT    NOT NULL CHECK (kind IN ('transfer', 'deposit', 'withdrawal', 'fx', 'fee',
                                         'interest', 'reversal', 'settlement', 'adjustment')),
    op                   TEXT    NOT NULL CHECK (op IN ('single', 'pending', 'post', 'void', 'reverse')),
    ref_id               BLOB    CHECK (ref_id IS NULL OR length(ref_id) = 16),
    timeout_s            INTEGER CHECK (timeout_s IS NULL OR (op = 'pending' AND timeout_s >= 0)),
    state                TEXT    NOT NULL CHECK (state IN ('posted', 'pending', 'voided')),
    linked               INTEGER NOT NULL CHECK (linked IN (0, 1)),
    bank_debit           INTEGER NOT NULL CHECK (bank_debit IN (0, 1)),
    description          TEXT    NOT NULL CHECK (length(CAST(description AS BLOB)) <= 512),
    chain_id             BLOB,
    expires_at_us        INTEGER,
    created_at_us        INTEGER NOT NULL,
    debit_balance_after  INTEGER NOT NULL,
    credit_balance_after INTEGER NOT NULL,
    prev_debit_seq       INTEGER,
    prev_credit_seq      INTEGER,
    overdraft            INTEGER NOT NULL CHECK (overdraft IN (0, 1)),
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((op IN ('post', 'void', 'reverse')) = (ref_id IS NOT NULL)),
    CHECK (op = 'pending' OR state = CASE op WHEN 'void' THEN 'voided' ELSE 'posted' END),
    FOREIGN KEY (debit_account_id, currency) REFERENCES accounts (id, currency),
    FOREIGN KEY (credit_account_id, currency) REFERENCES accounts (id, currency)
);

-- A pending transfer is posted or voided at most once, and a transfer is
-- reversed at most once.
CREATE UNIQUE INDEX transfers_one_resolution ON transfers (ref_id) WHERE ref_id IS NOT NULL;
-- The expiry sweeper's queue: only live holds with a timeout.
CREATE INDEX transfers_pending_expiry ON transfers (expires_at_us)
    WHERE state = 'pending' AND expires_at_us IS NOT NULL;
