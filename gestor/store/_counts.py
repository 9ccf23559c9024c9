"""How many rows each of Gestor's tables holds: for operators' checks and for tests that
assert a refused request wrote nothing."""

from __future__ import annotations

from typing import Any

from gestor.store._bridge import Bridge

#: Every table a request can write to.
TABLES = ("transactions", "mobile_guards", "restrictions", "alarms", "rule_sets",
          "rule_set_audit", "catalogue_versions", "catalogue_version_audit", "audit",
          "notifications", "ledger_entries", "ledger_days", "ledger_day_totals", "report_facts",
          "report_rollups", "report_daily")

_COUNT = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in TABLES)


async def _count(conn: Any) -> dict[str, int]:
    row = await conn.fetchrow(_COUNT)
    return {t: int(row[t]) for t in TABLES}


async def table_counts(bridge: Bridge) -> dict[str, int]:
    """{table: rows} for every table in `TABLES`, read in one statement (one snapshot)."""
    counts: dict[str, int] = await bridge.run(_count, transaction=False)
    return counts
