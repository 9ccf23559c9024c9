"""The goals table of `python -m bench all`/`goals`, on made-up results (no processes)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("hdrh", reason="the bench needs the `bench` extra (hdrhistogram)")

from bench import _goals as goals


def _purchase(workers: int, per_s: float, cpu_ratio: float) -> dict[str, Any]:
    return {"workers": workers, "purchases_per_s": per_s, "completed_per_s": per_s * 0.95,
            "echo_req_per_s": 1000.0 * workers, "cpu_ratio_purchase_to_echo": cpu_ratio,
            "cpu_per_purchase_ms": 2.0, "cpu_per_echo_ms": 0.8}


def test_goals_from_a_full_run() -> None:
    p1 = _purchase(1, 400.0, 2.5) | {"half_rate": {
        "rate": 200.0, "saturation_per_s": 400.0, "n": 2000, "p50_ms": 30.0, "p99_ms": 80.0,
        "p999_ms": 120.0, "error_count": 0}}
    p2 = _purchase(2, 600.0, 3.5)
    slow = {"workers": 1, "in_flight": {"peak_db_pending": 12_000}, "errors": {},
            "load": {"rate": 2000.0, "unfinished": 0}, "invariants_ok": True,
            "rss_mb_peak": 700.0, "rss_kb_per_in_flight": 40.0}
    rows = goals.evaluate({"purchase": p1, "purchase-2w": p2, "slow-platforms": slow})
    met = {r["goal"]: r["met"] for r in rows}
    assert len(rows) == 9
    assert met["(a) server CPU per completed purchase ≤ 3x per echo request, 1 worker(s)"]
    assert not met["(a) server CPU per completed purchase ≤ 3x per echo request, 2 worker(s)"]
    assert met["(a) completed purchases/s ≥ 1/3 of echo req/s, 1 worker(s)"]  # 380 / 1000
    assert not met["(a) completed purchases/s ≥ 1/3 of echo req/s, 2 worker(s)"]  # 570 / 2000
    assert met["(b) p99 of the purchase call ≤ 100 ms at half the saturation rate"]
    assert met["(c) purchases in flight at once with 2 s platform latency ≥ 10,000"]
    assert met["(c) ... with no errors"] and met["(c) ... and server RSS < 1 GiB"]
    assert not met["(d) throughput with 2 workers ≥ 1.6x one worker"]  # 1.5x
    table = goals.markdown(rows)
    assert "## Goals (issue 6)" in table and "**MISS**" in table and "**yes**" in table


def test_goals_not_measured() -> None:
    rows = goals.evaluate({"purchase": _purchase(1, 400.0, 2.5) | {
        "cpu_ratio_purchase_to_echo": None, "echo_req_per_s": None}})
    by_goal = {r["goal"]: r for r in rows}
    assert by_goal["(a) server CPU per completed purchase ≤ 3x per echo request, 1 worker(s)"][
        "met"] is None
    assert by_goal["(b) p99 of the purchase call ≤ 100 ms at half the saturation rate"][
        "met"] is None
    assert "not measured" in goals.markdown(rows)
