-- The card key's fingerprint: HMAC(card key, a fixed label), written by the
-- first node to start, so a node started with another secrets/card.key
-- (which would disagree on PIN hashes and CVVs) refuses to start instead.
CREATE TABLE card_key_fingerprint (
    id            BIGINT PRIMARY KEY CHECK (id = 1),
    fingerprint   BYTEA  NOT NULL CHECK (length(fingerprint) = 32),
    created_at_us BIGINT NOT NULL
);
