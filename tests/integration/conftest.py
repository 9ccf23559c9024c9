"""Integration fixtures: the platform simulator on a real loopback port, and Gestor's app on a
fresh database talking to it over HTTP (Quart's test client drives the app's routes)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from gestor.api import GestorApp, create_app
from gestor.ratelimits import LimitSettings
from gestor.settings import load_settings
from gestor.simulator import SimulatorConfig, SimulatorHandle, serve_simulator

ADMIN_KEY = "test-admin-key"


@pytest.fixture
async def simulator(nursery: trio.Nursery) -> SimulatorHandle:
    config = SimulatorConfig.from_mapping({"seed": 7})
    handle: SimulatorHandle = await nursery.start(
        functools.partial(serve_simulator, config, host="127.0.0.1", port=0)
    )
    return handle


@pytest.fixture
async def control(simulator: SimulatorHandle) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client of the simulator's control and platform endpoints."""
    async with httpx.AsyncClient(base_url=simulator.url, timeout=10) as client:
        yield client


async def set_faults(control: httpx.AsyncClient, faults: dict[str, Any]) -> None:
    response = await control.put("/control/faults", json=faults)
    assert response.status_code == 200, response.text


async def sim_stats(control: httpx.AsyncClient, msisdn: str | None = None) -> dict[str, Any]:
    params = {"msisdn": msisdn} if msisdn else None
    response = await control.get("/control/stats", params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


@pytest.fixture
def platform_settings() -> dict[str, Any]:
    """Per-test overrides of the [platforms] settings (short timeouts keep fault tests quick)."""
    return {"timeout": 1.0}


@pytest.fixture
def limit_settings() -> LimitSettings | None:
    """Per-test rate limits ([limits]); None: the shipped ones. A test of many purchases on
    one mobile at once (the one-pending guard) parametrizes this with `NO_LIMITS`."""
    return None


NO_LIMITS = LimitSettings(enabled=False)


@pytest.fixture
async def app(
    database_url: str,
    simulator: SimulatorHandle,
    config_dir: Path,
    tmp_path: Path,
    platform_settings: dict[str, Any],
    limit_settings: LimitSettings | None,
) -> AsyncIterator[GestorApp]:
    base = load_settings(config_dir, environ={}, data_dir=tmp_path)
    settings = attrs.evolve(base, platforms={**base.platforms, **platform_settings},
                           admin_key=ADMIN_KEY, limits=limit_settings or base.limits,
                           # the report facts stay unfolded (the reports read them as
                           # well) unless a test folds: row counts hold still
                           report_fold_interval=3600.0)
    application = create_app(settings, database_url, simulator.url)
    async with application.test_app():
        yield application


@pytest.fixture
async def client(app: GestorApp) -> Any:
    return app.test_client()


# Fixtures of the key tests (a served app whose logs and answers are watched for secrets).
from tests.integration._keys import gestor, leaks  # noqa: E402, F401
