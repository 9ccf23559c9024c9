"""SQL for the shared token buckets of the rate limits (gestor.ratelimits): each worker adds
what it admitted and was asked since its last exchange and reads every bucket's level and
demand back, in one statement for all its buckets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The proposed row carries the report: `level` = burst - used (a new bucket is full less what
# was used), `demand` = asked. Rows are taken in bucket order, so two workers exchanging the
# same buckets lock them in the same order (no deadlock).
_LEVEL = """least(EXCLUDED.burst, b.level + EXCLUDED.rate
          * greatest(0, extract(epoch FROM EXCLUDED.at - b.at)))
    - (EXCLUDED.burst - EXCLUDED.level)"""

_EXCHANGE = f"""
INSERT INTO rate_buckets AS b (bucket, level, demand, rate, burst, at, full_at)
SELECT r.bucket, r.burst - r.used, r.asked, r.rate, r.burst, now(),
       now() + make_interval(secs => r.used / r.rate)
FROM unnest($1::text[], $2::float8[], $3::float8[], $4::float8[], $5::float8[])
     AS r(bucket, used, asked, rate, burst)
ORDER BY r.bucket
ON CONFLICT (bucket) DO UPDATE SET
    level = {_LEVEL},
    demand = b.demand * exp(-greatest(0, extract(epoch FROM EXCLUDED.at - b.at)) / $6)
             + EXCLUDED.demand,
    rate = EXCLUDED.rate,
    burst = EXCLUDED.burst,
    at = EXCLUDED.at,
    full_at = EXCLUDED.at + make_interval(
        secs => greatest(0, EXCLUDED.burst - ({_LEVEL})) / EXCLUDED.rate)
RETURNING bucket, level, demand
"""


async def exchange(conn: Any, rows: Sequence[tuple[str, int, int, float, float]],
                   demand_seconds: float) -> Mapping[str, tuple[float, float]]:
    """Add each bucket's (used, asked) and read its (level, demand): `rows` are (bucket,
    used, asked, rate, burst); demand decays over `demand_seconds`."""
    answered = await conn.fetch(
        _EXCHANGE, [r[0] for r in rows], [float(r[1]) for r in rows],
        [float(r[2]) for r in rows], [r[3] for r in rows], [r[4] for r in rows],
        demand_seconds,
    )
    return {r["bucket"]: (float(r["level"]), float(r["demand"])) for r in answered}


async def forget_full(conn: Any, idle_seconds: float) -> int:
    """Delete the buckets full again and idle `idle_seconds`: a missing bucket is full."""
    result = await conn.execute(
        "DELETE FROM rate_buckets WHERE full_at < now()"
        " AND at < now() - make_interval(secs => $1)", idle_seconds,
    )
    return int(result.split()[-1])
