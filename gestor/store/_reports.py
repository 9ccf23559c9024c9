"""SQL of the reports (migration 0013): hourly rollups plus the facts not folded yet, read in one
statement (one snapshot), so a report is exact the moment a movement commits; the fold that
moves facts into rollups; the rebuild from `transactions`.

A period is the hours that start in it: `hours(start, end)` rounds both ends up to the hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from gestor.model import Actor
from gestor.store import _audit
from gestor.store._bridge import Bridge

#: The advisory lock of the fold (0013: report_fold, report_rebuild).
FOLD_LOCK = 0x7265706F
#: Seconds a rebuild may take (the pool's statements get 30): minutes for 10 million movements.
REBUILD_TIMEOUT = 3600.0
#: Outcomes a series counts: `received` is every accepted movement, the others final states.
OUTCOMES = ("received", "completed", "rejected", "failed", "refunded", "inconsistent")
MONEY = ("revenue", "fees", "refunds", "granted", "recovered")
#: Breakdown dimensions as the API names them (`by`) → as the rollups do.
DIMENSIONS = {"bono": "bono", "channel": "channel", "profile": "profile", "segment": "segment",
              "rule": "rule"}


def ceil_hour(at: datetime) -> datetime:
    """The first hour start at or after `at` (UTC)."""
    at = at.astimezone(UTC)
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(hours=1)


@attrs.frozen
class Period:
    """The hours that start in [start, end), and an optional movement kind."""

    start: datetime
    end: datetime
    kind: str | None = None

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return ceil_hour(self.start), ceil_hour(self.end)


def _both(where: str) -> str:
    """The rollup rows matching `where` and the unfolded facts' rows matching it, as one set:
    `$1`, `$2` the hour bounds, `$3` the kind (or NULL)."""
    cols = "hour, kind, outcome, value, n, revenue, fees, refunds, granted, recovered, owed"
    return f"""
    SELECT {cols} FROM report_rollups
    WHERE {where} AND hour >= $1 AND hour < $2 AND ($3::text IS NULL OR kind = $3)
    UNION ALL
    SELECT {cols} FROM report_fact_rows
    WHERE {where} AND at >= $1 AND at < $2 AND ($3::text IS NULL OR kind = $3)
    """


_SERIES = f"""
WITH r AS ({_both("dim = ''")})
SELECT CASE WHEN $4 = 'hour' THEN hour ELSE date_trunc($4, hour, $5) END AS at, kind,
       {", ".join(f"COALESCE(sum(n) FILTER (WHERE outcome = '{o}'), 0)::bigint AS {o}"
                  for o in OUTCOMES)},
       {", ".join(f"sum({m})::bigint AS {m}" for m in MONEY)}
FROM r GROUP BY 1, 2 ORDER BY 1, 2
"""

# What advances still owe at the period's end: owed - collected over all time before it.
_OUTSTANDING = """
SELECT COALESCE(sum(owed), 0) - COALESCE(sum(recovered), 0) FROM (
    SELECT owed, recovered FROM report_rollups
    WHERE dim = '' AND hour < $1 AND outcome = 'completed'
    UNION ALL
    SELECT owed, recovered FROM report_facts WHERE at < $1 AND outcome = 'completed'
) r
"""

# Whole UTC days [$5, $6) from report_daily, the hours at the edges from report_rollups.
_BREAKDOWN = f"""
WITH r AS (
    SELECT outcome, value, n, revenue FROM report_daily
    WHERE dim = $4 AND day >= $5 AND day < $6 AND ($3::text IS NULL OR kind = $3)
    UNION ALL
    SELECT outcome, value, n, revenue FROM report_rollups
    WHERE dim = $4 AND ((hour >= $1 AND hour < $5) OR (hour >= $6 AND hour < $2))
      AND ($3::text IS NULL OR kind = $3)
    UNION ALL
    SELECT outcome, value, n, revenue FROM report_fact_rows
    WHERE dim = $4 AND at >= $1 AND at < $2 AND ($3::text IS NULL OR kind = $3)
)
SELECT value AS key, sum(n) AS count,
       {", ".join(f"COALESCE(sum(n) FILTER (WHERE outcome = '{o}'), 0) AS {o}"
                  for o in OUTCOMES[1:])},
       sum(revenue) AS revenue
FROM r GROUP BY value HAVING sum(n) <> 0 ORDER BY count DESC, key
"""

_PEAK = f"""
WITH r AS ({_both("dim = '' AND outcome = 'received'")})
SELECT extract(isodow FROM hour AT TIME ZONE $4)::int - 1 AS weekday,
       extract(hour FROM hour AT TIME ZONE $4)::int AS hour, sum(n) AS count
FROM r GROUP BY 1, 2
"""

#: The latency buckets' upper bounds (ms): report_latency_ladder() (0013); a histogram is the
#: count of each.
LADDER = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500, 2000,
          3000, 5000, 7000, 10000, 15000, 20000, 30000, 60000, 120000, 300000, 600000, 1800000,
          3600000, 86400000)

# The purchases' latency histograms per hour and outcome (a few thousand rows a month), their
# bucket's start computed by the database only for days (hours are already buckets).
_LATENCY = """
WITH r AS (
    SELECT hour, outcome, hist FROM report_rollups
    WHERE dim = 'latency' AND hour >= $1 AND hour < $2 AND kind = 'purchase'
    UNION ALL
    SELECT hour, outcome, hist FROM report_fact_rows
    WHERE dim = 'latency' AND at >= $1 AND at < $2 AND kind = 'purchase'
)
SELECT CASE WHEN $3 = 'hour' THEN hour ELSE date_trunc($3, hour, $4) END AS at, outcome, hist
FROM r
"""


def _quantiles(at: datetime, outcome: str, hist: list[int]) -> dict[str, Any] | None:
    """count, p50_ms and p99_ms of one histogram: the bound of the bucket holding each rank."""
    total = sum(hist)
    if total <= 0:
        return None
    out: dict[str, Any] = {"at": at, "outcome": outcome, "count": total}
    seen = 0
    wanted = [("p50_ms", 0.5 * total), ("p99_ms", 0.99 * total)]
    for bound, n in zip(LADDER, hist, strict=True):
        seen += n
        while wanted and seen >= wanted[0][1]:
            out[wanted.pop(0)[0]] = bound
    return out


def _row(r: Any) -> dict[str, Any]:
    return {k: (int(v) if k != "at" and k != "kind" and k != "key" and k != "outcome"
                and v is not None else v) for k, v in r.items()}


async def _series(conn: Any, period: Period, every: str, tz: str) -> list[dict[str, Any]]:
    # bigint already (a month of hours is thousands of rows: no conversion on the way)
    return [dict(r) for r in await conn.fetch(_SERIES, *period.bounds, period.kind, every, tz)]


async def _outstanding(conn: Any, end: datetime) -> int:
    return int(await conn.fetchval(_OUTSTANDING, ceil_hour(end)))


def whole_days(lo: datetime, hi: datetime) -> tuple[datetime, datetime]:
    """The whole UTC days within the hours [lo, hi) (both hour starts): [first, end), empty
    (end, end) when there is none."""
    first = lo if lo.hour == 0 else lo.replace(hour=0) + timedelta(days=1)
    end = hi.replace(hour=0)
    return (first, end) if first < end else (hi, hi)


async def _breakdown(conn: Any, period: Period, by: str) -> list[dict[str, Any]]:
    lo, hi = period.bounds
    return [_row(r) for r in await conn.fetch(_BREAKDOWN, lo, hi, period.kind, DIMENSIONS[by],
                                              *whole_days(lo, hi))]


async def _peak(conn: Any, period: Period, tz: str) -> dict[tuple[int, int], int]:
    rows = await conn.fetch(_PEAK, *period.bounds, period.kind, tz)
    return {(r["weekday"], r["hour"]): int(r["count"]) for r in rows}


async def _latency(conn: Any, period: Period, every: str, tz: str) -> list[dict[str, Any]]:
    summed: dict[tuple[datetime, str], list[int]] = {}
    for at, outcome, hist in await conn.fetch(_LATENCY, *period.bounds, every, tz):
        into = summed.get((at, outcome))
        if into is None:
            summed[at, outcome] = list(hist)
        else:
            summed[at, outcome] = [a + b for a, b in zip(into, hist, strict=True)]
    found = (_quantiles(at, outcome, summed[at, outcome]) for at, outcome in sorted(summed))
    return [q for q in found if q is not None]


async def _fold(conn: Any, limit: int | None) -> int:
    return int(await conn.fetchval("SELECT report_fold($1)", limit))


async def _rebuild(conn: Any, start: datetime | None, end: datetime | None,
                   actor: Actor | None) -> int:
    # The folds' lock first, held by the session (a fold that commits while this waits would
    # otherwise have changed rows after its snapshot), then one REPEATABLE READ transaction:
    # its snapshot decides which facts it replaces (see report_rebuild, 0013).
    await conn.execute("SELECT pg_advisory_lock($1)", FOLD_LOCK)
    try:
        async with conn.transaction(isolation="repeatable_read"):
            movements = int(await conn.fetchval("SELECT report_rebuild($1, $2)", start, end,
                                                timeout=REBUILD_TIMEOUT))
            if actor is not None:
                subject = (f"reports/{start.isoformat() if start else '-'}"
                           f"..{end.isoformat() if end else '-'}")
                await _audit.record(conn, actor, "reports.rebuild", subject, None,
                                    {"movements": movements})
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", FOLD_LOCK)
    return movements


@attrs.frozen
class Reports:
    """The reports over every worker and node (`Store.reports`). `every`: 'hour' or 'day';
    `tz`: the IANA time zone days, weekdays and hours are counted in."""

    bridge: Bridge

    async def series(self, period: Period, every: str, tz: str
                     ) -> tuple[list[dict[str, Any]], int]:
        """Rows per bucket and kind: counts per outcome and money; and what advances still owe
        at the period's end (over all time)."""
        async def both(conn: Any) -> tuple[list[dict[str, Any]], int]:
            return await _series(conn, period, every, tz), await _outstanding(conn, period.end)

        return await self.bridge.run(both)  # one transaction: the two agree

    async def breakdown(self, period: Period, by: str) -> list[dict[str, Any]]:
        """Final movements per value of `by` (bono, channel, profile, segment), or rejections
        per rule code (`rule`)."""
        return await self.bridge.run(_breakdown, period, by, transaction=False)

    async def peak_hours(self, period: Period, tz: str) -> dict[tuple[int, int], int]:
        """Accepted movements per (weekday 0 = Monday, hour) in `tz`; absent cells are 0."""
        return await self.bridge.run(_peak, period, tz, transaction=False)

    async def latency(self, period: Period, every: str, tz: str) -> list[dict[str, Any]]:
        """Purchases per bucket and final outcome: count, p50_ms, p99_ms."""
        return await self.bridge.run(_latency, period, every, tz, transaction=False)

    async def fold(self, limit: int | None = 10_000) -> int:
        """Fold up to `limit` facts into the rollups (-1: another node is folding)."""
        return await self.bridge.run(_fold, limit)

    async def rebuild(self, start: datetime | None = None, end: datetime | None = None,
                      actor: Actor | None = None) -> int:
        """Recompute the rollups of [start, end) (whole hours; None: all time) from the
        movements; how many movements they count. With `actor`, an audit entry
        (`reports.rebuild`) in the same transaction."""
        return await self.bridge.run(_rebuild, start, end, actor, transaction=False)
