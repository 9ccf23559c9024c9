"""Admin routes over the persisted alarms: `GET /v1/admin/alarms?state=&kind=&since=&limit=`
lists them; `POST /v1/admin/alarms/<id>/acknowledge` says someone is on an open one;
`POST /v1/admin/alarms/<id>/resolve` resolves an open one by hand.

`state=open` lists the alarms still waiting for their cause to settle (a `resolved` alarm names
each once it does), `acknowledged` / `unacknowledged` the open ones someone has / nobody has
acknowledged yet, `resolved` those settled; without it, every alarm. Pages go by id: `since` is
the last id of the previous page, and `next` links the following page (null on the last one).
`before=<id>` pages the other way, newest first: the alarms before that id (the console shows
the latest ones this way, and pages back to older ones).
Acknowledging (optional JSON `{"note"}`) records who and when on the alarm; it stays open.
Resolving by hand (optional `{"note"}`) is for an alarm whose cause went away unseen. Both are
in the audit trail. All need the admin key like every admin route.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from quart import Response, request

from gestor.api import _registry as reg
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import acting, require_admin
from gestor.api._decode import body_as
from gestor.api._problems import ApiProblem, json_response
from gestor.api._registry import Answer, documented
from gestor.api._requests import NoteRequest
from gestor.model import Alarm
from gestor.settings import Settings

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STATES = ("open", "acknowledged", "unacknowledged", "resolved")
_ID = re.compile(r"[0-9]{1,19}")  # alarm ids are bigint: up to validate.BIGINT_MAX
_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_KINDS = 32


def _state(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in STATES:
        raise ApiProblem(422, "INVALID_STATE",
                         f"state must be one of {', '.join(repr(s) for s in STATES)}",
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
    """An alarm as the admin API lists it: the feed's fields plus its state, what resolved it
    and who acknowledged it."""
    return {**alarm.as_dict(), **alarm.lifecycle()}


def _alarm_id(raw_id: str) -> int:
    if not _ID.fullmatch(raw_id) or not 1 <= int(raw_id) <= validate.BIGINT_MAX:
        raise ApiProblem(400, "INVALID_ALARM_ID",
                         f"an alarm id is a whole number from 1 to {validate.BIGINT_MAX}",
                         field="id")
    return int(raw_id)


def _note(raw: str | bytes) -> str:
    """The optional JSON body `{"note": "..."}` of an acknowledgement or resolution."""
    assert isinstance(raw, bytes)
    if not raw.strip():
        return ""
    return body_as(NoteRequest, validate.json_object(raw)).note


ALARM_ID = reg.Param("raw_id", "path", {"type": "string", "pattern": "^[0-9]{1,19}$"},
                     "the alarm's id", True, "12", "id")


def register(app: GestorApp, settings: Settings) -> None:
    @app.get("/v1/admin/alarms")
    @documented("Persisted alarms", "Alarms", Answer(200, res.Alarms, "a page; `next` links "
                                                      "the following one (null on the last)"),
                params=(reg.query("state", {"enum": list(STATES)}, "open, acknowledged, "
                                  "unacknowledged or resolved; absent: all", "open"),
                        reg.query("kind", {"type": "string", "pattern": "^[a-z][a-z0-9_,]*$"},
                                  "comma-separated alarm kinds", "charge_unknown"),
                        reg.query("since", {"type": "integer", "minimum": 0},
                                  "the last id of the previous page", 0),
                        reg.query("before", {"type": "integer", "minimum": 1},
                                  "newest first, the alarms before this id (not with `since`)",
                                  120),
                        reg.limit(DEFAULT_LIMIT, MAX_LIMIT)),
                problems=("INVALID_STATE", "INVALID_KIND", "INVALID_SINCE:422", "INVALID_BEFORE",
                          "INVALID_LIMIT"))
    async def list_alarms() -> Response:
        """Persisted alarms in id order (newest first with `before`), filtered by state and
        kind, a page at a time."""
        require_admin(settings)
        state = _state(request.args.get("state"))
        kinds = _kinds(request.args.get("kind"))
        since = _whole(request.args.get("since"), "since", 0, 0, validate.BIGINT_MAX)
        before: int | None = None
        if request.args.get("before") is not None:
            if request.args.get("since") is not None:
                raise ApiProblem(422, "INVALID_BEFORE", "give since or before, not both",
                                 field="before")
            before = _whole(request.args.get("before"), "before", 0, 1, validate.BIGINT_MAX)
        limit = _whole(request.args.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        alarms = await app.runtime.store.list_alarms(since, limit, state, kinds, before)
        next_page = None
        if len(alarms) == limit:
            after: dict[str, Any] = ({"since": alarms[-1].id} if before is None
                                     else {"before": alarms[-1].id})
            params = {"state": state, "kind": ",".join(kinds) if kinds else None,
                      **after, "limit": limit}
            query = urlencode({k: v for k, v in params.items() if v is not None})
            next_page = f"/v1/admin/alarms?{query}"
        return json_response({"alarms": [listed(a) for a in alarms], "next": next_page})

    @app.post("/v1/admin/alarms/<raw_id>/resolve")
    @documented("Resolve an open alarm by hand", "Alarms", Answer(200, res.Alarm, "resolved"),
                body=NoteRequest, body_required=False, params=(ALARM_ID,),
                problems=("INVALID_ALARM_ID", "ALARM_NOT_FOUND", "ALARM_NOT_OPEN"))
    async def resolve_alarm(raw_id: str) -> Response:
        """An operator declares an open alarm settled (one whose cause went away unseen, such
        as a `platform_down` raised by a worker that died): a `resolved` alarm names it."""
        require_admin(settings)
        actor = acting(settings)
        alarm_id = _alarm_id(raw_id)
        note = _note(await request.get_data(cache=False, as_text=False))
        resolved, other = await app.runtime.alarms.resolve_by_hand(alarm_id, actor, note)
        if resolved is not None:
            return json_response(listed(resolved))
        if other is None:
            raise ApiProblem(404, "ALARM_NOT_FOUND", f"no alarm {alarm_id}", field="id")
        raise ApiProblem(409, "ALARM_NOT_OPEN",
                         f"alarm {alarm_id} is not open (state {other.state})", field="id")

    @app.post("/v1/admin/alarms/<raw_id>/acknowledge")
    @documented("Acknowledge an open alarm", "Alarms",
                Answer(200, res.Alarm, "acknowledged: who and when are recorded on it"),
                body=NoteRequest, body_required=False, params=(ALARM_ID,),
                problems=("INVALID_ALARM_ID", "ALARM_NOT_FOUND", "ALARM_NOT_OPEN",
                          "ALARM_ALREADY_ACKNOWLEDGED"))
    async def acknowledge_alarm(raw_id: str) -> Response:
        """An operator takes an open alarm in hand: who and when are recorded on it (and in
        the audit trail); it stays open until its cause settles or it is resolved."""
        require_admin(settings)
        actor = acting(settings)
        alarm_id = _alarm_id(raw_id)
        note = _note(await request.get_data(cache=False, as_text=False))
        outcome = await app.runtime.store.acknowledge_alarm(alarm_id, actor, note)
        if outcome is None:
            raise ApiProblem(404, "ALARM_NOT_FOUND", f"no alarm {alarm_id}", field="id")
        alarm, done = outcome
        if done:
            return json_response(listed(alarm))
        if alarm.state != "open":
            raise ApiProblem(409, "ALARM_NOT_OPEN", f"alarm {alarm_id} is not open (state "
                             f"{alarm.state}): only an open alarm can be acknowledged",
                             field="id")
        assert alarm.acknowledged_at is not None
        raise ApiProblem(409, "ALARM_ALREADY_ACKNOWLEDGED",
                         f"alarm {alarm_id} was already acknowledged by {alarm.acknowledged_by}"
                         f" at {alarm.acknowledged_at.isoformat()}", field="id",
                         acknowledged=listed(alarm)["acknowledged"])
