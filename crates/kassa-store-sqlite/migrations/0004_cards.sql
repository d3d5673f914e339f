-- Cards: the card facts beside a card account (number, holder name, valid-to,
-- PIN hash and failures), and customers' applications for a credit card or
-- a higher limit. The CVV is never stored: it is derived on demand from the
-- card key, the number and the expiry.

-- A card product may have an issuer prefix of its own (else the [cards]
-- setting's).
ALTER TABLE products ADD COLUMN card_prefix TEXT
    CHECK (card_prefix IS NULL OR length(card_prefix) BETWEEN 1 AND 8);

CREATE TABLE cards (
    account_id    INTEGER PRIMARY KEY REFERENCES accounts (id),
    -- 16 digits, the last a Luhn check digit; works wherever an account
    -- number does.
    number        TEXT    NOT NULL UNIQUE CHECK (length(number) = 16 AND number NOT GLOB '*[^0-9]*'),
    -- Embossed: Latin capitals, spaces, hyphens, apostrophes and dots.
    holder_name   TEXT    NOT NULL CHECK (length(holder_name) BETWEEN 2 AND 26),
    -- The last month the card is valid, YYYY-MM.
    valid_to      TEXT    NOT NULL CHECK (length(valid_to) = 7),
    -- HMAC(PIN key, account id || PIN); the key is not in the database.
    pin_hash      BLOB,
    -- Wrong PINs in a row at registered terminals; 3 block PIN use.
    pin_failures  INTEGER NOT NULL DEFAULT 0 CHECK (pin_failures BETWEEN 0 AND 3),
    pin_blocked   INTEGER NOT NULL DEFAULT 0 CHECK (pin_blocked IN (0, 1)),
    lost          INTEGER NOT NULL DEFAULT 0 CHECK (lost IN (0, 1)),
    created_at_us INTEGER NOT NULL,
    version       INTEGER NOT NULL DEFAULT 0,
    -- Blocked exactly when three wrong PINs in a row were entered.
    CHECK ((pin_blocked = 1) = (pin_failures >= 3))
);

CREATE TABLE applications (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL REFERENCES customers (id),
    -- credit_card: a new credit card; credit_limit: a higher limit on one.
    kind            TEXT    NOT NULL CHECK (kind IN ('credit_card', 'credit_limit')),
    product_id      INTEGER REFERENCES products (id),
    currency        TEXT    NOT NULL,
    -- The card the limit is for; for a credit_card, the card opened when
    -- the application was approved.
    account_id      INTEGER REFERENCES accounts (id),
    requested_limit INTEGER NOT NULL CHECK (requested_limit > 0),
    holder_name     TEXT,
    nickname        TEXT    NOT NULL DEFAULT '',
    consents        TEXT    NOT NULL DEFAULT '[]',
    status          TEXT    NOT NULL CHECK (status IN ('submitted', 'approved', 'rejected')),
    decided_limit   INTEGER CHECK (decided_limit IS NULL OR decided_limit > 0),
    decided_by      INTEGER REFERENCES staff (id),
    reason          TEXT,
    created_at_us   INTEGER NOT NULL,
    decided_at_us   INTEGER,
    version         INTEGER NOT NULL DEFAULT 0,
    CHECK ((status = 'submitted') = (decided_by IS NULL AND decided_at_us IS NULL)),
    CHECK (status <> 'approved' OR (decided_limit IS NOT NULL AND account_id IS NOT NULL)),
    CHECK (status <> 'rejected' OR (reason IS NOT NULL AND decided_limit IS NULL)),
    CHECK (kind <> 'credit_limit' OR account_id IS NOT NULL),
    CHECK (kind <> 'credit_card' OR product_id IS NOT NULL)
);
CREATE INDEX applications_by_customer ON applications (customer_id, id);
CREATE INDEX applications_by_status ON applications (status, id);
