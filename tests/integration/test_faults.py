"""Each class of platform fault, end to end through the API, and the recoverer resuming what a
crash left behind. Every test asserts the final state, what the charging system saw (debits,
refunds) and the alarms raised."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import trio

from gestor.api import GestorApp
from gestor.model import Alarm, HistoryEntry, NewTransaction, Transition, TxState
from gestor.purchase import Recoverer
from tests.integration.conftest import set_faults, sim_stats
from tests.integration.test_api import MSISDN, buy


@pytest.fixture
def platform_settings() -> dict[str, Any]:
    # Short timeouts, no transport retries, a breaker that opens after 3 failures.
    return {"timeout": 0.5, "retries": 0, "failure_threshold": 3, "reset_timeout": 1.0}


async def alarms(app: GestorApp) -> list[Alarm]:
    return await app.runtime.store.alarms_after(0)


def recoverer(app: GestorApp, **kw: Any) -> Recoverer:
    """A recoverer for which everything non-terminal is already stale."""
    return Recoverer(app.runtime.purchases.deps, stale_after=0.0, **kw)


async def orphan(app: GestorApp, msisdn: str = MSISDN, state: TxState = TxState.RECEIVED,
                 price: int | None = None) -> NewTransaction:
    """A purchase accepted by a worker that then died (no saga is driving it)."""
    now = datetime.now(UTC)
    new = NewTransaction(uuid.uuid4(), msisdn, "SMS_200_30D", "ussd", "public",
                         uuid.uuid4().hex, "h", now)
    await app.runtime.store.accept(new, app.runtime.purchases.deps.snapshot_request(msisdn))
    if state is not TxState.RECEIVED:
        moved = await app.runtime.store.transition(Transition(
            new.id, TxState.RECEIVED, state, now, (HistoryEntry(state, now),), price=price,
            currency="ARS", operation="debit_and_provision"))
        assert moved
    return new


async def test_debit_succeeds_but_answers_late_is_resolved_by_lookup(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(30):
        await set_faults(control, {"ocs.debit": {"late_rate": 1.0, "hang_ms": 3000}})
        tx = await (await buy(client, wait=10)).get_json()
        assert tx["state"] == "completed"
        assert any("lookup" in (h.get("note") or "") for h in tx["history"])
        stats = await sim_stats(control)
        assert stats["debits"] == 1 and stats["refunds"] == 0 and stats["provisioned"] == 1


@pytest.mark.parametrize(
    "platform_settings",
    # a reset longer than the test: once open, the ocs circuit stays open
    [{"timeout": 1.0, "retries": 0, "failure_threshold": 3, "reset_timeout": 60.0}],
)
async def test_late_debits_open_the_circuit_but_lookups_still_settle_them(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(30):
        await set_faults(control, {"ocs.debit": {"late_rate": 1.0, "hang_ms": 3000}})
        msisdns = [f"54911000000{60 + i}" for i in range(5)]
        done: dict[str, Any] = {}

        async def purchase(msisdn: str) -> None:
            done[msisdn] = await (await buy(client, msisdn=msisdn, wait=10)).get_json()

        async with trio.open_nursery() as nursery:
            for msisdn in msisdns:
                nursery.start_soon(purchase, msisdn)
        # every debit timed out (late answers): that opened the ocs circuit ...
        assert app.runtime.platforms.statistics().ocs.circuit == "open"
        # ... and yet each purchase was settled by asking the charging system
        assert {tx["state"] for tx in done.values()} == {"completed"}
        for tx in done.values():
            assert any("lookup" in (h.get("note") or "") for h in tx["history"])
        assert "charge_unknown" not in {a.kind for a in await alarms(app)}
        stats = await sim_stats(control)
        assert stats["debits"] == 5 and stats["refunds"] == 0 and stats["provisioned"] == 5


async def test_debit_timeout_without_debit_fails_cleanly(
    client: Any, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(30):
        await set_faults(control, {"ocs.debit": {"timeout_rate": 1.0, "hang_ms": 3000}})
        tx = await (await buy(client, wait=10)).get_json()
        assert tx["state"] == "failed"
        assert tx["reasons"][0]["code"] == "CHARGE_FAILED"
        assert (await sim_stats(control))["debits"] == 0


async def test_profile_platform_down_fails_fast_opens_circuit_and_alarms(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(30):
        await set_faults(control, {"dwh": {"outage": True}})
        codes = []
        for i in range(5):
            tx = await (await buy(client, msisdn=f"54911000000{10 + i}", wait=5)).get_json()
            assert tx["state"] == "failed"
            codes.append(tx["reasons"][0]["code"])
        assert set(codes) == {"PLATFORM_UNAVAILABLE"}
        listing = await client.get(f"/v1/mobiles/{MSISDN}/bonos")
        assert listing.status_code == 503
        assert (await listing.get_json())["code"] == "PLATFORM_UNAVAILABLE"
        kinds = [(a.kind, a.details.get("platform")) for a in await alarms(app)]
        assert ("platform_down", "dwh") in kinds
        assert (await sim_stats(control))["debits"] == 0
        # The platform comes back: after the breaker's reset a purchase goes through again.
        await set_faults(control, {"dwh": {"outage": False}})
        await trio.sleep(1.1)  # the breaker's reset_timeout: time, not synchronisation
        tx = await (await buy(client, msisdn="5491100000020", wait=5)).get_json()
        assert tx["state"] == "completed"
        kinds = [(a.kind, a.details.get("platform")) for a in await alarms(app)]
        assert ("platform_recovered", "dwh") in kinds


async def test_recovery_of_an_orphan_that_was_never_charged(
    control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(30):
        new = await orphan(app)
        assert await recoverer(app).run_pass() == 1
        tx = await app.runtime.store.get(new.id)
        assert tx is not None and tx.state is TxState.FAILED
        assert tx.reasons[0].code == "INTERRUPTED"
        assert (await sim_stats(control))["debits"] == 0


async def test_recovery_finds_the_debit_and_completes(
    control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(30):
        new = await orphan(app)
        # The worker died right after the charging system took the debit.
        r = await control.post("/ocs/debits",
                               json={"id": str(new.id), "msisdn": MSISDN, "amount": 20000})
        assert r.status_code == 200, r.text
        assert await recoverer(app).run_pass() == 1
        tx = await app.runtime.store.get(new.id)
        assert tx is not None and tx.state is TxState.COMPLETED and tx.price == 20000
        stats = await sim_stats(control)
        assert stats["debits"] == 1 and stats["provisioned"] == 1 and stats["refunds"] == 0


async def test_recovery_of_charged_provisions_or_refunds(
    control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(30):
        a = await orphan(app, "5491100000041", TxState.CHARGED, price=20000)
        b = await orphan(app, "5491100000042", TxState.CHARGED, price=20000)
        for new in (a, b):
            r = await control.post("/ocs/debits", json={
                "id": str(new.id), "msisdn": new.msisdn, "amount": 20000})
            assert r.status_code == 200
        await set_faults(control, {"prov": {"error_rate": 0.0}})
        assert await recoverer(app).run_pass() == 2
        states = {(await app.runtime.store.get(n.id)).state for n in (a, b)}  # type: ignore[union-attr]
        assert states == {TxState.COMPLETED}
        c = await orphan(app, "5491100000043", TxState.CHARGED, price=20000)
        await control.post("/ocs/debits", json={"id": str(c.id), "msisdn": c.msisdn,
                                                "amount": 20000})
        await set_faults(control, {"prov": {"error_rate": 1.0}})
        assert await recoverer(app).run_pass() == 1
        tx = await app.runtime.store.get(c.id)
        assert tx is not None and tx.state is TxState.REFUNDED
        stats = await sim_stats(control)
        assert stats["debits"] == 3 and stats["refunds"] == 1 and stats["provisioned"] == 2


async def test_inconsistent_is_retried_until_refunded_and_the_alarm_resolves(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(30):
        await set_faults(control, {"prov": {"error_rate": 1.0}, "ocs.refund": {"error_rate": 1.0}})
        tx = await (await buy(client, wait=10)).get_json()
        assert tx["state"] == "inconsistent"
        # Still failing: it stays inconsistent, visible, and keeps blocking the mobile.
        assert await recoverer(app).run_pass() == 1
        stored = await app.runtime.store.get(uuid.UUID(tx["id"]))
        assert stored is not None and stored.state is TxState.INCONSISTENT
        # The charging system recovers: the next pass refunds it.
        await set_faults(control, {"ocs.refund": {"error_rate": 0.0}})
        assert await recoverer(app).run_pass() == 1
        settled = await (await client.get(f"/v1/transactions/{tx['id']}")).get_json()
        assert settled["state"] == "refunded"
        kinds = [a.kind for a in await alarms(app)]
        assert kinds.count("refund_failed") == 1 and kinds.count("resolved") == 1
        stats = await sim_stats(control)
        assert stats["debits"] == 1 and stats["refunds"] == 1
        assert stats["debited_total"] == stats["refunded_total"]
        # The mobile is no longer blocked by a pending purchase.
        again = await buy(client)
        assert again.status_code == 202


async def test_an_unsettled_purchase_raises_a_stuck_alarm(
    control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(30):
        new = await orphan(app)
        await set_faults(control, {"ocs": {"outage": True}})
        await recoverer(app, stuck_after=0.0).run_pass()
        tx = await app.runtime.store.get(new.id)
        assert tx is not None and tx.state is TxState.RECEIVED  # never guessed
        stuck = [a for a in await alarms(app) if a.kind == "stuck"]
        assert len(stuck) == 1 and stuck[0].transaction_id == new.id
        assert json.dumps(stuck[0].details)


@pytest.fixture
async def webhook_receiver(nursery: trio.Nursery) -> Any:
    """A real HTTP endpoint that records what is POSTed to it (failing the first call)."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    received: list[dict[str, Any]] = []
    arrived = trio.Event()
    calls = 0

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        nonlocal calls
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[1]  # startup / shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        calls += 1
        status = 503 if calls == 1 else 204  # the first delivery fails: it must be retried
        if status == 204:
            received.append(json.loads(body))
            arrived.set()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = Config()
    config.bind = ["127.0.0.1:0"]
    binds = await nursery.start(serve, asgi, config)
    return binds[0], received, arrived


async def test_alarms_are_posted_to_webhooks_with_retries(
    database_url: str, simulator: Any, config_dir: Any, tmp_path: Any, control: httpx.AsyncClient,
    webhook_receiver: Any,
) -> None:
    import attrs

    from gestor.api import create_app
    from gestor.settings import load_settings

    url, received, arrived = webhook_receiver
    settings = attrs.evolve(load_settings(config_dir, environ={}, data_dir=tmp_path),
                            webhooks=(url,))
    app = create_app(settings, database_url, simulator.url)
    with trio.fail_after(30):
        async with app.test_app():
            client = app.test_client()
            await set_faults(control, {"prov": {"error_rate": 1.0},
                                       "ocs.refund": {"error_rate": 1.0}})
            tx = await (await buy(client, wait=10)).get_json()
            assert tx["state"] == "inconsistent"
            await arrived.wait()
    assert len(received) == 1
    assert received[0]["kind"] == "refund_failed" and received[0]["transaction_id"] == tx["id"]


async def test_recovery_does_not_provision_what_was_already_refunded(
    control: httpx.AsyncClient, app: GestorApp
) -> None:
    """A saga refunded after a failed provisioning and died before recording it."""
    from gestor.purchase import refund_id

    with trio.fail_after(30):
        new = await orphan(app, "5491100000044", TxState.CHARGED, price=20000)
        r = await control.post("/ocs/debits", json={
            "id": str(new.id), "msisdn": new.msisdn, "amount": 20000})
        assert r.status_code == 200
        r = await control.post("/ocs/refunds", json={
            "id": refund_id(new.id), "debit_id": str(new.id), "msisdn": new.msisdn,
            "amount": 20000})
        assert r.status_code == 200, r.text
        assert await recoverer(app).run_pass() == 1
        tx = await app.runtime.store.get(new.id)
        assert tx is not None and tx.state is TxState.REFUNDED
        stats = await sim_stats(control)
        assert stats["provisioned"] == 0 and stats["refunds"] == 1


async def test_an_unknown_provisioning_outcome_is_never_guessed(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    """Provisioning answers too late and provisioning can't be asked: neither refunding (the
    bundle may be given) nor completing is safe, so the purchase stays `charged`, a critical
    alarm goes out, and the recoverer settles it once provisioning answers again."""
    with trio.fail_after(30):
        await set_faults(control, {"prov.provision": {"late_rate": 1.0, "hang_ms": 2000},
                                   "prov.lookup_bundle": {"error_rate": 1.0}})
        response = await buy(client, msisdn="5491100000061", wait=10)
        tx = await response.get_json()
        assert response.status_code == 202 and tx["state"] == "charged", tx
        assert "provision_unknown" in {a.kind for a in await alarms(app)}
        stats = await sim_stats(control)
        assert stats["debits"] == 1 and stats["refunds"] == 0

        await set_faults(control, {"prov.provision": {"late_rate": 0.0},
                                   "prov.lookup_bundle": {"error_rate": 0.0}})
        assert await recoverer(app).run_pass() == 1
        settled = await app.runtime.store.get(uuid.UUID(tx["id"]))
        assert settled is not None and settled.state is TxState.COMPLETED
        stats = await sim_stats(control)
        assert stats["debits"] == 1 and stats["refunds"] == 0 and stats["provisioned"] == 1
