"""The load loop used to measure the simulator works (a short, bounded smoke run)."""

from __future__ import annotations

import trio

from bench.platforms_bench import run_client_load, run_inflight, run_load
from gestor.simulator import SimulatorHandle


async def test_load_loop_counts_answers(simulator: SimulatorHandle) -> None:
    with trio.fail_after(5):
        result = await run_load(simulator.url, connections=2, duration=0.3)
    assert result.requests > 10 and result.errors == 0
    assert result.per_second > 0 and result.p50_ms <= result.p99_ms
    stats = simulator.simulator.statistics()
    assert stats.requests == result.requests


async def test_client_load_counts_calls_and_cpu(simulator: SimulatorHandle) -> None:
    with trio.fail_after(10):
        result = await run_client_load(simulator.url, calls=200, tasks=8)
    assert (result.calls, result.errors) == (200, 0)
    assert result.cpu_seconds > 0 and result.cpu_ms_per_call > 0 and result.per_second > 0
    assert simulator.simulator.statistics().requests == 201  # and one to connect first


async def test_inflight_run_keeps_every_call_on_the_wire(simulator: SimulatorHandle) -> None:
    with trio.fail_after(10):
        result = await run_inflight(simulator.url, inflight=50, latency_ms=200)
    assert (result.calls, result.errors) == (50, 0)
    assert 0.2 <= result.seconds < 2.0
    stats = simulator.simulator.statistics()
    assert stats.peak_in_flight >= 50  # the latency fault applied to all of them at once
    assert simulator.simulator.faults.for_op("ocs.account").quiet  # and was reset after
