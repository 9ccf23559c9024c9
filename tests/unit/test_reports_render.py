"""A report's rows as CSV and as a terminal table; p50/p99 read off a latency histogram."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from gestor.reports import COLUMNS, csv_text, table_text
from gestor.store._reports import LADDER, _quantiles, ceil_hour, whole_days

ROW = {"key": "DATA_2GB_7D", "count": 12, "completed": 10, "rejected": 1, "failed": 0,
       "refunded": 1, "revenue": 600000}


def test_csv_has_the_header_and_one_line_per_row() -> None:
    text = csv_text("breakdown", [ROW, {**ROW, "key": 'a "quoted", key'}])
    lines = text.splitlines()
    assert lines[0] == "key,count,completed,rejected,failed,refunded,revenue"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[1]["key"] == 'a "quoted", key'
    assert rows[0] == {k: str(v) for k, v in ROW.items()}
    assert csv_text("series", []).splitlines() == [",".join(COLUMNS["series"])]


def test_table_aligns_numbers_right_and_says_when_empty() -> None:
    text = table_text("breakdown", [ROW, {**ROW, "key": "SMS", "count": 3, "revenue": 5}])
    header, first, second = text.splitlines()
    assert header.split() == list(COLUMNS["breakdown"])
    assert len(first) == len(second)
    assert second.endswith("      5")  # revenue right-aligned under 600000
    assert table_text("latency", []) == "no movements in this period\n"


def test_peak_hours_is_a_weekday_by_hour_grid() -> None:
    cells = [{"weekday": d, "hour": h, "count": 0} for d in range(7) for h in range(24)]
    cells[1 * 24 + 9]["count"] = 4  # Tuesday 09:00
    lines = table_text("peak-hours", cells).splitlines()
    assert lines[0].split() == [f"{h:02d}" for h in range(24)] + ["total"]
    tue = lines[2].split()
    assert tue[0] == "Tue" and tue[1 + 9] == "4" and tue[-1] == "4"
    assert len(lines) == 8


def test_quantiles_are_the_bounds_of_the_buckets_holding_the_ranks() -> None:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    hist = [0] * len(LADDER)
    hist[LADDER.index(10)], hist[LADDER.index(20)] = 50, 40
    hist[LADDER.index(50)], hist[LADDER.index(1000)] = 9, 1
    q = _quantiles(at, "completed", hist)
    assert q == {"at": at, "outcome": "completed", "count": 100, "p50_ms": 10, "p99_ms": 50}
    one = [0] * len(LADDER)
    one[LADDER.index(3000)] = 1
    q = _quantiles(at, "failed", one)
    assert q is not None and q["p50_ms"] == q["p99_ms"] == 3000
    assert _quantiles(at, "refunded", [0] * len(LADDER)) is None  # nothing left


def test_ceil_hour() -> None:
    assert ceil_hour(datetime(2026, 3, 2, 10, tzinfo=UTC)) == datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert ceil_hour(datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC)) == datetime(2026, 3, 2, 11,
                                                                             tzinfo=UTC)


def test_whole_days_between_two_hours() -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    hours = [day.replace(hour=h) for h in range(24)]
    assert whole_days(day, day.replace(day=9)) == (day, day.replace(day=9))
    assert whole_days(hours[3], day.replace(day=9, hour=3)) == (day.replace(day=3),
                                                                day.replace(day=9))
    assert whole_days(hours[3], hours[23]) == (hours[23], hours[23])  # none
    assert whole_days(hours[3], day.replace(day=3, hour=2)) == (day.replace(day=3, hour=2),) * 2
