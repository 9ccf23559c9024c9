"""The store against a real PostgreSQL: acceptance guards (D3, D5), transitions, snapshots,
alarms, micro-batching."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import trio

from gestor.model import HistoryEntry, NewAlarm, NewTransaction, Severity, Transition, TxState
from gestor.store import (
    Accepted,
    AcceptOutcome,
    KeyReused,
    PendingExists,
    Replayed,
    SnapshotRequest,
    Store,
    StoreUnavailable,
    Unsettled,
    _transactions,
    open_store,
)


def _new(msisdn: str = "5491100000001", key: str | None = None, body: str = "h1") -> NewTransaction:
    return NewTransaction(
        id=uuid.uuid4(),
        msisdn=msisdn,
        bono_id="DATA_2GB_7D",
        channel="app",
        client="public",
        idempotency_key=key or uuid.uuid4().hex,
        request_hash=body,
        at=datetime.now(UTC),
    )


def _window(msisdn: str) -> SnapshotRequest:
    now = datetime.now(UTC)
    return SnapshotRequest(msisdn, now - timedelta(hours=1), now - timedelta(days=1), now)


async def _accept(store: Store, tx: NewTransaction) -> AcceptOutcome | Unsettled:
    return await store.accept(tx, _window(tx.msisdn))


def _move(tx_id: uuid.UUID, expect: TxState, state: TxState, **kw: object) -> Transition:
    now = datetime.now(UTC)
    return Transition(tx_id, expect, state, now, (HistoryEntry(state, now),), **kw)  # type: ignore[arg-type]


async def test_accept_then_guards(database_url: str) -> None:
    with trio.fail_after(20):
        async with open_store(database_url) as store:
            first = _new(key="k1")
            out = await _accept(store, first)
            assert isinstance(out, Accepted)
            assert out.transaction.state is TxState.RECEIVED
            # Same key, same body: the original.
            again = await _accept(store, _new(key="k1"))
            assert isinstance(again, Replayed) and again.transaction.id == first.id
            # Same key, other body: refused.
            other = await _accept(store, _new(key="k1", body="h2"))
            assert isinstance(other, KeyReused) and other.transaction.id == first.id
            # Another key on the same msisdn while pending: the pending one is named.
            second = await _accept(store, _new(key="k2"))
            assert isinstance(second, PendingExists) and second.transaction.id == first.id
            # Once terminal, the msisdn is free again.
            assert await store.transition(_move(first.id, TxState.RECEIVED, TxState.REJECTED))
            third = await _accept(store, _new(key="k3"))
            assert isinstance(third, Accepted)


async def test_concurrent_accepts_one_msisdn_exactly_one_wins(database_url: str) -> None:
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            outcomes: list[object] = []

            async def one() -> None:
                outcomes.append(await _accept(store, _new()))

            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(one)
            accepted = [o for o in outcomes if isinstance(o, Accepted)]
            pending = [o for o in outcomes if isinstance(o, PendingExists)]
            assert len(accepted) == 1
            assert len(pending) == 99
            assert {p.transaction.id for p in pending} == {accepted[0].transaction.id}
            stats = {b.name: b for b in store.statistics().batchers}
            assert stats["writes"].batches < 100  # they were batched


async def test_transition_is_optimistic_and_records_history(database_url: str) -> None:
    with trio.fail_after(20):
        async with open_store(database_url) as store:
            tx = _new()
            await _accept(store, tx)
            ok = await store.transition(
                _move(tx.id, TxState.RECEIVED, TxState.CHARGED, price=60000, currency="ARS",
                      operation="debit_and_provision", profile_id="PREPAID", rules_version=1)
            )
            assert ok
            # A stale writer expecting the old state loses.
            assert not await store.transition(_move(tx.id, TxState.RECEIVED, TxState.FAILED))
            got = await store.get(tx.id)
            assert got is not None
            assert got.state is TxState.CHARGED
            assert got.price == 60000 and got.profile_id == "PREPAID" and got.rules_version == 1
            assert [h.state for h in got.history] == [TxState.RECEIVED, TxState.CHARGED]
            assert await store.get(uuid.uuid4()) is None


async def test_snapshot_counts_completed_purchases(database_url: str) -> None:
    with trio.fail_after(20):
        async with open_store(database_url) as store:
            msisdn = "5491100000007"
            for _ in range(2):
                tx = _new(msisdn)
                await _accept(store, tx)
                await store.transition(
                    _move(tx.id, TxState.RECEIVED, TxState.COMPLETED, price=1000)
                )
            pending = _new(msisdn)
            await _accept(store, pending)
            now = datetime.now(UTC)
            snap = await store.snapshot(
                SnapshotRequest(msisdn, now - timedelta(hours=1), now - timedelta(days=1), now)
            )
            assert snap.counters.purchases_today == 2
            assert snap.counters.spent_month == 2000
            assert snap.counters.last_purchase_at is not None
            empty = await store.snapshot(SnapshotRequest("5491100000008", now, now, now))
            assert empty.counters.purchases_month == 0 and empty.restrictions == ()


async def test_alarms_persist_replay_and_notify(database_url: str) -> None:
    with trio.fail_after(20):
        async with open_store(database_url) as store:
            heard: list[int] = []
            got_one = trio.Event()

            def on_alarm(alarm_id: int) -> None:
                heard.append(alarm_id)
                got_one.set()

            await store.listen_alarms(on_alarm)
            a = await store.raise_alarm(
                NewAlarm("refund_failed", Severity.CRITICAL, "refund failed", msisdn="549110")
            )
            b = await store.raise_alarm(NewAlarm("platform_down", Severity.WARNING, "ocs down"))
            assert b.id > a.id
            assert [x.id for x in await store.alarms_after(a.id)] == [b.id]
            assert await store.latest_alarm_id() == b.id
            await got_one.wait()
            assert heard[0] == a.id


async def test_lost_connections_are_reopened_and_a_lost_write_says_so(database_url: str) -> None:
    """The hot lanes hold dedicated connections: when the server drops them, the next crossing
    reports `StoreUnavailable` (an acceptance: `Unsettled`, truthfully half-known) or
    reconnects, and work goes on."""
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            first = await _accept(store, _new("5491100000071"))
            assert isinstance(first, Accepted)

            async def terminate_others(conn: Any) -> int:
                return int(await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"))

            assert await store.bridge.run(terminate_others, transaction=False) >= 1

            async def retried(op: Any) -> object:
                for _ in range(3):  # what the saga's `write` does: retry on StoreUnavailable
                    try:
                        return await op()
                    except StoreUnavailable:
                        continue
                raise AssertionError("the store did not come back")

            # Sequential items alternate between the two lanes: both meet a dead connection.
            tx = first.transaction
            assert await retried(lambda: store.transition(
                _move(tx.id, TxState.RECEIVED, TxState.REJECTED))) is not None
            for msisdn in ("5491100000071", "5491100000072", "5491100000073"):
                # An acceptance that met a dead connection is `Unsettled` (it may have been
                # written): asked again with the same key, it is accepted or replayed.
                new = _new(msisdn)
                for _ in range(3):
                    accepted = await _accept(store, new)
                    if not isinstance(accepted, Unsettled):
                        break
                assert isinstance(accepted, Accepted | Replayed), accepted
            snapshot = await store.snapshot(SnapshotRequest(
                "5491100000071", datetime.now(UTC) - timedelta(days=1),
                datetime.now(UTC) - timedelta(days=30), datetime.now(UTC)))
            assert snapshot.restrictions == ()


async def test_lease_renewal_skips_rows_a_writer_holds(database_url: str) -> None:
    """`touch` (the recoverer's heartbeat over every purchase in flight) must never wait on a
    row a batched write has locked: waiting on many rows in no set order beside those writes
    deadlocked under load (2 s platforms, a thousand purchases in flight)."""
    with trio.fail_after(20):
        async with open_store(database_url) as store:
            held, free = _new("5491100000081"), _new("5491100000082")
            for new in (held, free):
                assert isinstance(await _accept(store, new), Accepted)
            later = datetime.now(UTC) + timedelta(seconds=5)

            async def touch_while_held(conn: Any) -> int:
                # conn holds `held` (this crossing's transaction); a second session renews
                other = await asyncpg.connect(database_url)
                try:
                    await conn.execute("SELECT 1 FROM transactions WHERE id = $1 FOR UPDATE",
                                       held.id)
                    await other.execute("SET statement_timeout = '5s'")
                    return await _transactions.touch(other, [held.id, free.id], later)
                finally:
                    await other.close()

            assert await store.bridge.run(touch_while_held) == 1
            renewed = await store.get(free.id)
            skipped = await store.get(held.id)
            assert renewed is not None and renewed.updated_at == later
            assert skipped is not None and skipped.updated_at < later
