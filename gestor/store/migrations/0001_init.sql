-- Gestor's system of record (DESIGN D2). Amounts are integer minor units.

CREATE TABLE transactions (
    id              uuid PRIMARY KEY,
    msisdn          text        NOT NULL,
    bono_id         text        NOT NULL,
    channel         text        NOT NULL,
    client          text        NOT NULL,
    idempotency_key text        NOT NULL,
    request_hash    text        NOT NULL,
    state           text        NOT NULL,
    price           bigint,
    currency        text,
    operation       text,
    profile_id      text,
    rules_version   integer,
    reasons         jsonb       NOT NULL DEFAULT '[]',
    history         jsonb       NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT transactions_idempotency UNIQUE (client, idempotency_key),
    CONSTRAINT transactions_state_known CHECK (state IN (
        'received', 'profiled', 'validated', 'charged', 'completed',
        'rejected', 'failed', 'refunded', 'inconsistent'))
);

-- DESIGN D3: at most one non-terminal transaction per msisdn, whatever process wrote it.
CREATE UNIQUE INDEX transactions_one_pending_per_msisdn ON transactions (msisdn)
    WHERE state IN ('received', 'profiled', 'validated', 'charged', 'inconsistent');

CREATE INDEX transactions_msisdn_created ON transactions (msisdn, created_at DESC);
CREATE INDEX transactions_created ON transactions (created_at);

-- Per-subscriber restrictions (codes the rules see as `restrictions`).
CREATE TABLE restrictions (
    msisdn     text        NOT NULL,
    code       text        NOT NULL,
    reason     text,
    until      timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (msisdn, code)
);

-- Alarms: persisted, then fanned out (DESIGN D8). `id` orders the feed and drives replay.
CREATE TABLE alarms (
    id             bigserial   PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    kind           text        NOT NULL,
    severity       text        NOT NULL,
    message        text        NOT NULL,
    msisdn         text,
    transaction_id uuid,
    details        jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX alarms_transaction ON alarms (transaction_id);
