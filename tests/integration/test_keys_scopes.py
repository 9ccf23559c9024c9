"""Channel keys with scopes, over real HTTP on a real database: each scope boundary (allowed →
2xx, outside → 403 naming the missing scope), reads of one's own transactions only unless
granted, the admin key no longer a channel key, bootstrap keys, revoked/expired/wrong keys, and
the open mode of loopback without channel keys. No raw key reaches a log or a response."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import trio

from gestor.keys import new_key
from gestor.simulator import SimulatorHandle
from gestor.store import KeyStore, NewKey, table_counts
from tests.integration._keys import (
    ADMIN_KEY,
    TEST_ACTOR,
    Leaks,
    Served,
    bearer,
    eventually,
    mint,
    served_app,
    settings_for,
)

IN_RANGE = "5491100000001"
OUT_OF_RANGE = "5491200000001"
BONO = "DATA_2GB_7D"
ADMIN = bearer(ADMIN_KEY)



def keys_of(served: Served) -> KeyStore:
    return KeyStore(served.app.runtime.store.bridge)


async def buy(http: httpx.AsyncClient, headers: dict[str, str], msisdn: str = IN_RANGE,
              **body: Any) -> httpx.Response:
    return await http.post("/v1/purchases", json={"msisdn": msisdn, "bono_id": BONO, **body},
                           headers={**headers, "Idempotency-Key": uuid.uuid4().hex,
                                    "Prefer": "wait=10"})


def forbidden(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["code"], problem["scope"]) == ("FORBIDDEN_SCOPE", scope)
    assert scope in problem["detail"]


async def test_each_channel_scope_boundary(gestor: Served, leaks: Leaks) -> None:
    keys = keys_of(gestor)
    with trio.fail_after(90):
        _, ussd = await mint(keys, "ussd-gw", leaks=leaks, channels=("ussd",),
                             calls=("list", "purchase", "status"), prefixes=("54911000000",))
        _, catalog = await mint(keys, "catalog", leaks=leaks, calls=("list",))
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            before = await table_counts(gestor.app.runtime.store.bridge)
            bonos = f"/v1/mobiles/{IN_RANGE}/bonos"
            # channel:
            r = await http.get(f"{bonos}?channel=ussd", headers=bearer(ussd))
            assert r.status_code == 200 and r.json()["bonos"]
            forbidden(await http.get(f"{bonos}?channel=web", headers=bearer(ussd)),
                      "channel:web")
            forbidden(await buy(http, bearer(ussd), channel="web"), "channel:web")
            # msisdn:
            forbidden(await http.get(f"/v1/mobiles/{OUT_OF_RANGE}/bonos?channel=ussd",
                                     headers=bearer(ussd)), f"msisdn:{OUT_OF_RANGE}")
            forbidden(await buy(http, bearer(ussd), OUT_OF_RANGE, channel="ussd"),
                      f"msisdn:{OUT_OF_RANGE}")
            forbidden(await http.get(f"/v1/mobiles/{OUT_OF_RANGE}/transactions",
                                     headers=bearer(ussd)), f"msisdn:{OUT_OF_RANGE}")
            # call:
            r = await http.get(f"{bonos}?channel=web", headers=bearer(catalog))
            assert r.status_code == 200
            forbidden(await buy(http, bearer(catalog), channel="web"), "call:purchase")
            forbidden(await http.get(f"/v1/transactions/{uuid.uuid4()}",
                                     headers=bearer(catalog)), "call:status")
            forbidden(await http.get(f"/v1/mobiles/{IN_RANGE}/transactions",
                                     headers=bearer(catalog)), "call:status")
            # Nothing refused was written.
            assert await table_counts(gestor.app.runtime.store.bridge) == before
            # Within its scopes: a key limited to one channel buys on it by default.
            r = await buy(http, bearer(ussd))
            assert r.status_code == 200, r.text
            tx = r.json()
            assert (tx["channel"], tx["state"]) == ("ussd", "completed")
            stored = await gestor.app.runtime.store.get(uuid.UUID(tx["id"]))
            assert stored is not None and stored.client == "ussd-gw"  # the key's name
            r = await http.get(f"/v1/transactions/{tx['id']}", headers=bearer(ussd))
            assert r.status_code == 200 and r.json()["id"] == tx["id"]


async def test_a_key_reads_its_own_transactions_unless_granted_all(
    gestor: Served, leaks: Leaks
) -> None:
    keys = keys_of(gestor)
    with trio.fail_after(90):
        _, a = await mint(keys, "app-a", leaks=leaks)
        _, b = await mint(keys, "app-b", leaks=leaks)
        _, auditor = await mint(keys, "auditor", leaks=leaks, calls=("status",), read_all=True)
        _, viewer = await mint(keys, "vera", leaks=leaks, role="viewer")
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            r = await buy(http, bearer(a), channel="app")
            assert r.status_code == 200, r.text
            mine = r.json()["id"]
            r = await http.get(f"/v1/transactions/{mine}", headers=bearer(a))
            assert r.status_code == 200
            forbidden(await http.get(f"/v1/transactions/{mine}", headers=bearer(b)), "read:all")
            for reader in (auditor, viewer, ADMIN_KEY):  # granted, and operator keys
                r = await http.get(f"/v1/transactions/{mine}", headers=bearer(reader))
                assert r.status_code == 200 and r.json()["id"] == mine
            listing = f"/v1/mobiles/{IN_RANGE}/transactions"
            r = await http.get(listing, headers=bearer(b))  # only its own: none
            assert r.status_code == 200
            assert (r.json()["client"], r.json()["transactions"]) == ("app-b", [])
            r = await http.get(listing, headers=bearer(a))
            assert [t["id"] for t in r.json()["transactions"]] == [mine]
            r = await http.get(listing, headers=bearer(auditor))
            assert "client" not in r.json()
            assert [t["id"] for t in r.json()["transactions"]] == [mine]
            # Operator keys, the bootstrap admin key included, are not channel keys.
            forbidden(await buy(http, bearer(viewer), channel="app"), "call:purchase")
            forbidden(await buy(http, ADMIN, channel="app"), "call:purchase")


async def test_wrong_revoked_and_expired_keys_are_refused(gestor: Served, leaks: Leaks) -> None:
    keys = keys_of(gestor)
    with trio.fail_after(60):
        key_id, raw = await mint(keys, "gw", leaks=leaks)
        _, other = await mint(keys, "gw2", leaks=leaks)
        expired_id, expired, hashed = new_key()
        leaks.add_secret(expired)
        await keys.create(NewKey(expired_id, "old-gw", "channel", hashed, channels=("*",),
                                 calls=("*",),
                                 expires_at=datetime.now(UTC) - timedelta(seconds=1)),
                          TEST_ACTOR)
        path = f"/v1/mobiles/{IN_RANGE}/bonos"
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            assert (await http.get(path, headers=bearer(raw))).status_code == 200
            # Right id, wrong secret (another key's): says nothing about the key.
            forged = raw[:16] + other[16:]
            for token in (forged, "gk_nothing", "x" * 40):
                r = await http.get(path, headers=bearer(token))
                assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
            r = await http.get(path, headers=bearer(expired))
            assert r.status_code == 401 and r.json()["code"] == "KEY_EXPIRED"
            outcome = await keys.revoke(key_id, TEST_ACTOR)
            assert outcome is not None and outcome[1]
            r = await eventually(  # NOTIFY drops the cached copy at once
                lambda: http.get(path, headers=bearer(raw)), lambda r: r.status_code != 200,
                within=1)
            assert r.status_code == 401 and r.json()["code"] == "KEY_REVOKED"
            r = await http.get(path, headers=bearer(forged))  # still not told to a forger
            assert r.json()["code"] == "UNAUTHORIZED"


async def test_bootstrap_channel_keys_have_every_scope(
    database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
    leaks: Leaks,
) -> None:
    env_key = "legacy-gateway-key-0123456789"
    settings = settings_for(config_dir, tmp_path, api_keys={"legacy": env_key})
    with trio.fail_after(90):
        async with served_app(settings, database_url, simulator.url, leaks) as served, \
                httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            r = await buy(http, bearer(env_key), channel="web")
            assert r.status_code == 200, r.text
            stored = await served.app.runtime.store.get(uuid.UUID(r.json()["id"]))
            assert stored is not None and stored.client == "legacy"
            r = await http.get(f"/v1/mobiles/{IN_RANGE}/bonos")  # keys configured: no key, 401
            assert r.status_code == 401
            r = await http.get("/v1/admin/statistics", headers=bearer(env_key))
            assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN_ROLE"


async def test_open_on_loopback_only_while_no_channel_key_exists(
    gestor: Served, leaks: Leaks
) -> None:
    keys = keys_of(gestor)
    bonos = f"/v1/mobiles/{IN_RANGE}/bonos"
    with trio.fail_after(90):
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            assert (await http.get(bonos)).status_code == 200
            r = await buy(http, {"X-Client-Id": "dev"}, channel="app")
            assert r.status_code == 200, r.text
            tx = r.json()["id"]
            assert (await http.get(f"/v1/transactions/{tx}")).status_code == 200
            stored = await gestor.app.runtime.store.get(uuid.UUID(tx))
            assert stored is not None and stored.client == "dev"
            # Admin calls always need an operator key.
            assert (await http.get("/v1/admin/statistics")).status_code == 401
            # The first channel key closes the open mode in this worker at once.
            key_id, raw = await mint(keys, "first", leaks=leaks)
            r = await eventually(lambda: http.get(bonos), lambda r: r.status_code != 200,
                                 within=1)
            assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
            assert (await http.get(f"/v1/transactions/{tx}")).status_code == 401
            assert (await http.get(bonos, headers=bearer(raw))).status_code == 200
            # Revoked, there is none again: open again (on loopback).
            await keys.revoke(key_id, TEST_ACTOR)
            await eventually(lambda: http.get(bonos), lambda r: r.status_code == 200,
                             within=1)


async def test_never_open_off_loopback(
    database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
    leaks: Leaks,
) -> None:
    """Bound elsewhere (here as settings say; the start-up check refuses it without keys, and
    keys revoked later leave it closed, not open)."""
    settings = settings_for(config_dir, tmp_path, bind="0.0.0.0:8080")
    with trio.fail_after(60):
        async with served_app(settings, database_url, simulator.url, leaks) as served, \
                httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            for path in (f"/v1/mobiles/{IN_RANGE}/bonos", f"/v1/transactions/{uuid.uuid4()}"):
                r = await http.get(path)
                assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
            r = await buy(http, {}, channel="app")
            assert r.status_code == 401
            assert (await table_counts(served.app.runtime.store.bridge))["transactions"] == 0
