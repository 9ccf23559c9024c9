"""What the console's live rates are drawn from (`GET /v1/admin/rates`): the figures of each
live worker and of the whole server, read from the same snapshots as `/metrics`.

Counts are cumulative (since each worker started): a client diffs two readings for rates per
second, and two latency histograms for the percentiles of the interval between them. The total
adds up every snapshot, stopped workers' included, so it never goes back; gauges (in flight,
circuit state) come from live workers only, as on `/metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gestor.metrics._instruments import HTTP_REQUEST_SECONDS, PLATFORM_CALL_SECONDS

__all__ = ["OUTCOMES", "live_rates"]

Snapshot = dict[str, Any]

#: Purchase outcomes counted: the final states, and `inconsistent` (charged, not provisioned,
#: the refund failed: an alarm is raised; it is settled later).
OUTCOMES = ("completed", "rejected", "failed", "refunded", "inconsistent")
_PURCHASE_ROUTE = ["POST", "/v1/purchases"]
#: Worst first: the state the total shows for a platform whose workers disagree.
_CIRCUITS = ("open", "half_open", "closed")


def _empty() -> dict[str, Any]:
    buckets = len(HTTP_REQUEST_SECONDS.bounds) + 1
    return {
        "purchases": dict.fromkeys(OUTCOMES, 0),
        "accepted": 0,
        "in_flight": 0,
        "latency": [0] * buckets,
        "platforms": {},
    }


def _platform(figures: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] | None = figures["platforms"].get(name)
    if found is None:
        found = figures["platforms"][name] = {
            "circuit": None, "in_flight": 0, "calls": 0,
            "latency": [0] * (len(PLATFORM_CALL_SECONDS.bounds) + 1)}
    return found


def _add(into: list[float], counts: list[float]) -> None:
    for i in range(min(len(into), len(counts) - 1)):  # the last item is the sum of values
        into[i] += counts[i]


def _counts(figures: dict[str, Any], snap: Snapshot) -> None:
    counters = snap.get("counters", {})
    purchases = figures["purchases"]
    for labels, value in counters.get("gestor_movements", []):
        if labels[0] == "purchase" and labels[1] in purchases:
            purchases[labels[1]] += value
    for labels, value in counters.get("gestor_movements_inconsistent", []):
        if labels == ["purchase"]:
            purchases["inconsistent"] += value
    for labels, value in counters.get("gestor_purchases_accepted", []):
        if labels == []:
            figures["accepted"] += value
    histograms = snap.get("histograms", {})
    for labels, counts in histograms.get(HTTP_REQUEST_SECONDS.name, []):
        if labels == _PURCHASE_ROUTE:
            _add(figures["latency"], counts)
    for labels, counts in histograms.get(PLATFORM_CALL_SECONDS.name, []):
        platform = _platform(figures, labels[0])
        platform["calls"] += sum(counts[:-1])
        _add(platform["latency"], counts)


def _gauges(figures: dict[str, Any], snap: Snapshot) -> None:
    gauges = snap.get("gauges", {})
    for _labels, value in gauges.get("gestor_purchases_in_flight", []):
        figures["in_flight"] += value
    for labels, value in gauges.get("gestor_platform_in_flight", []):
        _platform(figures, labels[0])["in_flight"] += value
    for labels, value in gauges.get("gestor_platform_circuit_state", []):
        name, state = labels
        platform = _platform(figures, name)
        if value and state in _CIRCUITS and (
                platform["circuit"] is None
                or _CIRCUITS.index(state) < _CIRCUITS.index(platform["circuit"])):
            platform["circuit"] = state


def live_rates(snapshots: Iterable[tuple[Snapshot, bool]]) -> dict[str, Any]:
    """`{"latency_bounds", "platform_latency_bounds", "outcomes", "workers": [...], "total"}`
    from (snapshot, live) pairs; each worker and the total: `purchases` (by outcome),
    `accepted`, `in_flight`, `latency` (purchase requests per bucket: `<= bound`, the last one
    above every bound) and `platforms` (`circuit`, `in_flight`, `calls`, `latency`)."""
    total = _empty()
    workers = []
    for snap, live in snapshots:
        _counts(total, snap)
        if not live:
            continue
        _gauges(total, snap)
        mine = _empty()
        _counts(mine, snap)
        _gauges(mine, snap)
        workers.append({"worker": str(snap.get("worker", "")), "pid": int(snap.get("pid", 0)),
                        **mine})
    workers.sort(key=lambda w: (w["worker"], w["pid"]))
    return {
        "latency_bounds": list(HTTP_REQUEST_SECONDS.bounds),
        "platform_latency_bounds": list(PLATFORM_CALL_SECONDS.bounds),
        "outcomes": list(OUTCOMES),
        "workers": workers,
        "total": total,
    }
