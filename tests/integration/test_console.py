"""What the console stands on, over real HTTP and websockets (the page itself is driven in a
browser by tests/e2e/test_console_browser.py): the page and its files served from the package
without a key, nothing loaded from elsewhere; the alarm feed taking a browser's key as a
subprotocol (never echoed, never logged); `/v1/admin/rates` counting a purchase once;
`/v1/admin/me`; and alarms listed newest first (`before`), as the console pages back."""

from __future__ import annotations

import base64
import re
import uuid
from importlib import resources
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from gestor.api._console import ASSETS
from gestor.model import NewAlarm, Severity
from gestor.store import KeyStore
from tests.integration._keys import ADMIN_KEY, Leaks, Served, bearer, mint
from tests.integration._served import ADMIN as SERVED_ADMIN
from tests.integration._served import Served as SocketServed
from tests.integration._served import served

__all__ = ["served"]  # the fixture, imported for pytest

PROBLEM = "application/problem+json"


def key_protocol(raw: str) -> str:
    return "gestor.key." + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


async def test_the_page_and_its_files_are_served_without_a_key(
        gestor: Served, leaks: Leaks) -> None:
    keys = KeyStore(gestor.app.runtime.store.bridge)
    with trio.fail_after(60):
        await mint(keys, "shop", leaks=leaks)  # a channel key: the server is no longer open
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            assert (await http.get("/v1/admin/rates")).status_code == 401
            page = await http.get("/console")
            assert page.status_code == 200
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            csp = page.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "connect-src 'self'" in csp
            # Everything it loads is this server's: no CDN, it works offline.
            linked = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
            assert linked and all(u.startswith("/console/static/") for u in linked), linked
            assert {u.removeprefix("/console/static/") for u in linked} <= set(ASSETS)
            for name, media in ASSETS.items():
                shipped = (resources.files("gestor.api") / "console" / name).read_bytes()
                answer = await http.get(f"/console/static/{name}")
                assert answer.status_code == 200, name
                assert answer.headers["content-type"] == media
                assert answer.content == shipped
            missing = await http.get("/console/static/secrets.txt")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == PROBLEM
            assert missing.json()["field"] == "asset"


async def test_a_browser_offers_its_key_as_a_websocket_subprotocol(
        gestor: Served, leaks: Leaks) -> None:
    """The key rides in `Sec-WebSocket-Protocol` (browsers cannot set headers on a websocket,
    and a URL is logged); the server picks `gestor.v1`, never echoing the key."""
    keys = KeyStore(gestor.app.runtime.store.bridge)
    ws_url = gestor.url.replace("http://", "ws://") + "/v1/alarms"
    with trio.fail_after(60):
        _, channel = await mint(keys, "shop", leaks=leaks)
        _, viewer = await mint(keys, "vera", leaks=leaks, role="viewer")
        latest = await gestor.app.runtime.store.latest_alarm_id()
        async with open_websocket_url(f"{ws_url}?since={latest}",
                                      subprotocols=["gestor.v1", key_protocol(viewer)]) as ws:
            assert ws.subprotocol == "gestor.v1"
            raised = await gestor.app.runtime.alarms.raise_alarm(
                NewAlarm("console_check", Severity.INFO, "seen by the console"))
            message = await ws.get_message()
            assert f'"id":{raised.id}' in message
        for offered, status in ((key_protocol("not-a-key"), 401), ("gestor.key.@@@", 401),
                                (key_protocol(channel), 403)):
            with pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(ws_url, subprotocols=["gestor.v1", offered]):
                    pass  # pragma: no cover - refused
            assert refused.value.status_code == status
        # Without a key, where keys are needed: refused, as before.
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(ws_url, subprotocols=["gestor.v1"]):
                pass  # pragma: no cover - refused
        assert refused.value.status_code == 401
    # (the `leaks` fixture checks that no log line or answer held the keys)


async def test_me_says_who_the_key_is(gestor: Served, leaks: Leaks) -> None:
    keys = KeyStore(gestor.app.runtime.store.bridge)
    with trio.fail_after(60):
        viewer_id, viewer = await mint(keys, "vera", leaks=leaks, role="viewer")
        _, channel = await mint(keys, "shop", leaks=leaks)
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            r = await http.get("/v1/admin/me", headers=bearer(ADMIN_KEY))
            assert r.json() == {"key_id": "admin", "name": "admin", "role": "admin"}
            r = await http.get("/v1/admin/me", headers=bearer(viewer))
            assert r.json() == {"key_id": viewer_id, "name": "vera", "role": "viewer"}
            r = await http.get("/v1/admin/me", headers=bearer(channel))
            assert (r.status_code, r.json()["code"]) == (403, "FORBIDDEN_ROLE")


async def rates(http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.get("/v1/admin/rates", headers=SERVED_ADMIN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_rates_count_a_purchase_once(served: SocketServed) -> None:
    """Counts are cumulative (the console diffs two readings): one purchase adds one completed
    purchase, one purchase request to the latency histogram, and platform calls."""
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            before = await rates(http)
            r = await http.post("/v1/purchases", headers={
                "Idempotency-Key": "rates-1", "Prefer": "wait=20"}, json={
                "msisdn": "5491100000011", "bono_id": "DATA_500MB_1D", "channel": "web"})
            assert r.json()["state"] == "completed", r.text
            after = await rates(http)
    assert [w["worker"] for w in after["workers"]] == ["0"]  # one worker: this process
    t0, t1 = before["total"], after["total"]
    assert t1["purchases"]["completed"] - t0["purchases"]["completed"] == 1
    assert {o: t1["purchases"][o] - t0["purchases"][o] for o in after["outcomes"]
            if o != "completed"} == dict.fromkeys(["rejected", "failed", "refunded",
                                                   "inconsistent"], 0)
    assert t1["accepted"] - t0["accepted"] == 1
    assert sum(t1["latency"]) - sum(t0["latency"]) == 1
    assert len(t1["latency"]) == len(after["latency_bounds"]) + 1
    assert t1["in_flight"] == 0
    for name in ("ocs", "prov"):
        platform = t1["platforms"][name]
        assert platform["circuit"] == "closed"
        assert platform["calls"] > t0["platforms"].get(name, {"calls": 0})["calls"]
        assert sum(platform["latency"]) == platform["calls"]
    worker = after["workers"][0]
    assert worker["purchases"] == t1["purchases"] and worker["latency"] == t1["latency"]


async def test_alarms_are_listed_newest_first_before_an_id(gestor: Served) -> None:
    hub = gestor.app.runtime.alarms
    with trio.fail_after(60):
        raised = [await hub.raise_alarm(NewAlarm("paging", Severity.INFO, f"alarm {i}",
                                                 transaction_id=uuid.uuid4()))
                  for i in range(5)]
        ids = [a.id for a in raised]
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30,
                                     headers=bearer(ADMIN_KEY)) as http:
            page = (await http.get("/v1/admin/alarms", params={
                "before": ids[-1] + 1, "kind": "paging", "limit": 2})).json()
            assert [a["id"] for a in page["alarms"]] == [ids[4], ids[3]]
            assert page["next"] == f"/v1/admin/alarms?kind=paging&before={ids[3]}&limit=2"
            page = (await http.get(page["next"])).json()
            assert [a["id"] for a in page["alarms"]] == [ids[2], ids[1]]
            page = (await http.get(page["next"])).json()
            assert ([a["id"] for a in page["alarms"]], page["next"]) == ([ids[0]], None)
            for params in ({"before": 5, "since": 1}, {"before": 0}, {"before": "x"}):
                r = await http.get("/v1/admin/alarms", params=params)
                assert r.status_code == 422, params
                assert (r.json()["code"], r.json()["field"]) == ("INVALID_BEFORE", "before")
