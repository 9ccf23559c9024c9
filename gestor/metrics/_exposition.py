"""A worker's snapshot, and the Prometheus text of several snapshots added up.

Counters and histograms are summed over every snapshot (live workers and stopped ones);
gauges come from live workers only, each labelled with its `worker`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gestor.logs import worker_label
from gestor.metrics._instruments import INSTRUMENTS, Counter, Histogram
from gestor.metrics._statistics import COUNTERS, GAUGES, Reading

__all__ = ["CONTENT_TYPE", "gestor_version", "render", "snapshot"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Snapshot = dict[str, Any]
_COUNTERS = {i.name: i for i in INSTRUMENTS if isinstance(i, Counter)}
_HISTOGRAMS = {i.name: i for i in INSTRUMENTS if isinstance(i, Histogram)}


@functools.cache
def gestor_version() -> str:
    try:
        return version("gestor")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def snapshot(reading: Reading) -> Snapshot:
    """This process's metrics now: its instruments and what its statistics records say
    (`reading`)."""
    counters = {c.name: c.dump() for c in _COUNTERS.values()}
    counters.update(reading.counters)
    return {
        "pid": os.getpid(),
        "worker": worker_label(),
        "counters": counters,
        "histograms": {h.name: h.dump() for h in _HISTOGRAMS.values()},
        "gauges": reading.gauges,
    }


def _sum_counters(snapshots: Iterable[Snapshot]) -> dict[str, dict[tuple[str, ...], float]]:
    totals: dict[str, dict[tuple[str, ...], float]] = {}
    for snap in snapshots:
        for name, series in snap.get("counters", {}).items():
            family = totals.setdefault(name, {})
            for labels, value in series:
                key = tuple(labels)
                family[key] = family.get(key, 0) + value
    return totals


def _sum_histograms(snapshots: Iterable[Snapshot]) -> dict[str, dict[tuple[str, ...], list[float]]]:
    totals: dict[str, dict[tuple[str, ...], list[float]]] = {}
    for snap in snapshots:
        for name, series in snap.get("histograms", {}).items():
            family = totals.setdefault(name, {})
            for labels, counts in series:
                key = tuple(labels)
                have = family.get(key)
                if have is None:
                    family[key] = list(counts)
                elif len(have) == len(counts):
                    family[key] = [a + b for a, b in zip(have, counts, strict=True)]
    return totals


def _bound(value: float) -> str:
    return repr(float(value))


class _Families(Collector):
    def __init__(self, snapshots: list[tuple[Snapshot, bool]]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        every = [snap for snap, _ in self.snapshots]
        info = GaugeMetricFamily("gestor_build_info", "Gestor's version", labels=["version"])
        info.add_metric([gestor_version()], 1)
        yield info
        counters = _sum_counters(every)
        for name, meta in [(c.name, c) for c in _COUNTERS.values()] + \
                [(c.name, c) for c in COUNTERS]:
            family = CounterMetricFamily(name, meta.help, labels=list(meta.labels))
            for key, value in sorted(counters.get(name, {}).items()):
                family.add_metric(list(key), value)
            yield family
        histograms = _sum_histograms(every)
        for name, histogram in _HISTOGRAMS.items():
            hfamily = HistogramMetricFamily(name, histogram.help, labels=list(histogram.labels))
            bounds = [*map(_bound, histogram.bounds), "+Inf"]
            for key, counts in sorted(histograms.get(name, {}).items()):
                cumulative: list[tuple[str, float]] = []
                running = 0.0
                for bound, count in zip(bounds, counts[:-1], strict=True):
                    running += count
                    cumulative.append((bound, running))
                hfamily.add_metric(list(key), cumulative, counts[-1])
            yield hfamily
        for meta in GAUGES:
            gfamily = GaugeMetricFamily(meta.name, meta.help, labels=[*meta.labels, "worker"])
            for snap, live in sorted(self.snapshots, key=lambda s: str(s[0].get("worker"))):
                if not live:
                    continue
                for labels, value in snap.get("gauges", {}).get(meta.name, []):
                    gfamily.add_metric([*labels, str(snap.get("worker", ""))], value)
            yield gfamily


def render(snapshots: list[tuple[Snapshot, bool]]) -> bytes:
    """The Prometheus text exposition of `snapshots` ((snapshot, live) pairs) added up."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(snapshots))
    return generate_latest(registry)
