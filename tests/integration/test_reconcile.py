"""Reconciliation: `run_reconciliation` against a real PostgreSQL and the simulator's ledger
over HTTP (the matcher alone is in tests/unit/test_reconcile.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio

from gestor.api import GestorApp
from gestor.model import HistoryEntry, Transaction, Transition, TxState
from gestor.reconcile import (
    MismatchKind,
    ReconciliationReport,
    render_text,
    run_reconciliation,
)
from tests.integration.conftest import set_faults
from tests.unit.test_reconcile import kinds

# -- against PostgreSQL and the simulator ---------------------------------------------------------


@pytest.fixture
def platform_settings() -> dict[str, Any]:
    """Room for a slow provisioning to keep a purchase in flight without timing out."""
    return {"timeout": 5.0}


async def buy(client: Any, msisdn: str, wait: float = 10) -> dict[str, Any]:
    response = await client.post(
        "/v1/purchases", json={"msisdn": msisdn, "bono_id": "DATA_2GB_7D"},
        headers={"Idempotency-Key": uuid.uuid4().hex, "Prefer": f"wait={wait}"})
    body: dict[str, Any] = await response.get_json()
    assert response.status_code == 200, body
    return body


async def run(app: GestorApp, since: datetime | None = None, until: datetime | None = None,
              **kw: Any) -> ReconciliationReport:
    now = datetime.now(UTC)
    return await run_reconciliation(
        app.runtime.store, app.runtime.platforms, since or now - timedelta(hours=1),
        until or now + timedelta(seconds=1), **kw)


async def bought(app: GestorApp, client: Any, control: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Two completed purchases and a refunded one."""
    done = [await buy(client, "5491100000041"), await buy(client, "5491100000042")]
    await set_faults(control, {"prov": {"error_rate": 1.0}})
    try:
        done.append(await buy(client, "5491100000043"))
    finally:
        await set_faults(control, {"prov": None})
    assert [t["state"] for t in done] == ["completed", "completed", "refunded"]
    return done


async def stored(app: GestorApp, tx_id: str) -> Transaction:
    found = await app.runtime.store.get(uuid.UUID(tx_id))
    assert found is not None
    return found


async def move(app: GestorApp, tx_id: str, expect: TxState, state: TxState) -> None:
    now = datetime.now(UTC)
    ok = await app.runtime.store.transition(
        Transition(uuid.UUID(tx_id), expect, state, now, (HistoryEntry(state, now, "test"),)))
    assert ok


async def test_purchases_reconcile_clean(
    app: GestorApp, client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(40):
        done = await bought(app, client, control)
        report = await run(app)
        assert report.ok, render_text(report)
        t = report.totals
        assert (t.transactions, t.debits, t.refunds) == (3, 3, 1)
        assert t.net == t.completed == done[0]["price"] + done[1]["price"]
        assert t.refunded == done[2]["price"]
        # The ledger export itself: the simulator's movements, oldest first, bounded.
        ledger = await app.runtime.platforms.ledger()
        assert [e.kind for e in ledger] == ["debit", "debit", "debit", "refund"]
        assert ledger[-1].debit_id == done[2]["id"] == ledger[-1].transaction_id
        assert ledger[0].id == done[0]["id"] and ledger[0].amount == done[0]["price"]
        after = datetime.fromtimestamp(ledger[-1].ts, UTC) + timedelta(microseconds=1)
        assert await app.runtime.platforms.ledger(since=after) == []
        assert len(await app.runtime.platforms.ledger(until=after)) == 4
        with pytest.raises(ValueError):
            await app.runtime.platforms.ledger(since=datetime.now())  # naive


async def test_a_debit_gestor_does_not_know_is_charged_not_recorded(
    app: GestorApp, client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(40):
        await bought(app, client, control)
        stranger = str(uuid.uuid4())
        r = await control.post("/ocs/debits", json={"id": stranger, "msisdn": "5491100000044",
                                                   "amount": 1234})
        assert r.status_code == 200, r.text
        report = await run(app)
        assert not report.ok
        [m] = report.mismatches
        assert (m.kind, m.transaction_id, m.state, m.debited) == (
            MismatchKind.CHARGED_NOT_RECORDED, stranger, None, 1234)
        assert m.msisdn == "5491100000044"


async def test_states_changed_behind_gestors_back_are_caught(
    app: GestorApp, client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(40):
        done = await bought(app, client, control)
        await move(app, done[0]["id"], TxState.COMPLETED, TxState.FAILED)
        await move(app, done[1]["id"], TxState.COMPLETED, TxState.REFUNDED)
        await move(app, done[2]["id"], TxState.REFUNDED, TxState.COMPLETED)
        report = await run(app)
        assert kinds(report) == [
            (MismatchKind.CHARGED_NOT_RECORDED, done[0]["id"]),
            (MismatchKind.REFUNDED_BUT_COMPLETED, done[2]["id"]),
            (MismatchKind.REFUND_MISSING, done[1]["id"]),
        ]
        assert not report.totals.balanced


async def test_in_flight_purchases_are_unsettled_not_mismatches(
    app: GestorApp, client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(40):
        await set_faults(control, {"prov": {"latency_ms": 3000}})
        response = await client.post(
            "/v1/purchases", json={"msisdn": "5491100000045", "bono_id": "DATA_2GB_7D"},
            headers={"Idempotency-Key": "in-flight"})
        tx_id = (await response.get_json())["id"]
        for _ in range(100):  # until it is charged and provisioning is slow
            if (await stored(app, tx_id)).state is TxState.CHARGED:
                break
            await trio.sleep(0.05)
        report = await run(app)
        assert report.ok and [u.transaction_id for u in report.unsettled] == [tx_id]
        assert report.unsettled[0].state is TxState.CHARGED and report.totals.balanced
        assert not (await run(app, strict=True)).ok
        await set_faults(control, {"prov": None})
        done = await client.get(f"/v1/transactions/{tx_id}", headers={"Prefer": "wait=10"})
        assert (await done.get_json())["state"] == "completed"
        report = await run(app)
        assert report.ok and report.unsettled == ()


async def test_movements_belong_to_their_transactions_period(
    app: GestorApp, client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(40):
        first = await buy(client, "5491100000046")
        created = (await stored(app, first["id"])).created_at
        ledger = await app.runtime.platforms.ledger()
        assert ledger[0].ts > created.timestamp()
        # A period starting just after the purchase was created holds its debit but not the
        # transaction: that debit belongs to the transaction's own period, not to this one.
        later = await run(app, since=created + timedelta(microseconds=1))
        assert later.ok and later.totals.transactions == 0 and later.totals.debits == 0
        # A period ending just before its debit, read with no grace: the debit is confirmed
        # by a lookup instead of being reported missing.
        report = await run(app, since=created, until=created + timedelta(microseconds=1),
                           grace=timedelta(0))
        assert report.ok, render_text(report)
        assert report.totals.transactions == 1 and report.totals.debited == first["price"]
        # Debits only in the grace margins, of no known transaction, belong to their own period.
        stranger = str(uuid.uuid4())
        r = await control.post("/ocs/debits", json={"id": stranger, "msisdn": "5491100000046",
                                                   "amount": 99})
        assert r.status_code == 200, r.text
        report = await run(app, since=created, until=created + timedelta(microseconds=1))
        assert report.ok, render_text(report)
        assert kinds(await run(app)) == [(MismatchKind.CHARGED_NOT_RECORDED, stranger)]


async def test_a_refund_outside_the_ledger_window_is_confirmed_by_lookup(
    app: GestorApp, client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(40):
        done = await bought(app, client, control)
        at = (await stored(app, done[2]["id"])).created_at
        report = await run(app, since=at, until=at + timedelta(microseconds=1),
                           grace=timedelta(0))
        assert report.ok, render_text(report)
        assert (report.totals.debits, report.totals.refunds) == (1, 1)


async def test_admin_reconciliation_endpoint(
    app: GestorApp, client: Any, control: httpx.AsyncClient
) -> None:
    from tests.integration.conftest import ADMIN_KEY

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with trio.fail_after(30):
        assert (await client.get("/v1/admin/reconciliation")).status_code == 401
        await buy(client, "5491100000061")
        r = await client.get("/v1/admin/reconciliation", headers=admin)
        assert r.status_code == 200
        body = await r.get_json()
        assert body["ok"] is True and body["mismatches"] == []
        stranger = str(uuid.uuid4())
        await control.post("/ocs/debits",
                           json={"id": stranger, "msisdn": "5491100000062", "amount": 100})
        r = await client.get("/v1/admin/reconciliation", headers=admin)
        assert r.status_code == 409
        assert (await r.get_json())["mismatches"][0]["kind"] == "charged_not_recorded"
        r = await client.get("/v1/admin/reconciliation?since=yesterday", headers=admin)
        assert r.status_code == 422 and (await r.get_json())["field"] == "since"
