"""The recoverer resumes any step of any movement after a crash (DESIGN D4, D10), asking the
platforms by each step's idempotency key: money checked at the simulator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import trio

from gestor.api import GestorApp
from gestor.model import HistoryEntry, NewTransaction, Transition, TxKind, TxState
from gestor.purchase import Recoverer, step_id
from tests.integration.conftest import set_faults, sim_stats

A, B = "5491100000021", "5491100000022"


@pytest.fixture
def platform_settings() -> dict[str, Any]:
    # Failures injected here must not open the charging system's circuit for the refunds.
    return {"timeout": 1.0, "failure_threshold": 1000}


def recoverer(app: GestorApp) -> Recoverer:
    return Recoverer(app.runtime.purchases.deps, stale_after=0.0)


async def orphan(app: GestorApp, kind: TxKind, amount: int, beneficiary: str | None = None,
                 **charged: Any) -> NewTransaction:
    """A movement accepted by a worker that then died; with `charged`, after it recorded
    some of its steps done."""
    now = datetime.now(UTC)
    new = NewTransaction(uuid.uuid4(), A, "", "app", "public", uuid.uuid4().hex, "h", now,
                         kind=kind, beneficiary=beneficiary, amount=amount)
    await app.runtime.store.accept(new, app.runtime.purchases.deps.snapshot_request(A))
    if charged:
        assert await app.runtime.store.transition(Transition(
            new.id, TxState.RECEIVED, TxState.CHARGED, now, (HistoryEntry(TxState.CHARGED,
                                                                          now),),
            currency="ARS", **charged))
    return new


async def balances(control: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    return ((await sim_stats(control, A))["per_msisdn"],
            (await sim_stats(control, B))["per_msisdn"])


async def test_a_transfer_cut_after_its_debit_is_credited_by_recovery(
        control: httpx.AsyncClient, app: GestorApp) -> None:
    with trio.fail_after(30):
        new = await orphan(app, TxKind.TRANSFER, 10_000, B, price=10_500, fee=500,
                           operation="transfer", steps=("debit:refund", "credit"), step=1)
        a0, b0 = await balances(control)
        r = await control.post("/ocs/debits", json={"id": str(new.id), "msisdn": A,
                                                    "amount": 10_500})
        assert r.status_code == 200
        assert await recoverer(app).run_pass() == 1
        tx = await app.runtime.store.get(new.id)
        assert tx is not None and tx.state is TxState.COMPLETED and tx.step == 2
        a1, b1 = await balances(control)
        assert a1["balance"] == a0["balance"] - 10_500
        assert (b1["balance"], b1["credits"]) == (b0["balance"] + 10_000, b0["credits"] + 1)
        assert await recoverer(app).run_pass() == 0  # settled: nothing left, nothing twice
        assert (await balances(control))[1]["credits"] == b0["credits"] + 1


async def test_a_transfer_cut_before_anything_was_recorded_is_undone(
        control: httpx.AsyncClient, app: GestorApp) -> None:
    """Its debit happened but nothing says what came next: refunded, never guessed forward."""
    with trio.fail_after(30):
        new = await orphan(app, TxKind.TRANSFER, 2_000, B)
        a0, b0 = await balances(control)
        r = await control.post("/ocs/debits", json={"id": str(new.id), "msisdn": A,
                                                    "amount": 2_100})
        assert r.status_code == 200
        assert await recoverer(app).run_pass() == 1
        tx = await app.runtime.store.get(new.id)
        assert tx is not None and tx.state is TxState.REFUNDED
        a1, b1 = await balances(control)
        assert a1["balance"] == a0["balance"] and a1["refunds"] == a0["refunds"] + 1
        assert b1["credits"] == b0["credits"]


async def test_an_advance_cut_after_its_credit_is_undone_and_one_never_made_fails(
        control: httpx.AsyncClient, app: GestorApp) -> None:
    with trio.fail_after(30):
        credited = await orphan(app, TxKind.ADVANCE, 30_000)
        a0, _ = await balances(control)
        r = await control.post("/ocs/credits", json={
            "id": step_id(credited.id, "advance"), "msisdn": A, "amount": 30_000})
        assert r.status_code == 200, r.text
        assert await recoverer(app).run_pass() == 1
        tx = await app.runtime.store.get(credited.id)
        assert tx is not None and tx.state is TxState.REFUNDED  # reversed: nothing owed
        a1, _ = await balances(control)
        assert a1["balance"] == a0["balance"]  # credited, then debited back
        never = await orphan(app, TxKind.ADVANCE, 30_000)
        assert await recoverer(app).run_pass() == 1
        tx = await app.runtime.store.get(never.id)
        assert tx is not None and tx.state is TxState.FAILED


async def test_a_transfer_whose_refund_fails_is_settled_by_recovery(
        client: Any, control: httpx.AsyncClient, app: GestorApp) -> None:
    """Credit refused and refund failing: `inconsistent`, then `refunded` by the recoverer
    once the charging system takes refunds again."""
    with trio.fail_after(60):
        a0, _ = await balances(control)
        await set_faults(control, {"ocs.credit": {"error_rate": 1.0},
                                   "ocs.refund": {"error_rate": 1.0}})
        r = await client.post("/v1/transfers", json={"msisdn": A, "beneficiary": B,
                                                     "amount": 4_000},
                              headers={"Idempotency-Key": "t-inc", "Prefer": "wait=20"})
        tx = await r.get_json()
        assert tx["state"] == "inconsistent", tx
        await set_faults(control, {"ocs.credit": {"error_rate": 0.0},
                                   "ocs.refund": {"error_rate": 0.0}})
        assert await recoverer(app).run_pass() == 1
        done = await app.runtime.store.get(uuid.UUID(tx["id"]))
        assert done is not None and done.state is TxState.REFUNDED
        a1, _ = await balances(control)
        assert a1["balance"] == a0["balance"]
