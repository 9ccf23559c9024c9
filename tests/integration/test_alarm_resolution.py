"""Every critical alarm is followed by a `resolved` alarm naming it once its cause settles, and
`GET /v1/admin/alarms?state=open` lists it until then. Faults come from the simulator's knobs
over HTTP; the alarms are read from the live websocket feed and the admin API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import trio

from gestor.api import GestorApp
from gestor.model import HistoryEntry, NewAlarm, Severity, Transition, TxState
from tests.integration.conftest import ADMIN_KEY, set_faults
from tests.integration.test_api import buy
from tests.integration.test_faults import orphan, recoverer

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def platform_settings() -> dict[str, Any]:
    # Short timeouts, no transport retries, a breaker that opens after 3 failures.
    return {"timeout": 0.5, "retries": 0, "failure_threshold": 3, "reset_timeout": 1.0}


async def next_alarm(ws: Any, kind: str, **match: Any) -> dict[str, Any]:
    """The next alarm of `kind` on the feed whose fields (or details) match `match`."""
    while True:
        alarm: dict[str, Any] = json.loads(await ws.receive())
        if alarm["kind"] == kind and all(
            alarm.get(k, alarm["details"].get(k)) == v for k, v in match.items()
        ):
            return alarm


async def open_ids(client: Any) -> list[int]:
    r = await client.get("/v1/admin/alarms?state=open", headers=ADMIN)
    assert r.status_code == 200
    return [a["id"] for a in (await r.get_json())["alarms"]]


async def assert_resolved(client: Any, alarm: dict[str, Any], resolved: dict[str, Any]) -> None:
    assert alarm["id"] in resolved["details"]["resolves"]
    assert alarm["kind"] in resolved["details"]["resolves_kinds"]
    assert resolved["severity"] == "info" and resolved["id"] > alarm["id"]
    assert alarm["id"] not in await open_ids(client)
    r = await client.get(f"/v1/admin/alarms?state=resolved&kind={alarm['kind']}", headers=ADMIN)
    listed = {a["id"]: a for a in (await r.get_json())["alarms"]}
    assert listed[alarm["id"]]["resolved_by"] == resolved["id"]


async def test_charge_unknown_is_resolved_when_the_recoverer_settles_the_purchase(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(60):
        async with client.websocket("/v1/alarms") as ws:
            # The debit is taken but answers late, and the charging system can't be asked.
            await set_faults(control, {"ocs.debit": {"late_rate": 1.0, "hang_ms": 2000},
                                       "ocs.lookup_debit": {"error_rate": 1.0}})
            tx = await (await buy(client, msisdn="5491100000071")).get_json()
            alarm = await next_alarm(ws, "charge_unknown", transaction_id=tx["id"])
            assert alarm["severity"] == "critical"
            assert alarm["id"] in await open_ids(client)

            await set_faults(control, {"ocs.debit": {"late_rate": 0.0},
                                       "ocs.lookup_debit": {"error_rate": 0.0}})
            assert await recoverer(app).run_pass() == 1
            resolved = await next_alarm(ws, "resolved", transaction_id=tx["id"])
        settled = await app.runtime.store.get(uuid.UUID(tx["id"]))
        assert settled is not None and settled.state is TxState.COMPLETED
        await assert_resolved(client, alarm, resolved)


async def test_provision_unknown_is_resolved_when_the_purchase_completes(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(60):
        async with client.websocket("/v1/alarms") as ws:
            await set_faults(control, {"prov.provision": {"late_rate": 1.0, "hang_ms": 2000},
                                       "prov.lookup_bundle": {"error_rate": 1.0}})
            tx = await (await buy(client, msisdn="5491100000072", wait=10)).get_json()
            assert tx["state"] == "charged"
            alarm = await next_alarm(ws, "provision_unknown", transaction_id=tx["id"])
            # Recovery passes while provisioning still can't be asked raise no second alarm.
            assert await recoverer(app).run_pass() == 1
            assert [a.id for a in await app.runtime.store.list_alarms(
                state="open", kinds=["provision_unknown"])] == [alarm["id"]]
            assert alarm["id"] in await open_ids(client)

            await set_faults(control, {"prov.provision": {"late_rate": 0.0},
                                       "prov.lookup_bundle": {"error_rate": 0.0}})
            assert await recoverer(app).run_pass() == 1
            resolved = await next_alarm(ws, "resolved", transaction_id=tx["id"])
        assert resolved["details"]["state"] == "completed"
        await assert_resolved(client, alarm, resolved)


async def test_refund_failed_is_resolved_when_the_refund_goes_through(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(60):
        async with client.websocket("/v1/alarms") as ws:
            await set_faults(control, {"prov": {"error_rate": 1.0},
                                       "ocs.refund": {"error_rate": 1.0}})
            tx = await (await buy(client, msisdn="5491100000073", wait=10)).get_json()
            assert tx["state"] == "inconsistent"
            alarm = await next_alarm(ws, "refund_failed", transaction_id=tx["id"])
            # Still failing: still open.
            assert await recoverer(app).run_pass() == 1
            assert alarm["id"] in await open_ids(client)

            await set_faults(control, {"ocs.refund": {"error_rate": 0.0}})
            assert await recoverer(app).run_pass() == 1
            resolved = await next_alarm(ws, "resolved", transaction_id=tx["id"])
        assert resolved["details"] == {"state": "refunded", "resolves": [alarm["id"]],
                                       "resolves_kinds": ["refund_failed"]}
        await assert_resolved(client, alarm, resolved)


async def test_stuck_is_raised_once_and_resolved_when_the_purchase_settles(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(60):
        async with client.websocket("/v1/alarms") as ws:
            new = await orphan(app, "5491100000074")
            await set_faults(control, {"ocs": {"outage": True}})
            await recoverer(app, stuck_after=0.0).run_pass()
            alarm = await next_alarm(ws, "stuck", transaction_id=str(new.id))
            # Another worker (or this one after a restart) raises no second one.
            await recoverer(app, stuck_after=0.0).run_pass()
            assert [a.id for a in await app.runtime.store.list_alarms(
                state="open", kinds=["stuck"])] == [alarm["id"]]

            await set_faults(control, {"ocs": {"outage": False}})
            assert await recoverer(app).run_pass() == 1
            resolved = await next_alarm(ws, "resolved", transaction_id=str(new.id))
        assert resolved["details"]["state"] == "failed"  # nothing was charged
        await assert_resolved(client, alarm, resolved)


async def test_platform_down_is_resolved_when_its_circuit_closes(
    client: Any, control: httpx.AsyncClient, app: GestorApp
) -> None:
    with trio.fail_after(60):
        async with client.websocket("/v1/alarms") as ws:
            await set_faults(control, {"dwh": {"outage": True}})
            for i in range(3):
                tx = await (await buy(client, msisdn=f"549110000008{i}", wait=5)).get_json()
                assert tx["state"] == "failed"
            alarm = await next_alarm(ws, "platform_down", platform="dwh")
            assert alarm["id"] in await open_ids(client)

            await set_faults(control, {"dwh": {"outage": False}})
            await trio.sleep(1.1)  # the breaker's reset_timeout: time, not synchronisation
            tx = await (await buy(client, msisdn="5491100000089", wait=5)).get_json()
            assert tx["state"] == "completed"
            await next_alarm(ws, "platform_recovered", platform="dwh")
            resolved = await next_alarm(ws, "resolved", platform="dwh")
        await assert_resolved(client, alarm, resolved)


async def test_alarms_of_a_purchase_settled_elsewhere_are_resolved_by_the_next_pass(
    client: Any, app: GestorApp
) -> None:
    """Another worker settled the purchase (or the one that did died before resolving): the
    recoverer's pass finds the open alarm of a settled purchase and resolves it."""
    hub = app.runtime.alarms
    with trio.fail_after(60):
        a = await orphan(app, "5491100000075", TxState.CHARGED, price=20000)
        b = await orphan(app, "5491100000076", TxState.CHARGED, price=20000)
        alarms = {}
        for new in (a, b):
            alarms[new.id] = await hub.raise_alarm(NewAlarm(
                "provision_unknown", Severity.CRITICAL, "?", msisdn=new.msisdn,
                transaction_id=new.id))
        now = datetime.now(UTC)
        assert await app.runtime.store.transition(Transition(
            a.id, TxState.CHARGED, TxState.COMPLETED, now,
            (HistoryEntry(TxState.COMPLETED, now),)))
        assert await hub.resolve_settled() == 1
        assert await open_ids(client) == [alarms[b.id].id]  # b is still charged
        resolved = [x for x in await app.runtime.store.list_alarms(kinds=["resolved"])]
        assert len(resolved) == 1 and resolved[0].transaction_id == a.id
        assert resolved[0].details["resolves"] == [alarms[a.id].id]
        assert await hub.resolve_settled() == 0  # once


async def test_the_resolve_api_for_a_system_wide_alarm(client: Any, app: GestorApp) -> None:
    """What the database supervisor uses: `database_down` has no key."""
    hub = app.runtime.alarms
    with trio.fail_after(30):
        down = await hub.raise_alarm(
            NewAlarm("database_down", Severity.CRITICAL, "the database does not answer"))
        assert down.state == "open" and down.subject == ""
        assert await open_ids(client) == [down.id]
        resolved = await hub.resolve("database_down", None, "the database answers again")
        assert resolved is not None and resolved.details["resolves"] == [down.id]
        assert await open_ids(client) == []
        assert await hub.resolve("database_down", None, "again") is None
        assert hub.statistics().resolved == 1
