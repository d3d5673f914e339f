-- Interest (issue 4): one accrual row per account and day, one posting row
-- per account and month. See docs/interest.md.
--
-- An accrual is written once, with the day's result, and never changed: the
-- primary key is what makes a second run for the same day a no-op. Amounts
-- are exact: `accrued_minor` whole minor units plus `carry`, the remainder
-- after them in units of 1 / (365 * 366 * 10^12) of a minor unit, carried
-- into the next day (so nothing is lost to rounding).

CREATE TABLE interest_accruals (
    account_id    BIGINT  NOT NULL REFERENCES accounts (id),
    day           TEXT    NOT NULL CHECK (length(day) = 10),
    -- 'pay': the bank pays on a positive balance (savings);
    -- 'charge': the bank charges on a negative balance (credit cards).
    direction     TEXT    NOT NULL CHECK (direction IN ('pay', 'charge')),
    -- The end-of-day posted balance the day accrued on.
    balance_minor BIGINT  NOT NULL,
    -- The product's annual rate used, as a decimal fraction ('0.05').
    rate          TEXT    NOT NULL,
    -- Actual/actual: the days of the day's calendar year.
    year_days     BIGINT  NOT NULL CHECK (year_days IN (365, 366)),
    accrued_minor BIGINT  NOT NULL CHECK (accrued_minor >= 0),
    carry         BIGINT  NOT NULL CHECK (carry >= 0 AND carry < 133590000000000000),
    created_at_us BIGINT  NOT NULL,
    PRIMARY KEY (account_id, day)
);

CREATE TABLE interest_postings (
    account_id    BIGINT  NOT NULL REFERENCES accounts (id),
    month         TEXT    NOT NULL CHECK (length(month) = 7),
    direction     TEXT    NOT NULL CHECK (direction IN ('pay', 'charge')),
    amount_minor  BIGINT  NOT NULL CHECK (amount_minor >= 0),
    -- The ledger transfer (derived from account and month); NULL when the
    -- month accrued less than one minor unit and nothing moved.
    transfer_id   TEXT,
    -- The charge took the account past its credit limit (reported).
    overdraft     BIGINT  NOT NULL DEFAULT 0 CHECK (overdraft IN (0, 1)),
    posted_at_us  BIGINT  NOT NULL,
    PRIMARY KEY (account_id, month),
    CHECK ((amount_minor = 0 AND transfer_id IS NULL) OR (amount_minor > 0 AND transfer_id IS NOT NULL))
);
