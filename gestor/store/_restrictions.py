"""SQL for per-subscriber restrictions (codes the rules see as `restrictions`). Nothing caches
them: every acceptance and listing reads them in the crossing that decides, so a change holds at
once in every worker and node. Every change (`restriction.put`, `restriction.delete`) is in the
audit trail, with the restriction before and after, written in the change's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from gestor.model import Actor
from gestor.store import _audit


@attrs.frozen
class Restriction:
    msisdn: str
    code: str
    reason: str | None
    until: datetime | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "reason": self.reason,
            "until": self.until.isoformat() if self.until else None,
            "created_at": self.created_at.isoformat(),
        }


def _restriction(row: Any) -> Restriction:
    return Restriction(row["msisdn"], row["code"], row["reason"], row["until"], row["created_at"])


async def list_for(conn: Any, msisdn: str) -> list[Restriction]:
    rows = await conn.fetch("SELECT * FROM restrictions WHERE msisdn = $1 ORDER BY code", msisdn)
    return [_restriction(r) for r in rows]


def subject(msisdn: str, code: str) -> str:
    """What the audit trail calls a restriction (its admin API path under /v1/admin)."""
    return f"mobiles/{msisdn}/restrictions/{code}"


def _audited(restriction: Restriction) -> dict[str, Any]:
    return {"msisdn": restriction.msisdn, **restriction.as_dict()}


async def put(conn: Any, msisdn: str, code: str, reason: str | None,
              until: datetime | None, actor: Actor) -> Restriction:
    """Set (or replace) a restriction; the audit trail gets what it was before (or null)."""
    while True:
        old = await conn.fetchrow(
            "SELECT * FROM restrictions WHERE msisdn = $1 AND code = $2 FOR UPDATE", msisdn, code)
        if old is not None:
            row = await conn.fetchrow(
                "UPDATE restrictions SET reason = $3, until = $4"
                " WHERE msisdn = $1 AND code = $2 RETURNING *", msisdn, code, reason, until)
            break
        row = await conn.fetchrow(
            "INSERT INTO restrictions (msisdn, code, reason, until) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (msisdn, code) DO NOTHING RETURNING *", msisdn, code, reason, until)
        if row is not None:
            break
        # Another transaction inserted it meanwhile: lock that one and replace it.
    before = None if old is None else _audited(_restriction(old))
    restriction = _restriction(row)
    await _audit.record(conn, actor, "restriction.put", subject(msisdn, code), before,
                        _audited(restriction))
    return restriction


async def delete(conn: Any, msisdn: str, code: str, actor: Actor) -> Restriction | None:
    """Lift a restriction: what was deleted (in the audit trail as `before`), or None."""
    row = await conn.fetchrow(
        "DELETE FROM restrictions WHERE msisdn = $1 AND code = $2 RETURNING *", msisdn, code
    )
    if row is None:
        return None
    lifted = _restriction(row)
    await _audit.record(conn, actor, "restriction.delete", subject(msisdn, code),
                        _audited(lifted), None)
    return lifted
