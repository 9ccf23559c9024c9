"""Prometheus metrics of Gestor's workers (`GET /metrics`): lock-free instruments updated on
the hot paths, statistics records read at publication, and the files through which the
workers of one `gestor serve` add theirs up."""

from gestor.metrics._exposition import CONTENT_TYPE, gestor_version, render, snapshot
from gestor.metrics._files import Publisher, prepare_directory, read_snapshots, retire_process
from gestor.metrics._instruments import (
    ALARMS_RAISED,
    DB_BATCH_SIZE,
    DB_CROSSING_SECONDS,
    HTTP_REQUEST_SECONDS,
    HTTP_REQUESTS,
    MOVEMENTS,
    MOVEMENTS_HANDED_OVER,
    MOVEMENTS_INCONSISTENT,
    NOTIFICATIONS,
    PLATFORM_CALL_SECONDS,
    SAGA_STEP_SECONDS,
)
from gestor.metrics._rates import live_rates
from gestor.metrics._statistics import Reading, Series

__all__ = [
    "ALARMS_RAISED",
    "CONTENT_TYPE",
    "DB_BATCH_SIZE",
    "DB_CROSSING_SECONDS",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_SECONDS",
    "MOVEMENTS",
    "MOVEMENTS_HANDED_OVER",
    "MOVEMENTS_INCONSISTENT",
    "NOTIFICATIONS",
    "PLATFORM_CALL_SECONDS",
    "SAGA_STEP_SECONDS",
    "Publisher",
    "Reading",
    "Series",
    "gestor_version",
    "live_rates",
    "prepare_directory",
    "read_snapshots",
    "render",
    "retire_process",
    "snapshot",
]
