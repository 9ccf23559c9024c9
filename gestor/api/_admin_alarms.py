"""Admin route over the persisted alarms: `GET /v1/admin/alarms?state=&kind=&since=&limit=`.

`state=open` lists the alarms still waiting for their cause to settle (a `resolved` alarm names
each once it does), `state=resolved` those settled; without it, every alarm. Pages go by id:
`since` is the last id of the previous page, and `next` links the following page (null on the
last one). Needs the admin key like every admin route.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from quart import Response, request

from gestor.api._auth import require_admin
from gestor.api._problems import ApiProblem, json_response
from gestor.model import Alarm
from gestor.settings import Settings

if TYPE_CHECKING:
    from gestor.api._app import GestorApp

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STATES = ("open", "resolved")
_ID = re.compile(r"[0-9]{1,18}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_KINDS = 32


def _state(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in STATES:
        raise ApiProblem(422, "INVALID_STATE", "state must be 'open' or 'resolved'",
                         field="state")
    return raw


def _kinds(raw: str | None) -> list[str] | None:
    if raw is None or raw == "":
        return None
    kinds = raw.split(",")
    if len(kinds) > _MAX_KINDS or not all(_KIND.fullmatch(k) for k in kinds):
        raise ApiProblem(
            422, "INVALID_KIND",
            f"kind must be up to {_MAX_KINDS} comma-separated alarm kinds (such as "
            "charge_unknown): lower-case letters, digits and '_'", field="kind",
        )
    return sorted(set(kinds))


def _whole(raw: str | None, field: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    if not _ID.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiProblem(422, f"INVALID_{field.upper()}",
                         f"{field} must be a whole number from {low} to {high}", field=field)
    return int(raw)


def listed(alarm: Alarm) -> dict[str, Any]:
    """An alarm as the admin API lists it: the feed's fields plus its state."""
    return {
        **alarm.as_dict(),
        "state": alarm.state,
        "resolved_by": alarm.resolved_by,
        "resolved_at": alarm.resolved_at.isoformat() if alarm.resolved_at else None,
    }


def register(app: GestorApp, settings: Settings) -> None:
    @app.get("/v1/admin/alarms")
    async def list_alarms() -> Response:
        """Persisted alarms in id order, filtered by state and kind, a page at a time."""
        require_admin(settings)
        state = _state(request.args.get("state"))
        kinds = _kinds(request.args.get("kind"))
        since = _whole(request.args.get("since"), "since", 0, 0, 10**18 - 1)
        limit = _whole(request.args.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        alarms = await app.runtime.store.list_alarms(since, limit, state, kinds)
        next_page = None
        if len(alarms) == limit:
            params = {"state": state, "kind": ",".join(kinds) if kinds else None,
                      "since": alarms[-1].id, "limit": limit}
            query = urlencode({k: v for k, v in params.items() if v is not None})
            next_page = f"/v1/admin/alarms?{query}"
        return json_response({"alarms": [listed(a) for a in alarms], "next": next_page})
