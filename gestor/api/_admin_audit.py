"""`GET /v1/admin/audit?since=&actor=&action=&after=&limit=`: the audit trail, oldest first.

Every admin and key action is one entry (who: the acting key's id and name; when; what action
on what subject; the subject's state before and after), written in the transaction of the
change itself. `since` (ISO 8601) keeps entries at or after a time, `actor` those of a key name
or id, `action` one action (`restriction.delete`) or a family (`restriction.`, ending in a dot).
Pages go by id: `after` is the last id of the previous page, and `next` links the following
page (null on the last one). Needs the admin key like every admin route.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from quart import Response, request

from gestor.api import _registry as reg
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import require_admin
from gestor.api._problems import ApiProblem, json_response
from gestor.api._registry import Answer, documented
from gestor.store import ACTION_FILTER, ACTOR_FILTER

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp
    from gestor.settings import Settings

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_DIGITS = re.compile(r"[0-9]{1,19}")


def action_filter(raw: str | None) -> str | None:
    """An action (`rules.activate`) or a family of them (`rules.`); None when absent."""
    if not raw:
        return None
    if not ACTION_FILTER.fullmatch(raw):
        raise ApiProblem(422, "INVALID_ACTION", "action must be an action such as "
                         "'restriction.delete', or a family ending in '.' such as 'rules.'",
                         field="action")
    return raw


def actor_filter(raw: str | None) -> str | None:
    """A key's name or id: 1 to 128 characters, none of them a control character."""
    if not raw:
        return None
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raw = "\x00"  # a lone surrogate: refused below like any unprintable text
    if not ACTOR_FILTER.fullmatch(raw):
        raise ApiProblem(422, "INVALID_ACTOR", "actor must be a key's name or id: 1 to 128 "
                         "characters, no control characters", field="actor")
    return raw


def _after(raw: str | None) -> int:
    if not raw:
        return 0
    if not _DIGITS.fullmatch(raw) or int(raw) > validate.BIGINT_MAX:
        raise ApiProblem(422, "INVALID_AFTER", "after must be the id of an audit entry (a "
                         f"whole number from 0 to {validate.BIGINT_MAX})", field="after")
    return int(raw)


def register(app: GestorApp, settings: Settings) -> None:
    @app.get("/v1/admin/audit")
    @documented("The audit trail, oldest first", "Audit",
                Answer(200, res.AuditTrail, "a page; `next` links the following one"),
                params=(reg.query("since", {"type": "string", "format": "date-time"},
                                  "entries at or after this time (ISO 8601)"),
                        reg.query("actor", {"type": "string", "minLength": 1, "maxLength": 128},
                                  "a key's name or id", "alice"),
                        reg.query("action", {"type": "string"}, "an action, or a family "
                                  "ending in '.'", "rules."),
                        reg.query("after", {"type": "integer", "minimum": 0},
                                  "the last id of the previous page", 0),
                        reg.limit(DEFAULT_LIMIT, MAX_LIMIT)),
                problems=("INVALID_TIME", "INVALID_ACTOR", "INVALID_ACTION", "INVALID_AFTER",
                          "INVALID_LIMIT"))
    async def audit_trail() -> Response:
        require_admin(settings)
        args = request.args
        raw_since = args.get("since") or None
        since = validate.instant(raw_since, "since", validate.EARLIEST) if raw_since else None
        actor = actor_filter(args.get("actor"))
        action = action_filter(args.get("action"))
        after = _after(args.get("after"))
        limit = validate.limit(args.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)
        entries = await app.runtime.store.audit_trail(
            after_id=after, since=since, actor=actor, action=action, limit=limit)
        next_page = None
        if len(entries) == limit:
            params = {"since": raw_since, "actor": actor, "action": action,
                      "after": entries[-1].id, "limit": limit}
            query = urlencode({k: v for k, v in params.items() if v is not None})
            next_page = f"/v1/admin/audit?{query}"
        return json_response({"entries": [e.as_dict() for e in entries], "next": next_page})
