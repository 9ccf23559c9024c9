"""A report's rows as CSV (the API's `text/csv`, `gestor report --csv`) or as an aligned table
for a terminal (`gestor report`). The columns of each report are its JSON rows' keys."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

#: Each report's row columns, in order: the CSV header and the JSON rows' keys.
COLUMNS: dict[str, tuple[str, ...]] = {
    "series": ("at", "kind", "received", "completed", "rejected", "failed", "refunded",
               "inconsistent", "revenue", "fees", "refunds", "advances_granted",
               "advances_recovered"),
    "breakdown": ("key", "count", "completed", "rejected", "failed", "refunded", "revenue"),
    "peak-hours": ("weekday", "hour", "count"),
    "latency": ("at", "outcome", "count", "p50_ms", "p99_ms"),
}


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def csv_text(report: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """Header row, then one line per row (RFC 4180, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out)
    columns = COLUMNS[report]
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return out.getvalue()


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _peak_grid(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Peak hours as a weekday-by-hour grid: one line per weekday, one column per hour."""
    counts = {(r["weekday"], r["hour"]): r["count"] for r in rows}
    grid = [["", *(f"{h:02d}" for h in range(24)), "total"]]
    for d, name in enumerate(_WEEKDAYS):
        line = [counts.get((d, h), 0) for h in range(24)]
        grid.append([name, *(str(n) for n in line), str(sum(line))])
    return grid


def table_text(report: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as an aligned table (numbers right-aligned), or a line saying there are none."""
    if report == "peak-hours":
        grid = _peak_grid(rows)
    else:
        if not rows:
            return "no movements in this period\n"
        grid = [list(COLUMNS[report]),
                *([_cell(r[c]) for c in COLUMNS[report]] for r in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]
    numeric = [all(line[i].lstrip("-").isdigit() or not line[i] for line in grid[1:])
               for i in range(len(grid[0]))]
    lines = []
    for n, line in enumerate(grid):
        cells = [c.rjust(w) if numeric[i] and n > 0 else c.ljust(w)
                 for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
