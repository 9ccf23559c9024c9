"""Fixtures for the platform tests: a real simulator on a loopback port, HTTP clients of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from gestor.simulator import SimulatorConfig, SimulatorHandle, serve_simulator


@pytest.fixture
async def simulator(nursery: trio.Nursery) -> SimulatorHandle:
    with trio.fail_after(10):
        handle: SimulatorHandle = await nursery.start(serve_simulator, SimulatorConfig(seed=7))
    return handle


@pytest.fixture
async def http(simulator: SimulatorHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator.url, timeout=5) as client:
        yield client
