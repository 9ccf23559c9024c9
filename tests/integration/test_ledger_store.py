"""The ledger in PostgreSQL (migration 0012): entries posted by the database itself from each
movement's row, balanced, append-only, backfilled for movements recorded before it, and the
daily close. Rows are written here by SQL, as any code path (a future one included) would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import trio

from gestor.model import Actor
from gestor.store import DayNotOver, EmbeddedPostgres, open_bridge, open_store
from gestor.store._migrate import migration_files

P, Q = "5491100000021", "5491100000022"
ALICE = Actor("k-alice", "alice")
TZ = "America/Argentina/Buenos_Aires"

_INSERT = """
INSERT INTO transactions (id, msisdn, beneficiary, kind, bono_id, channel, client,
                          idempotency_key, request_hash, state, price, amount, fee, owed,
                          collected, steps, step, created_at, updated_at, operation)
VALUES ($1, $2, $3, $4, $5, 'ussd', 'test', $15, 'h', $6, $7, $8, $9, $10, $11, $12, $13,
        $14, $14, $16)
"""


async def insert(conn: Any, *, kind: str = "purchase", msisdn: str = P,
                 beneficiary: str | None = None, state: str = "received",
                 bono: str | None = "DATA_1GB", price: int | None = None,
                 amount: int | None = None, fee: int | None = None, owed: int | None = None,
                 collected: int | None = None, steps: list[str] | None = None, step: int = 0,
                 at: datetime | None = None, operation: str | None = None) -> uuid.UUID:
    tx_id = uuid.uuid4()
    await conn.execute(_INSERT, tx_id, msisdn, beneficiary, kind, bono, state, price, amount,
                       fee, owed, collected, steps, step, at or datetime.now(UTC), str(tx_id),
                       operation)
    return tx_id


async def move(conn: Any, tx_id: uuid.UUID, state: str, **columns: Any) -> None:
    sets = ", ".join(f"{k} = ${n}" for n, k in enumerate(columns, start=3))
    await conn.execute(f"UPDATE transactions SET state = $2{', ' + sets if sets else ''}"
                       " WHERE id = $1", tx_id, state, *columns.values())


async def balances(conn: Any) -> dict[str, int]:
    rows = await conn.fetch("SELECT account, sum(debit) - sum(credit) AS b FROM ledger_entries"
                            " GROUP BY account")
    return {r["account"]: int(r["b"]) for r in rows if r["b"]}


async def postings(conn: Any, tx_id: uuid.UUID) -> list[tuple[str, str, int, int]]:
    rows = await conn.fetch("SELECT movement, account, debit, credit FROM ledger_entries"
                            " WHERE transaction_id = $1 ORDER BY id", tx_id)
    return [(r["movement"], r["account"], r["debit"], r["credit"]) for r in rows]


async def test_each_transition_posts_the_difference_of_positions(database_url: str) -> None:
    """A purchase: debit into clearing, then revenue on completion; a refund gives it back; an
    inconsistent one owes it in refunds:payable until it is settled; a transfer's fee, an
    advance's receivable and fee, a top-up's platform credit and its recovery. Every
    statement's entries balance, and a settled ledger holds nothing in clearing."""
    plan = ["debit:refund", "provision"]
    with trio.fail_after(60):
        async with open_bridge(database_url) as bridge:
            async def scenario(conn: Any) -> None:
                sold = await insert(conn)
                assert await postings(conn, sold) == []
                await move(conn, sold, "charged", price=700, steps=plan, step=1)
                assert await postings(conn, sold) == [
                    ("debit", "clearing:in_flight", 0, 700),
                    ("debit", f"subscriber:{P}", 700, 0)]
                await move(conn, sold, "completed", step=2)
                assert (await postings(conn, sold))[2:] == [
                    ("revenue", "clearing:in_flight", 700, 0),
                    ("revenue", "revenue:bono:DATA_1GB", 0, 700)]
                await conn.execute("UPDATE transactions SET updated_at = now() WHERE id = $1",
                                   sold)  # a lease: no money moved, nothing posted
                assert len(await postings(conn, sold)) == 4

                back = await insert(conn, price=500, steps=plan, step=1, state="charged")
                await move(conn, back, "refunded")
                assert (await postings(conn, back))[2:] == [
                    ("refund", "clearing:in_flight", 500, 0),
                    ("refund", f"subscriber:{P}", 0, 500)]

                stuck = await insert(conn, msisdn=Q, price=300, steps=plan, step=1,
                                     state="charged")
                await move(conn, stuck, "inconsistent")
                assert (await postings(conn, stuck))[2:] == [
                    ("payable", "clearing:in_flight", 300, 0),
                    ("payable", "refunds:payable", 0, 300)]
                assert (await balances(conn))["refunds:payable"] == -300
                await move(conn, stuck, "refunded")
                assert sorted((await postings(conn, stuck))[4:]) == sorted([
                    ("payable", "clearing:in_flight", 0, 300),
                    ("payable", "refunds:payable", 300, 0),
                    ("refund", "clearing:in_flight", 300, 0),
                    ("refund", f"subscriber:{Q}", 0, 300)])

                gift = await insert(conn, kind="transfer", beneficiary=Q, bono=None,
                                    price=1_050, amount=1_000, fee=50, state="completed",
                                    steps=["debit:refund", "credit:reverse"], step=2)
                assert sorted(await postings(conn, gift)) == sorted([
                    ("debit", f"subscriber:{P}", 1_050, 0),
                    ("debit", "clearing:in_flight", 0, 1_050),
                    ("credit", f"subscriber:{Q}", 0, 1_000),
                    ("credit", "clearing:in_flight", 1_000, 0),
                    ("fee", "clearing:in_flight", 50, 0),
                    ("fee", "revenue:fees", 0, 50)])

                lent = await insert(conn, kind="advance", bono=None, amount=2_000, fee=200,
                                    owed=2_200, steps=["advance"], step=1, state="completed")
                paid = await insert(conn, kind="topup", bono=None, amount=5_000)
                await move(conn, paid, "completed", collected=2_200, steps=["recover"], step=1)
                b = await balances(conn)
                assert b == {
                    f"subscriber:{P}": 700 + 1_050 - 2_000 - 5_000 + 2_200,
                    f"subscriber:{Q}": -1_000,
                    "revenue:bono:DATA_1GB": -700,
                    "revenue:fees": -50 - 200,
                    "recharges:platform": 5_000,
                }, b
                assert ("advance", "advances:receivable", 2_200, 0) in await postings(conn, lent)
                unbalanced = await conn.fetch(
                    "SELECT transaction_id FROM ledger_entries GROUP BY transaction_id"
                    " HAVING sum(debit) <> sum(credit)")
                assert unbalanced == []

            await bridge.run(scenario)


@pytest.mark.parametrize("sql", [
    "UPDATE ledger_entries SET debit = debit + 1",
    "DELETE FROM ledger_entries",
    "TRUNCATE ledger_entries",
])
async def test_the_ledger_is_append_only(database_url: str, sql: str) -> None:
    with trio.fail_after(30):
        async with open_bridge(database_url) as bridge:
            async def setup(conn: Any) -> None:
                await insert(conn, kind="topup", bono=None, amount=100)

            async def tamper(conn: Any) -> None:
                await conn.execute(sql)

            await bridge.run(setup)
            with pytest.raises(asyncpg.exceptions.RaiseError, match="append-only"):
                await bridge.run(tamper)
            count = await bridge.run(lambda c: c.fetchval("SELECT count(*) FROM ledger_entries"))
            assert count == 2


async def test_the_migration_posts_movements_recorded_before_it(
        postgres: EmbeddedPostgres) -> None:
    """A database at 0011 with movements in every state: after 0012 the trial balance is zero
    and each account holds what those movements imply; new transitions post on top."""
    name = f"ledger_backfill_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE DATABASE {name};")
    try:
        with trio.fail_after(60):
            async with open_bridge(postgres.dsn_for(name)) as bridge:
                files = migration_files()
                before = [f for f in files if f[0] < "0012"]
                later = [f for f in files if f[0] >= "0012"]

                async def apply(conn: Any, todo: list[tuple[str, str]]) -> None:
                    for _, sql in todo:
                        await conn.execute(sql)

                await bridge.run(apply, before)
                plan = ["debit:refund", "provision"]

                async def old_rows(conn: Any) -> uuid.UUID:
                    await insert(conn, price=700, steps=plan, step=2, state="completed")
                    await insert(conn, msisdn=Q, price=400, steps=plan, step=1,
                                 state="inconsistent")
                    await insert(conn, kind="topup", bono=None, amount=900)
                    await insert(conn, state="rejected")
                    # written before 0010 (no steps): a completed sale, a free bono, and one
                    # charged when its worker stopped, which the recoverer then completes
                    await insert(conn, msisdn="5491100000024", price=250, state="completed",
                                 operation="debit_and_provision")
                    await insert(conn, msisdn="5491100000024", price=250, state="completed",
                                 operation="provision_only")
                    legacy = await insert(conn, msisdn="5491100000025", price=120,
                                          state="charged", operation="debit_and_provision")
                    return legacy, await insert(conn, msisdn="5491100000023", price=300,
                                                steps=plan, step=1, state="charged")

                legacy, charged = await bridge.run(old_rows)
                await bridge.run(apply, later)

                async def before_moves(conn: Any) -> dict[str, int]:
                    return await balances(conn)

                assert (await bridge.run(before_moves))["clearing:in_flight"] == -300 - 120

                async def check(conn: Any) -> dict[str, int]:
                    await move(conn, charged, "completed", step=2)
                    await move(conn, legacy, "completed", step=2)  # as the recoverer writes it
                    return await balances(conn)

                assert await bridge.run(check) == {
                    f"subscriber:{P}": 700 - 900,
                    f"subscriber:{Q}": 400,
                    "subscriber:5491100000023": 300,
                    "subscriber:5491100000024": 250,
                    "subscriber:5491100000025": 120,
                    "revenue:bono:DATA_1GB": -1_000 - 250 - 120,
                    "refunds:payable": -400,
                    "recharges:platform": 900,
                }
    finally:
        postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


async def test_the_daily_close_freezes_a_day_and_finds_later_changes(database_url: str) -> None:
    """Closing a past day freezes its per-account totals (audited); closing it again checks
    them (no second row); an entry stamped in that day afterwards shows as a difference; the
    day not yet over can't be closed."""
    tz_now = datetime.now(UTC)
    day = (tz_now - timedelta(days=3)).date()
    noon = datetime(day.year, day.month, day.day, 15, tzinfo=UTC)  # noon in Buenos Aires
    with trio.fail_after(60):
        async with open_store(database_url) as store:
            async def seed(conn: Any) -> None:
                await insert(conn, kind="topup", bono=None, amount=900, at=noon,
                             state="completed")
                await insert(conn, price=700, steps=["debit:refund", "provision"], step=2,
                             state="completed", at=noon + timedelta(hours=1))
                await insert(conn, kind="topup", bono=None, amount=5, state="completed",
                             at=noon + timedelta(days=1))  # the next day: not in it

            await store.bridge.run(seed)
            check = await store.close_ledger_day(day, TZ, ALICE)
            assert check.created and check.matches
            close = check.close
            assert (close.entries, close.total_debits, close.total_credits) == (6, 2_300, 2_300)
            assert {a.account: a.balance for a in close.accounts} == {
                f"subscriber:{P}": -200, "recharges:platform": 900,
                "revenue:bono:DATA_1GB": -700, "clearing:in_flight": 0}
            assert close.starts_at == datetime(day.year, day.month, day.day, 3, tzinfo=UTC)
            audit = await store.audit_trail(action="ledger.close")
            assert [(a.actor, a.subject) for a in audit] == [("alice", f"ledger/{day}")]

            again = await store.close_ledger_day(day, TZ, ALICE)
            assert (again.created, again.matches, again.close) == (False, True, close)
            assert len(await store.audit_trail(action="ledger.close")) == 1

            async def late(conn: Any) -> None:
                await conn.execute(
                    "INSERT INTO ledger_entries (at, transaction_id, movement, account, debit)"
                    " VALUES ($1, $2, 'correction', 'revenue:fees', 10)", noon, uuid.uuid4())

            await store.bridge.run(late)
            verified = await store.check_ledger_day(day)
            assert verified is not None and not verified.matches
            assert [(d.account, d.closed_debits, d.debits) for d in verified.differences] == [
                ("revenue:fees", 0, 10)]
            assert verified.entries == 7
            assert await store.check_ledger_day(day - timedelta(days=1)) is None

            today = datetime.now(UTC).date()
            with pytest.raises(DayNotOver):
                await store.close_ledger_day(today + timedelta(days=1), TZ, ALICE)
            assert await store.ledger_balance("recharges:platform") == 905
            assert await store.ledger_balance("subscriber:5491199999999") == 0

