"""Limits and timestamps against a real PostgreSQL: every acceptance carries its subscriber's
history as committed at its insert, whichever process wrote what, read by the acceptance's one
statement; the history read is an index range scan however long a mobile's history; a mobile's
records never overlap in time, even when an insert waited for the previous purchase's final
write (two connections, raced deterministically)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import trio

from gestor.model import (
    Actor,
    HistoryEntry,
    NewTransaction,
    Transaction,
    Transition,
    TxKind,
    TxState,
)
from gestor.store import (
    Accepted,
    AcceptOutcome,
    SnapshotRequest,
    Store,
    _transactions,
    open_bridge,
    open_store,
)
from gestor.store._bridge import Lane

MSISDN = "5491100000001"
OPERATOR = Actor("test-key", "tester")


def _new(msisdn: str = MSISDN, key: str | None = None) -> NewTransaction:
    return NewTransaction(uuid.uuid4(), msisdn, "DATA_2GB_7D", "app", "public",
                          key or uuid.uuid4().hex, "h", datetime.now(UTC))


def _window(msisdn: str) -> SnapshotRequest:
    now = datetime.now(UTC)
    return SnapshotRequest(msisdn, now - timedelta(hours=1), now - timedelta(days=1), now)


def _end(tx_id: uuid.UUID, state: TxState, price: int | None = None,
         expect: TxState = TxState.RECEIVED) -> Transition:
    now = datetime.now(UTC)
    return Transition(tx_id, expect, state, now, (HistoryEntry(state, now, "test"),),
                      price=price)


async def _accepted(store: Store, new: NewTransaction) -> Accepted:
    outcome: AcceptOutcome = await store.accept(new, _window(new.msisdn))
    assert isinstance(outcome, Accepted), outcome
    return outcome


async def test_every_acceptance_reads_the_history_committed_by_any_process(
    database_url: str,
) -> None:
    """Two stores (two workers, or two nodes): each acceptance sees what the other committed,
    never a copy of its own."""
    with trio.fail_after(30):
        async with open_store(database_url) as one, open_store(database_url) as two:
            first = await _accepted(one, _new())
            assert first.subscriber.counters.purchases_today == 0
            assert await one.transition(_end(first.transaction.id, TxState.COMPLETED, 500))
            rejected = await _accepted(two, _new())
            assert rejected.subscriber.counters.purchases_today == 1
            assert await two.transition(_end(rejected.transaction.id, TxState.REJECTED, 999))
            second = await _accepted(one, _new())  # `one` never saw the rejection: no matter
            counters = second.subscriber.counters
            assert (counters.purchases_today, counters.spent_today, counters.spent_month) == (
                1, 500, 500)
            stored_first = await two.get(first.transaction.id)
            assert stored_first is not None
            assert counters.last_purchase_at == stored_first.created_at
            assert await one.transition(_end(second.transaction.id, TxState.COMPLETED, 700))
            # Restrictions too: in force at the acceptance, whoever set them.
            await one.restrict(MSISDN, "FRAUD", None, None, OPERATOR)
            await one.restrict(MSISDN, "OLD", None, datetime.now(UTC) - timedelta(seconds=1),
                               OPERATOR)
            third = await _accepted(two, _new())
            assert third.subscriber.restrictions == ("FRAUD",)
            counters = third.subscriber.counters
            assert (counters.purchases_today, counters.spent_today) == (2, 1200)
            # Outside the day's window, in the month's: counted for the month only.
            assert await two.transition(_end(third.transaction.id, TxState.FAILED))
            late = _new()
            now = datetime.now(UTC)
            outcome = await two.accept(late, SnapshotRequest(
                MSISDN, now + timedelta(minutes=1), now - timedelta(days=1), now))
            assert isinstance(outcome, Accepted)
            assert outcome.subscriber.counters.purchases_today == 0
            assert outcome.subscriber.counters.purchases_month == 2
            assert outcome.subscriber.counters.spent_month == 1200


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out.extend(_nodes(child))
    return out


async def test_history_read_is_an_index_range_scan(database_url: str) -> None:
    """A mobile with 60,000 purchases over two years (mostly rejected) among 120,000 rows: the
    acceptance's history read touches this month's completed ones, through the index."""
    with trio.fail_after(120):
        async with open_bridge(database_url) as bridge:
            async def load(conn: Any) -> None:
                await conn.execute("SET session_replication_role = replica")  # bulk: no trigger
                await conn.execute("""
                    INSERT INTO transactions (id, msisdn, bono_id, channel, client,
                        idempotency_key, request_hash, state, price, created_at, updated_at)
                    SELECT gen_random_uuid(),
                           CASE WHEN g % 2 = 0 THEN $1
                                ELSE '54911' || lpad((g % 5000)::text, 8, '0') END,
                           'DATA_2GB_7D', 'app', 'public', 'k' || g, 'h',
                           CASE WHEN g % 40 = 0 THEN 'completed' ELSE 'rejected' END,
                           1000, now() - (g || ' minutes')::interval * 8,
                           now() - (g || ' minutes')::interval * 8
                    FROM generate_series(1, 120000) g
                """, MSISDN)
                await conn.execute("SET session_replication_role = DEFAULT")

            await bridge.run(load)

            async def vacuum(conn: Any) -> None:
                await conn.execute("VACUUM ANALYZE transactions")

            await bridge.run(vacuum, transaction=False)
            new = _new()
            window = _window(MSISDN)
            window = SnapshotRequest(MSISDN, window.now - timedelta(hours=24),
                                     window.now - timedelta(days=30), window.now)

            async def explained(conn: Any) -> tuple[dict[str, Any], Accepted]:
                written, _ = await _transactions.write_batch(conn, [new], [], [window])
                assert isinstance(written[0], Accepted)
                # The history query of the acceptance's function (0011) as it runs it: its
                # variables are parameters, planned generically after a few calls.
                source = await conn.fetchval(
                    "SELECT prosrc FROM pg_proc WHERE proname = 'accept_transactions'"
                    " AND pronargs = 15")
                query = re.search(r"RETURN QUERY(.*?);\s*END;", source, re.S)
                assert query is not None
                text = query.group(1)
                for name, parameter in (("p_id", "$1::uuid[]"), ("inserted", "$1::uuid[]"),
                                        ("p_day_start", "$2::timestamptz[]"),
                                        ("p_month_start", "$3::timestamptz[]")):
                    text = re.sub(rf"\b{name}\b", parameter, text)
                await conn.execute("SET plan_cache_mode = force_generic_plan")
                await conn.execute(
                    f"PREPARE history(uuid[], timestamptz[], timestamptz[]) AS {text}")
                raw = await conn.fetchval(  # EXECUTE takes no bind parameters
                    f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE history("
                    f"'{{{new.id}}}', '{{\"{window.day_start.isoformat()}\"}}', "
                    f"'{{\"{window.month_start.isoformat()}\"}}')")
                await conn.execute("DEALLOCATE history; RESET plan_cache_mode")
                return json.loads(raw)[0], written[0]

            plan, accepted = await bridge.run(explained, transaction=False)
            nodes = _nodes(plan["Plan"])
            on_transactions = [n for n in nodes if n.get("Relation Name") == "transactions"]
            assert on_transactions and all(
                n["Node Type"] in ("Index Scan", "Index Only Scan") for n in on_transactions
            ), [(n["Node Type"], n.get("Index Name")) for n in nodes]
            history = [n for n in on_transactions if n["Index Name"] != "transactions_pkey"]
            # The purchases and gifts of this month, and what its advances owe (0010).
            assert {n["Index Name"] for n in history} == {"transactions_completed_by_msisdn",
                                                          "transactions_debts"}
            # This month's completed purchases of that mobile (a row every 8 x 40 minutes
            # lands in the mobile's half: 30 days / 320 min ≈ 135), not its 60,000 rows.
            assert max(n["Actual Rows"] * n["Actual Loops"] for n in history) < 200
            counters = accepted.subscriber.counters
            assert 100 < counters.purchases_month < 200
            assert counters.purchases_today == 4  # 24 h / 320 min
            assert plan["Execution Time"] < 50  # ms, on a loaded box; 0.14 ms measured


async def _pid(lane: Lane) -> int:
    async def pid(conn: Any) -> int:
        return int(await conn.fetchval("SELECT pg_backend_pid()"))

    return await lane.run(pid)


async def _execute(lane: Lane, sql: str) -> None:
    async def run(conn: Any) -> None:
        await conn.execute(sql)

    await lane.run(run)


async def _until_blocked(lane: Lane, pid: int, by: int) -> None:
    """Until backend `pid` waits on a lock held by backend `by`. (PostgreSQL has no event for
    that: poll its lock graph.)"""
    async def blockers(conn: Any) -> list[int]:
        return list(await conn.fetchval("SELECT pg_blocking_pids($1)", pid))

    while by not in await lane.run(blockers):  # noqa: ASYNC110 - nothing to wait on but this
        await trio.sleep(0.01)


async def _write(lane: Lane, accepts: list[NewTransaction], moves: list[Transition]
                 ) -> tuple[list[_transactions.WriteOutcome], list[datetime | None]]:
    async def write(conn: Any) -> tuple[list[_transactions.WriteOutcome],
                                        list[datetime | None]]:
        return await _transactions.write_batch(conn, accepts, moves,
                                               [_window(t.msisdn) for t in accepts])

    return await lane.run(write)


async def _rows(lane: Lane, *ids: uuid.UUID) -> list[Transaction]:
    async def get(conn: Any) -> list[Transaction | None]:
        return await _transactions.get_batch(conn, list(ids))

    found = await lane.run(get)
    assert all(t is not None for t in found)
    return [t for t in found if t is not None]


def _assert_truthful(tx: Transaction) -> None:
    assert tx.history[0].at == tx.created_at
    assert tx.history[-1].at == tx.updated_at
    assert all(a.at <= b.at for a, b in zip(tx.history, tx.history[1:], strict=False))
    assert tx.created_at <= tx.updated_at


async def _race(database_url: str, body: Callable[[dict[str, Lane], dict[str, int]],
                                                   Awaitable[None]]) -> None:
    async with open_bridge(database_url) as bridge:
        lanes = {name: bridge.lane() for name in ("prev", "next", "blocker", "watch")}
        pids = {name: await _pid(lane) for name, lane in lanes.items()}
        await body(lanes, pids)


async def test_an_insert_that_waited_for_the_previous_final_write_starts_after_it(
    database_url: str,
) -> None:
    """The previous purchase's final UPDATE is held open on one connection while the next
    purchase's insert waits for it on another: once it commits, the insert succeeds and its
    record starts no earlier than the previous one ended."""
    async def body(lanes: dict[str, Lane], pids: dict[str, int]) -> None:
        prev = _new()
        written, _ = await _write(lanes["prev"], [prev], [])
        assert isinstance(written[0], Accepted)
        await _execute(lanes["prev"], "BEGIN")
        _, (ended,) = await _write(lanes["prev"], [], [_end(prev.id, TxState.COMPLETED, 10)])
        assert ended is not None
        nxt = _new()
        outcome: list[_transactions.WriteOutcome] = []

        async def insert() -> None:
            outcome.extend((await _write(lanes["next"], [nxt], []))[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(insert)
            await _until_blocked(lanes["watch"], pids["next"], pids["prev"])
            await _execute(lanes["prev"], "COMMIT")
        before, after = await _rows(lanes["watch"], prev.id, nxt.id)
        # Its history, read by the same statement after that wait, counts the purchase it
        # waited for, and its answer is the row as committed.
        assert isinstance(outcome[0], Accepted)
        assert outcome[0].transaction == after
        counters = outcome[0].subscriber.counters
        assert (counters.purchases_today, counters.spent_today) == (1, 10)
        assert counters.last_purchase_at == before.created_at
        assert before.updated_at == ended
        assert before.updated_at <= after.created_at
        _assert_truthful(before)
        _assert_truthful(after)

    with trio.fail_after(30):
        await _race(database_url, body)


async def test_an_acceptance_waits_for_the_previous_final_write_and_starts_after_it(
    database_url: str,
) -> None:
    """The hard interleaving: the previous purchase ends and holds its commit (its guard's
    release is uncommitted); the next batch's acceptance waits for that commit on the guard
    (0010: guards are taken before the rows' clock readings), then is inserted with a
    `created_at` after the previous `updated_at`. A row of the same batch on another mobile,
    waiting meanwhile on an idempotency key a third session holds, is inserted too."""
    async def body(lanes: dict[str, Lane], pids: dict[str, int]) -> None:
        prev = _new(MSISDN)
        written, _ = await _write(lanes["prev"], [prev], [])
        assert isinstance(written[0], Accepted)
        await _execute(lanes["prev"], "BEGIN")
        _, (ended,) = await _write(lanes["prev"], [], [_end(prev.id, TxState.COMPLETED, 10)])
        assert ended is not None
        await _execute(lanes["blocker"], "BEGIN")
        held, _ = await _write(lanes["blocker"], [_new("5491100000099", key="K")], [])
        assert isinstance(held[0], Accepted)
        first_row = _new("5491100000000", key="K")
        nxt = _new(MSISDN)
        outcome: list[_transactions.WriteOutcome] = []

        async def insert() -> None:
            outcome.extend((await _write(lanes["next"], [nxt, first_row], []))[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(insert)
            await _until_blocked(lanes["watch"], pids["next"], pids["prev"])
            await _execute(lanes["prev"], "COMMIT")
            await _until_blocked(lanes["watch"], pids["next"], pids["blocker"])
            await _execute(lanes["blocker"], "ROLLBACK")
        before, after, other = await _rows(lanes["watch"], prev.id, nxt.id, first_row.id)
        # Both answered by the statement that waited, as committed; the history read after
        # the waits counts the purchase whose final write it waited for.
        accepted = [o for o in outcome if isinstance(o, Accepted)]
        assert [o.transaction for o in accepted] == [after, other]
        counters = accepted[0].subscriber.counters
        assert (counters.purchases_today, counters.spent_today) == (1, 10)
        assert counters.last_purchase_at == before.created_at
        assert accepted[1].subscriber.counters.purchases_today == 0
        assert before.updated_at == ended
        assert after.created_at > ended  # its clock was read once the guard was its own
        for tx in (before, after, other):
            _assert_truthful(tx)

    with trio.fail_after(30):
        await _race(database_url, body)


async def test_transitions_stamp_the_database_clock(database_url: str) -> None:
    """`transition` answers the committed `updated_at`, which the history entries carry, and
    a record's times never run backwards whatever the writer's clock says."""
    with trio.fail_after(20):
        async with open_store(database_url) as store:
            accepted = await _accepted(store, _new())
            tx = accepted.transaction
            _assert_truthful(tx)
            skewed = datetime.now(UTC) - timedelta(hours=3)  # a writer whose clock is behind
            move = Transition(tx.id, TxState.RECEIVED, TxState.CHARGED, skewed,
                              (HistoryEntry(TxState.PROFILED, skewed),
                               HistoryEntry(TxState.CHARGED, skewed)), price=10)
            at = await store.transition(move)
            assert at is not None and at >= tx.created_at
            stored = await store.get(tx.id)
            assert stored is not None and stored.updated_at == at
            assert [h.at for h in stored.history] == [tx.created_at, at, at]
            _assert_truthful(stored)


async def test_an_acceptance_is_one_statement(database_url: str) -> None:
    """An acceptance crosses once with ONE statement (migration 0011): the insert and the
    history read after it; its answer is the row as stored and the history as committed."""
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            first = await _accepted(store, _new())
            assert await store.transition(_end(first.transaction.id, TxState.COMPLETED, 700))
            queries: list[str] = []

            async def log_queries(conn: Any) -> None:
                conn.add_query_logger(lambda record: queries.append(record.query))

            for lane in store.bridge._lanes:  # every batcher's connection, opened if need be
                await lane.run(log_queries)
            second = await _accepted(store, _new())
            assert len(queries) == 1 and "accept_transactions" in queries[0], queries
            counters = second.subscriber.counters
            assert (counters.purchases_today, counters.spent_today) == (1, 700)
            assert counters.last_purchase_at == first.transaction.created_at
            assert second.transaction == await store.get(second.transaction.id)


async def test_the_acceptance_reads_what_a_snapshot_reads(database_url: str) -> None:
    """The acceptance's history (0011) and a listing's snapshot (`snapshot_batch`) are the same
    read: purchases, gifts (bonos and airtime for another mobile), advances' debt and
    restrictions agree, each counted."""
    other = "5491100000077"
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            async def completed(new: NewTransaction, **end: Any) -> None:
                await _accepted(store, new)
                now = datetime.now(UTC)
                assert await store.transition(Transition(
                    new.id, TxState.RECEIVED, TxState.COMPLETED, now,
                    (HistoryEntry(TxState.COMPLETED, now),), **end))

            await completed(_new(), price=500)
            await completed(attrs.evolve(_new(), beneficiary=other), price=300)
            await completed(attrs.evolve(_new(), kind=TxKind.TRANSFER, bono_id="",
                                         beneficiary=other, amount=200), price=0)
            await completed(attrs.evolve(_new(), kind=TxKind.ADVANCE, bono_id="",
                                         amount=1000), owed=1100)
            await store.restrict(MSISDN, "FRAUD", None, None, OPERATOR)
            window = _window(MSISDN)
            accepted = await store.accept(_new(), window)
            assert isinstance(accepted, Accepted)
            counters = accepted.subscriber.counters
            assert (counters.purchases_today, counters.spent_today, counters.gifts_today,
                    counters.gifted_today, counters.owed) == (2, 800, 2, 500, 1100)
            assert accepted.subscriber.restrictions == ("FRAUD",)
            assert accepted.subscriber == await store.snapshot(window)
