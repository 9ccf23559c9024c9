"""The ledger's admin API over the app and the simulator: trial balance, entries (JSON and CSV),
the daily close, and bad input named by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import trio

from gestor.store import table_counts
from tests.integration.conftest import ADMIN_KEY, sim_stats

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
A, B = "5491100000031", "5491100000032"
BONO = "DATA_2GB_7D"


async def post(client: Any, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    r = await client.post(path, json=body, headers={"Idempotency-Key": key, "Prefer": "wait=20"})
    assert r.status_code == 200, await r.get_data()
    tx: dict[str, Any] = await r.get_json()
    return tx


async def get(client: Any, path: str, status: int = 200, **headers: str) -> Any:
    r = await client.get(path, headers={**ADMIN, **headers})
    assert r.status_code == status, (path, await r.get_data())
    return r


async def test_trial_balance_and_entries_follow_the_movements(
        client: Any, control: httpx.AsyncClient) -> None:
    """A purchase, a transfer and a top-up: the trial balance's totals are equal, each account
    holds what moved (the subscribers' as the simulator saw their balances move), and the
    entries list each movement's postings, as JSON and as CSV."""
    with trio.fail_after(90):
        before = {m: (await sim_stats(control, m))["per_msisdn"]["balance"] for m in (A, B)}
        sale = await post(client, "/v1/purchases", {"msisdn": A, "bono_id": BONO}, "l-1")
        gift = await post(client, "/v1/transfers", {"msisdn": A, "beneficiary": B,
                                                    "amount": 2_000}, "l-2")
        r = await control.post("/control/topups", json={"msisdn": B, "amount": 7_000,
                                                        "reference": "l-rc"})
        assert r.status_code == 200
        topup = await post(client, "/v1/topups", {"msisdn": B, "amount": 7_000,
                                                  "reference": "l-rc"}, "l-3")
        assert {sale["state"], gift["state"], topup["state"]} == {"completed"}
        after = {m: (await sim_stats(control, m))["per_msisdn"]["balance"] for m in (A, B)}

        tb = await (await get(client, "/v1/admin/ledger/trial-balance")).get_json()
        assert tb["total_debits"] == tb["total_credits"] > 0
        assert tb["currency"]
        by = {a["account"]: a for a in tb["accounts"]}
        for m in (A, B):  # a subscriber's account: credits - debits = what its balance moved
            assert -by[f"subscriber:{m}"]["balance"] == after[m] - before[m]
        assert by[f"revenue:bono:{BONO}"]["balance"] == -sale["price"]
        assert by["revenue:fees"]["balance"] == -gift["fee"]
        assert by["recharges:platform"]["balance"] == 7_000
        assert by["clearing:in_flight"]["balance"] == 0
        assert all(a["balance"] == a["debits"] - a["credits"] for a in tb["accounts"])

        page = await (await get(client, f"/v1/admin/ledger/entries?transaction_id={sale['id']}")
                      ).get_json()
        assert [(e["movement"], e["account"], e["debit"], e["credit"])
                for e in page["entries"]] == [
            ("debit", "clearing:in_flight", 0, sale["price"]),
            ("debit", f"subscriber:{A}", sale["price"], 0),
            ("revenue", "clearing:in_flight", sale["price"], 0),
            ("revenue", f"revenue:bono:{BONO}", 0, sale["price"])]
        assert page["next"] is None
        assert {e["transaction_id"] for e in page["entries"]} == {sale["id"]}

        of_b = await (await get(client, f"/v1/admin/ledger/entries?account=subscriber:{B}"
                                "&limit=1")).get_json()
        assert len(of_b["entries"]) == 1 and of_b["next"]
        rest = await (await get(client, of_b["next"])).get_json()
        assert [e["movement"] for e in of_b["entries"] + rest["entries"]] == ["credit", "topup"]
        assert rest["next"] is None

        r = await get(client, "/v1/admin/ledger/entries?format=csv")
        assert r.headers["Content-Type"].startswith("text/csv")
        lines = (await r.get_data(as_text=True)).split("\r\n")
        assert lines[0] == "id,at,transaction_id,movement,account,debit,credit,memo"
        assert lines[-1] == ""
        everything = await (await get(client, "/v1/admin/ledger/entries?limit=1000")).get_json()
        assert len(lines) - 2 == len(everything["entries"])
        assert lines[1].split(",")[0] == str(everything["entries"][0]["id"])
        r = await get(client, "/v1/admin/ledger/trial-balance", Accept="text/csv")
        table = (await r.get_data(as_text=True)).split("\r\n")
        assert table[0] == "account,debits,credits,balance"
        assert f"revenue:fees,0,{gift['fee']},{-gift['fee']}" in table


async def test_bad_input_names_the_field_and_an_empty_period_is_empty(
        client: Any, app: Any) -> None:
    with trio.fail_after(60):
        counts = await table_counts(app.runtime.store.bridge)
        cases = [
            ("/v1/admin/ledger/entries?account=bank:1", "account", "INVALID_ACCOUNT"),
            ("/v1/admin/ledger/entries?account=subscriber:12", "account", "INVALID_ACCOUNT"),
            ("/v1/admin/ledger/trial-balance?from=2026-02-01&to=2026-01-01", "to",
             "INVALID_PERIOD"),
            ("/v1/admin/ledger/trial-balance?from=2020-01-01&to=2026-01-01", "from",
             "PERIOD_TOO_LONG"),
            ("/v1/admin/ledger/entries?from=yesterday", "from", "INVALID_TIME"),
            ("/v1/admin/ledger/entries?to=2026-13-01", "to", "INVALID_TIME"),
            ("/v1/admin/ledger/entries?format=xml", "format", "INVALID_FORMAT"),
            ("/v1/admin/ledger/entries?transaction_id=nope", "transaction_id",
             "INVALID_TRANSACTION_ID"),
            ("/v1/admin/ledger/entries?after=-1", "after", "INVALID_AFTER"),
            ("/v1/admin/ledger/entries?limit=0", "limit", "INVALID_LIMIT"),
            ("/v1/admin/ledger/closes/2026-02-30", "day", "INVALID_DAY"),
        ]
        for path, field, code in cases:
            r = await get(client, path, 422)
            problem = await r.get_json()
            assert (problem["field"], problem["code"]) == (field, code), path
            assert r.headers["Content-Type"] == "application/problem+json"
        empty = "from=2001-01-01&to=2001-01-02"
        tb = await (await get(client, f"/v1/admin/ledger/trial-balance?{empty}")).get_json()
        assert (tb["accounts"], tb["total_debits"], tb["total_credits"]) == ([], 0, 0)
        assert tb["from"] == "2001-01-01T03:00:00+00:00"  # the day's start in the timezone
        page = await (await get(client, f"/v1/admin/ledger/entries?{empty}"
                                "&account=revenue:fees")).get_json()
        assert page == {"entries": [], "next": None}
        r = await get(client, f"/v1/admin/ledger/entries?{empty}&format=csv")
        assert await r.get_data(as_text=True) == (
            "id,at,transaction_id,movement,account,debit,credit,memo\r\n")
        for body, field, code in (({}, "day", "MISSING_FIELD"),
                                  ({"day": "31/01/2026"}, "day", "INVALID_DAY"),
                                  ({"day": "2026-01-01", "x": 1}, "x", "UNKNOWN_FIELD")):
            r = await client.post("/v1/admin/ledger/closes", json=body, headers=ADMIN)
            assert r.status_code == 422, body
            assert ((await r.get_json())["field"], (await r.get_json())["code"]) == (field, code)
        assert await table_counts(app.runtime.store.bridge) == counts


async def test_closing_a_day_over_the_api(client: Any, app: Any) -> None:
    """A past day closes once (201, audited); again: 200, the check; today: 409 DAY_NOT_OVER;
    a day never closed: 404."""
    with trio.fail_after(60):
        day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
        r = await client.post("/v1/admin/ledger/closes", json={"day": day}, headers=ADMIN)
        assert r.status_code == 201, await r.get_data()
        close = await r.get_json()
        assert r.headers["Location"] == f"/v1/admin/ledger/closes/{day}"
        assert (close["day"], close["created"], close["matches"], close["entries"]) == (
            day, True, True, 0)
        r = await client.post("/v1/admin/ledger/closes", json={"day": day}, headers=ADMIN)
        assert r.status_code == 200
        assert (await r.get_json())["created"] is False
        got = await (await get(client, f"/v1/admin/ledger/closes/{day}")).get_json()
        assert (got["closed_at"], got["matches"]) == (close["closed_at"], True)
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        r = await client.post("/v1/admin/ledger/closes", json={"day": tomorrow}, headers=ADMIN)
        assert r.status_code == 409
        assert ((await r.get_json())["code"], (await r.get_json())["field"]) == (
            "DAY_NOT_OVER", "day")
        await get(client, "/v1/admin/ledger/closes/2001-01-01", 404)
        audit = await (await get(client, "/v1/admin/audit?action=ledger.close")).get_json()
        assert [e["subject"] for e in audit["entries"]] == [f"ledger/{day}"]


async def test_reconciliation_compares_the_ledger_per_movement_and_per_day(
        client: Any, control: httpx.AsyncClient, app: Any) -> None:
    """Movements of every kind: the ledger agrees with the export (per day too); an entry
    posted by hand on a subscriber's account is a difference of that movement and that day."""
    import uuid

    from gestor.reconcile import run_reconciliation

    with trio.fail_after(90):
        since = datetime.now(UTC) - timedelta(minutes=1)
        sale = await post(client, "/v1/purchases", {"msisdn": A, "bono_id": BONO}, "r-1")
        await post(client, "/v1/transfers", {"msisdn": A, "beneficiary": B, "amount": 3_000},
                   "r-2")
        r = await control.post("/control/topups", json={"msisdn": B, "amount": 9_000,
                                                        "reference": "r-rc"})
        assert r.status_code == 200
        await post(client, "/v1/topups", {"msisdn": B, "amount": 9_000, "reference": "r-rc"},
                   "r-3")
        until = datetime.now(UTC) + timedelta(minutes=1)
        report = await run_reconciliation(app.runtime.store, app.runtime.platforms, since,
                                          until, strict=True, timezone="UTC")
        assert report.ok and report.ledger is not None, report
        assert report.ledger.differences == ()
        [day] = report.ledger.days
        assert (day.movements, day.difference) == (3, 0)
        assert day.ledger == -sale["price"] - 3_150 + 3_000 + 9_000

        async def tamper(conn: Any) -> None:  # a posting no movement explains
            await conn.execute(
                "INSERT INTO ledger_entries (at, transaction_id, movement, account, credit)"
                " VALUES (now(), $1, 'correction', $2, 500)", uuid.UUID(sale["id"]),
                f"subscriber:{A}")

        await app.runtime.store.bridge.run(tamper)
        off = await run_reconciliation(app.runtime.store, app.runtime.platforms, since, until,
                                       strict=True, timezone="UTC")
        assert not off.ok and off.ledger is not None
        assert [(d.transaction_id, d.msisdn, d.ledger, d.charging_system)
                for d in off.ledger.differences] == [
            (sale["id"], A, -sale["price"] + 500, -sale["price"])]
        assert off.ledger.days[0].difference == 500
        shown = off.as_dict()["ledger"]
        assert (shown["ok"], shown["days"][0]["difference"]) == (False, 500)
        r = await get(client, "/v1/admin/reconciliation", 409)
        assert (await r.get_json())["ledger"]["differences"][0]["transaction_id"] == sale["id"]
