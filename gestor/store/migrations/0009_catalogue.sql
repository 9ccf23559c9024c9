-- The bono catalogue is data too (issue 11), versioned like the rule sets (0002): one active
-- version at a time, drafts, every change audited; `config/bonos.toml` seeds version 1.

CREATE TABLE catalogue_versions (
    version      serial      PRIMARY KEY,
    status       text        NOT NULL CHECK (status IN ('draft', 'active', 'retired')),
    source       text        NOT NULL,  -- as submitted: TOML, or a JSON document
    description  text        NOT NULL DEFAULT '',
    based_on     integer     REFERENCES catalogue_versions (version),
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_by text,
    activated_at timestamptz
);
CREATE UNIQUE INDEX catalogue_versions_one_active ON catalogue_versions ((true))
    WHERE status = 'active';

CREATE TABLE catalogue_version_audit (
    id      bigserial   PRIMARY KEY,
    version integer     NOT NULL REFERENCES catalogue_versions (version),
    action  text        NOT NULL,
    actor   text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    details jsonb       NOT NULL DEFAULT '{}'
);

-- The catalogue version a purchase was priced and provisioned from (NULL before 0009).
ALTER TABLE transactions ADD COLUMN catalogue_version integer;
