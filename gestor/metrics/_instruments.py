"""Counters and histograms a worker updates on its hot paths, sans I/O and without locks.

Each is a dict from a tuple of label values to plain numbers, updated in trio's thread (one
thread: no lock is needed, and none is taken); nothing is written anywhere per request. A
worker's `Publisher` (gestor/metrics/_files.py) copies them, with what the `statistics()`
records say, to its snapshot file about once a second and at each scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

__all__ = [
    "ALARMS_RAISED",
    "DB_BATCH_SIZE",
    "DB_CROSSING_SECONDS",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_SECONDS",
    "INSTRUMENTS",
    "MOVEMENTS",
    "MOVEMENTS_HANDED_OVER",
    "MOVEMENTS_INCONSISTENT",
    "NOTIFICATIONS",
    "PLATFORM_CALL_SECONDS",
    "SAGA_STEP_SECONDS",
    "Counter",
    "Histogram",
]

Labels = tuple[str, ...]

#: Seconds: from a fast database crossing (~0.2 ms) to a platform call at its timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)
#: Items per database batch (a batch is at most 256).
SIZE_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)


class Counter:
    """A monotonic count per label values."""

    __slots__ = ("help", "labels", "name", "series")
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Labels) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.series: dict[Labels, float] = {}

    def inc(self, key: Labels, amount: float = 1) -> None:
        series = self.series
        series[key] = series.get(key, 0) + amount

    def dump(self) -> list[list[Any]]:
        return [[list(key), value] for key, value in self.series.items()]

    def clear(self) -> None:
        self.series.clear()


class Histogram:
    """Observations per label values, counted in fixed buckets (`le` bounds) with their sum.
    Stored per bucket (not cumulated): `[count <= b0, b0 < count <= b1, ..., > last, sum]`."""

    __slots__ = ("bounds", "help", "labels", "name", "series")
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Labels,
                 bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.bounds = bounds
        self.series: dict[Labels, list[float]] = {}

    def observe(self, key: Labels, value: float) -> None:
        counts = self.series.get(key)
        if counts is None:
            counts = self.series[key] = [0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def dump(self) -> list[list[Any]]:
        return [[list(key), list(counts)] for key, counts in self.series.items()]

    def clear(self) -> None:
        self.series.clear()


HTTP_REQUESTS = Counter(
    "gestor_http_requests", "HTTP requests answered, by method, route template and status",
    ("method", "route", "status"))
HTTP_REQUEST_SECONDS = Histogram(
    "gestor_http_request_duration_seconds",
    "Time from a request's head to its response, by method and route template",
    ("method", "route"))
MOVEMENTS = Counter(
    "gestor_movements", "Movements that reached a terminal state (completed, rejected, failed, "
    "refunded), by kind and state: each once, ended by its saga or by the recoverer",
    ("kind", "state"))
MOVEMENTS_INCONSISTENT = Counter(
    "gestor_movements_inconsistent", "Movements that became inconsistent (charged, not "
    "provisioned, the refund failed: an alarm is raised), by kind", ("kind",))
MOVEMENTS_HANDED_OVER = Counter(
    "gestor_movements_handed_over", "Movements whose saga stopped before a final state (the "
    "database or a platform could not tell): the recoverer resumes them, by kind", ("kind",))
SAGA_STEP_SECONDS = Histogram(
    "gestor_saga_step_duration_seconds",
    "Duration of each step of a movement's saga (profile, rules, debit, provision, refund, "
    "write: a durable state change)", ("kind", "step"))
PLATFORM_CALL_SECONDS = Histogram(
    "gestor_platform_call_duration_seconds",
    "Platform calls (retries included), by platform, operation and outcome (ok, rejected, "
    "unavailable, unknown, circuit_open)", ("platform", "operation", "outcome"))
DB_BATCH_SIZE = Histogram(
    "gestor_db_batch_size", "Items per database batch (group commit), by batcher",
    ("batcher",), SIZE_BUCKETS)
DB_CROSSING_SECONDS = Histogram(
    "gestor_db_crossing_duration_seconds",
    "Round trips from trio to the database loop and back (one statement or transaction)", ())
ALARMS_RAISED = Counter(
    "gestor_alarms_raised", "Alarms raised by this server, by kind and severity",
    ("kind", "severity"))

NOTIFICATIONS = Counter(
    "gestor_notifications", "Outcomes of notification attempts (e-mail, SMS) by this server, by "
    "channel and outcome (sent, retry, failed)", ("channel", "outcome"))

INSTRUMENTS: tuple[Counter | Histogram, ...] = (
    HTTP_REQUESTS, HTTP_REQUEST_SECONDS, MOVEMENTS, MOVEMENTS_INCONSISTENT, MOVEMENTS_HANDED_OVER,
    SAGA_STEP_SECONDS, PLATFORM_CALL_SECONDS, DB_BATCH_SIZE, DB_CROSSING_SECONDS, ALARMS_RAISED,
    NOTIFICATIONS)


def by_name() -> Iterator[tuple[str, Counter | Histogram]]:
    for instrument in INSTRUMENTS:
        yield instrument.name, instrument
