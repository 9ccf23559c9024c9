"""The three calls end to end inside one process: Gestor's routes on a real PostgreSQL, the
platforms played by the simulator over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.integration.conftest import NO_LIMITS, set_faults, sim_stats

MSISDN = "5491100000001"
BONO = "DATA_2GB_7D"
PROBLEM = "application/problem+json"


async def buy(client: Any, msisdn: str = MSISDN, bono: str = BONO, key: str | None = None,
              wait: float | None = None, **extra: Any) -> Any:
    headers = {"Idempotency-Key": key or f"k-{msisdn}-{bono}-{trio.current_time()}"}
    if wait is not None:
        headers["Prefer"] = f"wait={wait}"
    return await client.post("/v1/purchases", json={"msisdn": msisdn, "bono_id": bono, **extra},
                              headers=headers)


async def test_list_bonos_for_a_mobile(client: Any) -> None:
    with trio.fail_after(20):
        response = await client.get(f"/v1/mobiles/{MSISDN}/bonos?channel=ussd")
        assert response.status_code == 200
        body = await response.get_json()
        assert body["msisdn"] == MSISDN
        assert body["profile_id"]
        offered = {b["id"]: b for b in body["bonos"]}
        assert BONO in offered
        bono = offered[BONO]
        assert bono["eligible"] is True, bono["reasons"]
        assert bono["price"] > 0 and bono["currency"] == "ARS"
        assert bono["operation"] == "debit_and_provision"


async def test_purchase_completes_and_is_visible(client: Any, control: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        before = await control.get(f"/ocs/accounts/{MSISDN}")
        balance = before.json()["balance"]
        response = await buy(client, wait=5)
        assert response.status_code == 200
        tx = await response.get_json()
        assert tx["state"] == "completed" and tx["final"] is True
        assert [h["state"] for h in tx["history"]] == [
            "received", "profiled", "validated", "charged", "completed"]
        assert tx["bono"]["id"] == BONO and tx["price"] > 0 and tx["profile_id"]
        assert response.headers["Location"] == f"/v1/transactions/{tx['id']}"

        got = await client.get(f"/v1/transactions/{tx['id']}")
        assert got.status_code == 200
        assert (await got.get_json())["state"] == "completed"

        listed = await (await client.get(f"/v1/mobiles/{MSISDN}/transactions")).get_json()
        assert [t["id"] for t in listed["transactions"]] == [tx["id"]]
        pending = await client.get(f"/v1/mobiles/{MSISDN}/transactions?state=pending")
        assert (await pending.get_json())["transactions"] == []

        after = await control.get(f"/ocs/accounts/{MSISDN}")
        assert after.json()["balance"] == balance - tx["price"]
        stats = await sim_stats(control)
        assert stats["debits"] == 1 and stats["provisioned"] == 1 and stats["refunds"] == 0


async def test_accepted_then_long_poll_to_completion(client: Any) -> None:
    with trio.fail_after(30):
        response = await buy(client)
        assert response.status_code == 202
        tx = await response.get_json()
        assert tx["state"] == "received" and tx["final"] is False
        done = await client.get(f"/v1/transactions/{tx['id']}", headers={"Prefer": "wait=5"})
        assert (await done.get_json())["state"] == "completed"


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "field"),
    [
        ({"msisdn": MSISDN, "bono_id": "NO_SUCH_BONO"}, {}, 422, "UNKNOWN_BONO", "bono_id"),
        ({"msisdn": "12ab", "bono_id": BONO}, {}, 422, "INVALID_MSISDN", "msisdn"),
        ({"msisdn": "0" + MSISDN, "bono_id": BONO}, {}, 422, "INVALID_MSISDN", "msisdn"),
        ({"msisdn": MSISDN}, {}, 422, "MISSING_FIELD", "bono_id"),
        ({"msisdn": MSISDN, "bono_id": BONO, "chanel": "app"}, {}, 422, "UNKNOWN_FIELD",
         "chanel"),
        ({"msisdn": MSISDN, "bono_id": BONO, "channel": "fax"}, {}, 422, "INVALID_CHANNEL",
         "channel"),
        (None, {}, 400, "INVALID_JSON", "body"),
        ({"msisdn": MSISDN, "bono_id": BONO}, {"Idempotency-Key": None}, 400,
         "IDEMPOTENCY_KEY_REQUIRED", "Idempotency-Key"),
        ({"msisdn": MSISDN, "bono_id": BONO}, {"Prefer": "wait=soon"}, 400, "INVALID_PREFER",
         "Prefer"),
    ],
)
async def test_bad_input_gets_a_problem_naming_the_field_and_writes_nothing(
    client: Any, control: httpx.AsyncClient, body: Any, headers: dict[str, Any], status: int,
    code: str, field: str,
) -> None:
    with trio.fail_after(20):
        sent = {"Idempotency-Key": "bad-input-1", "Content-Type": "application/json", **headers}
        sent = {k: v for k, v in sent.items() if v is not None}
        if body is None:
            response = await client.post(
                "/v1/purchases", data=b'{"msisdn": "5491100000001", "bono_id": ', headers=sent)
        else:
            response = await client.post("/v1/purchases", json=body, headers=sent)
        assert response.status_code == status
        assert response.content_type == PROBLEM
        problem = await response.get_json()
        assert problem["code"] == code and problem["field"] == field
        assert problem["status"] == status and problem["detail"]
        listed = await (await client.get(f"/v1/mobiles/{MSISDN}/transactions")).get_json()
        assert listed["transactions"] == []
        assert (await sim_stats(control))["debits"] == 0


async def test_other_bad_requests(client: Any) -> None:
    with trio.fail_after(20):
        r = await client.get("/v1/transactions/not-a-uuid")
        assert r.status_code == 400 and (await r.get_json())["field"] == "id"
        r = await client.get("/v1/transactions/6f1c4c1e-8a0e-4a55-9f3e-0c2d7c1b2a10")
        assert r.status_code == 404 and r.content_type == PROBLEM
        r = await client.get("/v1/mobiles/123/bonos")
        assert r.status_code == 422 and (await r.get_json())["code"] == "INVALID_MSISDN"
        r = await client.get(f"/v1/mobiles/{MSISDN}/transactions?state=nonsense")
        assert r.status_code == 422 and (await r.get_json())["field"] == "state"
        r = await client.get("/v1/nowhere")
        assert r.status_code == 404 and r.content_type == PROBLEM
        r = await client.post("/v1/purchases", data=b"x" * 20000,
                              headers={"Idempotency-Key": "big"})
        assert r.status_code == 413 and r.content_type == PROBLEM


async def test_retry_with_same_key_returns_same_transaction_and_charges_once(
    client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(30):
        first = await buy(client, key="retry-1", wait=5)
        second = await buy(client, key="retry-1", wait=5)
        assert first.status_code == 200 and second.status_code == 200
        a, b = await first.get_json(), await second.get_json()
        assert a["id"] == b["id"] and b["state"] == "completed"
        assert second.headers["Idempotent-Replayed"] == "true"
        # Same key, different purchase: refused, nothing bought.
        third = await buy(client, key="retry-1", bono="SMS_200_30D")
        assert third.status_code == 422
        assert (await third.get_json())["code"] == "IDEMPOTENCY_KEY_REUSED"
        stats = await sim_stats(control)
        assert stats["debits"] == 1 and stats["debited_total"] == a["price"]


async def test_rejected_by_rules_charges_nothing(client: Any, control: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        msisdn = "5491100000002"
        r = await control.put(f"/control/accounts/{msisdn}", json={"balance": 0})
        assert r.status_code == 200, r.text
        response = await buy(client, msisdn=msisdn, wait=5)
        tx = await response.get_json()
        assert tx["state"] == "rejected"
        assert tx["reasons"] and all(r["code"] for r in tx["reasons"])
        assert [h["state"] for h in tx["history"]] == ["received", "profiled", "rejected"]
        assert (await sim_stats(control))["debits"] == 0


async def test_provisioning_failure_is_refunded(client: Any, control: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        await set_faults(control, {"prov": {"error_rate": 1.0}})
        response = await buy(client, wait=10)
        tx = await response.get_json()
        assert tx["state"] == "refunded"
        assert tx["reasons"][0]["code"] == "PROVISIONING_FAILED"
        stats = await sim_stats(control)
        assert stats["debits"] == 1 and stats["refunds"] == 1
        assert stats["debited_total"] == stats["refunded_total"] == tx["price"]


@pytest.mark.parametrize("limit_settings", [NO_LIMITS])  # else 195 are 429 RATE_LIMITED
async def test_200_concurrent_purchases_on_one_mobile_exactly_one_accepted(
    client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(60):
        # Slow charging keeps the first purchase in flight while the others arrive.
        await set_faults(control, {"ocs.debit": {"latency_ms": 1500}})
        responses: list[Any] = []

        async def one(i: int) -> None:
            responses.append(await buy(client, key=f"race-{i}"))

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
        accepted = [r for r in responses if r.status_code == 202]
        conflicts = [r for r in responses if r.status_code == 409]
        assert len(accepted) == 1, [r.status_code for r in responses]
        assert len(conflicts) == 199
        winner = (await accepted[0].get_json())["id"]
        for r in conflicts:
            problem = await r.get_json()
            assert problem["code"] == "PURCHASE_PENDING"
            assert problem["pending_transaction"] == winner
        done = await client.get(f"/v1/transactions/{winner}", headers={"Prefer": "wait=10"})
        assert (await done.get_json())["state"] == "completed"
        stats = await sim_stats(control)
        assert stats["debits"] == 1


async def test_purchases_on_different_mobiles_run_concurrently(
    client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(60):
        latency = 0.4
        await set_faults(control, {"ocs.debit": {"latency_ms": latency * 1000}})
        n = 25
        states: list[str] = []
        start = trio.current_time()

        async def one(i: int) -> None:
            r = await buy(client, msisdn=f"54911000000{i + 10:02d}", wait=20)
            states.append((await r.get_json())["state"])

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
        elapsed = trio.current_time() - start
        assert states == ["completed"] * n
        # One by one would take at least n * latency = 10 s.
        assert elapsed < n * latency / 3, elapsed
        assert (await sim_stats(control))["debits"] == n


async def test_inconsistent_purchase_raises_an_alarm_on_the_feed(
    client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(30):
        async with client.websocket("/v1/alarms") as ws:
            await set_faults(control, {"prov": {"error_rate": 1.0},
                                       "ocs.refund": {"error_rate": 1.0}})
            response = await buy(client, wait=10)
            tx = await response.get_json()
            assert tx["state"] == "inconsistent"
            import json

            alarm = json.loads(await ws.receive())
            assert alarm["kind"] == "refund_failed" and alarm["severity"] == "critical"
            assert alarm["transaction_id"] == tx["id"] and alarm["msisdn"] == MSISDN
        # A new purchase is refused while the money is in limbo.
        again = await buy(client)
        assert again.status_code == 409
        # Reconnecting with `since` replays what was missed.
        async with client.websocket(f"/v1/alarms?since={alarm['id'] - 1}") as ws:
            replayed = json.loads(await ws.receive())
            assert replayed["id"] == alarm["id"]
        stats = await sim_stats(control)
        assert stats["debits"] == 1 and stats["refunds"] == 0


async def test_statistics_need_the_admin_key(client: Any) -> None:
    with trio.fail_after(30):
        from tests.integration.conftest import ADMIN_KEY

        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_KEY}):
            r = await client.get("/v1/admin/statistics", headers=headers)
            assert r.status_code == 401 and r.content_type == PROBLEM
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        await buy(client, wait=5)
        r = await client.get("/v1/admin/statistics",
                             headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 200
        stats = await r.get_json()
        assert stats["actors"]["live_actors"] == 1
        assert stats["actors"]["activations"] == 1
        assert stats["purchases"]["started"] == stats["purchases"]["finished"] == 1
        assert stats["platforms"]["ocs"]["requests"] >= 2
        writes = next(b for b in stats["store"]["batchers"] if b["name"] == "writes")
        # accepted (with its subscriber's history, in the same crossing), charged, completed
        assert writes["items"] == 3 and writes["batches"] == 3
        snapshots = next(b for b in stats["store"]["batchers"] if b["name"] == "snapshots")
        assert snapshots["items"] == 0
