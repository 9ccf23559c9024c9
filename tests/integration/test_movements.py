"""Every movement end to end inside one process (DESIGN D10): a bono for another mobile, airtime
transfers, balance advances and top-ups on a real PostgreSQL, the platforms played by the
simulator over real HTTP, the money checked at the simulator."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
import trio

from tests.integration.conftest import NO_LIMITS, set_faults, sim_stats

A, B, C = "5491100000011", "5491100000012", "5491100000013"
BONO = "DATA_2GB_7D"


async def post(client: Any, path: str, body: dict[str, Any], key: str,
               wait: float | None = 20) -> Any:
    headers = {"Idempotency-Key": key}
    if wait is not None:
        headers["Prefer"] = f"wait={wait}"
    return await client.post(path, json=body, headers=headers)


async def account(control: httpx.AsyncClient, msisdn: str) -> dict[str, Any]:
    found: dict[str, Any] = (await sim_stats(control, msisdn))["per_msisdn"]
    return found


async def set_balance(control: httpx.AsyncClient, msisdn: str, balance: int) -> None:
    response = await control.put(f"/control/accounts/{msisdn}", json={"balance": balance})
    assert response.status_code == 200, response.text


async def test_a_bono_for_another_mobile(client: Any, control: httpx.AsyncClient) -> None:
    """The payer is debited once, the beneficiary provisioned once; both list it, each in its
    role; a retry with the same key is the same purchase."""
    with trio.fail_after(60):
        payer, beneficiary = await account(control, A), await account(control, B)
        body = {"msisdn": A, "bono_id": BONO, "beneficiary": B}
        r = await post(client, "/v1/purchases", body, "gift-1")
        assert r.status_code == 200, await r.get_json()
        tx = await r.get_json()
        assert (tx["kind"], tx["state"], tx["beneficiary"]) == ("purchase", "completed", B)
        again = await post(client, "/v1/purchases", body, "gift-1")
        assert (await again.get_json())["id"] == tx["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        after_a, after_b = await account(control, A), await account(control, B)
        assert after_a["debits"] == payer["debits"] + 1
        assert after_a["balance"] == payer["balance"] - tx["price"]
        assert after_a["provisioned"] == payer["provisioned"]
        assert after_b["provisioned"] == beneficiary["provisioned"] + 1
        assert (after_b["debits"], after_b["balance"]) == (beneficiary["debits"],
                                                           beneficiary["balance"])
        for msisdn, role in ((A, "payer"), (B, "beneficiary")):
            listed = await (await client.get(f"/v1/mobiles/{msisdn}/transactions")).get_json()
            assert [(t["id"], t["role"]) for t in listed["transactions"]] == [(tx["id"], role)]
        none = await client.get(f"/v1/mobiles/{B}/transactions?kind=transfer,advance")
        assert (await none.get_json())["transactions"] == []


async def test_a_gift_to_an_inactive_line_is_refused(client: Any,
                                                     control: httpx.AsyncClient) -> None:
    with trio.fail_after(60):
        r = await control.put(f"/control/accounts/{B}", json={"line_status": "suspended"})
        assert r.status_code == 200
        before = await account(control, A)
        r = await post(client, "/v1/purchases",
                       {"msisdn": A, "bono_id": BONO, "beneficiary": B}, "gift-inactive")
        tx = await r.get_json()
        assert tx["state"] == "rejected"
        assert "BENEFICIARY_NOT_ACTIVE" in {x["code"] for x in tx["reasons"]}
        assert (await account(control, A))["debits"] == before["debits"]


@pytest.mark.parametrize("limit_settings", [NO_LIMITS])
async def test_the_beneficiary_is_guarded_while_a_gift_is_in_flight(
        client: Any, control: httpx.AsyncClient) -> None:
    """While A's bono for B is in flight, B can start nothing (409 naming the gift), and
    neither can A; once it ends, both can."""
    with trio.fail_after(60):
        await set_faults(control, {"ocs.debit": {"latency_ms": 1500}})
        gift = await post(client, "/v1/purchases",
                          {"msisdn": A, "bono_id": BONO, "beneficiary": B}, "g", wait=None)
        assert gift.status_code == 202
        gift_id = (await gift.get_json())["id"]
        for body, field in (({"msisdn": B, "bono_id": BONO}, "msisdn"),
                            ({"msisdn": C, "bono_id": BONO, "beneficiary": B}, "beneficiary"),
                            ({"msisdn": A, "bono_id": BONO}, "msisdn")):
            r = await post(client, "/v1/purchases", body, f"busy-{field}-{body['msisdn']}",
                           wait=None)
            assert r.status_code == 409
            problem = await r.get_json()
            assert (problem["pending_transaction"], problem["field"]) == (gift_id, field)
        done = await client.get(f"/v1/transactions/{gift_id}", headers={"Prefer": "wait=20"})
        assert (await done.get_json())["state"] == "completed"
        await set_faults(control, {"ocs.debit": {"latency_ms": 0}})
        r = await post(client, "/v1/purchases", {"msisdn": B, "bono_id": BONO}, "free-again")
        assert (await r.get_json())["state"] == "completed"


async def test_bad_movement_requests_name_the_field(client: Any) -> None:
    with trio.fail_after(30):
        cases = [
            ("/v1/transfers", {"msisdn": A, "beneficiary": A, "amount": 100}, "beneficiary"),
            ("/v1/transfers", {"msisdn": A, "beneficiary": B, "amount": 0}, "amount"),
            ("/v1/transfers", {"msisdn": A, "amount": 10}, "beneficiary"),
            ("/v1/advances", {"msisdn": A, "amount": 1.5}, "amount"),
            ("/v1/advances", {"msisdn": A, "amount": 10, "beneficiary": B}, "beneficiary"),
            ("/v1/topups", {"msisdn": A, "amount": 10}, "reference"),
            ("/v1/topups", {"msisdn": A, "amount": 10, "reference": ""}, "reference"),
            ("/v1/purchases", {"msisdn": A, "bono_id": BONO, "beneficiary": "12"},
             "beneficiary"),
        ]
        for path, body, field in cases:
            r = await post(client, path, body, f"bad-{path}-{field}")
            assert r.status_code == 422, (path, body)
            assert r.headers["Content-Type"] == "application/problem+json"
            assert (await r.get_json())["field"] == field
        r = await client.post("/v1/transfers", json={"msisdn": A, "beneficiary": B,
                                                     "amount": 10})
        assert r.status_code in (400, 422)
        assert (await r.get_json())["field"] == "Idempotency-Key"
        listed = await (await client.get(f"/v1/mobiles/{A}/transactions")).get_json()
        assert listed["transactions"] == []


async def test_a_transfer_moves_amount_and_fee(client: Any, control: httpx.AsyncClient) -> None:
    """The payer pays amount + fee (5 % in the shipped rules), the beneficiary gets the amount;
    once, however often the request is retried."""
    with trio.fail_after(60):
        payer, beneficiary = await account(control, A), await account(control, B)
        body = {"msisdn": A, "beneficiary": B, "amount": 20_000}
        for _ in range(2):
            r = await post(client, "/v1/transfers", body, "transfer-1")
            tx = await r.get_json()
            assert (tx["kind"], tx["state"], tx["amount"], tx["fee"]) == (
                "transfer", "completed", 20_000, 1_000), tx
        after_a, after_b = await account(control, A), await account(control, B)
        assert after_a["balance"] == payer["balance"] - 21_000
        assert after_a["debits"] == payer["debits"] + 1
        assert after_b["balance"] == beneficiary["balance"] + 20_000
        assert after_b["credits"] == beneficiary["credits"] + 1
        of_b = await (await client.get(f"/v1/mobiles/{B}/transactions?kind=transfer")).get_json()
        assert [(t["id"], t["role"]) for t in of_b["transactions"]] == [(tx["id"],
                                                                         "beneficiary")]


async def test_a_transfer_whose_credit_fails_is_refunded(client: Any,
                                                         control: httpx.AsyncClient) -> None:
    with trio.fail_after(60):
        payer, beneficiary = await account(control, A), await account(control, B)
        await set_faults(control, {"ocs.credit": {"error_rate": 1.0}})
        r = await post(client, "/v1/transfers", {"msisdn": A, "beneficiary": B, "amount": 5_000},
                       "transfer-fails")
        tx = await r.get_json()
        assert tx["state"] == "refunded", tx
        assert tx["reasons"][0]["code"] == "CREDIT_FAILED"
        after_a, after_b = await account(control, A), await account(control, B)
        assert after_a["balance"] == payer["balance"]
        assert (after_a["debits"], after_a["refunds"]) == (payer["debits"] + 1,
                                                           payer["refunds"] + 1)
        assert (after_b["balance"], after_b["credits"]) == (beneficiary["balance"],
                                                            beneficiary["credits"])


async def test_an_advance_is_credited_once_and_topups_collect_it(
        client: Any, control: httpx.AsyncClient) -> None:
    """An advance of 50,000 (10 % fee: 55,000 owed) is credited once; another one is refused
    while it is owed; a top-up of 20,000 collects 20,000, the same reference again collects
    nothing, a top-up of 50,000 collects the remaining 35,000, and then nothing is owed."""
    with trio.fail_after(90):
        await set_balance(control, A, 10_000)
        body = {"msisdn": A, "amount": 50_000}
        for _ in range(2):
            tx = await (await post(client, "/v1/advances", body, "advance-1")).get_json()
            assert (tx["kind"], tx["state"], tx["fee"], tx["owed"]) == (
                "advance", "completed", 5_000, 55_000), tx
        acc = await account(control, A)
        assert (acc["balance"], acc["credits"], acc["credited_total"]) == (60_000, 1, 50_000)
        # Accepted (202, not waited for), it owes nothing of its own: not the mobile's debt.
        r = await post(client, "/v1/advances", {"msisdn": A, "amount": 1_000}, "advance-2",
                       wait=None)
        accepted = await r.get_json()
        assert (r.status_code, accepted["state"]) == (202, "received"), accepted
        assert "owed" not in accepted, accepted
        again = await (await client.get(f"/v1/transactions/{accepted['id']}",
                                        headers={"Prefer": "wait=20"})).get_json()
        assert again["state"] == "rejected"
        assert "ADVANCE_OUTSTANDING" in {x["code"] for x in again["reasons"]}

        async def topup(reference: str, amount: int, collected: int, *, replay: bool = False
                        ) -> None:
            before = await account(control, A)
            if not replay:  # the recharge platform credits it, then tells Gestor
                r = await control.post("/control/topups", json={
                    "msisdn": A, "amount": amount, "reference": reference})
                assert r.status_code == 200, r.text
            r = await post(client, "/v1/topups",
                           {"msisdn": A, "amount": amount, "reference": reference}, reference)
            tx = await r.get_json()
            assert (tx["kind"], tx["state"], tx["collected"]) == ("topup", "completed",
                                                                   collected), tx
            assert (r.headers.get("Idempotent-Replayed") == "true") is replay
            after = await account(control, A)
            credited = 0 if replay else amount
            assert after["balance"] == before["balance"] + credited - (0 if replay
                                                                      else collected)

        await topup("recharge-1", 20_000, 20_000)
        await topup("recharge-1", 20_000, 20_000, replay=True)
        await topup("recharge-2", 50_000, 35_000)
        await topup("recharge-3", 10_000, 0)
        acc = await account(control, A)
        assert acc["debited_total"] == 55_000  # the whole debt, collected once
        listed = await (await client.get(f"/v1/mobiles/{A}/transactions?kind=topup")).get_json()
        assert sorted(t["reference"] for t in listed["transactions"]) == [
            "recharge-1", "recharge-2", "recharge-3"]
        await set_balance(control, A, 10_000)
        tx = await (await post(client, "/v1/advances", {"msisdn": A, "amount": 20_000},
                               "advance-3")).get_json()
        assert tx["state"] == "completed", tx  # settled: a new advance may be taken


@pytest.mark.parametrize("limit_settings", [NO_LIMITS])
async def test_the_guard_holds_for_both_mobiles_of_transfers_under_concurrency(
        client: Any, control: httpx.AsyncClient, app: Any) -> None:
    """Many concurrent transfers A→B and B→A, bonos for each other and purchases on either:
    never two movements in flight on one mobile, as the database recorded them (no two of a
    mobile's movements, in either role, overlap in time) and as the charging system saw them
    (at most one debit at a time per mobile)."""
    with trio.fail_after(120):
        await set_faults(control, {"ocs.debit": {"latency_ms": 50},
                                   "ocs.credit": {"latency_ms": 50}})
        answers: list[int] = []

        async def one(n: int, i: int) -> None:
            payer, other = (A, B) if i % 2 else (B, A)
            if i % 3 == 0:
                path, body = "/v1/transfers", {"msisdn": payer, "beneficiary": other,
                                               "amount": 1_000}
            elif i % 3 == 1:
                path, body = "/v1/purchases", {"msisdn": payer, "bono_id": BONO,
                                               "beneficiary": other}
            else:
                path, body = "/v1/purchases", {"msisdn": payer, "bono_id": BONO}
            r = await post(client, path, body, f"crowd-{n}-{i}", wait=None)
            answers.append(r.status_code)

        for n in range(4):
            async with trio.open_nursery() as nursery:
                for i in range(40):
                    nursery.start_soon(one, n, i)
            await trio.sleep(0.3)
        assert set(answers) <= {202, 409}, answers
        assert answers.count(202) >= 4
        store = app.runtime.store

        async def settled() -> list[Any]:
            async def read(conn: Any) -> list[Any]:
                return list(await conn.fetch(
                    "SELECT id, msisdn, beneficiary, state, created_at, updated_at"
                    " FROM transactions"))
            return await store.bridge.run(read, transaction=False)

        rows = await settled()
        while any(r["state"] not in ("completed", "rejected", "failed", "refunded")
                  for r in rows):
            await trio.sleep(0.1)
            rows = await settled()
        assert len(rows) == answers.count(202)  # a 409 wrote nothing
        for mobile in (A, B):
            mine = sorted((r["created_at"], r["updated_at"]) for r in rows
                          if mobile in (r["msisdn"], r["beneficiary"]))
            for (_, end), (start, _) in itertools.pairwise(mine):
                assert end <= start, (mobile, end, start)
            assert (await account(control, mobile))["max_concurrent_debits"] <= 1


async def test_reconciliation_understands_every_movement(
        client: Any, control: httpx.AsyncClient, app: Any) -> None:
    """After a gift, a transfer, a refunded transfer, an advance and top-ups collecting it,
    `reconcile --strict` finds Gestor and the charging system in agreement, credits and
    top-ups included; a credit Gestor did not record is a mismatch."""
    from datetime import UTC, datetime, timedelta

    from gestor.platforms import LedgerEntry
    from gestor.reconcile import MismatchKind, reconcile, run_reconciliation
    from gestor.store import transactions_between

    with trio.fail_after(90):
        since = datetime.now(UTC) - timedelta(minutes=1)
        await set_balance(control, C, 10_000)
        steps = [
            ("/v1/purchases", {"msisdn": A, "bono_id": BONO, "beneficiary": B}),
            ("/v1/transfers", {"msisdn": A, "beneficiary": B, "amount": 3_000}),
            ("/v1/advances", {"msisdn": C, "amount": 40_000}),
            ("/v1/topups", {"msisdn": C, "amount": 30_000, "reference": "rc-1"}),
        ]
        for n, (path, body) in enumerate(steps):
            if path == "/v1/topups":
                r = await control.post("/control/topups", json=body)
                assert r.status_code == 200
            tx = await (await post(client, path, body, f"rec-{n}")).get_json()
            assert tx["state"] == "completed", tx
        await set_faults(control, {"ocs.credit": {"error_rate": 1.0}})
        tx = await (await post(client, "/v1/transfers",
                               {"msisdn": B, "beneficiary": A, "amount": 1_000},
                               "rec-refunded")).get_json()
        assert tx["state"] == "refunded"
        until = datetime.now(UTC) + timedelta(minutes=1)
        report = await run_reconciliation(app.runtime.store, app.runtime.platforms, since,
                                          until, strict=True)
        assert report.ok, report.mismatches
        t = report.totals
        assert (t.credits, t.credited) == (2, 43_000)
        assert t.transactions == 5 and t.balanced
        # The same data with a credit Gestor never made: reported.
        txs = await app.runtime.store.bridge.run(transactions_between, since, until,
                                                 transaction=False)
        ledger = await app.runtime.platforms.ledger(since, until)
        assert reconcile(txs, ledger, strict=True).ok
        stray = LedgerEntry("credit", "not-ours", C, 500, "2026-01-01T00:00:00+00:00",
                            since.timestamp() + 1)
        off = reconcile(txs, [*ledger, stray], strict=True)
        assert [(m.kind, m.transaction_id) for m in off.mismatches] == [
            (MismatchKind.CREDITED_NOT_RECORDED, "not-ours")]


async def test_a_bono_financed_by_an_advance_is_configuration(
        client: Any, control: httpx.AsyncClient) -> None:
    """An operation rule picking the shipped `advance_and_provision` (no code): a prepaid line
    short of balance gets the bono; its price is lent (credited), charged, and owed with the
    advance fee until a top-up collects it."""
    from pathlib import Path

    from tests.integration.conftest import ADMIN_KEY

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    source = (Path(__file__).parents[2] / "config" / "rules.toml").read_text()
    first = source.index("[[operations]]")
    source = source[:first] + '''[[operations]]
id = "short_of_balance"
when = 'customer.segment == "prepaid" && customer.balance < bono.price && history.owed == 0'
operation = "advance_and_provision"

''' + source[first:]
    with trio.fail_after(90):
        r = await client.post("/v1/admin/rules", headers=admin,
                              json={"source": source, "description": "bonos on credit"})
        assert r.status_code == 201, await r.get_data()
        version = (await r.get_json())["version"]
        r = await client.post(f"/v1/admin/rules/{version}/activate", headers=admin)
        assert r.status_code == 200
        await set_balance(control, C, 10_000)
        before = await account(control, C)
        tx = await (await post(client, "/v1/purchases", {"msisdn": C, "bono_id": BONO},
                               "on-credit")).get_json()
        assert (tx["state"], tx["operation"], tx["step"]) == (
            "completed", "advance_and_provision", 3), tx
        price = tx["price"]
        assert (tx["amount"], tx["fee"], tx["owed"]) == (price, price // 10, price + price // 10)
        after = await account(control, C)
        assert after["balance"] == before["balance"]  # lent, then charged
        assert (after["credits"], after["debits"], after["provisioned"]) == (
            before["credits"] + 1, before["debits"] + 1, before["provisioned"] + 1)
        r = await control.post("/control/topups", json={"msisdn": C, "amount": 30_000,
                                                       "reference": "pay-back"})
        assert r.status_code == 200
        topup = await (await post(client, "/v1/topups", {"msisdn": C, "amount": 30_000,
                                                         "reference": "pay-back"},
                                  "pay-back")).get_json()
        assert topup["collected"] == 30_000
