"""The recharge platform's side of a top-up, for real: the simulator's `POST /control/topups`
credits the recharge and notifies Gestor's `/v1/topups` over HTTP (Idempotency-Key: the
reference), which collects what an advance owes, once."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from gestor.api import create_app
from gestor.serving import listening_socket
from gestor.settings import load_settings
from gestor.simulator import SimulatorConfig, SimulatorHandle, serve_simulator
from gestor.workers import serve_app
from tests.e2e._proc import free_port

MSISDN = "5491100000031"


@pytest.fixture
def gestor_port() -> int:
    return free_port()


@pytest.fixture
async def simulator(nursery: trio.Nursery, gestor_port: int) -> SimulatorHandle:
    config = SimulatorConfig.from_mapping({
        "seed": 7, "topup_notify_url": f"http://127.0.0.1:{gestor_port}/v1/topups",
        "topup_notify_backoff": 0.2})
    handle: SimulatorHandle = await nursery.start(
        functools.partial(serve_simulator, config, host="127.0.0.1", port=0))
    return handle


@pytest.fixture
async def gestor(database_url: str, simulator: SimulatorHandle, config_dir: Path,
                 tmp_path: Path, gestor_port: int) -> AsyncIterator[str]:
    settings = attrs.evolve(load_settings(config_dir, environ={}, data_dir=tmp_path),
                            bind=f"127.0.0.1:{gestor_port}", shutdown_grace=2.0)
    app = create_app(settings, database_url, simulator.url)
    sock = listening_socket(settings.bind, reuse_port=False)
    ready, stop = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(serve_app, app, settings, sock, ready.set,
                                             stop=stop))
        with trio.fail_after(60):
            await ready.wait()
        yield f"http://127.0.0.1:{gestor_port}"
        stop.set()


async def test_a_notified_topup_collects_the_advance_once(
        gestor: str, simulator: SimulatorHandle) -> None:
    with trio.fail_after(90):
        async with httpx.AsyncClient(base_url=simulator.url, timeout=10) as sim, \
                httpx.AsyncClient(base_url=gestor, timeout=30) as api:
            r = await sim.put(f"/control/accounts/{MSISDN}", json={"balance": 1_000})
            assert r.status_code == 200
            r = await api.post("/v1/advances", json={"msisdn": MSISDN, "amount": 40_000},
                               headers={"Idempotency-Key": "adv", "Prefer": "wait=20"})
            advance = r.json()
            assert (advance["state"], advance["owed"]) == ("completed", 44_000), advance

            async def topups() -> list[dict[str, Any]]:
                listed = await api.get(f"/v1/mobiles/{MSISDN}/transactions?kind=topup")
                found: list[dict[str, Any]] = listed.json()["transactions"]
                return found

            r = await sim.post("/control/topups", json={"msisdn": MSISDN, "amount": 30_000,
                                                        "reference": "rch-1"})
            assert r.status_code == 200
            while True:  # the notice travels from the simulator's notifier
                done = await topups()
                if done and done[0]["state"] == "completed":
                    break
                await trio.sleep(0.1)
            assert (done[0]["reference"], done[0]["collected"]) == ("rch-1", 30_000)
            # The same top-up notified again (a retry of the platform) collects nothing more.
            again = await api.post("/v1/topups", json={
                "msisdn": MSISDN, "amount": 30_000, "reference": "rch-1"},
                headers={"Idempotency-Key": "rch-1"})
            assert again.json()["id"] == done[0]["id"]
            stats = (await sim.get("/control/stats", params={"msisdn": MSISDN})).json()
            account = stats["per_msisdn"]
            # 1,000 + 40,000 lent + 30,000 recharged - 30,000 collected.
            assert account["balance"] == 41_000
            assert (account["debits"], account["debited_total"]) == (1, 30_000)
