"""Issue 15's goals, evaluated on the results of one `python -m bench goals` (or `all`) run, and
their medians over `--runs N`.

Each goal is read from the run that measures it (bench/README.md, "`goals`", says exactly what
each figure is):

* `purchase` (1 worker): server CPU per completed purchase ≤ 2.2x per echo request; purchase
  answers/s (final state) ≥ 0.4 of the echo baseline's requests/s; its half-rate phase: p99 of
  a purchase ≤ 100 ms (in every run, not only the median);
* `in-flight`: 10,000 purchases in flight at once with 20 s platform latency, every answer a
  `202`, nothing unanswered, server RSS < 1 GiB, nothing pending after the drain, invariants;
* `purchase-2w` against `purchase`: Gestor's own CPU per purchase with 2 workers ≤ 1.1x its
  CPU with 1, beside the box-bound throughput ratio (reported, no target);
* `many-mobiles`: server RSS for a million distinct mobiles < 300 MB (measured, or projected
  from the RSS slope of a shorter phase) and the listing p99 at half its saturation rate ≤ 50 ms;
* `history` against `purchase`: CPU per purchase and the half-rate p99 within 10 % of the empty
  database's, with 10 million movements stored and one mobile with a long history.

A goal whose run is missing (or was run without baselines) is listed with `met: None`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench._load import LONG_KIND
from bench._report import fmt

CPU_RATIO_MAX = 2.2
THROUGHPUT_SHARE_MIN = 0.4
HALF_RATE_P99_MAX_MS = 100.0
IN_FLIGHT_MIN = 10_000
RSS_MAX_MB = 1024.0
SCALING_CPU_MAX = 1.1
MANY_RSS_MAX_MB = 300.0
MANY_P99_MAX_MS = 50.0
HISTORY_MAX = 1.10


@dataclass(frozen=True)
class Goal:
    """One goal's figure in one run (or the aggregate of several runs)."""

    key: str                    # stable id, e.g. "cpu_ratio"
    goal: str                   # what the table prints
    value: float | None         # the figure (None: not measured)
    op: str                     # "<=", "<", ">=", or "info" (reported beside another, no target)
    limit: float
    unit: str                   # "x", "ms", "MB", "" (a count) or "share"
    detail: str
    source: str                 # the run(s) it is read from
    every_run: bool = False     # over several runs: the worst run decides, not the median

    @property
    def met(self) -> bool | None:
        if self.value is None or self.op == "info":
            return None
        return {"<=": self.value <= self.limit, "<": self.value < self.limit,
                ">=": self.value >= self.limit}[self.op]

    @property
    def target(self) -> str:
        if self.op == "info":
            return "reported"
        limit = f"{self.limit:,.0f}" if self.limit >= 100 else f"{self.limit:g}"
        return f"{self.op.replace('<=', '≤').replace('>=', '≥')} {limit}{_suffix(self.unit)}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"met": self.met, "target": self.target}


def _suffix(unit: str) -> str:
    return {"x": "x", "ms": " ms", "MB": " MB", "": "", "share": ""}[unit]


def _ratio(a: Any, b: Any) -> float | None:
    return float(a) / float(b) if a is not None and b else None


def evaluate(results: Mapping[str, Mapping[str, Any]]) -> list[Goal]:
    """The goals, from the results of one run keyed by label (`purchase`, `purchase-2w`,
    `in-flight`, `many-mobiles`, `history`)."""
    rows: list[Goal] = []
    p1 = results.get("purchase")
    p2 = results.get("purchase-2w")
    if p1 is not None:
        ratio = p1.get("cpu_ratio_purchase_to_echo")
        rows.append(Goal(
            "cpu_ratio", "server CPU per completed purchase ≤ 2.2x per echo request, 1 worker",
            ratio, "<=", CPU_RATIO_MAX, "x",
            f"{fmt(p1.get('cpu_per_purchase_ms'), 3)} ms per purchase vs "
            f"{fmt(p1.get('cpu_per_echo_ms'), 3)} ms per echo request", "purchase"))
        echo, per_s = p1.get("echo_req_per_s"), p1.get("purchases_per_s")
        rows.append(Goal(
            "throughput_share", "purchases/s ≥ 0.4 of echo req/s, 1 worker",
            _ratio(per_s, echo), ">=", THROUGHPUT_SHARE_MIN, "share",
            f"{fmt(per_s)} purchase answers/s (final state; {fmt(p1.get('completed_per_s'))} "
            f"completed) vs echo {fmt(echo)} req/s", "purchase"))
        half = p1.get("half_rate") or {}
        rows.append(Goal(
            "half_rate_p99", "p99 of a purchase at half the saturation rate ≤ 100 ms",
            half.get("p99_ms") if half.get("n") else None, "<=", HALF_RATE_P99_MAX_MS, "ms",
            (f"open loop at {fmt(half.get('rate'))}/s (saturation "
             f"{fmt(half.get('saturation_per_s'))}/s): p50 {fmt(half.get('p50_ms'), 2)}, p99.9 "
             f"{fmt(half.get('p999_ms'), 2)} ms, {fmt(half.get('n'))} purchases, "
             f"{fmt(half.get('error_count', 0))} errors")
            if half.get("n") else half.get("skipped", "no half-rate phase in this run"),
            "purchase", every_run=True))
    rows += _in_flight(results.get("in-flight"))
    if p1 is not None and p2 is not None:
        cpu1, cpu2 = p1.get("cpu_per_purchase_ms"), p2.get("cpu_per_purchase_ms")
        a, b = p1.get("purchases_per_s"), p2.get("purchases_per_s")
        rows.append(Goal(
            "scaling_cpu", "Gestor's CPU per purchase with 2 workers ≤ 1.1x with 1",
            _ratio(cpu2, cpu1), "<=", SCALING_CPU_MAX, "x",
            f"{fmt(cpu2, 3)} ms with 2 workers vs {fmt(cpu1, 3)} ms with 1 (server processes' "
            "CPU per completed purchase)", "purchase, purchase-2w"))
        rows.append(Goal(
            "scaling_throughput", "... beside it: purchases/s with 2 workers / 1 worker "
            "(box-bound)", _ratio(b, a), "info", 0.0, "x",
            f"{fmt(a)} → {fmt(b)} purchase answers/s; every process's CPU per purchase caps this "
            f"box at {fmt((p2.get('box') or {}).get('ceiling_per_s'))}/s whatever the workers",
            "purchase, purchase-2w"))
    rows += _many_mobiles(results.get("many-mobiles"))
    rows += _history(p1, results.get("history"))
    return rows


def _in_flight(r: Mapping[str, Any] | None) -> list[Goal]:
    if r is None:
        return []
    load = r.get("load", {})
    latency = r.get("platform_latency", "?")
    how = (f"{latency}; open loop at {fmt(load.get('rate'))}/s for {fmt(r.get('duration_s'))} s,"
           f" {r.get('workers')} worker(s)")
    answers = r.get("outcomes", {}).get("purchase", {})
    not_202 = sum(n for k, n in answers.items() if not k.startswith("202"))
    failed = [c["name"] for c in (r.get("invariants") or {}).get("checks", []) if not c["ok"]]
    pending = r.get("pending_left")
    return [
        Goal("in_flight_peak", "purchases in flight at once, 20 s platform latency ≥ 10,000",
             r.get("in_flight", {}).get("peak_db_pending"), ">=", IN_FLIGHT_MIN, "",
             f"peak accepted and not final in the database (sampled each second); {how}",
             "in-flight"),
        Goal("in_flight_errors", "... every answer 202, no errors", not_202, "<=", 0, "",
             f"answers other than 202 (status 0: unanswered, the client gave up 15 s after the "
             f"load); answers: {', '.join(f'{k} {fmt(v)}' for k, v in answers.items()) or '-'}",
             "in-flight"),
        Goal("in_flight_rss", "... server RSS < 1 GiB", r.get("rss_mb_peak"), "<", RSS_MAX_MB,
             "MB", f"peak sum of VmRSS of the server processes "
             f"({fmt(r.get('rss_kb_per_in_flight'))} kB per purchase in flight)", "in-flight"),
        Goal("in_flight_final", "... every purchase final after the drain, invariants hold",
             None if pending is None else pending + len(failed), "<=", 0, "",
             f"{fmt(pending)} still pending after the drain; invariants "
             + ("ok" if not failed else "FAILED: " + "; ".join(failed)), "in-flight"),
    ]


def _many_mobiles(r: Mapping[str, Any] | None) -> list[Goal]:
    if r is None:
        return []
    half = r.get("half_rate") or {}
    rss = half.get("rss") or {}
    measured = max((v for v in (r.get("rss_mb_peak"), rss.get("rss_peak_mb")) if v is not None),
                   default=None)
    projected = rss.get("projected_mb_at_million")
    value = max(measured, projected) if measured is not None and projected is not None \
        else measured
    mobiles = half.get("mobiles")
    full = mobiles is not None and mobiles >= 1_000_000
    return [
        Goal("many_rss", "server RSS for 1,000,000 distinct mobiles < 300 MB", value, "<",
             MANY_RSS_MAX_MB, "MB",
             (f"measured over {fmt(mobiles)} mobiles" if full else
              f"peak {fmt(measured)} MB over {fmt(mobiles)} mobiles listed at "
              f"{fmt(half.get('rate'))}/s, projected linearly to a million from the slope "
              f"of the phase's second half ({fmt(rss.get('kb_per_1000_mobiles'), 1)} kB per "
              f"1,000 mobiles): {fmt(projected)} MB, an upper bound if what grows is bounded "
              "(bench/README.md)"), "many-mobiles"),
        Goal("many_p99", "listing p99 at half its saturation rate ≤ 50 ms",
             half.get("p99_ms") if half.get("n") else None, "<=", MANY_P99_MAX_MS, "ms",
             f"open loop at {fmt(half.get('rate'))}/s (saturation "
             f"{fmt(half.get('saturation_per_s'))}/s): p50 {fmt(half.get('p50_ms'), 2)} ms, "
             f"{fmt(half.get('n'))} listings, {fmt(half.get('error_count', 0))} errors",
             "many-mobiles"),
    ]


def _history(p1: Mapping[str, Any] | None, r: Mapping[str, Any] | None) -> list[Goal]:
    if r is None or p1 is None:
        return []
    loaded = r.get("history") or {}
    what = (f"{fmt(loaded.get('rows'))} movements stored, one mobile with "
            f"{fmt(loaded.get('long_rows'))}")
    cpu0, cpu = p1.get("cpu_per_purchase_ms"), r.get("cpu_per_purchase_ms")
    h0, h = p1.get("half_rate") or {}, r.get("half_rate") or {}
    long = (h.get("latency") or {}).get(LONG_KIND) or {}
    return [
        Goal("history_cpu", "CPU per purchase with a long history ≤ 1.1x the empty database's",
             _ratio(cpu, cpu0), "<=", HISTORY_MAX, "x",
             f"{fmt(cpu, 3)} ms vs {fmt(cpu0, 3)} ms; {what}", "purchase, history"),
        Goal("history_p99", "p99 at half rate with a long history ≤ 1.1x the empty database's",
             _ratio(h.get("p99_ms"), h0.get("p99_ms")), "<=", HISTORY_MAX, "x",
             f"{fmt(h.get('p99_ms'), 2)} ms at {fmt(h.get('rate'))}/s vs "
             f"{fmt(h0.get('p99_ms'), 2)} ms at {fmt(h0.get('rate'))}/s; the long-history "
             f"mobile's own purchases: p50 {fmt(long.get('p50_ms'), 2)}, p99 "
             f"{fmt(long.get('p99_ms'), 2)} ms ({fmt(long.get('n'))})", "purchase, history"),
    ]


def aggregate(runs: Sequence[Sequence[Goal]]) -> list[Goal]:
    """Per goal over several runs: the median (the worst run for `every_run` goals); the detail
    lists every run's figure."""
    order: dict[str, Goal] = {}
    values: dict[str, list[float | None]] = {}
    for rows in runs:
        for g in rows:
            order.setdefault(g.key, g)
            values.setdefault(g.key, []).append(g.value)
    out = []
    for key, first in order.items():
        seen = [v for v in values[key] if v is not None]
        if not seen:
            value = None
        elif first.every_run:
            value = min(seen) if first.op == ">=" else max(seen)
        else:
            value = statistics.median(seen)
        how = "worst" if first.every_run else "median"
        runs_text = ", ".join(_shown(v, first.unit) for v in values[key])
        out.append(replace(first, value=value, detail=f"{how} of {len(values[key])} runs: "
                           f"{runs_text}"))
    return out


def _shown(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "" and float(value).is_integer():
        value = int(value)  # a count (a median of two may be x.5)
    digits = 1 if unit in ("MB", "ms") else 2
    return (fmt(value, digits) if isinstance(value, float) else fmt(value)) + _suffix(unit)


def markdown(rows: Sequence[Goal], title: str = "## Goals (issue 15)") -> str:
    lines = [title, "", "| goal | target | reached | met | how |",
             "| --- | --- | --- | --- | --- |"]
    for g in rows:
        met = ("reported" if g.op == "info" else
               {True: "**yes**", False: "**MISS**", None: "not measured"}[g.met])
        lines.append(f"| {g.goal} | {g.target} | {_shown(g.value, g.unit)} | {met} | "
                     f"{g.detail} |")
    verdicts = [g.met for g in rows if g.op != "info"]
    lines += ["", f"{sum(1 for m in verdicts if m)} of {len(verdicts)} met"
              + (f", {verdicts.count(None)} not measured" if None in verdicts else "")
              + ". The box is shared: quote medians of several runs (`--runs 3`)."]
    return "\n".join(lines) + "\n"
