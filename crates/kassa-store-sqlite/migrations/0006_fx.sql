-- Exchange rates and quotes (issue 4). Written to read the same in both
-- dialects; only the column types differ from the PostgreSQL file.

-- Every rate ever set, newest last: the current rate of a pair is its row
-- with the largest id, and the rows before it are the history. A rate is
-- never updated. `buy` and `sell` are decimal rates scaled by 10^8 (exact
-- integers, never floats): the bank buys `unit` of `base` for buy/10^8 of
-- `quote` and sells them for sell/10^8.
CREATE TABLE fx_rates (
    id          INTEGER PRIMARY KEY,
    base        TEXT    NOT NULL CHECK (length(base) = 3),
    quote       TEXT    NOT NULL CHECK (length(quote) = 3 AND quote <> base),
    unit        INTEGER NOT NULL CHECK (unit BETWEEN 1 AND 1000000),
    buy_e8      INTEGER NOT NULL CHECK (buy_e8 > 0),
    sell_e8     INTEGER NOT NULL CHECK (sell_e8 >= buy_e8),
    -- `admin` (PUT /admin/rates) or `file` (the polled rates file).
    source      TEXT    NOT NULL CHECK (source IN ('admin', 'file')),
    set_by      TEXT    NOT NULL,
    as_of_us    INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL
);
CREATE INDEX fx_rates_by_pair ON fx_rates (base, quote, id);

-- A rate locked for one customer and one direction until `expires_at_us`.
-- It copies the rate it locked, so a later rate cannot change it.
CREATE TABLE fx_quotes (
    id            TEXT    PRIMARY KEY,
    customer_id   INTEGER NOT NULL REFERENCES customers (id),
    from_currency TEXT    NOT NULL CHECK (length(from_currency) = 3),
    to_currency   TEXT    NOT NULL CHECK (length(to_currency) = 3 AND to_currency <> from_currency),
    rate_id       INTEGER NOT NULL REFERENCES fx_rates (id),
    base          TEXT    NOT NULL,
    unit          INTEGER NOT NULL CHECK (unit >= 1),
    -- The one side of the rate that applies in this direction.
    rate_e8       INTEGER NOT NULL CHECK (rate_e8 > 0),
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL CHECK (expires_at_us > created_at_us),
    CHECK (base IN (from_currency, to_currency))
);
CREATE INDEX fx_quotes_by_expiry ON fx_quotes (expires_at_us);
