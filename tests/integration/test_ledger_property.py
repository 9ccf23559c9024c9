"""Property: whatever sequence of movements runs, under whatever platform faults, once it has
all settled the ledger balances (trial balance zero, nothing left in clearing or owed back),
each subscriber's account equals what the simulator's balance of that line moved, and the
ledger says what `transactions` says (revenue per bono, fees, advances receivable, top-ups).

A seeded random loop (several seeds, bounded): purchases (some for another mobile; now and then
every mobile at once, so that several movements share the writer's statements),
transfers, advances and top-ups (the recharge platform's `/control/topups`, then Gestor's
`/v1/topups`), each under a random fault of the simulator (debits refused, provisioning
failing, credits failing, refunds failing too: `inconsistent`), the recoverer settling the
inconsistent ones now and then and at the end."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio

from gestor.api import GestorApp
from gestor.purchase import Recoverer
from tests.integration.conftest import ADMIN_KEY, NO_LIMITS, set_faults, sim_stats

MOBILES = [f"54911000000{n}" for n in range(51, 57)]
SHORT = MOBILES[:2]  # prepaid lines short of balance: advances, refused debits
BONOS = ["DATA_500MB_1D", "SMS_200_30D", "VOICE_100MIN_7D", "DATA_2GB_7D"]
FAULTS: list[dict[str, Any]] = [
    {},
    {},
    {"ocs.debit": {"error_rate": 1.0}},  # refused: failed, nothing moved
    {"prov.provision": {"error_rate": 1.0}},  # refunded
    {"prov.provision": {"error_rate": 1.0}, "ocs.refund": {"error_rate": 1.0}},  # inconsistent
    {"ocs.credit": {"error_rate": 1.0}},  # a transfer refunded, an advance failed
    {"ocs.credit": {"error_rate": 1.0}, "ocs.refund": {"error_rate": 1.0}},  # inconsistent
]
FINAL = frozenset({"completed", "rejected", "failed", "refunded", "inconsistent"})
CLEAR = {"ocs.debit": None, "prov.provision": None, "ocs.refund": None, "ocs.credit": None}


@pytest.fixture
def platform_settings() -> dict[str, Any]:
    # Injected failures must not open a circuit: each operation meets the fault it was dealt.
    return {"timeout": 1.0, "failure_threshold": 100_000}


@pytest.fixture
def limit_settings() -> Any:
    return NO_LIMITS


async def balance(control: httpx.AsyncClient, msisdn: str) -> int:
    found: int = (await sim_stats(control, msisdn))["per_msisdn"]["balance"]
    return found


async def settle(app: GestorApp) -> None:
    """Every inconsistent movement refunded (the faults cleared by then)."""
    recoverer = Recoverer(app.runtime.purchases.deps, stale_after=0.0)
    for _ in range(5):
        await recoverer.run_pass()
        left = await app.runtime.store.bridge.run(
            lambda conn: conn.fetchval("SELECT count(*) FROM transactions WHERE state NOT IN"
                                       " ('completed', 'rejected', 'failed', 'refunded')"),
            transaction=False)
        if not left:
            return
    raise AssertionError(f"{left} movements never settled")


async def run_sequence(seed: int, client: Any, control: httpx.AsyncClient, app: GestorApp,
                       steps: int) -> dict[str, int]:
    """Random movements under random faults; returns how many ended in each state."""
    rng = random.Random(seed)
    unrecorded: list[dict[str, Any]] = []  # top-ups the platform made, Gestor not told yet
    outcomes: dict[str, int] = defaultdict(int)

    async def call(path: str, body: dict[str, Any], key: str) -> dict[str, Any] | None:
        r = await client.post(path, json=body,
                              headers={"Idempotency-Key": key, "Prefer": "wait=20"})
        if r.status_code == 409:  # a mobile it touches is in flight (an inconsistent one)
            return None
        assert r.status_code in (200, 202), (path, body, await r.get_data())
        tx: dict[str, Any] = await r.get_json()
        if tx["state"] not in FINAL:  # still running: wait for it
            r = await client.get(f"/v1/transactions/{tx['id']}", headers={"Prefer": "wait=20"})
            tx = await r.get_json()
            assert tx["state"] in FINAL, tx
        outcomes[tx["state"]] += 1
        outcomes[f"{tx['kind']}:{tx['state']}"] += 1
        return tx

    for n in range(steps):
        await set_faults(control, {**CLEAR, **rng.choice(FAULTS)})
        payer = rng.choice(MOBILES)
        other = rng.choice([m for m in MOBILES if m != payer])
        kind = rng.choice(["purchase", "purchase", "gift", "transfer", "advance", "topup"])
        key = f"p{seed}-{n}"
        if kind in ("purchase", "gift"):
            body = {"msisdn": payer, "bono_id": rng.choice(BONOS)}
            if kind == "gift":
                body["beneficiary"] = other
            await call("/v1/purchases", body, key)
        elif kind == "transfer":
            await call("/v1/transfers", {"msisdn": payer, "beneficiary": other,
                                         "amount": rng.randrange(1_000, 40_000, 100)}, key)
        elif kind == "advance":
            await call("/v1/advances", {"msisdn": rng.choice(SHORT),
                                        "amount": rng.randrange(30_000, 100_001, 1_000)}, key)
        else:
            topup = {"msisdn": rng.choice(MOBILES), "amount": rng.randrange(5_000, 80_000, 500),
                     "reference": f"rc-{key}"}
            r = await control.post("/control/topups", json=topup)
            assert r.status_code == 200, r.text
            unrecorded.append(topup)
        if unrecorded and rng.random() < 0.7:  # the platform's notice, maybe late
            topup = unrecorded[0]
            if await call("/v1/topups", topup, topup["reference"]) is not None:
                unrecorded.pop(0)
        if n % 15 == 14:  # a burst: every mobile at once, batched into shared statements
            async with trio.open_nursery() as nursery:
                for m in MOBILES:
                    nursery.start_soon(call, "/v1/purchases",
                                       {"msisdn": m, "bono_id": rng.choice(BONOS)},
                                       f"{key}-{m}")
        if rng.random() < 0.15:
            await set_faults(control, CLEAR)
            await settle(app)
    await set_faults(control, CLEAR)
    await settle(app)
    for topup in unrecorded:
        assert await call("/v1/topups", topup, topup["reference"]) is not None
    return dict(outcomes)


async def ledger_balances(client: Any) -> dict[str, int]:
    """Every account's balance (the trial balance of the last two days: all of this test's)."""
    since = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    r = await client.get("/v1/admin/ledger/trial-balance", query_string={"from": since},
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200, await r.get_data()
    tb = await r.get_json()
    assert tb["total_debits"] == tb["total_credits"]
    return {a["account"]: a["balance"] for a in tb["accounts"] if a["balance"]}


async def what_transactions_say(app: GestorApp) -> dict[str, int]:
    """The non-subscriber balances `transactions` implies, computed without the ledger."""
    rows = await app.runtime.store.bridge.run(
        lambda conn: conn.fetch("SELECT kind, state, bono_id, price, amount, fee, owed,"
                                " collected FROM transactions"), transaction=False)
    out: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["kind"] == "topup":
            out["recharges:platform"] += r["amount"]
        if r["state"] != "completed":
            continue
        if r["kind"] == "purchase" and r["price"]:
            out[f"revenue:bono:{r['bono_id']}"] -= r["price"]
        elif r["kind"] == "transfer":
            out["revenue:fees"] -= r["fee"]
        elif r["kind"] == "advance":
            out["revenue:fees"] -= r["owed"] - r["amount"]
            out["advances:receivable"] += r["owed"]
        elif r["kind"] == "topup" and r["collected"]:
            out["advances:receivable"] -= r["collected"]
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
async def test_the_ledger_agrees_with_the_simulator_and_the_transactions(
        seed: int, client: Any, control: httpx.AsyncClient, app: GestorApp) -> None:
    with trio.fail_after(120):
        for msisdn in SHORT:
            r = await control.put(f"/control/accounts/{msisdn}", json={"balance": 20_000})
            assert r.status_code == 200
        initial = {m: await balance(control, m) for m in MOBILES}
        outcomes = await run_sequence(seed, client, control, app, steps=60)
        assert outcomes.get("completed", 0) >= 5, outcomes
        assert outcomes.get("refunded", 0) + outcomes.get("inconsistent", 0) >= 1, outcomes

        ledger = await ledger_balances(client)
        assert "clearing:in_flight" not in ledger and "refunds:payable" not in ledger, ledger
        for m in MOBILES:  # a subscriber's account: a liability, credits - debits = moved
            moved = await balance(control, m) - initial[m]
            assert -ledger.get(f"subscriber:{m}", 0) == moved, (m, moved, ledger)
        others = {k: v for k, v in ledger.items() if not k.startswith("subscriber:")}
        assert others == await what_transactions_say(app)
        unbalanced = await app.runtime.store.bridge.run(
            lambda conn: conn.fetch("SELECT transaction_id FROM ledger_entries"
                                    " GROUP BY transaction_id HAVING sum(debit) <> sum(credit)"),
            transaction=False)
        assert unbalanced == []
