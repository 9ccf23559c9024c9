"""The simulator's HTTP contract, spoken raw over loopback with httpx."""

from __future__ import annotations

import httpx
import trio

from .support import WELL_KNOWN

OTHER = "5491100000002"


async def test_health_and_routing(http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        assert (await http.get("/healthz")).status_code == 200
        missing = await http.get("/nowhere/at/all")
        assert missing.status_code == 404 and missing.json()["code"] == "NO_ROUTE"
        wrong_method = await http.delete("/ocs/debits")
        assert wrong_method.status_code == 405


async def test_profile_and_account_are_deterministic(http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        profile = (await http.get(f"/dwh/subscribers/{WELL_KNOWN}")).json()
        assert profile == (await http.get(f"/dwh/subscribers/{WELL_KNOWN}")).json()
        assert set(profile) == {
            "msisdn", "segment", "tenure_months", "region", "device", "plan",
            "birthday_month", "language",
        }
        assert profile["segment"] == "prepaid"
        account = (await http.get(f"/ocs/accounts/{WELL_KNOWN}")).json()
        assert account == {
            "msisdn": WELL_KNOWN,
            "balance": 1_681_332,
            "currency": "ARS",
            "line_status": "active",
            "roaming": False,
            "credit_limit": 0,
        }
        for bad in ("123", "54911abc00001"):
            response = await http.get(f"/dwh/subscribers/{bad}")
            assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"


async def test_debit_is_idempotent_by_id(http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        before = (await http.get(f"/ocs/accounts/{WELL_KNOWN}")).json()["balance"]
        body = {"id": "tx-1", "msisdn": WELL_KNOWN, "amount": 15_000, "reason": "DATA_500MB_1D"}
        first = await http.post("/ocs/debits", json=body)
        assert first.status_code == 200
        receipt = first.json()
        assert receipt["status"] == "debited"
        assert receipt["balance_after"] == before - 15_000
        assert receipt["created_at"].endswith("Z")
        again = await http.post("/ocs/debits", json=body)
        assert again.status_code == 200 and again.json() == receipt
        after = (await http.get(f"/ocs/accounts/{WELL_KNOWN}")).json()["balance"]
        assert after == before - 15_000  # debited once
        looked_up = (await http.get("/ocs/debits/tx-1")).json()
        assert looked_up["refunded"] is False and looked_up["amount"] == 15_000
        missing = await http.get("/ocs/debits/tx-none")
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


async def test_debit_mismatch_insufficient_and_inactive(http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        await http.post("/ocs/debits", json={"id": "tx-2", "msisdn": WELL_KNOWN, "amount": 100})
        mismatch = await http.post(
            "/ocs/debits", json={"id": "tx-2", "msisdn": WELL_KNOWN, "amount": 101}
        )
        assert mismatch.status_code == 409 and mismatch.json()["code"] == "IDEMPOTENCY_MISMATCH"
        other_msisdn = await http.post(
            "/ocs/debits", json={"id": "tx-2", "msisdn": OTHER, "amount": 100}
        )
        assert other_msisdn.status_code == 409

        set_zero = await http.put(f"/control/accounts/{OTHER}", json={"balance": 0})
        assert set_zero.json()["balance"] == 0
        poor = await http.post("/ocs/debits", json={"id": "tx-3", "msisdn": OTHER, "amount": 1})
        assert poor.status_code == 402
        assert poor.json() == {
            "code": "INSUFFICIENT_BALANCE", "message": "not enough balance", "balance": 0
        }
        # a rejected debit is not remembered: the same id works once there is money
        await http.put(f"/control/accounts/{OTHER}", json={"balance": 10})
        rich = await http.post("/ocs/debits", json={"id": "tx-3", "msisdn": OTHER, "amount": 1})
        assert rich.status_code == 200 and rich.json()["balance_after"] == 9

        await http.put(f"/control/accounts/{OTHER}", json={"line_status": "suspended"})
        suspended = await http.post(
            "/ocs/debits", json={"id": "tx-4", "msisdn": OTHER, "amount": 1}
        )
        assert suspended.status_code == 403 and suspended.json()["code"] == "LINE_NOT_ACTIVE"

        for bad in ({"id": "tx-5", "msisdn": WELL_KNOWN}, {"id": "tx-5", "msisdn": WELL_KNOWN,
                    "amount": 1.5}, {"id": "tx-5", "msisdn": WELL_KNOWN, "amount": -3}):
            invalid = await http.post("/ocs/debits", json=bad)
            assert invalid.status_code == 400, bad
        assert (await http.post("/ocs/debits", content=b"{not json")).status_code == 400


async def test_refund_happens_at_most_once(http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        debit = (
            await http.post("/ocs/debits", json={"id": "tx-r", "msisdn": WELL_KNOWN, "amount": 500})
        ).json()
        refund = {"id": "rf-1", "debit_id": "tx-r", "msisdn": WELL_KNOWN, "amount": 500}
        first = await http.post("/ocs/refunds", json=refund)
        assert first.status_code == 200
        assert first.json()["balance_after"] == debit["balance_after"] + 500
        assert first.json()["status"] == "refunded"
        again = await http.post("/ocs/refunds", json=refund)
        assert again.json() == first.json()  # idempotent by id
        second = await http.post("/ocs/refunds", json={**refund, "id": "rf-2"})
        assert second.status_code == 409 and second.json()["code"] == "ALREADY_REFUNDED"
        unknown = await http.post(
            "/ocs/refunds", json={**refund, "id": "rf-3", "debit_id": "tx-none"}
        )
        assert unknown.status_code == 404
        account = (await http.get(f"/ocs/accounts/{WELL_KNOWN}")).json()
        assert account["balance"] == debit["balance_after"] + 500
        assert (await http.get("/ocs/debits/tx-r")).json()["refunded"] is True
        assert (await http.get("/ocs/refunds/rf-1")).json()["debit_id"] == "tx-r"


async def test_provision_is_idempotent(http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        body = {
            "id": "tx-p", "msisdn": WELL_KNOWN, "bono_id": "DATA_2GB_7D",
            "validity_days": 7, "data_mb": 2048, "voice_min": 0, "sms": 0,
        }
        first = await http.post("/prov/bundles", json=body)
        assert first.status_code == 200
        assert first.json()["status"] == "provisioned" and first.json()["expires_at"]
        assert (await http.post("/prov/bundles", json=body)).json() == first.json()
        mismatch = await http.post("/prov/bundles", json={**body, "bono_id": "SMS_200_30D"})
        assert mismatch.status_code == 409
        assert (await http.get("/prov/bundles/tx-p")).json() == first.json()
        assert (await http.get("/prov/bundles/none")).status_code == 404
        stats = (await http.get("/control/stats")).json()
        assert stats["provisioned"] == 1


async def test_stats_and_ledger(http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        for i in range(3):
            await http.post(
                "/ocs/debits", json={"id": f"tx-{i}", "msisdn": WELL_KNOWN, "amount": 100 + i}
            )
        await http.post("/ocs/debits", json={"id": "tx-0", "msisdn": WELL_KNOWN, "amount": 100})
        await http.post(
            "/ocs/refunds",
            json={"id": "rf-0", "debit_id": "tx-1", "msisdn": WELL_KNOWN, "amount": 101},
        )
        await http.get(f"/ocs/accounts/{OTHER}")
        stats = (await http.get("/control/stats", params={"msisdn": WELL_KNOWN})).json()
        assert stats["debits"] == 3 and stats["debited_total"] == 303
        assert stats["refunds"] == 1 and stats["refunded_total"] == 101
        assert stats["requests_by_op"] == {"ocs.account": 1, "ocs.debit": 4, "ocs.refund": 1}
        assert stats["per_msisdn"]["debits"] == 3
        assert stats["per_msisdn"]["refunded_total"] == 101

        ledger = (await http.get("/control/ledger")).json()
        assert [(e["kind"], e["id"], e["amount"]) for e in ledger] == [
            ("debit", "tx-0", 100), ("debit", "tx-1", 101), ("debit", "tx-2", 102),
            ("refund", "rf-0", 101),
        ]
        assert ledger[3]["debit_id"] == "tx-1"
        cut = ledger[1]["ts"]
        later = (await http.get("/control/ledger", params={"since": cut})).json()
        assert [e["id"] for e in later] == ["tx-1", "tx-2", "rf-0"]
        iso = (await http.get("/control/ledger", params={"until": ledger[1]["created_at"]})).json()
        assert [e["id"] for e in iso] == ["tx-0"]

        assert (await http.post("/control/reset")).status_code == 200
        cleared = (await http.get("/control/stats")).json()
        assert cleared["debits"] == 0 and cleared["requests_by_op"] == {}
        assert (await http.get("/control/ledger")).json() == []
        assert (await http.get("/ocs/debits/tx-0")).status_code == 404


async def test_fault_control_endpoint(http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        assert (await http.get("/control/faults")).json() == {"seed": 7}
        put = await http.put("/control/faults", json={"ocs": {"latency_ms": 1}})
        assert put.json() == {"seed": 7, "ocs": {"latency_ms": 1.0}}
        merged = await http.put(
            "/control/faults", json={"ocs": {"debit": {"error_rate": 0.5}}, "dwh": {"outage": True}}
        )
        assert merged.json() == {
            "seed": 7,
            "dwh": {"outage": True},
            "ocs": {"latency_ms": 1.0},
            "ocs.debit": {"error_rate": 0.5},
        }
        down = await http.get(f"/dwh/subscribers/{WELL_KNOWN}")
        assert down.status_code == 503 and down.json()["code"] == "OUTAGE"
        bad = await http.put("/control/faults", json={"ocs": {"error_rate": 7}})
        assert bad.status_code == 400
        restored = await http.delete("/control/faults")
        assert restored.json() == {"seed": 7}
        assert (await http.get(f"/dwh/subscribers/{WELL_KNOWN}")).status_code == 200
