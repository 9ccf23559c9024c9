"""SQL for the audit trail: one append-only row per admin or key action (who, when, what, the
subject's state before and after), written in the same database transaction as the change it
records, so the trail can't miss a change nor record one that did not happen."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import attrs

from gestor.model import Actor
from gestor.store._rows import decode_json, encode_json

#: What `listing` filters on, as the API and the command line accept it: an action
#: (`rules.activate`) or a family of them ending in '.' (`rules.`); a key's name or id.
ACTION_FILTER = re.compile(r"[a-z][a-z0-9_]{0,31}(?:\.[a-z][a-z0-9_]{0,31}){0,3}\.?")
ACTOR_FILTER = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,128}")


@attrs.frozen
class AuditRecord:
    id: int
    at: datetime
    actor_id: str
    actor: str
    action: str
    subject: str
    before: Any
    after: Any

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "actor_id": self.actor_id,
                "actor": self.actor, "action": self.action, "subject": self.subject,
                "before": self.before, "after": self.after}


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        row["id"], row["at"], row["actor_id"], row["actor"], row["action"], row["subject"],
        None if row["before"] is None else decode_json(row["before"]),
        None if row["after"] is None else decode_json(row["after"]),
    )


#: Taken (transaction-scoped) before each insert, so rows commit in id order: a reader paging
#: with `id > last` never later finds a lower id committed (as `_alarms` does for alarm ids).
_LOCK_ID = 0x6175_6474  # "audt"


async def record(conn: Any, actor: Actor, action: str, subject: str, before: Any = None,
                 after: Any = None) -> None:
    """Append one row; call it on the connection (and in the transaction) of the change, as
    its last statement: it holds the trail's lock until that transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
    await conn.execute(
        "INSERT INTO audit (actor_id, actor, action, subject, before, after)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
        actor.id, actor.name, action, subject,
        None if before is None else encode_json(before),
        None if after is None else encode_json(after),
    )


async def listing(conn: Any, after_id: int, since: datetime | None, actor: str | None,
                  action: str | None, limit: int) -> list[AuditRecord]:
    """Rows after `after_id` (paging), at or after `since`, of `actor` (name or key id) and
    `action` (exact, or a prefix ending in '.': `rules.`), oldest first."""
    rows = await conn.fetch(
        "SELECT * FROM audit WHERE id > $1"
        " AND ($2::timestamptz IS NULL OR at >= $2)"
        " AND ($3::text IS NULL OR actor = $3 OR actor_id = $3)"
        " AND ($4::text IS NULL OR action = $4"
        "      OR (right($4, 1) = '.' AND starts_with(action, $4)))"
        " ORDER BY id LIMIT $5",
        after_id, since, actor, action, limit,
    )
    return [_record(r) for r in rows]
