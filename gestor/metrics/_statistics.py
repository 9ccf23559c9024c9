"""Metrics read at publication time from the `statistics()` records a worker already keeps
(the same ones `/v1/admin/statistics` shows), so nothing on a hot path counts twice.

Counters here are cumulative since the worker started (summed over workers when scraped);
gauges are this worker's present state (labelled with its `worker` when scraped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from gestor.ratelimits import RateLimiter
    from gestor.runtime import Runtime
    from gestor.serving import ConnectionTable

__all__ = ["COUNTERS", "GAUGES", "Family", "Reading", "read_statistics"]

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

_CIRCUIT_STATES = ("closed", "half_open", "open")


def read_statistics(runtime: Runtime | None, limiter: RateLimiter | None,
                    connections: ConnectionTable | None) -> Reading:
    counters: dict[str, Series] = {}
    gauges: dict[str, Series] = {"gestor_up": [[[], 1]]}
    rate_limited = 0
    if limiter is not None:
        refused = limiter.statistics().refused
        counters["gestor_rate_limit_refusals"] = [[[k], v] for k, v in refused.items()]
        rate_limited = sum(refused.values())
    if connections is not None:
        c = connections.statistics()
        counters["gestor_connections"] = [[["accepted"], c.accepted], [["evicted"], c.evicted],
                                          [["refused"], c.refused]]
        gauges["gestor_connections_open"] = [[[], c.open]]
    if runtime is None:
        counters["gestor_admission_rejections"] = [[["rate_limited"], rate_limited]]
        return Reading(counters, gauges)
    p = runtime.purchases.statistics()
    a = runtime.purchases.actor_statistics()
    counters["gestor_admission_rejections"] = [
        [["busy"], p.shed], [["overloaded"], a.overload_rejections],
        [["rate_limited"], rate_limited], [["expired"], p.expired],
        [["unsettled"], p.unsettled]]
    counters["gestor_purchases_accepted"] = [[[], p.started]]
    counters["gestor_actor_events"] = [[["activations"], a.activations],
                                       [["passivations"], a.passivations],
                                       [["crashes"], a.crashes]]
    gauges["gestor_purchases_in_flight"] = [[[], p.in_flight]]
    gauges["gestor_purchases_accepting"] = [[[], p.accepting]]
    gauges["gestor_actors_alive"] = [[[], a.live_actors]]
    events: Series = []
    circuits: Series = []
    in_flight: Series = []
    for name, ps in runtime.platforms.statistics().as_dict().items():
        for event in ("requests", "errors", "timeouts", "rejections", "retries",
                      "short_circuited", "saturated", "lookups"):
            events.append([[name, event], ps[event]])
        circuits += [[[name, state], int(ps["circuit"] == state)] for state in _CIRCUIT_STATES]
        in_flight.append([[name], ps["in_flight"]])
    counters["gestor_platform_events"] = events
    gauges["gestor_platform_circuit_state"] = circuits
    gauges["gestor_platform_in_flight"] = in_flight
    s = runtime.store.statistics()
    counters["gestor_db_crossings"] = [[[], s.bridge.crossings]]
    counters["gestor_db_outages"] = [[[], s.health.outages]]
    counters["gestor_db_batches"] = [[[b.name], b.batches] for b in s.batchers]
    gauges["gestor_db_up"] = [[[], int(s.health.up)]]
    gauges["gestor_db_crossings_in_flight"] = [[[], s.bridge.in_flight]]
    gauges["gestor_db_queued"] = [[[b.name], b.queued] for b in s.batchers]
    r = runtime.recoverer.statistics()
    counters["gestor_recovery_events"] = [[["passes"], r.passes], [["claimed"], r.claimed],
                                          [["settled"], r.settled], [["errors"], r.errors]]
    gauges["gestor_alarm_subscribers"] = [[[], runtime.alarms.statistics().subscribers]]
    return Reading(counters, gauges)
