-- Idempotency keys are honoured by the ledger itself (a key derives the
-- transfer's id, and a retry is answered from the recorded transfer), so the
-- table of stored responses is no longer needed.
DROP TABLE idempotency_keys;

-- Fixed-window counters shared by every node, for limits such as recipient
-- look-ups per customer. `key` names what is counted and for whom.
CREATE TABLE rate_limits (
    key             TEXT    PRIMARY KEY,
    window_start_us BIGINT NOT NULL,
    count           BIGINT NOT NULL CHECK (count >= 0)
);
