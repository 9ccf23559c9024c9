"""The `from`/`to` of the ledger's (and reports') periods: RFC 3339 times, or dates meaning the
day's start in `[purchase] timezone`; `from` inclusive, `to` exclusive; `to` defaults to now and
`from` to seven days before `to`. A period over the configured maximum, or `from` after `to`, is
a 422 naming the field. And the answer's format: JSON, or CSV (`Accept: text/csv` or
`?format=csv`)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gestor.api import _validate as validate
from gestor.api._problems import ApiProblem

DEFAULT_SPAN = timedelta(days=7)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CSV = "text/csv; charset=utf-8"


def day(raw: Any, field: str = "day") -> date:
    """A calendar date `YYYY-MM-DD`."""
    if not isinstance(raw, str) or not _DATE.fullmatch(raw):
        raise ApiProblem(422, "INVALID_DAY", f"{field} must be a date YYYY-MM-DD", field=field)
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise ApiProblem(422, "INVALID_DAY", f"{field} must be a date YYYY-MM-DD",
                         field=field) from None
    if not validate.EARLIEST.date() <= value < validate.LATEST.date() - timedelta(days=1):
        raise ApiProblem(422, "INVALID_DAY", f"{field} must lie between "
                         f"{validate.EARLIEST.date()} and {validate.LATEST.year - 1}",
                         field=field)
    return value


def bound(raw: str | None, field: str, timezone: str) -> datetime | None:
    """One end of a period: a time, or a date (its start in `timezone`); None when absent."""
    if not raw:
        return None
    if _DATE.fullmatch(raw):
        try:
            start = datetime.combine(date.fromisoformat(raw), time(), ZoneInfo(timezone))
        except ValueError:
            raise ApiProblem(422, "INVALID_TIME", f"{field} must be an RFC 3339 time or a "
                             "date YYYY-MM-DD", field=field) from None
        return validate.instant(start.isoformat(), field, start)
    return validate.instant(raw, field, validate.EARLIEST)


def period(args: Mapping[str, str], timezone: str, max_days: int, now: datetime,
           setting: str = "[ledger] max_period_days") -> tuple[datetime, datetime]:
    """(from, to) of a request's query: see the module docstring. `setting` names the
    configured maximum in the problem's detail."""
    until = bound(args.get("to"), "to", timezone) or now
    since = bound(args.get("from"), "from", timezone) or until - DEFAULT_SPAN
    if since > until:
        raise ApiProblem(422, "INVALID_PERIOD", "from must not be after to", field="to")
    if until - since > timedelta(days=max_days):
        raise ApiProblem(422, "PERIOD_TOO_LONG", f"from..to must span at most {max_days} days "
                         f"({setting})", field="from")
    return since, until


def wants_csv(args: Mapping[str, str], accept: str | None) -> bool:
    """`?format=csv|json` first, else whether `Accept` names text/csv."""
    fmt = args.get("format")
    if fmt is not None:
        if fmt not in ("csv", "json"):
            raise ApiProblem(422, "INVALID_FORMAT", "format must be json or csv",
                             field="format")
        return fmt == "csv"
    return bool(accept) and any(part.split(";")[0].strip().lower() == "text/csv"
                                for part in (accept or "").split(","))


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """RFC 4180: the header row, then one line per row (CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([row[c] for c in columns] for row in rows)
    return out.getvalue()
