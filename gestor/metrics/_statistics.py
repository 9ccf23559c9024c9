"""The families of metrics read at publication time from the `statistics()` records a worker
already keeps (the same ones `/v1/admin/statistics` shows), so nothing on a hot path counts twice;
`gestor.api._metrics_reading` reads them from a worker's runtime into a `Reading`.

Counters here are cumulative since the worker started (summed over workers when scraped);
gauges are this worker's present state (labelled with its `worker` when scraped).
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["COUNTERS", "GAUGES", "Family", "Reading", "Series"]

Series = list[list[Any]]  # [[label values...], value]


@attrs.frozen
class Family:
    name: str
    help: str
    labels: tuple[str, ...] = ()


@attrs.frozen
class Reading:
    """What the records say now: counters and gauges by family name."""

    counters: dict[str, Series]
    gauges: dict[str, Series]


_C = Family
COUNTERS = (
    _C("gestor_admission_rejections", "Requests refused by admission control, nothing written: "
       "busy (503 BUSY: max_in_flight/max_accepting), overloaded (429: the mobile's mailbox "
       "full), rate_limited (429 RATE_LIMITED), expired (503: not accepted within "
       "accept_timeout), unsettled (503 OUTCOME_UNKNOWN)", ("reason",)),
    _C("gestor_rate_limit_refusals", "Requests refused by a rate limit, by limit", ("limit",)),
    _C("gestor_purchases_accepted", "Purchases accepted (their saga started)"),
    _C("gestor_platform_events", "Platform call attempts and what became of them, by platform: "
       "requests, errors, timeouts, rejections, retries, short_circuited, saturated, lookups",
       ("platform", "event")),
    _C("gestor_db_crossings", "Database crossings (statements or transactions)"),
    _C("gestor_db_batches", "Database batches run, by batcher", ("batcher",)),
    _C("gestor_db_outages", "Times the database was found unreachable"),
    _C("gestor_actor_events", "Subscriber actors: activations, passivations, crashes",
       ("event",)),
    _C("gestor_recovery_events", "The recoverer: passes, claimed (stale movements leased), "
       "settled (brought to a terminal state), errors", ("event",)),
    _C("gestor_connections", "Client connections: accepted, evicted (idle, at the cap), "
       "refused (at the cap, none idle)", ("event",)),
)
_G = Family
GAUGES = (
    _G("gestor_up", "1 while this worker serves"),
    _G("gestor_purchases_in_flight", "Purchases whose saga runs in this worker"),
    _G("gestor_purchases_accepting", "Purchase requests waiting for their mobile's actor"),
    _G("gestor_actors_alive", "Subscriber actors in memory"),
    _G("gestor_platform_circuit_state", "Circuit breaker of each platform: 1 for its present "
       "state (closed, half_open, open)", ("platform", "state")),
    _G("gestor_platform_in_flight", "Platform calls on the wire", ("platform",)),
    _G("gestor_db_up", "1 while the database answers, 0 while known down"),
    _G("gestor_db_crossings_in_flight", "Database crossings under way"),
    _G("gestor_db_queued", "Items waiting for a database batch, by batcher", ("batcher",)),
    _G("gestor_connections_open", "Client connections open"),
    _G("gestor_alarm_subscribers", "Alarm-feed websockets connected"),
)
