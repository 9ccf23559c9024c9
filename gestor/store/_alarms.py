"""SQL for alarms: insert (and NOTIFY every worker, DESIGN D8), replay since an id."""

from __future__ import annotations

from typing import Any

from gestor.model import Alarm, NewAlarm
from gestor.store._rows import alarm_from_row, encode_json

ALARM_CHANNEL = "gestor_alarms"


async def insert_alarm(conn: Any, alarm: NewAlarm) -> Alarm:
    row = await conn.fetchrow(
        "INSERT INTO alarms (kind, severity, message, msisdn, transaction_id, details)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING *",
        alarm.kind,
        alarm.severity.value,
        alarm.message,
        alarm.msisdn,
        alarm.transaction_id,
        encode_json(alarm.details),
    )
    await conn.execute("SELECT pg_notify($1, $2)", ALARM_CHANNEL, str(row["id"]))
    return alarm_from_row(row)


async def alarms_after(conn: Any, after_id: int, limit: int) -> list[Alarm]:
    rows = await conn.fetch(
        "SELECT * FROM alarms WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
    )
    return [alarm_from_row(r) for r in rows]


async def latest_alarm_id(conn: Any) -> int:
    return int(await conn.fetchval("SELECT COALESCE(max(id), 0) FROM alarms"))
