-- Rule sets are data (DESIGN D6): versioned, one active at a time, every change audited.

CREATE TABLE rule_sets (
    version      serial      PRIMARY KEY,
    status       text        NOT NULL CHECK (status IN ('draft', 'active', 'retired')),
    source       text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    based_on     integer     REFERENCES rule_sets (version),
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_by text,
    activated_at timestamptz
);
CREATE UNIQUE INDEX rule_sets_one_active ON rule_sets ((true)) WHERE status = 'active';

CREATE TABLE rule_set_audit (
    id      bigserial   PRIMARY KEY,
    version integer     NOT NULL REFERENCES rule_sets (version),
    action  text        NOT NULL,
    actor   text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    details jsonb       NOT NULL DEFAULT '{}'
);
