"""Stores (two, as two workers would have) on a PostgreSQL of the test's own whose postmaster is
killed and started again: each store's health goes down at once, work is refused before
anything is sent, everything reconnects by itself (pool, lanes, LISTENs), and the
`database_down` / `database_recovered` pair reaches each worker's live subscribers once, the
webhooks once, and is stored once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from gestor.alarms import AlarmHub, AnnouncerLock, raise_database_alarms
from gestor.model import Alarm, NewAlarm, NewTransaction, Severity
from gestor.store import (
    Accepted,
    AcceptOutcome,
    Expired,
    HealthChange,
    SnapshotRequest,
    Store,
    Unsettled,
    open_store,
)
from tests.e2e._postgres import OwnPostgres, _as_user, _bin, own_postgres


@pytest.fixture
def server() -> Iterator[OwnPostgres]:
    with own_postgres() as pg:
        yield pg


def kill_postmaster(pg: OwnPostgres) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pg.pids()[0], signal.SIGKILL)


def start_again(pg: OwnPostgres) -> None:
    """Start the killed server again, as `own_postgres` did (its old processes may still hold
    its shared memory for a moment: try until it starts)."""
    root = pg.data_dir.parent
    options = f"-h 127.0.0.1 -p {pg.port} -k {root} -c max_connections=200 -c fsync=off"
    for _ in range(100):
        done = subprocess.run(
            [_bin("pg_ctl"), "-D", str(pg.data_dir), "-w", "-t", "30", "-o", options, "-l",
             str(root / "log"), "start"], capture_output=True, check=False, **_as_user())
        if done.returncode == 0:
            return
        time.sleep(0.2)  # a blocking helper run in a thread: it polls the server's files
    raise AssertionError("the server did not start again")


def new_purchase(msisdn: str) -> NewTransaction:
    return NewTransaction(uuid.uuid4(), msisdn, "SMS_200_30D", "api", "public",
                          uuid.uuid4().hex, "h", datetime.now(UTC))


async def accept(store: Store, new: NewTransaction) -> AcceptOutcome | Unsettled:
    now = datetime.now(UTC)
    window = SnapshotRequest(new.msisdn, now - timedelta(hours=1), now - timedelta(days=1), now)
    return await store.accept(new, window)


@contextlib.asynccontextmanager
async def worker(dsn: str, lock: Path, sunk: list[Alarm]
                 ) -> AsyncIterator[tuple[Store, AlarmHub]]:
    """What one worker runs of this: a store, an alarm hub and its database alarms."""
    async with open_store(dsn, pool_size=2) as store, trio.open_nursery() as nursery:
        hub = AlarmHub(store, sinks=[sunk.append])
        await nursery.start(hub.run)
        await nursery.start(raise_database_alarms, hub, store.health, AnnouncerLock(lock))
        yield store, hub
        nursery.cancel_scope.cancel()


async def test_two_workers_through_a_database_restart(server: OwnPostgres, tmp_path: Path
                                                      ) -> None:
    lock = tmp_path / "alarms.announcer.lock"
    sunk: list[Alarm] = []
    with trio.fail_after(120):
        async with worker(server.dsn, lock, sunk) as (store_a, hub_a), \
                worker(server.dsn, lock, sunk) as (store_b, hub_b), \
                hub_a.subscribe() as feed_a, hub_b.subscribe() as feed_b:
            feeds = [feed_a.__aiter__(), feed_b.__aiter__()]
            changes = [store_a.health.watch(), store_b.health.watch()]
            assert isinstance(await accept(store_a, new_purchase("5491100000081")), Accepted)
            notify, notified = trio.open_memory_channel[int](float("inf"))
            await store_b.listen_alarms(notify.send_nowait)

            kill_postmaster(server)
            for watch in changes:  # both notice at once (their LISTEN connections drop)
                change: HealthChange = await watch.receive()
                assert not change.up
            crossings = store_a.statistics().bridge.crossings
            # Refused before anything is sent: nothing written, as the honest answers promise.
            refused = await accept(store_a, new_purchase("5491100000082"))
            assert isinstance(refused, Expired), refused
            assert "database unreachable since " in refused.reason
            assert store_a.statistics().bridge.crossings == crossings  # nothing was sent
            live_down = [await feed.__anext__() for feed in feeds]
            assert [a.kind for a in live_down] == ["database_down"] * 2
            assert all(a.id == 0 and a.as_dict()["id"] is None for a in live_down)

            await trio.to_thread.run_sync(start_again, server)
            for watch in changes:
                assert (await watch.receive()).up
            live_back = [await feed.__anext__() for feed in feeds]
            assert [a.kind for a in live_back] == ["database_recovered"] * 2

            # Everything reconnected by itself: lanes, pool, and the LISTENs (a NOTIFY made
            # through worker A reaches worker B's listener).
            assert isinstance(await accept(store_b, new_purchase("5491100000082")), Accepted)
            assert len(await store_a.transactions_for("5491100000082")) == 1
            ours = await hub_a.raise_alarm(NewAlarm("after_restart", Severity.INFO, "test"))
            async for alarm_id in notified:  # 0: "LISTEN made again", then the NOTIFY
                if alarm_id == ours.id:
                    break

            # Stored once (one announcer), and the live feeds don't get the stored copies.
            stored = [a for a in await store_a.alarms_after(0) if a.kind.startswith("database")]
            assert [a.kind for a in stored] == ["database_down", "database_recovered"]
            assert stored[1].details["resolves"]["id"] == stored[0].id
            # The stored database_down is closed by a `resolved` naming it (the alarm
            # lifecycle): live feeds get that one, stored as usual, and ours; nothing else.
            for feed in feeds:
                kinds: list[str] = []
                while not {"resolved", "after_restart"} <= set(kinds):
                    kinds.append((await feed.__anext__()).kind)
                assert sorted(kinds) == ["after_restart", "resolved"]
            resolution = [a for a in await store_a.alarms_after(0) if a.kind == "resolved"]
            assert [a.details["resolves"] for a in resolution] == [[stored[0].id]]
            # One copy of each for the webhooks, whatever the number of workers.
            assert [a.kind for a in sunk if a.kind.startswith("database")] == [
                "database_down", "database_recovered"]

