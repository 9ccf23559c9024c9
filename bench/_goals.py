"""Issue 6's goals, evaluated on the results of one `python -m bench all` (or `goals`) run.

Each goal is read from the run that measures it:

* (a) `purchase` at 1 worker and `purchase-2w` at 2: server CPU per completed purchase ≤ 3x the
  server CPU per echo request at the same worker count, and completed purchases/s ≥ 1/3 of the
  echo baseline's requests/s;
* (b) `purchase`'s half-rate phase: p99 of the purchase call ≤ 100 ms in an open loop at half the
  saturation rate the closed-loop phase just measured;
* (c) `slow-platforms`: ≥ 10,000 purchases in flight at once with 2 s platform latency, no errors
  (no non-2xx answer, nothing unanswered, invariants hold), server RSS < 1 GiB;
* (d) `purchase-2w` against `purchase`: purchases/s with 2 workers ≥ 1.6x one worker.

A goal whose run is missing (or was run without baselines) is listed with `met: null`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench._report import fmt

CPU_RATIO_MAX = 3.0
THROUGHPUT_RATIO_MIN = 1 / 3
HALF_RATE_P99_MAX_MS = 100.0
IN_FLIGHT_MIN = 10_000
RSS_MAX_MB = 1024.0
SCALING_MIN = 1.6


def _row(goal: str, value: float | int | None, target: str, met: bool | None, detail: str,
         source: str) -> dict[str, Any]:
    return {"goal": goal, "value": value, "target": target,
            "met": None if value is None else met, "detail": detail, "source": source}


def evaluate(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The goal rows, from the results of one run keyed by label (`purchase`, `purchase-2w`,
    `slow-platforms`, ...)."""
    rows: list[dict[str, Any]] = []
    p1 = results.get("purchase")
    p2 = results.get("purchase-2w")
    for r, name in ((p1, "purchase"), (p2, "purchase-2w")):
        if r is None:
            continue
        w = r.get("workers")
        ratio = r.get("cpu_ratio_purchase_to_echo")
        rows.append(_row(
            f"(a) server CPU per completed purchase ≤ 3x per echo request, {w} worker(s)",
            ratio, f"≤ {CPU_RATIO_MAX:g}x", ratio is not None and ratio <= CPU_RATIO_MAX,
            f"{fmt(r.get('cpu_per_purchase_ms'), 3)} ms per purchase vs "
            f"{fmt(r.get('cpu_per_echo_ms'), 3)} ms per echo request", name))
        echo = r.get("echo_req_per_s")
        completed = r.get("completed_per_s")
        share = completed / echo if echo and completed is not None else None
        rows.append(_row(
            f"(a) completed purchases/s ≥ 1/3 of echo req/s, {w} worker(s)",
            share, "≥ 0.333", share is not None and share >= THROUGHPUT_RATIO_MIN,
            f"{fmt(completed)} completed/s vs echo {fmt(echo)} req/s", name))
    half = (p1 or {}).get("half_rate") or {}
    p99 = half.get("p99_ms")
    rows.append(_row(
        "(b) p99 of the purchase call ≤ 100 ms at half the saturation rate",
        p99, f"≤ {HALF_RATE_P99_MAX_MS:g} ms", p99 is not None and p99 <= HALF_RATE_P99_MAX_MS,
        (f"open loop at {fmt(half.get('rate'))}/s (saturation {fmt(half.get('saturation_per_s'))}"
         f"/s, {half.get('workers', (p1 or {}).get('workers', '?'))} worker(s)): p50 "
         f"{fmt(half.get('p50_ms'), 2)}, p99.9 {fmt(half.get('p999_ms'), 2)} ms, "
         f"{fmt(half.get('n'))} purchases, {fmt(half.get('error_count', 0))} errors")
        if half.get("n") else half.get("skipped", "no half-rate phase in this run"),
        "purchase"))
    slow = results.get("slow-platforms")
    if slow is not None:
        peak = slow.get("in_flight", {}).get("peak_db_pending")
        rows.append(_row(
            "(c) purchases in flight at once with 2 s platform latency ≥ 10,000",
            peak, f"≥ {IN_FLIGHT_MIN:,}", peak is not None and peak >= IN_FLIGHT_MIN,
            f"peak accepted and not final in the database; open loop at "
            f"{fmt(slow.get('load', {}).get('rate'))}/s, {slow.get('workers')} worker(s)",
            "slow-platforms"))
        errors = sum(slow.get("errors", {}).values())
        unanswered = slow.get("load", {}).get("unfinished", 0)
        ok = bool(slow.get("invariants_ok"))
        rows.append(_row(
            "(c) ... with no errors", errors, "0 (and invariants hold)",
            errors == 0 and ok,
            f"non-2xx or unanswered: {fmt(errors)} ({fmt(unanswered)} unanswered); "
            f"invariants {'ok' if ok else 'FAILED'}", "slow-platforms"))
        rss = slow.get("rss_mb_peak")
        rows.append(_row(
            "(c) ... and server RSS < 1 GiB", rss, f"< {RSS_MAX_MB:,.0f} MB",
            rss is not None and rss < RSS_MAX_MB,
            f"peak sum of VmRSS of the server processes "
            f"({fmt(slow.get('rss_kb_per_in_flight'))} kB per purchase in flight)",
            "slow-platforms"))
    if p1 is not None and p2 is not None:
        a, b = p1.get("purchases_per_s"), p2.get("purchases_per_s")
        scaling = b / a if a and b is not None else None
        rows.append(_row(
            "(d) throughput with 2 workers ≥ 1.6x one worker", scaling, f"≥ {SCALING_MIN:g}x",
            scaling is not None and scaling >= SCALING_MIN,
            f"purchase answers/s (final): {fmt(a)} with {p1.get('workers')} → {fmt(b)} with "
            f"{p2.get('workers')}; all processes' CPU per purchase caps this box at "
            f"{fmt((p2.get('box') or {}).get('ceiling_per_s'))}/s, "
            f"{SCALING_MIN:g}x needs {fmt(a * SCALING_MIN if a else None)}/s",
            "purchase, purchase-2w"))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["## Goals (issue 6)", "", "| goal | target | reached | met | how |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        met = {True: "**yes**", False: "**MISS**", None: "not measured"}[r["met"]]
        value = r["value"]
        shown = fmt(value, 2) if isinstance(value, float) else fmt(value)
        if r["target"].endswith("x") and isinstance(value, float):
            shown += "x"
        elif r["target"].endswith("ms") and value is not None:
            shown += " ms"
        elif r["target"].endswith("MB") and value is not None:
            shown += " MB"
        lines.append(f"| {r['goal']} | {r['target']} | {shown} | {met} | {r['detail']} |")
    verdicts = [r["met"] for r in rows]
    lines += ["", f"{sum(1 for m in verdicts if m)} of {len(verdicts)} met"
              + (f", {verdicts.count(None)} not measured" if None in verdicts else "")
              + ". Figures from one run on a shared box: quote medians of a few runs."]
    return "\n".join(lines) + "\n"
