"""End to end: `gestor serve` as a subprocess, real HTTP (httpx) and websocket (trio-websocket)
clients, the simulator in its own process."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.e2e._proc import clean_env, free_port, start, stop

pytestmark = pytest.mark.e2e


async def test_health_and_readiness(server: str) -> None:
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=server) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": True, "platforms": True}


async def test_buy_over_http_and_bad_input(server: str) -> None:
    msisdn = "5491100000031"
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=server, timeout=15) as http:
            bonos = (await http.get(f"/v1/mobiles/{msisdn}/bonos")).json()["bonos"]
            bono = next(b for b in bonos if b["eligible"])
            r = await http.post("/v1/purchases", json={"msisdn": msisdn, "bono_id": bono["id"]},
                                headers={"Idempotency-Key": "e2e-1", "Prefer": "wait=5"})
            assert r.status_code == 200, r.text
            tx = r.json()
            assert tx["state"] == "completed" and tx["price"] == bono["price"]
            again = await http.post(
                "/v1/purchases", json={"msisdn": msisdn, "bono_id": bono["id"]},
                headers={"Idempotency-Key": "e2e-1"})
            assert again.json()["id"] == tx["id"]
            got = (await http.get(f"/v1/transactions/{tx['id']}")).json()
            assert got["state"] == "completed"
            for body, code in [({"msisdn": msisdn, "bono_id": "NOPE"}, "UNKNOWN_BONO"),
                               ({"msisdn": "abc", "bono_id": bono["id"]}, "INVALID_MSISDN")]:
                r = await http.post("/v1/purchases", json=body,
                                    headers={"Idempotency-Key": f"e2e-bad-{code}"})
                assert r.status_code == 422
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["code"] == code
            r = await http.post("/v1/purchases", content=b"{not json",
                                headers={"Idempotency-Key": "e2e-bad-json",
                                         "Content-Type": "application/json"})
            assert r.status_code == 400 and r.json()["code"] == "INVALID_JSON"
            r = await http.post("/v1/purchases", json={"msisdn": msisdn, "bono_id": bono["id"]})
            assert r.status_code == 400 and r.json()["field"] == "Idempotency-Key"


async def test_alarm_feed_over_websocket_with_replay(server: str, platforms_url: str) -> None:
    msisdn = "5491100000032"
    ws_url = server.replace("http://", "ws://") + "/v1/alarms"
    with trio.fail_after(40):
        async with httpx.AsyncClient(base_url=server, timeout=15) as http, \
                httpx.AsyncClient(base_url=platforms_url) as sim:
            async with open_websocket_url(ws_url) as ws:
                faults = {"prov": {"error_rate": 1.0}, "ocs.refund": {"error_rate": 1.0}}
                assert (await sim.put("/control/faults", json=faults)).status_code == 200
                try:
                    r = await http.post(
                        "/v1/purchases", json={"msisdn": msisdn, "bono_id": "SMS_200_30D"},
                        headers={"Idempotency-Key": "e2e-alarm", "Prefer": "wait=10"})
                finally:
                    clear = {"prov": {"error_rate": 0.0}, "ocs.refund": {"error_rate": 0.0}}
                    await sim.put("/control/faults", json=clear)
                tx = r.json()
                assert tx["state"] == "inconsistent"
                alarm = json.loads(await ws.get_message())
                assert alarm["kind"] == "refund_failed"
                assert alarm["transaction_id"] == tx["id"]
            # The client was away; it reconnects with the last id it had seen before.
            async with open_websocket_url(f"{ws_url}?since={alarm['id'] - 1}") as ws:
                replayed = json.loads(await ws.get_message())
                assert replayed["id"] == alarm["id"]


async def test_quickstart_defaults_then_clean_stop(pg_home: Path) -> None:
    """`gestor serve` with nothing configured: embedded PostgreSQL and simulator, then SIGTERM
    stops everything, the embedded database included."""
    port = free_port()
    data_dir = pg_home / "data"
    proc, _ = start(["serve", "--bind", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
                    clean_env(), "gestor listening on ")
    try:
        with trio.fail_after(60):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=15) as http:
                bonos = await http.get("/v1/mobiles/5491100000001/bonos")
                assert bonos.status_code == 200
                r = await http.post(
                    "/v1/purchases", json={"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"},
                    headers={"Idempotency-Key": "quickstart", "Prefer": "wait=5"})
                assert r.json()["state"] == "completed"
    finally:
        code = stop(proc, signal.SIGTERM)
    assert code == 0
    assert (data_dir / "pg" / "PG_VERSION").is_file()
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # the embedded server stopped


async def test_sigterm_lets_in_flight_purchases_finish(
    platforms_url: str, e2e_database: str, tmp_path: Path
) -> None:
    msisdn = "5491100000033"
    port = free_port()
    proc, _ = start(
        ["serve", "--bind", f"127.0.0.1:{port}", "--platforms", platforms_url,
         "--data-dir", str(tmp_path)],
        clean_env(GESTOR_DATABASE_URL=e2e_database), "gestor listening on ",
    )
    try:
        with trio.fail_after(60):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http, \
                    httpx.AsyncClient(base_url=platforms_url) as sim:
                slow = {"ocs.debit": {"latency_ms": 1500}}
                assert (await sim.put("/control/faults", json=slow)).status_code == 200
                answer: dict[str, httpx.Response] = {}
                try:
                    async with trio.open_nursery() as nursery:
                        async def purchase() -> None:
                            answer["r"] = await http.post(
                                "/v1/purchases",
                                json={"msisdn": msisdn, "bono_id": "SMS_200_30D"},
                                headers={"Idempotency-Key": "e2e-sigterm", "Prefer": "wait=10"})

                        nursery.start_soon(purchase)
                        # Wait until the purchase is in flight (the debit is slow), then stop.
                        while True:
                            pending = await http.get(
                                f"/v1/mobiles/{msisdn}/transactions?state=pending")
                            if pending.json()["transactions"]:
                                break
                            await trio.sleep(0.02)
                        proc.send_signal(signal.SIGTERM)
                finally:
                    clear = {"ocs.debit": {"latency_ms": 0}}
                    await sim.put("/control/faults", json=clear)
                response = answer["r"]
                assert response.status_code == 200
                assert response.json()["state"] == "completed"
                # It stops by itself after that one SIGTERM, cleanly.
                assert await trio.to_thread.run_sync(proc.wait) == 0
    finally:
        stop(proc)
