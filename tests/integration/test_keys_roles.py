"""Operator keys with roles, over real HTTP: every admin route (enumerated from the app's URL
map, so none is left without a role) refuses the roles below its own (403 naming the role), a
channel key (403) and no key (401), and lets its role through; the alarm feed needs viewer;
the operator's name comes from the key, never from `X-Operator`. No raw key reaches a log or a
response; and the watch that says so does see a key that is logged."""

from __future__ import annotations

import logging
import re

import httpx
import trio

from gestor.api._auth import ROUTE_CALLS, ROUTE_ROLES, WEBSOCKET_ROLES
from gestor.keys import ROLE_RANK
from gestor.model import NewAlarm, Severity
from gestor.store import KeyStore
from tests.integration._keys import (
    ADMIN_KEY,
    Leaks,
    Served,
    _Capture,
    bearer,
    eventually,
    mint,
)
from tests.integration._served import raw_exchange

ROLES = ("viewer", "operator", "admin")
_PARAMS = {"raw_msisdn": "5491100000001", "code": "NO_DATA_BONOS", "raw_id": "987654",
           "raw": "1", "key_id": "0123456789ab", "tx_id": "0" * 32, "raw_day": "2001-01-01"}



def routes(served: Served) -> list[tuple[str, str, bool]]:
    """(method, rule, websocket) of every route of the app (HEAD/OPTIONS left out)."""
    found = []
    for rule in served.app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule, bool(rule.websocket)))
    return found


def concrete(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: _PARAMS[m.group(1)], rule)


async def test_every_route_declares_who_may_call_it(gestor: Served) -> None:
    """An admin route needs a role, a channel route is a call (its scope), a websocket a
    role: a route added without saying so fails here."""
    undeclared = []
    for method, rule, is_websocket in routes(gestor):
        if is_websocket:
            known = rule in WEBSOCKET_ROLES
        elif rule.startswith("/v1/admin/"):
            known = (method, rule) in ROUTE_ROLES
        elif rule.startswith("/v1/"):
            known = (method, rule) in ROUTE_CALLS
        else:
            known = (rule in ("/healthz", "/readyz", "/openapi.json", "/docs", "/console")
                     or rule.startswith(("/static", "/docs/", "/console/static/"))
                     or (method, rule) in ROUTE_ROLES)
        if not known:
            undeclared.append((method, rule))
    assert undeclared == []
    assert any(rule.startswith("/v1/admin/") for _, rule, _ in routes(gestor))


async def test_every_admin_route_refuses_the_roles_below_its_own(
    gestor: Served, leaks: Leaks
) -> None:
    keys = KeyStore(gestor.app.runtime.store.bridge)
    with trio.fail_after(120):
        raw = {role: (await mint(keys, f"op-{role}", leaks=leaks, role=role))[1]
               for role in ROLES}
        _, channel = await mint(keys, "gw", leaks=leaks)
        admin_routes = [(m, r) for m, r, ws in routes(gestor)
                        if not ws and r.startswith("/v1/admin/")]
        assert len(admin_routes) >= 18
        async with httpx.AsyncClient(base_url=gestor.url, timeout=60) as http:
            for method, rule in admin_routes:
                needed = ROUTE_ROLES[(method, rule)]
                path = concrete(rule)

                async def call(headers: dict[str, str], method: str = method,
                               path: str = path) -> httpx.Response:
                    body = None if method in ("GET", "DELETE") else {}
                    return await http.request(method, path, json=body, headers=headers)

                r = await call({})
                assert r.status_code == 401, (method, rule)
                r = await call(bearer(channel))
                assert r.status_code == 403, (method, rule)
                assert (r.json()["code"], r.json()["role"]) == ("FORBIDDEN_ROLE", needed)
                for role in ROLES:
                    r = await call(bearer(raw[role]))
                    if ROLE_RANK[role] < ROLE_RANK[needed]:
                        assert r.status_code == 403, (method, rule, role)
                        assert r.json()["role"] == needed
                    else:  # let through: whatever the route answers, not 401/403
                        assert r.status_code not in (401, 403), (method, rule, role, r.text)
                        if method == "GET" and "<" not in rule:
                            assert r.status_code in (200, 409), (method, rule, r.text)


async def test_role_boundaries_of_changes(gestor: Served, leaks: Leaks) -> None:
    """Allowed → 2xx, one role below → 403, for restrictions (operator) and rules (admin)."""
    keys = KeyStore(gestor.app.runtime.store.bridge)
    with trio.fail_after(90):
        _, viewer = await mint(keys, "vera", leaks=leaks, role="viewer")
        _, operator = await mint(keys, "otto", leaks=leaks, role="operator")
        _, admin = await mint(keys, "ada", leaks=leaks, role="admin")
        restriction = "/v1/admin/mobiles/5491100000001/restrictions/NO_DATA_BONOS"
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            r = await http.get("/v1/admin/mobiles/5491100000001/restrictions",
                               headers=bearer(viewer))
            assert r.status_code == 200
            r = await http.put(restriction, json={"reason": "x"}, headers=bearer(viewer))
            assert (r.status_code, r.json()["role"]) == (403, "operator")
            r = await http.put(restriction, json={"reason": "x"}, headers=bearer(operator))
            assert r.status_code == 200
            r = await http.delete(restriction, headers=bearer(viewer))
            assert r.status_code == 403
            r = await http.delete(restriction, headers=bearer(operator))
            assert r.status_code == 204
            current = (await http.get("/v1/admin/rules/1", headers=bearer(viewer))).json()
            r = await http.post("/v1/admin/rules", json={"source": current["source"]},
                                headers=bearer(operator))
            assert (r.status_code, r.json()["role"]) == (403, "admin")
            r = await http.post("/v1/admin/rules", json={"source": current["source"]},
                                headers={**bearer(admin), "X-Operator": "mallory"})
            assert r.status_code == 201 and r.json()["created_by"] == "ada"
            r = await http.post("/v1/admin/rules/2/activate", headers=bearer(operator))
            assert r.status_code == 403
            r = await http.post("/v1/admin/rules/2/activate", headers=bearer(admin))
            assert r.status_code == 200 and r.json()["activated_by"] == "ada"


async def test_the_operator_is_named_by_the_key_not_a_header(
    gestor: Served, leaks: Leaks
) -> None:
    keys = KeyStore(gestor.app.runtime.store.bridge)
    hub = gestor.app.runtime.alarms
    with trio.fail_after(60):
        _, alice = await mint(keys, "alice", leaks=leaks, role="operator")
        _, viewer = await mint(keys, "vera", leaks=leaks, role="viewer")
        down = await hub.raise_alarm(NewAlarm("platform_down", Severity.CRITICAL, "prov",
                                              details={"platform": "prov"}))
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            path = f"/v1/admin/alarms/{down.id}/resolve"
            r = await http.post(path, json={}, headers={**bearer(viewer), "X-Operator": "alice"})
            assert (r.status_code, r.json()["role"]) == (403, "operator")
            r = await http.post(path, json={"note": "restarted"},
                                headers={**bearer(alice), "X-Operator": "mallory"})
            assert r.status_code == 200
            assert r.json()["details"]["by"] == "alice"
            assert "mallory" not in r.text


def handshake(query: str = "", token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"GET /v1/alarms{query} HTTP/1.1\r\nHost: x\r\n{auth}"
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()


async def test_the_alarm_feed_needs_a_viewer_once_keys_exist(
    gestor: Served, leaks: Leaks
) -> None:
    keys = KeyStore(gestor.app.runtime.store.bridge)
    host, _, port = gestor.url.removeprefix("http://").rpartition(":")
    with trio.fail_after(60):
        answer = await raw_exchange(host, int(port), handshake(), upgrade=True)
        assert answer.status == 101  # open: loopback, no channel key
        _, channel = await mint(keys, "gw", leaks=leaks)
        _, viewer = await mint(keys, "vera", leaks=leaks, role="viewer")
        answer = await eventually(
            lambda: raw_exchange(host, int(port), handshake(), upgrade=True),
            lambda a: a.status != 101, within=1)
        assert answer.status == 401
        answer = await raw_exchange(host, int(port), handshake(token=channel), upgrade=True)
        assert answer.status == 403
        assert httpx.Response(403, content=answer.body).json()["role"] == "viewer"
        answer = await raw_exchange(host, int(port), handshake(token=viewer), upgrade=True)
        assert answer.status == 101
        answer = await raw_exchange(host, int(port), handshake(token=ADMIN_KEY), upgrade=True)
        assert answer.status == 101


def test_the_leak_watch_sees_a_key_that_is_logged() -> None:
    """The watch itself: a key in a log record's message or arguments is found."""
    found = Leaks()
    raw = found.add_secret("gk_0123456789ab_" + "A" * 43)
    logger = logging.getLogger("gestor.test.leak")
    handler = _Capture(found.logs)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("nothing here")
        assert found.found() == []
        logger.debug("token %s", raw[-43:])
        found.record("a body naming " + raw)
        assert len(found.found()) >= 2
    finally:
        logger.removeHandler(handler)


async def test_admins_manage_keys_over_the_admin_api(gestor: Served, leaks: Leaks) -> None:
    keys = KeyStore(gestor.app.runtime.store.bridge)
    with trio.fail_after(60):
        admin_id, admin = await mint(keys, "ada", leaks=leaks, role="admin")
        _, operator = await mint(keys, "otto", leaks=leaks, role="operator")
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            wanted = {"name": "web-shop", "channels": ["web"], "calls": ["list", "purchase"],
                      "msisdn_prefixes": ["54911"]}
            r = await http.post("/v1/admin/keys", json=wanted, headers=bearer(operator))
            assert (r.status_code, r.json()["role"]) == (403, "admin")
            r = await http.post("/v1/admin/keys", json={**wanted, "channels": ["fax"]},
                                headers=bearer(admin))
            assert r.status_code == 422 and r.json()["field"] == "channels"
            r = await http.post("/v1/admin/keys", json=wanted, headers=bearer(admin))
            assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
            created = r.json()
            raw = leaks.add_secret(created["key"])
            assert (created["read"], created["status"], created["created_by"]) == (
                "own", "active", "ada")
            bonos = "/v1/mobiles/5491100000001/bonos?channel=web"
            assert (await http.get(bonos, headers=bearer(raw))).status_code == 200
            r = await http.post("/v1/admin/keys", json=wanted, headers=bearer(admin))
            assert r.status_code == 409 and r.json()["code"] == "KEY_NAME_IN_USE"
            r = await http.get("/v1/admin/keys", headers=bearer(admin))
            assert "web-shop" in {k["name"] for k in r.json()["keys"]}
            assert raw[-43:] not in r.text
            r = await http.post(f"/v1/admin/keys/{created['id']}/rotate", json={"grace": 3600},
                                headers=bearer(admin))
            assert r.status_code == 201
            rotated = leaks.add_secret(r.json()["key"])
            assert r.json()["replaces"]["id"] == created["id"]
            for token in (raw, rotated):
                assert (await http.get(bonos, headers=bearer(token))).status_code == 200
            r = await http.post(f"/v1/admin/keys/{created['id']}/revoke", headers=bearer(admin))
            assert r.status_code == 200 and r.json()["status"] == "revoked"
            r = await eventually(lambda: http.get(bonos, headers=bearer(raw)),
                                 lambda r: r.status_code != 200, within=1)
            assert r.json()["code"] == "KEY_REVOKED"
            r = await http.post(f"/v1/admin/keys/{created['id']}/revoke", headers=bearer(admin))
            assert r.status_code == 409
            r = await http.post("/v1/admin/keys/nothex/revoke", headers=bearer(admin))
            assert r.status_code == 400

        async def trail(conn: object) -> list[tuple[str, str, str]]:
            rows = await conn.fetch(  # type: ignore[attr-defined]
                "SELECT actor_id, actor, action FROM audit WHERE actor_id <> 'test' ORDER BY id")
            return [(r["actor_id"], r["actor"], r["action"]) for r in rows]

        assert await keys.bridge.run(trail, transaction=False) == [
            (admin_id, "ada", "keys.create"), (admin_id, "ada", "keys.create"),
            (admin_id, "ada", "keys.rotate"), (admin_id, "ada", "keys.revoke")]
