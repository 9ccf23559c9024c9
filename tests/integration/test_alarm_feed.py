"""The alarm feed through the real websocket route on a real database: replay through a backlog
of any size, a burst behind one NOTIFY, concurrent raises; and the admin listing of alarms."""

from __future__ import annotations

import json
import uuid
from typing import Any

import trio

from gestor.api import GestorApp
from gestor.model import NewAlarm, Severity
from tests.integration.conftest import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def bulk_alarms(app: GestorApp, n: int, *, kind: str = "bulk", notify: bool = False
                      ) -> list[int]:
    """`n` alarms in one INSERT (and, with `notify`, one NOTIFY in the same transaction, as a
    burst raised elsewhere would arrive); their ids in order."""

    async def insert(conn: Any) -> list[int]:
        rows = await conn.fetch(
            "INSERT INTO alarms (kind, severity, message, details)"
            " SELECT $1, 'info', 'bulk alarm ' || i, jsonb_build_object('i', i)"
            " FROM generate_series(1, $2) AS i ORDER BY i RETURNING id", kind, n,
        )
        ids = sorted(int(r["id"]) for r in rows)
        if notify:
            await conn.execute("SELECT pg_notify('gestor_alarms', $1)", str(ids[-1]))
        return ids

    ids: list[int] = await app.runtime.store.bridge.run(insert)
    return ids


async def all_ids(app: GestorApp) -> list[int]:
    async def select(conn: Any) -> list[int]:
        return [int(r["id"]) for r in await conn.fetch("SELECT id FROM alarms ORDER BY id")]

    ids: list[int] = await app.runtime.store.bridge.run(select, transaction=False)
    return ids


async def receive_ids(ws: Any, n: int) -> list[int]:
    return [json.loads(await ws.receive())["id"] for _ in range(n)]


async def test_replay_pages_through_a_backlog_larger_than_10000_while_alarms_arrive(
    client: Any, app: GestorApp
) -> None:
    with trio.fail_after(180):
        backlog = await bulk_alarms(app, 12_345)
        async with client.websocket("/v1/alarms?since=0") as ws:
            got = await receive_ids(ws, 4_000)
            # New alarms, raised while the replay is under way, in the middle of it ...
            for i in range(30):
                await app.runtime.alarms.raise_alarm(
                    NewAlarm("during_replay", Severity.INFO, f"raised mid-replay {i}"))
            # ... and a second backlog of more than a page behind them.
            await bulk_alarms(app, 1_200, notify=True)
            expected = await all_ids(app)
            assert len(expected) == 12_345 + 30 + 1_200
            got += await receive_ids(ws, len(expected) - len(got))
        assert got[: len(backlog)] == backlog
        assert got == expected  # every one, in id order: no gap, no duplicate


async def test_a_replay_from_the_middle_starts_right_after_since(
    client: Any, app: GestorApp
) -> None:
    with trio.fail_after(60):
        ids = await bulk_alarms(app, 1_500)
        since = ids[700]
        async with client.websocket(f"/v1/alarms?since={since}") as ws:
            assert await receive_ids(ws, 799) == ids[701:]
            live = await app.runtime.alarms.raise_alarm(NewAlarm("after", Severity.INFO, "x"))
            assert await receive_ids(ws, 1) == [live.id]


async def test_a_burst_of_1500_behind_one_notify_reaches_a_live_client_completely(
    client: Any, app: GestorApp
) -> None:
    hub = app.runtime.alarms
    hub.poll_interval = 3600.0  # only the NOTIFY may wake the hub: no rescue by polling
    with trio.fail_after(60):
        async with client.websocket("/v1/alarms") as ws:
            # The client is live once it gets an alarm raised after it connected.
            probe = await hub.raise_alarm(NewAlarm("probe", Severity.INFO, "probe"))
            while json.loads(await ws.receive())["id"] != probe.id:
                pass
            burst = await bulk_alarms(app, 1_500, notify=True)
            # All of them, with no other alarm raised to wake the hub again.
            assert await receive_ids(ws, 1_500) == burst
        assert hub.statistics().last_id == burst[-1]


async def test_concurrent_raises_reach_a_live_client_each_once_in_id_order(
    client: Any, app: GestorApp
) -> None:
    hub = app.runtime.alarms
    with trio.fail_after(60):
        async with client.websocket("/v1/alarms") as ws:
            probe = await hub.raise_alarm(NewAlarm("probe", Severity.INFO, "probe"))
            while json.loads(await ws.receive())["id"] != probe.id:
                pass

            async def raiser(worker: int) -> None:
                for i in range(25):
                    await hub.raise_alarm(NewAlarm("concurrent", Severity.INFO, f"{worker}/{i}"))

            async with trio.open_nursery() as nursery:
                for worker in range(16):
                    nursery.start_soon(raiser, worker)
            got = await receive_ids(ws, 400)
        expected = [i for i in await all_ids(app) if i > probe.id]
        assert got == expected and len(set(got)) == 400


async def test_admin_lists_open_alarms_and_pages_through_them(
    client: Any, app: GestorApp
) -> None:
    hub = app.runtime.alarms
    with trio.fail_after(60):
        await bulk_alarms(app, 5)
        txs = [uuid.uuid4() for _ in range(3)]
        opened = [
            await hub.raise_alarm(NewAlarm("charge_unknown", Severity.CRITICAL, "?",
                                           msisdn="5491100000001", transaction_id=tx))
            for tx in txs
        ]
        down = await hub.raise_alarm(NewAlarm("platform_down", Severity.CRITICAL, "ocs down",
                                              details={"platform": "ocs"}))
        # Raising one already open again raises nothing new.
        again = await hub.raise_alarm(NewAlarm("platform_down", Severity.CRITICAL, "ocs down",
                                               details={"platform": "ocs"}))
        assert again.id == down.id

        r = await client.get("/v1/admin/alarms?state=open", headers=ADMIN)
        assert r.status_code == 200
        body = await r.get_json()
        assert [a["id"] for a in body["alarms"]] == [a.id for a in opened] + [down.id]
        assert {a["state"] for a in body["alarms"]} == {"open"} and body["next"] is None

        # Pages of two, following `next`, give the same list.
        seen: list[int] = []
        url: str | None = "/v1/admin/alarms?state=open&limit=2"
        while url is not None:
            page = await (await client.get(url, headers=ADMIN)).get_json()
            seen += [a["id"] for a in page["alarms"]]
            url = page["next"]
        assert seen == [a.id for a in opened] + [down.id]

        resolved = await hub.resolve("platform_down", "ocs", "ocs answers again")
        assert resolved is not None and resolved.details["resolves"] == [down.id]
        assert await hub.resolve("platform_down", "ocs", "again") is None  # resolved once
        await hub.resolve("charge_unknown", txs[0], "settled")

        body = await (await client.get("/v1/admin/alarms?state=open", headers=ADMIN)).get_json()
        assert [a["id"] for a in body["alarms"]] == [opened[1].id, opened[2].id]
        body = await (await client.get("/v1/admin/alarms?state=resolved&kind=platform_down",
                                       headers=ADMIN)).get_json()
        assert [(a["id"], a["state"], a["resolved_by"]) for a in body["alarms"]] == [
            (down.id, "resolved", resolved.id)]
        body = await (await client.get("/v1/admin/alarms?kind=bulk,resolved&limit=1000",
                                       headers=ADMIN)).get_json()
        assert [a["kind"] for a in body["alarms"]] == ["bulk"] * 5 + ["resolved"] * 2
        assert {a["state"] for a in body["alarms"][:5]} == {None}


async def test_admin_alarms_need_the_admin_key_and_valid_parameters(client: Any) -> None:
    with trio.fail_after(30):
        assert (await client.get("/v1/admin/alarms")).status_code == 401
        # alarm ids are bigint (README): the largest one is a valid `since`
        r = await client.get(f"/v1/admin/alarms?since={2**63 - 1}", headers=ADMIN)
        assert r.status_code == 200 and (await r.get_json())["alarms"] == []
        for query, field in [
            ("state=closed", "state"), ("kind=Not-A-Kind", "kind"), ("since=-1", "since"),
            ("since=%C2%B2", "since"), ("since=" + "9" * 5000, "since"), ("limit=0", "limit"),
            ("limit=1001", "limit"), ("limit=%C2%B2", "limit"), ("limit=", "limit"),
            ("since=9223372036854775808", "since"),
        ]:
            r = await client.get(f"/v1/admin/alarms?{query}", headers=ADMIN)
            assert r.status_code == 422, (query, r.status_code)
            assert r.mimetype == "application/problem+json"
            assert (await r.get_json())["field"] == field, query


async def test_a_subscriber_that_overflows_its_buffer_catches_up_from_the_database(
    app: GestorApp
) -> None:
    hub = app.runtime.alarms
    hub.subscriber_buffer = 10
    with trio.fail_after(60):
        async with hub.subscribe() as stream:
            probe = await hub.raise_alarm(NewAlarm("probe", Severity.INFO, "probe"))
            assert (await anext(stream)).id == probe.id
            # 1,500 arrive while this subscriber reads nothing: its buffer of 10 overflows.
            burst = await bulk_alarms(app, 1_500, notify=True)
            while hub.statistics().last_id < burst[-1]:
                await hub.raise_alarm(NewAlarm("nudge", Severity.INFO, "wait for the hub"))
            assert hub.statistics().catch_ups >= 1
            expected = [i for i in await all_ids(app) if i > probe.id]
            got = [(await anext(stream)).id for _ in expected]
        assert got == expected


async def test_an_operator_resolves_an_open_alarm_by_hand(client: Any, app: GestorApp) -> None:
    hub = app.runtime.alarms
    operator = {**ADMIN, "X-Operator": "alice"}
    with trio.fail_after(30):
        async with client.websocket("/v1/alarms") as ws:
            down = await hub.raise_alarm(NewAlarm("platform_down", Severity.CRITICAL, "prov",
                                                  details={"platform": "prov"}))
            event = await hub.raise_alarm(NewAlarm("platform_recovered", Severity.INFO, "x"))
            r = await client.post(f"/v1/admin/alarms/{down.id}/resolve", headers=operator,
                                  json={"note": "prov was restarted"})
            assert r.status_code == 200
            resolved = await r.get_json()
            assert resolved["kind"] == "resolved"
            assert resolved["details"]["resolves"] == [down.id]
            assert resolved["details"]["by"] == "admin"  # the key names it, not X-Operator
            assert "prov was restarted" in resolved["message"]
            # The feed carries it like any other alarm.
            feed = [json.loads(await ws.receive()) for _ in range(3)]
            assert [a["id"] for a in feed] == [down.id, event.id, resolved["id"]]
        body = await (await client.get("/v1/admin/alarms?state=open", headers=ADMIN)).get_json()
        assert body["alarms"] == []
        for alarm_id, status, code in [(down.id, 409, "ALARM_NOT_OPEN"),
                                       (event.id, 409, "ALARM_NOT_OPEN"),
                                       (10**9, 404, "ALARM_NOT_FOUND"),
                                       (2**63 - 1, 404, "ALARM_NOT_FOUND")]:
            r = await client.post(f"/v1/admin/alarms/{alarm_id}/resolve", headers=ADMIN)
            assert r.status_code == status
            assert (await r.get_json())["code"] == code
        for path, body_, status, field in [
            ("x", None, 400, "id"), ("0", None, 400, "id"), ("%C2%B2", None, 400, "id"),
            ("9" * 5000, None, 400, "id"), (str(2**63), None, 400, "id"),
            (str(down.id), {"note": 5}, 422, "note"),
            (str(down.id), {"why": "?"}, 422, "why"),
        ]:
            r = await client.post(f"/v1/admin/alarms/{path}/resolve", headers=ADMIN, json=body_)
            assert r.status_code == status, (path, body_)
            assert (await r.get_json())["field"] == field
        assert (await client.post(f"/v1/admin/alarms/{down.id}/resolve")).status_code == 401
