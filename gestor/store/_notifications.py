"""SQL for the notifications outbox (migration 0014): the routes the triggers follow, claiming
due deliveries (`FOR UPDATE SKIP LOCKED`: several workers and nodes share the work, each row
goes to one of them at a time), recording each attempt's outcome, and the admin listing.

Rows are written by the triggers of 0014, in the transaction of the alarm or state change that
causes them; nothing here writes one by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

NOTIFY_CHANNEL = "gestor_notifications"
_ROUTES_LOCK = 0x6E6F_7466  # "notf"
STATES = ("pending", "sent", "failed")
CHANNELS = ("email", "sms", "webhook")


@attrs.frozen
class RouteRow:
    """One row of `notification_routes` (see the migration): `on` 'alarm' or 'movement'."""

    on: str
    channel: str
    recipient: str
    language: str | None = None
    kinds: tuple[str, ...] = ()
    min_severity: int = 0


@attrs.frozen
class Delivery:
    """One row of the outbox: a message for one recipient by one channel, and how it went."""

    id: int
    source: str
    alarm_id: int | None
    transaction_id: uuid.UUID | None
    event: str
    channel: str
    recipient: str
    language: str | None
    subject: str | None
    body: str | None
    state: str
    attempts: int
    last_error: str | None
    next_at: datetime
    created_at: datetime
    sent_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """As `GET /v1/admin/notifications` lists it."""
        return {
            "id": self.id,
            "alarm_id": self.alarm_id,
            "transaction_id": str(self.transaction_id) if self.transaction_id else None,
            "channel": self.channel,
            "recipient": self.recipient,
            "language": self.language,
            "subject": self.subject,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
        }


def _delivery(row: Any) -> Delivery:
    return Delivery(**{f.name: row[f.name] for f in attrs.fields(Delivery)})


async def replace_routes(conn: Any, routes: Sequence[RouteRow]) -> None:
    """Make `routes` the whole routing table (serialised: workers starting together)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _ROUTES_LOCK)
    await conn.execute("DELETE FROM notification_routes")
    if routes:
        await conn.executemany(
            'INSERT INTO notification_routes ("on", channel, recipient, language, kinds,'
            " min_severity) VALUES ($1, $2, $3, $4, $5::text[], $6)",
            [(r.on, r.channel, r.recipient, r.language, list(r.kinds), r.min_severity)
             for r in routes],
        )


async def claim(conn: Any, limit: int, lease: float) -> list[Delivery]:
    """Take up to `limit` due pending deliveries: each counts one more attempt and is not due
    again for `lease` seconds (so one whose sender dies mid-attempt is tried again then)."""
    rows = await conn.fetch(
        "UPDATE notifications SET attempts = attempts + 1,"
        " next_at = clock_timestamp() + make_interval(secs => $2)"
        " WHERE id IN (SELECT id FROM notifications"
        "   WHERE state = 'pending' AND next_at <= clock_timestamp()"
        "   ORDER BY next_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING *", limit, lease,
    )
    return sorted((_delivery(r) for r in rows), key=lambda d: d.id)


async def finish(conn: Any, delivery_id: int, attempt: int, state: str, retry_in: float,
                 error: str | None, language: str | None, subject: str | None,
                 body: str | None) -> bool:
    """Record attempt number `attempt` of `delivery_id`: `state` 'sent', 'failed', or
    'pending' (due again in `retry_in` seconds). False if the row has moved on meanwhile (its
    lease ran out and another attempt claimed it)."""
    status = await conn.execute(
        "UPDATE notifications SET state = $3, last_error = $4,"
        " language = COALESCE($5, language), subject = COALESCE($6, subject),"
        " body = COALESCE($7, body),"
        " sent_at = CASE WHEN $3 = 'sent' THEN clock_timestamp() END,"
        " next_at = CASE WHEN $3 = 'pending' THEN clock_timestamp() + make_interval(secs => $8)"
        "                ELSE next_at END"
        " WHERE id = $1 AND attempts = $2 AND state = 'pending'",
        delivery_id, attempt, state, error, language, subject, body, retry_in,
    )
    return bool(status.endswith(" 1"))


async def next_due(conn: Any) -> float | None:
    """Seconds until the next pending delivery is due (0 if one is due now); None if none."""
    value = await conn.fetchval(
        "SELECT extract(epoch FROM min(next_at) - clock_timestamp())::float8"
        " FROM notifications WHERE state = 'pending'")
    return None if value is None else max(float(value), 0.0)


async def listing(conn: Any, after_id: int, limit: int, alarm_id: int | None,
                  transaction_id: uuid.UUID | None, state: str | None, channel: str | None
                  ) -> list[Delivery]:
    """Deliveries after `after_id` in id order, filtered by what is given."""
    where = ["id > $1"]
    args: list[Any] = [after_id, limit]
    for column, value in (("alarm_id", alarm_id), ("transaction_id", transaction_id),
                          ("state", state), ("channel", channel)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    rows = await conn.fetch(
        f"SELECT * FROM notifications WHERE {' AND '.join(where)} ORDER BY id LIMIT $2", *args)
    return [_delivery(r) for r in rows]
