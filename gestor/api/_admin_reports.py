"""`GET /v1/admin/reports/{series,breakdown,peak-hours,latency}`: reports over every worker and
node, read from the database's hourly rollups plus the facts not folded yet (exact as soon as a
movement commits). JSON by default; CSV with `Accept: text/csv` or `?format=csv` (header row
first, the JSON rows' keys as columns).

`from`/`to` are RFC 3339 times or dates (`YYYY-MM-DD`: that day's start in `[purchase]
timezone`); `from` inclusive, `to` exclusive; `to` defaults to now and `from` to `to` minus 7
days. A period counts the whole hours that start in it, by the time each movement was accepted.
`from` after `to` is 422 naming `to`; a period over `[reports] max_days`, 422 naming `from`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from quart import Response, request

from gestor.api import _periods as periods
from gestor.api import _registry as reg
from gestor.api import _report_resources as res
from gestor.api._problems import ApiProblem, json_response
from gestor.api._registry import Answer, documented
from gestor.model import TxKind
from gestor.reports import csv_text
from gestor.store import Period

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp
    from gestor.settings import Settings

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
EVERY = ("hour", "day")
BY = ("bono", "channel", "profile", "segment", "rule")
_KINDS = tuple(k.value for k in TxKind)

_TIME = {"type": "string", "description": "an RFC 3339 time, or a date YYYY-MM-DD (its start "
         "in the configured time zone)"}
FROM = reg.query("from", _TIME, "the period's start (inclusive; default `to` minus 7 days)",
                 "2026-03-01")
TO = reg.query("to", _TIME, "the period's end (exclusive; default now)", "2026-03-08")
KIND = reg.query("kind", {"type": "string", "enum": list(_KINDS)},
                 "only movements of this kind (default all)", "purchase")
FORMAT = reg.query("format", {"type": "string", "enum": ["json", "csv"]},
                   "csv: the rows as CSV (as `Accept: text/csv`)", "json")
EVERY_PARAM = reg.query("every", {"type": "string", "enum": list(EVERY), "default": "hour"},
                        "the buckets", "day")
PERIOD_PROBLEMS = ("INVALID_TIME", "INVALID_PERIOD", "PERIOD_TOO_LONG", "INVALID_FORMAT")
CSV = "text/csv"


def period(args: Any, settings: Settings, now: datetime) -> Period:
    start, end = periods.period(args, settings.timezone, settings.report_max_days, now,
                                "[reports] max_days")
    kind = args.get("kind") or None
    if kind is not None and kind not in _KINDS:
        raise ApiProblem(422, "INVALID_KIND", f"kind must be one of {', '.join(_KINDS)}",
                         field="kind")
    return Period(start, end, kind)


def choice(args: Any, field: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    raw = args.get(field) or default
    if raw not in allowed:
        code = {"every": "INVALID_EVERY", "by": "INVALID_BY"}[field]
        raise ApiProblem(422, code, f"{field} must be one of {', '.join(allowed)}", field=field)
    return str(raw)


def _when(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).isoformat()


def series_rows(rows: list[dict[str, Any]], tz: ZoneInfo) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        r["at"] = _when(r["at"], tz)
        r["advances_granted"] = r.pop("granted")
        r["advances_recovered"] = r.pop("recovered")
        out.append(r)
    return out


def register(app: GestorApp, settings: Settings) -> None:
    tz = ZoneInfo(settings.timezone)

    def asked(report: str) -> tuple[Period, bool]:
        """The period asked for, and whether as CSV (checked first: a bad `format` is named
        whatever else is wrong)."""
        as_csv = periods.wants_csv(request.args, request.headers.get("Accept"))
        return period(request.args, settings, app.runtime.purchases.deps.now()), as_csv

    def answer(report: str, body: dict[str, Any], rows: list[dict[str, Any]], as_csv: bool
               ) -> Response:
        if as_csv:
            return Response(csv_text(report, rows), content_type="text/csv; charset=utf-8")
        return json_response(body)

    def bounds(p: Period) -> dict[str, str]:
        return {"from": _when(p.start, tz), "to": _when(p.end, tz)}

    @app.get("/v1/admin/reports/series")
    @documented("Movements, outcomes and money per hour or day", "Reports",
                Answer(200, res.Series, "one row per bucket and kind that had movements "
                       "(`received`: accepted; the others: final states; CSV: the rows)",
                       media=(CSV,)),
                params=(FROM, TO, EVERY_PARAM, KIND, FORMAT),
                problems=(*PERIOD_PROBLEMS, "INVALID_EVERY", "INVALID_KIND"))
    async def report_series() -> Response:
        """Per bucket (`at`: its start) and kind: movements received, completed, rejected,
        failed, refunded and inconsistent; revenue (completed purchases' prices), fees
        (completed movements'), refunds (refunded prices), advances granted (completed
        advances' amounts) and recovered (what top-ups collected). `advances_outstanding`: what
        advances still owe at the period's end, over all time."""
        p, as_csv = asked("series")
        every = choice(request.args, "every", EVERY, "hour")
        rows, outstanding = await app.runtime.store.reports.series(p, every, settings.timezone)
        out = series_rows(rows, tz)
        return answer("series", {**bounds(p), "every": every, "timezone": settings.timezone,
                                 "rows": out, "advances_outstanding": outstanding}, out, as_csv)

    @app.get("/v1/admin/reports/breakdown")
    @documented("Movements broken down by bono, channel, profile, segment or rule", "Reports",
                Answer(200, res.Breakdown, "one row per value, most movements first (CSV: "
                       "the rows)", media=(CSV,)),
                params=(reg.query("by", {"type": "string", "enum": list(BY), "default": "bono"},
                                  "what to break down by", "channel"),
                        FROM, TO, KIND, FORMAT),
                problems=(*PERIOD_PROBLEMS, "INVALID_BY", "INVALID_KIND"))
    async def report_breakdown() -> Response:
        """`count`: the movements that reached a final state, with its outcomes, and revenue.
        `by=rule`: `key` is a rejection code and `count` the rejections that failed it. The
        profile and segment are those of the decision ('' when none was made)."""
        p, as_csv = asked("breakdown")
        by = choice(request.args, "by", BY, "bono")
        rows = await app.runtime.store.reports.breakdown(p, by)
        out = [{"key": r["key"], "count": r["count"], "completed": r["completed"],
                "rejected": r["rejected"], "failed": r["failed"], "refunded": r["refunded"],
                "revenue": r["revenue"]} for r in rows]
        return answer("breakdown", {**bounds(p), "by": by, "rows": out}, out, as_csv)

    @app.get("/v1/admin/reports/peak-hours")
    @documented("Movements per weekday and hour of the day", "Reports",
                Answer(200, res.PeakHours, "all 168 cells, zeros included (CSV: the cells)",
                       media=(CSV,)),
                params=(FROM, TO, KIND, FORMAT), problems=(*PERIOD_PROBLEMS, "INVALID_KIND"))
    async def report_peak_hours() -> Response:
        """Movements accepted per weekday (0 = Monday) and hour, in the configured time
        zone: when the business is busiest."""
        p, as_csv = asked("peak-hours")
        counts = await app.runtime.store.reports.peak_hours(p, settings.timezone)
        cells = [{"weekday": d, "hour": h, "count": counts.get((d, h), 0)}
                 for d in range(7) for h in range(24)]
        return answer("peak-hours", {**bounds(p), "timezone": settings.timezone,
                                     "cells": cells}, cells, as_csv)

    @app.get("/v1/admin/reports/latency")
    @documented("Purchase latency by outcome, p50 and p99 per hour or day", "Reports",
                Answer(200, res.Latency, "one row per bucket and outcome (CSV: the rows)",
                       media=(CSV,)),
                params=(FROM, TO, EVERY_PARAM, FORMAT),
                problems=(*PERIOD_PROBLEMS, "INVALID_EVERY"))
    async def report_latency() -> Response:
        """Purchases that ended in each bucket's hours, by outcome: how many, and the p50 and
        p99 of their time from acceptance to final state (the database's clock), read off
        fixed buckets (1, 2, 3, 5, 7, 10, 15 ... ms: each figure is its bucket's upper
        bound)."""
        p, as_csv = asked("latency")
        every = choice(request.args, "every", EVERY, "hour")
        rows = await app.runtime.store.reports.latency(p, every, settings.timezone)
        out = [{**r, "at": _when(r["at"], tz)} for r in rows]
        return answer("latency", {"rows": out}, out, as_csv)



