-- API keys (issue 14): channel keys with scopes and operator keys with roles. Only a SHA-256
-- of each key's secret is stored; the raw key (`gk_<id>_<secret>`) is shown once, when it is
-- made. A key is never deleted (the audit trail names it by id): it is revoked, or it expires.
CREATE TABLE api_keys (
    id              text        PRIMARY KEY,
    name            text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('channel', 'operator')),
    -- operator keys: viewer < operator < admin
    role            text        CHECK (role IN ('viewer', 'operator', 'admin')),
    -- channel keys: the channels and calls it may use (empty: none), msisdn prefixes (empty:
    -- any), and whether it reads every transaction or only its own
    channels        text[]      NOT NULL DEFAULT '{}',
    calls           text[]      NOT NULL DEFAULT '{}',
    msisdn_prefixes text[]      NOT NULL DEFAULT '{}',
    read_all        boolean     NOT NULL DEFAULT false,
    secret_sha256   bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text        NOT NULL,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    revoked_by      text,
    rotated_from    text        REFERENCES api_keys (id),
    CHECK ((kind = 'operator') = (role IS NOT NULL))
);
CREATE INDEX api_keys_name ON api_keys (name);
