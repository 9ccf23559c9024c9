"""SQL for alarms: insert (and NOTIFY every worker, DESIGN D8), replay since an id, resolve the
open ones, acknowledge one, list them for the admin API. What an operator does to an alarm by
hand (`alarm.resolve`, `alarm.acknowledge`) is in the audit trail, written in its transaction.

Every write takes one transaction-scoped advisory lock before its insert, so alarm ids are
committed in id order across workers and nodes: a reader that has seen id N never later finds
an id below N committed (a plain sequence would let a slow transaction commit a lower id after a
higher one, and a feed following `id > last` would skip it).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from gestor.model import Actor, Alarm, NewAlarm
from gestor.store import _audit
from gestor.store._rows import alarm_from_row, encode_json

ALARM_CHANNEL = "gestor_alarms"
_LOCK_ID = 0x616C_726D  # "alrm"

_INSERT = (
    "INSERT INTO alarms (kind, severity, message, msisdn, transaction_id, details, subject)"
    " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) RETURNING *"
)
_OPEN = "subject IS NOT NULL AND resolved_at IS NULL"


async def _insert(conn: Any, alarm: NewAlarm, subject: str | None) -> Alarm:
    row = await conn.fetchrow(
        _INSERT, alarm.kind, alarm.severity.value, alarm.message, alarm.msisdn,
        alarm.transaction_id, encode_json(alarm.details), subject,
    )
    await conn.execute("SELECT pg_notify($1, $2)", ALARM_CHANNEL, str(row["id"]))
    return alarm_from_row(row)


async def insert_alarm(conn: Any, alarm: NewAlarm, subject: str | None) -> tuple[Alarm, bool]:
    """Insert `alarm` (open on `subject` when that is not None); (alarm, True). An alarm of the
    same kind already open on the same subject is not raised twice: (that one, False)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
    if subject is not None:
        row = await conn.fetchrow(
            f"SELECT * FROM alarms WHERE {_OPEN} AND kind = $1 AND subject = $2"
            " ORDER BY id LIMIT 1", alarm.kind, subject,
        )
        if row is not None:
            return alarm_from_row(row), False
    return await _insert(conn, alarm, subject), True


async def resolve_alarms(conn: Any, kinds: Sequence[str], subject: str, resolution: NewAlarm
                         ) -> tuple[Alarm, list[Alarm]] | None:
    """Mark every open alarm of `kinds` on `subject` resolved by a new `resolution` alarm, whose
    details gain `resolves` (their ids) and `resolves_kinds`. None (nothing written) when none is
    open."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
    rows = await conn.fetch(
        f"SELECT * FROM alarms WHERE {_OPEN} AND kind = ANY($1::text[]) AND subject = $2"
        " ORDER BY id", list(kinds), subject,
    )
    return await _resolve(conn, rows, resolution)


def _audited(alarm: Alarm) -> dict[str, Any]:
    """An alarm as the audit trail shows it: what it is and where it stands."""
    return {"id": alarm.id, "kind": alarm.kind, **alarm.lifecycle()}


async def resolve_alarm(conn: Any, alarm_id: int, resolution: NewAlarm, actor: Actor
                        ) -> tuple[Alarm, list[Alarm]] | Alarm | None:
    """`actor` resolves the one alarm `alarm_id` if it is open (as `resolve_alarms`); the alarm
    itself if it is not open (resolved already, or an event); None if there is none."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
    # FOR UPDATE: an acknowledgement in flight commits first, and `before` shows it.
    row = await conn.fetchrow("SELECT * FROM alarms WHERE id = $1 FOR UPDATE", alarm_id)
    if row is None:
        return None
    found = alarm_from_row(row)
    if found.state != "open":
        return found
    about = attrs.evolve(resolution, msisdn=found.msisdn, transaction_id=found.transaction_id)
    outcome = await _resolve(conn, [row], about)
    assert outcome is not None
    resolved, _ = outcome
    after = attrs.evolve(found, resolved_by=resolved.id, resolved_at=resolved.at)
    await _audit.record(conn, actor, "alarm.resolve", f"alarms/{alarm_id}", _audited(found),
                        _audited(after))
    return outcome


async def acknowledge_alarm(conn: Any, alarm_id: int, actor: Actor, note: str
                            ) -> tuple[Alarm, bool] | None:
    """`actor` acknowledges the open alarm `alarm_id`: (the alarm now, True). (the alarm as
    it is, False) if it is not open or already acknowledged; None if there is none. (No new
    alarm: the row's lock is enough, and a resolution committed meanwhile is seen.)"""
    row = await conn.fetchrow("SELECT * FROM alarms WHERE id = $1 FOR UPDATE", alarm_id)
    if row is None:
        return None
    found = alarm_from_row(row)
    if found.state != "open" or found.acknowledged_at is not None:
        return found, False
    row = await conn.fetchrow(
        "UPDATE alarms SET acknowledged_at = clock_timestamp(), acknowledged_by = $2,"
        " ack_note = $3 WHERE id = $1 RETURNING *", alarm_id, actor.name, note)
    acknowledged = alarm_from_row(row)
    await _audit.record(conn, actor, "alarm.acknowledge", f"alarms/{alarm_id}",
                        _audited(found), _audited(acknowledged))
    return acknowledged, True


async def _resolve(conn: Any, rows: Sequence[Any], resolution: NewAlarm
                   ) -> tuple[Alarm, list[Alarm]] | None:
    if not rows:
        return None
    opened = [alarm_from_row(r) for r in rows]
    details = {
        **resolution.details,
        "resolves": [a.id for a in opened],
        "resolves_kinds": sorted({a.kind for a in opened}),
    }
    new = NewAlarm(resolution.kind, resolution.severity, resolution.message,
                   msisdn=resolution.msisdn, transaction_id=resolution.transaction_id,
                   details=details)
    resolved = await _insert(conn, new, None)
    await conn.execute(
        "UPDATE alarms SET resolved_by = $1, resolved_at = $2 WHERE id = ANY($3::bigint[])",
        resolved.id, resolved.at, [a.id for a in opened],
    )
    return resolved, opened


async def alarms_after(conn: Any, after_id: int, limit: int) -> list[Alarm]:
    rows = await conn.fetch(
        "SELECT * FROM alarms WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
    )
    return [alarm_from_row(r) for r in rows]


async def list_alarms(conn: Any, after_id: int, limit: int, state: str | None,
                      kinds: Sequence[str] | None, before_id: int | None = None) -> list[Alarm]:
    """Alarms after `after_id` in id order (or, with `before_id`, those before it, newest
    first); `state` keeps only those 'open' (acknowledged or not), 'acknowledged' (open and
    acknowledged), 'unacknowledged' (open, not acknowledged) or 'resolved'."""
    args: list[Any] = [limit]
    if before_id is None:
        args.append(after_id)
        where = ["id > $2"]
    else:
        args.append(before_id)
        where = ["id < $2"]
    if state == "open":
        where.append(_OPEN)
    elif state == "acknowledged":
        where.append(f"{_OPEN} AND acknowledged_at IS NOT NULL")
    elif state == "unacknowledged":
        where.append(f"{_OPEN} AND acknowledged_at IS NULL")
    elif state == "resolved":
        where.append("resolved_at IS NOT NULL")
    elif state is not None:
        raise ValueError(f"unknown alarm state {state!r}")
    if kinds:
        args.append(list(kinds))
        where.append("kind = ANY($3::text[])")
    order = "id" if before_id is None else "id DESC"
    rows = await conn.fetch(
        f"SELECT * FROM alarms WHERE {' AND '.join(where)} ORDER BY {order} LIMIT $1", *args
    )
    return [alarm_from_row(r) for r in rows]


async def open_transaction_alarms(conn: Any, kinds: Sequence[str]
                                  ) -> list[tuple[uuid.UUID, str, str, str]]:
    """(transaction id, msisdn, alarm kind, transaction state) of every open alarm of `kinds`."""
    rows = await conn.fetch(
        "SELECT DISTINCT t.id, t.msisdn, a.kind, t.state FROM alarms a"
        " JOIN transactions t ON t.id = a.transaction_id"
        " WHERE a.subject IS NOT NULL AND a.resolved_at IS NULL AND a.kind = ANY($1::text[])",
        list(kinds),
    )
    return [(r["id"], r["msisdn"], r["kind"], r["state"]) for r in rows]


async def latest_alarm_id(conn: Any) -> int:
    return int(await conn.fetchval("SELECT COALESCE(max(id), 0) FROM alarms"))
