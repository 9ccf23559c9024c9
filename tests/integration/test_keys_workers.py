"""Keys across workers: two Gestor apps (each its own store, pool, LISTEN and key cache, as two
worker processes have) on one database. A key both have cached is refused by both within a
second of its revocation; a rotated key and its replacement both work during the grace period,
in both, and the old one is refused after it. No raw key reaches a log or a response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from gestor.keys import new_key
from gestor.simulator import SimulatorHandle
from gestor.store import KeyRecord, KeyStore, NewKey, open_bridge
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

PATH = "/v1/mobiles/5491100000001/bonos?channel=ussd"



@pytest.fixture
async def workers(database_url: str, simulator: SimulatorHandle, config_dir: Path,
                  tmp_path: Path, leaks: Leaks) -> AsyncIterator[tuple[Served, Served]]:
    async with served_app(settings_for(config_dir, tmp_path / "a"), database_url,
                          simulator.url, leaks) as a, \
            served_app(settings_for(config_dir, tmp_path / "b"), database_url,
                       simulator.url, leaks) as b:
        yield a, b


@pytest.fixture
async def cli_keys(database_url: str) -> AsyncIterator[KeyStore]:
    """The keys as `gestor keys` reaches them: a connection of its own."""
    async with open_bridge(database_url, min_size=1, max_size=1) as bridge:
        yield KeyStore(bridge)


async def status(served: Served, raw: str) -> int:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        return (await http.get(PATH, headers=bearer(raw))).status_code


async def test_a_revocation_holds_in_every_worker_within_a_second(
    workers: tuple[Served, Served], cli_keys: KeyStore, leaks: Leaks
) -> None:
    with trio.fail_after(60):
        key_id, raw = await mint(cli_keys, "ussd-gw", leaks=leaks)
        for worker in workers:  # each has it cached now
            assert await status(worker, raw) == 200
            assert await status(worker, raw) == 200
            assert worker.app.keyring.statistics().hits >= 1
        outcome = await cli_keys.revoke(key_id, TEST_ACTOR)
        assert outcome is not None and outcome[1]
        revoked_at = trio.current_time()
        took = []
        for worker in workers:
            await eventually(lambda w=worker: status(w, raw), lambda s: s == 401, within=1)
            took.append(trio.current_time() - revoked_at)
        assert max(took) < 1.0
        for worker in workers:  # and stays refused
            assert await status(worker, raw) == 401
        async with httpx.AsyncClient(base_url=workers[0].url, timeout=30) as http:
            r = await http.get("/v1/admin/statistics", headers=bearer(ADMIN_KEY))
            stats = r.json()["keys"]  # counts only (the leak watch checks the body)
            assert stats["hits"] >= 1 and stats["invalidations"] >= 1


async def test_a_revocation_holds_within_a_second_even_without_its_notification(
    workers: tuple[Served, Served], cli_keys: KeyStore, leaks: Leaks
) -> None:
    """The cache's time bound alone: a revocation whose NOTIFY never came (written by a hand
    that does not notify) still takes effect within a second."""
    with trio.fail_after(60):
        key_id, raw = await mint(cli_keys, "ussd-gw", leaks=leaks)
        for worker in workers:
            assert await status(worker, raw) == 200

        async def revoke_silently(conn: object) -> None:
            await conn.execute(  # type: ignore[attr-defined]
                "UPDATE api_keys SET revoked_at = now(), revoked_by = 'test' WHERE id = $1",
                key_id)

        await cli_keys.bridge.run(revoke_silently)
        revoked_at = trio.current_time()
        for worker in workers:
            await eventually(lambda w=worker: status(w, raw), lambda s: s == 401, within=1.5)
        assert trio.current_time() - revoked_at < 1.5  # the bound (1 s) plus a request


def replacement(old: KeyRecord, raws: list[str]) -> NewKey:
    key_id, raw, hashed = new_key()
    raws.append(raw)
    return attrs.evolve(NewKey(key_id, old.name, old.kind, hashed), channels=old.channels,
                        calls=old.calls, msisdn_prefixes=old.msisdn_prefixes,
                        read_all=old.read_all)


async def test_rotation_keeps_the_old_key_for_its_grace_period_only(
    workers: tuple[Served, Served], cli_keys: KeyStore, leaks: Leaks
) -> None:
    with trio.fail_after(90):
        key_id, old = await mint(cli_keys, "ussd-gw", leaks=leaks)
        for worker in workers:
            assert await status(worker, old) == 200
        raws: list[str] = []
        rotated = await cli_keys.rotate(key_id, lambda o: replacement(o, raws),
                                        timedelta(hours=1), TEST_ACTOR)
        assert isinstance(rotated, tuple)
        previous, current = rotated
        new = leaks.add_secret(raws[-1])
        assert (current.name, current.rotated_from) == ("ussd-gw", key_id)
        assert previous.expires_at is not None
        for worker in workers:  # both keys work in both workers during the grace period
            assert await status(worker, old) == 200
            assert await status(worker, new) == 200
        # Purchases made with either key belong to the same client (the name).
        ids = set()
        async with httpx.AsyncClient(base_url=workers[0].url, timeout=30) as http:
            for raw in (old, new):
                r = await http.post(
                    "/v1/purchases", json={"msisdn": "5491100000002", "bono_id": "DATA_2GB_7D",
                                           "channel": "ussd"},
                    headers={**bearer(raw), "Idempotency-Key": "same-key", "Prefer": "wait=10"})
                assert r.status_code == 200, r.text
                ids.add(r.json()["id"])
            assert len(ids) == 1  # the retry with the new key replays the first purchase
        # A short grace: the old key works now, and is refused once it has passed.
        raws.clear()
        rotated = await cli_keys.rotate(current.id, lambda o: replacement(o, raws),
                                        timedelta(seconds=2), TEST_ACTOR)
        assert isinstance(rotated, tuple)
        began = trio.current_time()
        newest = leaks.add_secret(raws[-1])
        for worker in workers:
            assert await status(worker, new) == 200
            assert await status(worker, newest) == 200
        for worker in workers:
            r = await eventually(lambda w=worker: status(w, new), lambda s: s != 200, within=5)
            assert r == 401
        assert trio.current_time() - began >= 1.5  # not before the grace (bar clock skew)
        for worker in workers:
            assert await status(worker, newest) == 200
        # Rotating with no grace refuses the old key at once; a revoked key can't be rotated.
        raws.clear()
        rotated = await cli_keys.rotate(rotated[1].id, lambda o: replacement(o, raws),
                                        timedelta(0), TEST_ACTOR)
        assert isinstance(rotated, tuple)
        leaks.add_secret(raws[-1])
        for worker in workers:
            await eventually(lambda w=worker: status(w, newest), lambda s: s == 401, within=1)
        assert isinstance(await cli_keys.rotate(rotated[0].id, lambda o: replacement(o, raws),
                                                timedelta(0), TEST_ACTOR), KeyRecord)


async def test_key_actions_are_audited_by_id_without_secrets(
    cli_keys: KeyStore, leaks: Leaks
) -> None:
    with trio.fail_after(30):
        key_id, _ = await mint(cli_keys, "ussd-gw", leaks=leaks)
        raws: list[str] = []
        rotated = await cli_keys.rotate(key_id, lambda o: replacement(o, raws),
                                        timedelta(hours=1), TEST_ACTOR)
        assert isinstance(rotated, tuple)
        leaks.add_secret(raws[-1])
        await cli_keys.revoke(rotated[1].id, TEST_ACTOR)

        async def trail(conn: object) -> list[dict[str, object]]:
            rows = await conn.fetch(  # type: ignore[attr-defined]
                "SELECT actor_id, actor, action, subject, before::text, after::text FROM audit"
                " ORDER BY id")
            return [dict(r) for r in rows]

        rows = await cli_keys.bridge.run(trail, transaction=False)
        assert [(r["action"], r["subject"]) for r in rows] == [
            ("keys.create", f"keys/{key_id}"),
            ("keys.create", f"keys/{rotated[1].id}"),
            ("keys.rotate", f"keys/{key_id}"),
            ("keys.revoke", f"keys/{rotated[1].id}"),
        ]
        assert all((r["actor_id"], r["actor"]) == ("test", "test") for r in rows)
        assert rows[0]["after"] is not None and key_id in str(rows[0]["after"])
        leaks.record(repr(rows))  # checked for every secret and hash at the end
