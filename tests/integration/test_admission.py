"""Admission control: beyond `max_in_flight` sagas (or `max_accepting` purchases waiting for
their actor) a purchase gets `503 BUSY` at once, and nothing of it is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from gestor.api import GestorApp, create_app
from gestor.settings import load_settings
from gestor.simulator import SimulatorHandle
from tests.integration.conftest import ADMIN_KEY, set_faults, sim_stats
from tests.integration.test_api import buy


@pytest.fixture
async def app(database_url: str, simulator: SimulatorHandle, config_dir: Path,
              tmp_path: Path) -> AsyncIterator[GestorApp]:
    base = load_settings(config_dir, environ={}, data_dir=tmp_path)
    settings = attrs.evolve(base, admin_key=ADMIN_KEY, max_in_flight=2,
                            platforms={**base.platforms, "timeout": 5.0})
    application = create_app(settings, database_url, simulator.url)
    async with application.test_app():
        yield application


async def test_purchase_beyond_max_in_flight_is_shed_and_nothing_is_written(
    client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(30):
        await set_faults(control, {"ocs.debit": {"latency_ms": 1000}})
        first = await buy(client, msisdn="5491100000101")
        second = await buy(client, msisdn="5491100000102")
        assert (first.status_code, second.status_code) == (202, 202)

        shed = await buy(client, msisdn="5491100000103")
        assert shed.status_code == 503
        assert shed.headers["Content-Type"].startswith("application/problem+json")
        assert shed.headers["Retry-After"] == "1"
        problem = await shed.get_json()
        assert problem["code"] == "BUSY"
        listed = await client.get("/v1/mobiles/5491100000103/transactions")
        assert (await listed.get_json())["transactions"] == []

        for accepted in (first, second):
            tx_id = (await accepted.get_json())["id"]
            done = await client.get(f"/v1/transactions/{tx_id}", headers={"Prefer": "wait=10"})
            assert (await done.get_json())["state"] == "completed"
        again = await buy(client, msisdn="5491100000103", wait=10)
        assert again.status_code == 200
        assert (await again.get_json())["state"] == "completed"
        assert (await sim_stats(control))["debits"] == 3

        stats = await client.get("/v1/admin/statistics",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        purchases = (await stats.get_json())["purchases"]
        assert purchases["shed"] == 1 and purchases["max_in_flight"] == 2
