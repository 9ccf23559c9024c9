"""`live_rates`: the console's figures from the workers' snapshots. Counts add up over every
snapshot (a stopped worker's too: the total never goes back), gauges and the per-worker rows
come from live workers only, and a platform's circuit in total is its worst among them."""

from __future__ import annotations

from typing import Any

from gestor.metrics import live_rates

BUCKETS = 16  # 15 latency bounds, and the bucket above them all


def latency(bucket: int, n: int) -> list[float]:
    counts = [0.0] * (BUCKETS + 1)  # the last item is the sum of the values
    counts[bucket] = n
    counts[-1] = 0.01 * n
    return counts


def snapshot(worker: str, pid: int, completed: int, circuit: str, in_flight: int,
             route: tuple[str, str] = ("POST", "/v1/purchases")) -> dict[str, Any]:
    return {
        "pid": pid, "worker": worker,
        "counters": {
            "gestor_movements": [[["purchase", "completed"], completed],
                                 [["purchase", "rejected"], 1], [["transfer", "completed"], 7]],
            "gestor_movements_inconsistent": [[["purchase"], 2], [["topup"], 5]],
            "gestor_purchases_accepted": [[[], completed + 3]],
        },
        "histograms": {
            "gestor_http_request_duration_seconds": [[list(route), latency(4, completed)],
                                                     [["GET", "/healthz"], latency(0, 50)]],
            "gestor_platform_call_duration_seconds": [
                [["ocs", "debit", "ok"], latency(3, completed)],
                [["ocs", "refund", "ok"], latency(5, 1)]],
        },
        "gauges": {
            "gestor_purchases_in_flight": [[[], in_flight]],
            "gestor_platform_in_flight": [[["ocs"], 1]],
            "gestor_platform_circuit_state": [[["ocs", s], int(s == circuit)]
                                              for s in ("closed", "half_open", "open")],
        },
    }


def test_counts_add_up_over_every_worker_and_gauges_over_live_ones() -> None:
    rates = live_rates([
        (snapshot("0", 10, 5, "closed", 2), True),
        (snapshot("1", 11, 3, "half_open", 1), True),
        (snapshot("1", 9, 4, "open", 9), False),  # worker 1 before a restart: stopped
    ])
    total = rates["total"]
    assert total["purchases"] == {"completed": 12, "rejected": 3, "failed": 0, "refunded": 0,
                                  "inconsistent": 6}
    assert total["accepted"] == 21
    assert total["latency"] == [0, 0, 0, 0, 12] + [0] * 11  # purchases only, not /healthz
    assert total["in_flight"] == 3  # live workers only
    ocs = total["platforms"]["ocs"]
    assert (ocs["circuit"], ocs["in_flight"], ocs["calls"]) == ("half_open", 2, 15)
    assert sum(ocs["latency"]) == 15
    assert [(w["worker"], w["pid"]) for w in rates["workers"]] == [("0", 10), ("1", 11)]
    assert [w["purchases"]["completed"] for w in rates["workers"]] == [5, 3]
    assert [w["platforms"]["ocs"]["circuit"] for w in rates["workers"]] == ["closed",
                                                                            "half_open"]
    assert len(rates["latency_bounds"]) == BUCKETS - 1
    assert rates["outcomes"] == ["completed", "rejected", "failed", "refunded", "inconsistent"]


def test_no_snapshot_is_all_zeros() -> None:
    rates = live_rates([])
    assert rates["workers"] == []
    assert rates["total"]["purchases"] == dict.fromkeys(rates["outcomes"], 0)
    assert rates["total"]["platforms"] == {} and rates["total"]["in_flight"] == 0
