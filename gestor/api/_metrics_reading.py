"""What a worker's statistics records say now, as a `gestor.metrics.Reading` for `/metrics`: the
API layer reads them, since it holds the runtime, the rate limiter and the connections (the
metrics package knows none of them, so the hot paths that import its instruments import nothing
of the runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gestor.metrics import Reading, Series

if TYPE_CHECKING:
    from gestor.ratelimits import RateLimiter
    from gestor.runtime import Runtime
    from gestor.serving import ConnectionTable

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
