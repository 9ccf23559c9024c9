"""SQL for rule-set versions: drafts, atomic activation (and NOTIFY to every worker), audit.

Each version keeps its own history in `rule_set_audit` (who created and activated it); every
change is also in the unified audit trail (`rules.create`, `rules.activate`), written in the
same transaction."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from gestor.model import Actor
from gestor.store import _audit as _audit_trail

if TYPE_CHECKING:
    from gestor.store._bridge import Bridge

RULES_CHANNEL = "gestor_rules"


@attrs.frozen
class RuleSetRecord:
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


@attrs.frozen
class AuditEntry:
    version: int
    action: str
    actor: str
    at: datetime


def _record(row: Any) -> RuleSetRecord:
    return RuleSetRecord(**{f.name: row[f.name] for f in attrs.fields(RuleSetRecord)})


async def _audit(conn: Any, version: int, action: str, actor: str) -> None:
    await conn.execute(
        "INSERT INTO rule_set_audit (version, action, actor) VALUES ($1, $2, $3)",
        version, action, actor,
    )


def _audited(record: RuleSetRecord) -> dict[str, Any]:
    """A version as the audit trail shows it: its summary and its source's SHA-256 (the source
    itself stays in `rule_sets`, never changed)."""
    digest = hashlib.sha256(record.source.encode("utf-8", "surrogatepass")).hexdigest()
    return {**record.summary(), "source_sha256": digest}


async def create(conn: Any, source: str, description: str, actor: Actor,
                 based_on: int | None) -> RuleSetRecord:
    row = await conn.fetchrow(
        "INSERT INTO rule_sets (status, source, description, based_on, created_by)"
        " VALUES ('draft', $1, $2, $3, $4) RETURNING *",
        source, description, based_on, actor.name,
    )
    await _audit(conn, row["version"], "create", actor.name)
    created = _record(row)
    await _audit_trail.record(conn, actor, "rules.create", f"rules/{created.version}", None,
                              _audited(created))
    return created


async def seed(conn: Any, source: str, description: str) -> RuleSetRecord:
    """The active rule set; if there is none yet, `source` becomes version 1, active."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x72756C65)  # "rule"
    row = await conn.fetchrow("SELECT * FROM rule_sets WHERE status = 'active'")
    if row is not None:
        return _record(row)
    row = await conn.fetchrow(
        "INSERT INTO rule_sets (status, source, description, created_by, activated_by,"
        " activated_at) VALUES ('active', $1, $2, 'seed', 'seed', now()) RETURNING *",
        source, description,
    )
    await _audit(conn, row["version"], "seed", "seed")
    return _record(row)


async def get(conn: Any, version: int) -> RuleSetRecord | None:
    row = await conn.fetchrow("SELECT * FROM rule_sets WHERE version = $1", version)
    return None if row is None else _record(row)


async def active(conn: Any) -> RuleSetRecord | None:
    row = await conn.fetchrow("SELECT * FROM rule_sets WHERE status = 'active'")
    return None if row is None else _record(row)


async def has_active_rules(bridge: Bridge) -> bool:
    """Whether the database has an active rule set yet (before it has, `config/rules.toml`
    seeds version 1); for start-up checks, over a bare bridge."""
    return await bridge.run(_has_active, transaction=False)


async def _has_active(conn: Any) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM rule_sets WHERE status = 'active')"))


async def listing(conn: Any) -> list[RuleSetRecord]:
    return [_record(r) for r in await conn.fetch("SELECT * FROM rule_sets ORDER BY version")]


async def activate(conn: Any, version: int, actor: Actor) -> RuleSetRecord | None:
    """Make `version` the active one, retiring the current, in one transaction; NOTIFY.
    Activating the active version changes nothing and records nothing."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x72756C65)
    target = await conn.fetchrow("SELECT * FROM rule_sets WHERE version = $1 FOR UPDATE",
                                 version)
    if target is None:
        return None
    if target["status"] != "active":
        before = _record(target)
        previous = await conn.fetchval(
            "UPDATE rule_sets SET status = 'retired' WHERE status = 'active' RETURNING version")
        target = await conn.fetchrow(
            "UPDATE rule_sets SET status = 'active', activated_by = $2, activated_at = now()"
            " WHERE version = $1 RETURNING *",
            version, actor.name,
        )
        await _audit(conn, version, "activate", actor.name)
        after = _record(target)
        await _audit_trail.record(
            conn, actor, "rules.activate", f"rules/{version}",
            {**before.summary(), "active_version": previous},
            {**after.summary(), "active_version": version},
        )
    await conn.execute("SELECT pg_notify($1, $2)", RULES_CHANNEL, str(version))
    return _record(target)


async def audit(conn: Any, version: int | None) -> list[AuditEntry]:
    rows = await conn.fetch(
        "SELECT version, action, actor, at FROM rule_set_audit"
        " WHERE $1::int IS NULL OR version = $1 ORDER BY id", version,
    )
    return [AuditEntry(r["version"], r["action"], r["actor"], r["at"]) for r in rows]
