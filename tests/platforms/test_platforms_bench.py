"""The load loop used to measure the simulator works (a short, bounded smoke run)."""

from __future__ import annotations

import trio

from gestor.platforms import SimulatorHandle
from gestor.platforms.bench import run_load


async def test_load_loop_counts_answers(simulator: SimulatorHandle) -> None:
    with trio.fail_after(5):
        result = await run_load(simulator.url, connections=2, duration=0.3)
    assert result.requests > 10 and result.errors == 0
    assert result.per_second > 0 and result.p50_ms <= result.p99_ms
    stats = simulator.simulator.statistics()
    assert stats.requests == result.requests
