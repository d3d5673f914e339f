-- Registered terminals (ATMs, kiosks). Only a hash of each terminal's key is
-- kept; the key is shown once when the terminal is registered.
CREATE TABLE terminals (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL,
    key_hash        BLOB    NOT NULL CHECK (length(key_hash) = 32),
    status          TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at_us   INTEGER NOT NULL,
    last_seen_at_us INTEGER
);

-- Each terminal's own cash account per currency (a system `cash` account),
-- so the cash a machine took in and paid out is reconciled per machine.
CREATE TABLE terminal_cash (
    terminal_id INTEGER NOT NULL REFERENCES terminals (id),
    currency    TEXT    NOT NULL,
    account_id  INTEGER NOT NULL UNIQUE REFERENCES accounts (id),
    PRIMARY KEY (terminal_id, currency)
);

-- What a terminal session is bound to beyond its sign-in session: the
-- terminal it was opened at and, after a card login, the card's account.
-- `resume` on another connection reads it back.
CREATE TABLE terminal_sessions (
    session_id    TEXT    PRIMARY KEY,
    terminal_id   INTEGER REFERENCES terminals (id),
    card_account  INTEGER REFERENCES accounts (id),
    created_at_us INTEGER NOT NULL
);

-- The terminal protocol's logical clock: a high-water mark reserved ahead of
-- use, so a restarted server starts above every clock it ever sent.
CREATE TABLE terminal_clock (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    high_water INTEGER NOT NULL CHECK (high_water >= 0)
);
INSERT INTO terminal_clock (id, high_water) VALUES (1, 0);
