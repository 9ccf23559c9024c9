"""SQL for versioned admin data (rule sets, the bono catalogue): drafts, one active version at a
time, atomic activation (and NOTIFY to every worker), roll back by activating an earlier one.

Each kind keeps its versions in its own table and its per-version history (who created and
activated it) in its own audit table; every change is also in the unified audit trail
(`<kind>.create`, `<kind>.activate`), written in the same transaction.

The rules are compiled against the catalogue, so the two kinds are activated under one lock:
an activation may name the version of the other kind it was checked against (`partner`), and is
refused (`PartnerMoved`) if that is no longer the active one when it commits.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from gestor.model import Actor
from gestor.store import _audit as _audit_trail

if TYPE_CHECKING:
    from gestor.store._bridge import Bridge

#: One lock for activations and seeds of every kind (see the module's docstring).
_LOCK_ID = 0x72756C65  # "rule"


@attrs.frozen
class VersionKind:
    """One kind of versioned data: its tables, NOTIFY channel and audit-trail name. Table names
    are constants of this module, never input."""

    name: str  # "rules": subjects `rules/<version>`, actions `rules.create`
    table: str
    audit_table: str
    channel: str
    partner: str  # the table of the kind it is checked against

    def subject(self, version: int) -> str:
        return f"{self.name}/{version}"


RULES = VersionKind("rules", "rule_sets", "rule_set_audit", "gestor_rules",
                    "catalogue_versions")
CATALOGUE = VersionKind("catalogue", "catalogue_versions", "catalogue_version_audit",
                        "gestor_catalogue", "rule_sets")


@attrs.frozen
class VersionRecord:
    """One stored version: its source as submitted, and who made and activated it, when."""

    version: int
    status: str
    source: str
    description: str
    based_on: int | None
    created_by: str
    created_at: datetime
    activated_by: str | None
    activated_at: datetime | None

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "status": self.status,
            "description": self.description,
            "based_on": self.based_on,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "activated_by": self.activated_by,
            "activated_at": self.activated_at.isoformat() if self.activated_at else None,
        }


#: A stored rule-set version (the name the rules' code has always used).
RuleSetRecord = VersionRecord


@attrs.frozen
class AuditEntry:
    version: int
    action: str
    actor: str
    at: datetime


@attrs.frozen
class PartnerMoved:
    """An activation was refused: it was checked against version `expected` of the other kind,
    but `active` is active now (activated meanwhile). Check again and retry."""

    expected: int
    active: int | None


def _record(row: Any) -> VersionRecord:
    return VersionRecord(**{f.name: row[f.name] for f in attrs.fields(VersionRecord)})


async def _history(conn: Any, kind: VersionKind, version: int, action: str, actor: str) -> None:
    await conn.execute(
        f"INSERT INTO {kind.audit_table} (version, action, actor) VALUES ($1, $2, $3)",
        version, action, actor,
    )


def _audited(record: VersionRecord) -> dict[str, Any]:
    """A version as the audit trail shows it: its summary and its source's SHA-256 (the source
    itself stays in the version's table, never changed)."""
    digest = hashlib.sha256(record.source.encode("utf-8", "surrogatepass")).hexdigest()
    return {**record.summary(), "source_sha256": digest}


async def create(conn: Any, kind: VersionKind, source: str, description: str, actor: Actor,
                 based_on: int | None) -> VersionRecord:
    row = await conn.fetchrow(
        f"INSERT INTO {kind.table} (status, source, description, based_on, created_by)"
        " VALUES ('draft', $1, $2, $3, $4) RETURNING *",
        source, description, based_on, actor.name,
    )
    await _history(conn, kind, row["version"], "create", actor.name)
    created = _record(row)
    await _audit_trail.record(conn, actor, f"{kind.name}.create", kind.subject(created.version),
                              None, _audited(created))
    return created


async def seed(conn: Any, kind: VersionKind, source: str, description: str) -> VersionRecord:
    """The active version; if there is none yet, `source` becomes one, active."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
    row = await conn.fetchrow(f"SELECT * FROM {kind.table} WHERE status = 'active'")
    if row is not None:
        return _record(row)
    row = await conn.fetchrow(
        f"INSERT INTO {kind.table} (status, source, description, created_by, activated_by,"
        " activated_at) VALUES ('active', $1, $2, 'seed', 'seed', now()) RETURNING *",
        source, description,
    )
    await _history(conn, kind, row["version"], "seed", "seed")
    return _record(row)


async def get(conn: Any, kind: VersionKind, version: int) -> VersionRecord | None:
    row = await conn.fetchrow(f"SELECT * FROM {kind.table} WHERE version = $1", version)
    return None if row is None else _record(row)


async def active(conn: Any, kind: VersionKind) -> VersionRecord | None:
    row = await conn.fetchrow(f"SELECT * FROM {kind.table} WHERE status = 'active'")
    return None if row is None else _record(row)


async def has_active(conn: Any, kind: VersionKind) -> bool:
    return bool(await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {kind.table} WHERE status = 'active')"))


async def listing(conn: Any, kind: VersionKind) -> list[VersionRecord]:
    return [_record(r) for r in await conn.fetch(f"SELECT * FROM {kind.table} ORDER BY version")]


async def activate(conn: Any, kind: VersionKind, version: int, actor: Actor,
                   partner: int | None = None) -> VersionRecord | PartnerMoved | None:
    """Make `version` the active one, retiring the current, in one transaction; NOTIFY.
    Activating the active version changes nothing and records nothing. With `partner`, refused
    (`PartnerMoved`, nothing written) unless that version of the other kind is the active one."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
    target = await conn.fetchrow(f"SELECT * FROM {kind.table} WHERE version = $1 FOR UPDATE",
                                 version)
    if target is None:
        return None
    if partner is not None:
        now_active = await conn.fetchval(
            f"SELECT version FROM {kind.partner} WHERE status = 'active'")
        if now_active != partner:
            return PartnerMoved(partner, now_active)
    if target["status"] != "active":
        before = _record(target)
        previous = await conn.fetchval(
            f"UPDATE {kind.table} SET status = 'retired' WHERE status = 'active'"
            " RETURNING version")
        target = await conn.fetchrow(
            f"UPDATE {kind.table} SET status = 'active', activated_by = $2, activated_at = now()"
            " WHERE version = $1 RETURNING *",
            version, actor.name,
        )
        await _history(conn, kind, version, "activate", actor.name)
        after = _record(target)
        await _audit_trail.record(
            conn, actor, f"{kind.name}.activate", kind.subject(version),
            {**before.summary(), "active_version": previous},
            {**after.summary(), "active_version": version},
        )
    await conn.execute("SELECT pg_notify($1, $2)", kind.channel, str(version))
    return _record(target)


async def audit(conn: Any, kind: VersionKind, version: int | None) -> list[AuditEntry]:
    rows = await conn.fetch(
        f"SELECT version, action, actor, at FROM {kind.audit_table}"
        " WHERE $1::int IS NULL OR version = $1 ORDER BY id", version,
    )
    return [AuditEntry(r["version"], r["action"], r["actor"], r["at"]) for r in rows]


async def has_active_rules(bridge: Bridge) -> bool:
    """Whether the database has an active rule set yet (before it has, `config/rules.toml`
    seeds version 1); for start-up checks, over a bare bridge."""
    return await bridge.run(has_active, RULES, transaction=False)


async def has_active_catalogue(bridge: Bridge) -> bool:
    """Whether the database has an active catalogue yet (before it has, `config/bonos.toml`
    seeds version 1); for start-up checks, over a bare bridge."""
    return await bridge.run(has_active, CATALOGUE, transaction=False)
