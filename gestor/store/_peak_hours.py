"""SQL for one subscriber's peak hours: how many movements the mobile made (as payer, whatever
their outcome) in each weekday and hour of the operator's time zone over a period. One statement,
a range scan of `transactions_msisdn_created` (msisdn, created_at)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# `isodow` is 1 (Monday) .. 7 (Sunday): weekday 0 is Monday, as Python's `weekday()`.
_PEAK_HOURS = """
SELECT (extract(isodow FROM created_at AT TIME ZONE $4::text))::int - 1 AS weekday,
       (extract(hour FROM created_at AT TIME ZONE $4::text))::int AS hour,
       count(*) AS movements
FROM transactions
WHERE msisdn = $1 AND created_at >= $2 AND created_at < $3
GROUP BY 1, 2
"""


async def peak_hours(conn: Any, msisdn: str, since: datetime, until: datetime, tz: str
                     ) -> dict[tuple[int, int], int]:
    """{(weekday, hour): movements} of `msisdn` created in [since, until), in time zone `tz`
    (an IANA name); cells without movements are absent."""
    rows = await conn.fetch(_PEAK_HOURS, msisdn, since, until, tz)
    return {(r["weekday"], r["hour"]): int(r["movements"]) for r in rows}
