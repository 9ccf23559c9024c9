"""`GET /v1/admin/notifications?alarm_id=&transaction_id=&state=&channel=&since=&limit=`: the
notifications outbox (gestor.notify), every delivery with its state (`pending`, `sent`,
`failed`), attempts and last error, in id order a page at a time (`since`: the last id of the
previous page; `next` links the following page, null on the last). The console asks it for an
alarm's deliveries (`?alarm_id=`)."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from quart import Response, request

from gestor.api import _registry as reg
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import require_admin
from gestor.api._problems import ApiProblem, json_response
from gestor.api._registry import Answer, documented
from gestor.settings import Settings

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STATES = ("pending", "sent", "failed")
CHANNELS = ("email", "sms", "webhook")
_DIGITS = re.compile(r"[0-9]{1,19}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _choice(name: str, code: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise ApiProblem(422, code, f"{name} must be one of {', '.join(allowed)}", field=name)
    return raw


def _whole(name: str, code: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiProblem(422, code, f"{name} must be a whole number from {low} to {high}",
                         field=name)
    return int(raw)


def _transaction_id() -> uuid.UUID | None:
    raw = request.args.get("transaction_id")
    if raw is None or raw == "":
        return None
    if not _UUID.fullmatch(raw):
        raise ApiProblem(422, "INVALID_TRANSACTION_ID", "transaction_id must be a UUID",
                         field="transaction_id")
    return uuid.UUID(raw)


def register(app: GestorApp, settings: Settings) -> None:
    @app.get("/v1/admin/notifications")
    @documented(
        "Notifications and their deliveries", "Alarms",
        Answer(200, res.Notifications, "a page; `next` links the following one (null on the "
                                       "last)"),
        params=(reg.query("alarm_id", {"type": "integer", "minimum": 1},
                          "the deliveries of this alarm", 12),
                reg.query("transaction_id", {"type": "string", "format": "uuid"},
                          "the deliveries about this movement",
                          "6f1c8f7e-3b9a-4c57-9f0e-2b8b8a1d2e3f"),
                reg.query("state", {"enum": list(STATES)}, "pending, sent or failed",
                          "failed"),
                reg.query("channel", {"enum": list(CHANNELS)}, "email, sms or webhook", "sms"),
                reg.query("since", {"type": "integer", "minimum": 0},
                          "the last id of the previous page", 0),
                reg.limit(DEFAULT_LIMIT, MAX_LIMIT)),
        problems=("INVALID_ALARM_ID:422", "INVALID_TRANSACTION_ID:422", "INVALID_STATE",
                  "INVALID_CHANNEL", "INVALID_SINCE:422", "INVALID_LIMIT"))
    async def list_notifications() -> Response:
        """Every delivery of the notifications outbox (e-mail to operators, SMS to
        subscribers) in id order, with its state, attempts and last error."""
        require_admin(settings)
        alarm_id = _whole("alarm_id", "INVALID_ALARM_ID", None, 1, validate.BIGINT_MAX)
        transaction_id = _transaction_id()
        state = _choice("state", "INVALID_STATE", STATES)
        channel = _choice("channel", "INVALID_CHANNEL", CHANNELS)
        since = _whole("since", "INVALID_SINCE", 0, 0, validate.BIGINT_MAX)
        limit = _whole("limit", "INVALID_LIMIT", DEFAULT_LIMIT, 1, MAX_LIMIT)
        assert since is not None and limit is not None
        found = await app.runtime.store.notifications(
            after_id=since, limit=limit, alarm_id=alarm_id, transaction_id=transaction_id,
            state=state, channel=channel)
        next_page = None
        if len(found) == limit:
            params = {"alarm_id": alarm_id, "transaction_id": transaction_id, "state": state,
                      "channel": channel, "since": found[-1].id, "limit": limit}
            query = "&".join(f"{k}={v}" for k, v in params.items() if v is not None)
            next_page = f"/v1/admin/notifications?{query}"
        return json_response({"notifications": [d.as_dict() for d in found],
                              "next": next_page})
