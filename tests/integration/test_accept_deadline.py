"""The acceptance deadline against a real PostgreSQL, and the answers it makes honest.

A stall is made with real locks held by another connection: a table lock makes the INSERT wait
before it reads the clock (a database that wakes after the deadline), an uncommitted row with
the same Idempotency-Key makes it wait after (the narrow corner: it passed the deadline check,
then commits late, so its answer must be "unknown", never "failed")."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from gestor.api import GestorApp, create_app
from gestor.model import NewTransaction
from gestor.settings import load_settings
from gestor.simulator import SimulatorHandle
from gestor.store import (
    Accepted,
    AcceptOutcome,
    Expired,
    SnapshotRequest,
    Store,
    StoreUnavailable,
    Unsettled,
    _transactions,
    open_store,
)
from tests.e2e._proc import free_port
from tests.integration.conftest import ADMIN_KEY, set_faults, sim_stats

MSISDN = "5491100000031"


def _new(key: str, msisdn: str = MSISDN, accept_in: float = 0.5) -> NewTransaction:
    now = datetime.now(UTC)
    return NewTransaction(uuid.uuid4(), msisdn, "SMS_200_30D", "ussd", "public", key, "h", now,
                          accept_by=now + timedelta(seconds=accept_in))


async def _accept(store: Store, new: NewTransaction, **kw: Any) -> AcceptOutcome | Unsettled:
    now = datetime.now(UTC)
    window = SnapshotRequest(new.msisdn, now - timedelta(hours=1), now - timedelta(days=1), now)
    return await store.accept(new, window, **kw)


class _Rollback(Exception):
    pass


async def _hold(nursery: trio.Nursery, store: Store, seconds: float,
                first: Callable[[Any], Any]) -> None:
    """On another connection, in a transaction: `await first(conn)`, then hold what it took
    for `seconds` and roll back. Returns once `first` is done (the lock is held)."""
    token = trio.lowlevel.current_trio_token()
    held = trio.Event()

    async def work(conn: Any) -> None:
        await first(conn)
        token.run_sync_soon(held.set)
        await conn.execute("SELECT pg_sleep($1)", seconds)
        raise _Rollback

    async def run() -> None:
        with pytest.raises(_Rollback):
            await store.bridge.run(work)

    nursery.start_soon(run)
    await held.wait()


async def _lock_table(conn: Any) -> None:
    await conn.execute("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")


def _same_key(key: str) -> Callable[[Any], Any]:
    # Another mobile (0010: a row first takes its mobiles' guards, and its deadline is read
    # after that): ours passes its deadline check, then waits on the key.
    async def insert(conn: Any) -> None:
        new = _new(key, msisdn="5491100000032", accept_in=60)
        now = datetime.now(UTC)
        outcomes, _ = await _transactions.write_batch(conn, [new], [], [SnapshotRequest(
            new.msisdn, now - timedelta(hours=1), now - timedelta(days=1), now)])
        assert isinstance(outcomes[0], Accepted)

    return insert


async def _count(store: Store, key: str) -> int:
    async def count(conn: Any) -> int:
        return int(await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE idempotency_key = $1", key))

    return await store.bridge.run(count, transaction=False)


async def test_the_insert_refuses_a_row_past_its_deadline_by_the_database_clock(
    database_url: str,
) -> None:
    with trio.fail_after(20):
        async with open_store(database_url) as store:
            late = await _accept(store, _new("late", accept_in=-0.001))
            assert isinstance(late, Expired)
            assert await _count(store, "late") == 0
            in_time = await _accept(store, _new("in-time", accept_in=5))
            assert isinstance(in_time, Accepted)
            assert await _count(store, "in-time") == 1


async def test_a_lane_that_cannot_connect_says_nothing_was_sent(database_url: str) -> None:
    with trio.fail_after(20):
        async with open_store(database_url) as store:
            nowhere = attrs.evolve(store.bridge, dsn=f"postgresql://127.0.0.1:{free_port()}/x")

            async def work(conn: Any) -> None:
                raise AssertionError("never runs")

            with pytest.raises(StoreUnavailable) as caught:
                await nowhere.lane().run(work)
            assert caught.value.sent is False


async def test_a_database_that_wakes_after_the_deadline_writes_nothing(
    database_url: str,
) -> None:
    with trio.fail_after(30):
        async with open_store(database_url) as store, trio.open_nursery() as nursery:
            await _hold(nursery, store, 2.5, _lock_table)
            outcome = await _accept(store, _new("stalled"), deadline=trio.current_time() + 0.5,
                                         settle=0.5)
            # The statement was sent and got no answer in time: unknown, not failed.
            assert isinstance(outcome, Unsettled) and outcome.answer is not None
            late = await outcome.answer()  # the lock goes: the INSERT reads a late clock
            assert isinstance(late, Expired)
            assert await _count(store, "stalled") == 0


async def test_a_row_past_the_check_that_commits_late_is_unknown_then_accepted(
    database_url: str,
) -> None:
    with trio.fail_after(30):
        async with open_store(database_url) as store, trio.open_nursery() as nursery:
            await _hold(nursery, store, 2.0, _same_key("corner"))
            outcome = await _accept(store, _new("corner"), deadline=trio.current_time() + 0.5,
                                         settle=0.5)
            assert isinstance(outcome, Unsettled) and outcome.answer is not None
            late = await outcome.answer()  # the other insert rolls back: ours goes in
            assert isinstance(late, Accepted)
            assert await _count(store, "corner") == 1


# -- through the API -----------------------------------------------------------------------


@pytest.fixture
async def app(database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path
              ) -> AsyncIterator[GestorApp]:
    base = load_settings(config_dir, environ={}, data_dir=tmp_path)
    settings = attrs.evolve(base, admin_key=ADMIN_KEY, accept_timeout=0.5)
    application = create_app(settings, database_url, simulator.url)
    async with application.test_app():
        yield application


async def _buy(client: Any, key: str, msisdn: str = MSISDN, wait: float | None = None) -> Any:
    headers = {"Idempotency-Key": key}
    if wait is not None:
        headers["Prefer"] = f"wait={wait}"
    response = await client.post("/v1/purchases", headers=headers,
                                 json={"msisdn": msisdn, "bono_id": "SMS_200_30D"})
    return response.status_code, await response.get_json(), response.headers


async def test_unknown_outcome_accepted_late_runs_and_is_found_by_its_key(
    app: GestorApp, client: Any, control: httpx.AsyncClient,
) -> None:
    store = app.runtime.store
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await _hold(nursery, store, 3.0, _same_key("api-corner"))
            status, body, headers = await _buy(client, "api-corner")
            assert (status, body["code"]) == (503, "OUTCOME_UNKNOWN"), body
            assert body["idempotency_key"] == "api-corner" and headers["Retry-After"]
        # The other insert rolled back, ours went in: the actor runs its saga; asking again
        # with the same key finds it.
        status, body, headers = await _buy(client, "api-corner", wait=10)
        assert status == 200 and body["state"] == "completed", body
        assert headers["Idempotent-Replayed"] == "true"
        assert await _count(store, "api-corner") == 1
        assert (await sim_stats(control, MSISDN))["debits"] == 1


async def test_a_stalled_database_answers_nothing_done_or_unknown_and_keeps_both_true(
    app: GestorApp, client: Any, control: httpx.AsyncClient,
) -> None:
    store = app.runtime.store
    msisdns = [f"54911000000{40 + i}" for i in range(6)]
    answers: dict[str, tuple[int, str]] = {}

    async def buy(msisdn: str) -> None:
        status, body, headers = await _buy(client, f"stall-{msisdn}", msisdn)
        assert headers["Retry-After"]
        answers[msisdn] = (status, body["code"])

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await _hold(nursery, store, 3.0, _lock_table)
            async with trio.open_nursery() as buyers:
                for msisdn in msisdns:
                    buyers.start_soon(buy, msisdn)
        codes = {code for _, code in answers.values()}
        assert {status for status, _ in answers.values()} == {503}
        assert codes <= {"SERVICE_UNAVAILABLE", "OUTCOME_UNKNOWN"}, answers
        assert "OUTCOME_UNKNOWN" in codes  # the statements the writers had sent
        # The database woke after every deadline: nothing of any of them was written.
        for msisdn in msisdns:
            assert await _count(store, f"stall-{msisdn}") == 0
        assert (await sim_stats(control))["debits"] == 0
        # Asked again with the same key, each purchase now goes through, once.
        for msisdn in msisdns:
            status, body, _ = await _buy(client, f"stall-{msisdn}", msisdn, wait=10)
            assert status == 200 and body["state"] == "completed", body
        assert (await sim_stats(control))["debits"] == len(msisdns)


async def test_waiting_on_an_accepted_purchase_during_a_stall_is_not_an_error(
    app: GestorApp, client: Any, control: httpx.AsyncClient,
) -> None:
    store = app.runtime.store
    with trio.fail_after(60):
        await set_faults(control, {"ocs.debit": {"latency_ms": 1500}})  # the saga is slow
        # Accepted before the stall. A fresh database's first acceptance (its connections'
        # first plans and trigger functions) can outlast this app's 0.5 s deadline on a loaded
        # box: that answer is a 503 saying to retry with the same key, as a client would.
        for _attempt in range(5):
            status, body, _ = await _buy(client, "wait-stall")
            if status != 503:
                break
            assert body["code"] in ("SERVICE_UNAVAILABLE", "OUTCOME_UNKNOWN"), body
        assert status == 202 and not body["final"], body
        async with trio.open_nursery() as nursery:
            await _hold(nursery, store, 4.0, _lock_table)  # reads stall too
            status, body, headers = await _buy(client, "wait-stall", wait=1)
            # Accepted before the stall, still running: the transaction as last known, not a
            # 5xx that would suggest it failed.
            assert status == 202 and not body["final"], body
            assert headers["Idempotent-Replayed"] == "true"
        status, body, _ = await _buy(client, "wait-stall", wait=10)
        assert status == 200 and body["state"] == "completed"
        assert (await sim_stats(control, MSISDN))["debits"] == 1
