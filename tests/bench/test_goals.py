"""The goals table of `python -m bench goals`/`all`, on made-up results (no processes), its
medians over several runs, and the RSS projection of `many-mobiles`."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("hdrh", reason="the bench needs the `bench` extra (hdrhistogram)")

from bench import _goals as goals
from bench._half_rate import rss_growth


def _purchase(workers: int, per_s: float, cpu_ratio: float, cpu_ms: float,
              p99: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "workers": workers, "purchases_per_s": per_s, "completed_per_s": per_s * 0.95,
        "echo_req_per_s": 1000.0 * workers, "cpu_ratio_purchase_to_echo": cpu_ratio,
        "cpu_per_purchase_ms": cpu_ms, "cpu_per_echo_ms": cpu_ms / cpu_ratio,
        "box": {"ceiling_per_s": 700.0}}
    if p99 is not None:
        out["half_rate"] = {"rate": per_s / 2, "saturation_per_s": per_s, "n": 2000,
                            "p50_ms": 30.0, "p99_ms": p99, "p999_ms": p99 * 1.5,
                            "error_count": 0}
    return out


def _in_flight(peak: int, rss: float, errors: int = 0, pending: int = 0) -> dict[str, Any]:
    return {"workers": 2, "duration_s": 70.0, "platform_latency": "dwh 20000 ms",
            "in_flight": {"peak_db_pending": peak},
            "errors": {"purchase 503 BUSY": errors} if errors else {},
            "outcomes": {"purchase": {"202 received": 12_000}
                         | ({"503 BUSY": errors} if errors else {})},
            "load": {"rate": 180.0, "unfinished": 0}, "invariants_ok": True,
            "invariants": {"ok": True, "checks": [{"name": "money", "ok": True}]},
            "pending_left": pending, "rss_mb_peak": rss, "rss_kb_per_in_flight": 40.0}


def _many(p99: float, peak: float, projected: float) -> dict[str, Any]:
    return {"rss_mb_peak": peak, "half_rate": {
        "rate": 150.0, "saturation_per_s": 300.0, "n": 9000, "p50_ms": 10.0, "p99_ms": p99,
        "error_count": 0, "mobiles": 9000,
        "rss": {"rss_peak_mb": peak, "projected_mb_at_million": projected,
                "kb_per_1000_mobiles": 5.0}}}


def _history(cpu_ms: float, p99: float) -> dict[str, Any]:
    return {"cpu_per_purchase_ms": cpu_ms, "history": {"rows": 10_000_000, "long_rows": 100_000},
            "half_rate": {"rate": 200.0, "p99_ms": p99, "n": 2000}}


def _full_run() -> dict[str, dict[str, Any]]:
    return {"purchase": _purchase(1, 450.0, 2.0, 2.0, p99=80.0),
            "purchase-2w": _purchase(2, 600.0, 2.6, 2.4),
            "in-flight": _in_flight(10_800, 700.0),
            "many-mobiles": _many(40.0, 150.0, 180.0),
            "history": _history(2.1, 95.0)}


def test_goals_from_a_full_run() -> None:
    rows = goals.evaluate(_full_run())
    met = {g.key: g.met for g in rows}
    assert met == {
        "cpu_ratio": True,             # 2.0x ≤ 2.2x
        "throughput_share": True,      # 450 / 1000 ≥ 0.4
        "half_rate_p99": True,         # 80 ms
        "in_flight_peak": True, "in_flight_errors": True, "in_flight_rss": True,
        "in_flight_final": True,
        "scaling_cpu": False,          # 2.4 / 2.0 = 1.2x
        "scaling_throughput": None,    # reported beside it, no target
        "many_rss": True,              # max(150 measured, 180 projected) < 300
        "many_p99": True,
        "history_cpu": True,           # 2.1 / 2.0 = 1.05x
        "history_p99": False,          # 95 / 80 = 1.19x
    }
    by_key = {g.key: g for g in rows}
    assert by_key["scaling_throughput"].value == pytest.approx(600 / 450)
    assert by_key["many_rss"].value == 180.0
    table = goals.markdown(rows)
    assert "## Goals (issue 15)" in table and "**MISS**" in table and "reported" in table
    assert "10 of 12 met" in table


def test_in_flight_misses() -> None:
    rows = goals.evaluate({"in-flight": _in_flight(9_000, 1100.0, errors=3, pending=2)})
    assert {g.key: g.value for g in rows}["in_flight_errors"] == 3
    assert {g.key: g.met for g in rows} == {
        "in_flight_peak": False, "in_flight_errors": False, "in_flight_rss": False,
        "in_flight_final": False}


def test_goals_not_measured() -> None:
    rows = goals.evaluate({"purchase": _purchase(1, 400.0, 2.5, 2.0) | {
        "cpu_ratio_purchase_to_echo": None, "echo_req_per_s": None}})
    by_key = {g.key: g for g in rows}
    assert by_key["cpu_ratio"].met is None and by_key["half_rate_p99"].met is None
    assert "not measured" in goals.markdown(rows)


def test_medians_of_three_runs() -> None:
    """The median decides, except for the half-rate p99, which must hold in every run."""
    runs = []
    for cpu_ratio, p99 in ((2.1, 80.0), (2.5, 120.0), (2.0, 90.0)):
        results = _full_run()
        results["purchase"] = _purchase(1, 450.0, cpu_ratio, 2.0, p99=p99)
        runs.append(goals.evaluate(results))
    rows = {g.key: g for g in goals.aggregate(runs)}
    assert rows["cpu_ratio"].value == 2.1 and rows["cpu_ratio"].met is True
    assert rows["half_rate_p99"].value == 120.0 and rows["half_rate_p99"].met is False
    assert rows["cpu_ratio"].detail.startswith("median of 3 runs: 2.10x, 2.50x, 2.00x")
    assert rows["half_rate_p99"].detail.startswith("worst of 3 runs")


def test_rss_projection() -> None:
    """Flat RSS (passivation holds it) projects to itself; a leak of 2 MB per 1,000 mobiles
    projects to ~2 GB at a million."""
    flat = [(i * 100.0, 120.0 + (i % 2) * 0.1) for i in range(40)]
    g = rss_growth(flat, 4000)
    assert g["projected_mb_at_million"] == pytest.approx(120.0, abs=30)
    leak = [(i * 100.0, 100.0 + i * 0.2) for i in range(40)]
    g = rss_growth(leak, 4000)
    assert g["kb_per_1000_mobiles"] == pytest.approx(2048, rel=0.01)
    assert g["projected_mb_at_million"] == pytest.approx(107.8 + 2 * 996, rel=0.01)
    assert rss_growth(flat, 1_000_000)["projected_mb_at_million"] == flat[-1][1]
