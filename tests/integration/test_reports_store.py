"""The reports' store against a real PostgreSQL (migration 0013): facts written with the
movements' own writes, read exact before and after the fold, an inconsistent movement settled
later corrected, and a rebuild from `transactions` equal to what the facts fed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import trio

from gestor.model import (
    HistoryEntry,
    NewTransaction,
    Reason,
    Transition,
    TxKind,
    TxState,
)
from gestor.store import Accepted, Period, SnapshotRequest, Store, open_store
from gestor.store._reports import LADDER

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
TZ = "UTC"


def _new(at: datetime, msisdn: str, bono: str = "DATA_2GB_7D", channel: str = "ussd",
         kind: TxKind = TxKind.PURCHASE, amount: int | None = None) -> NewTransaction:
    return NewTransaction(id=uuid.uuid4(), msisdn=msisdn, bono_id=bono, channel=channel,
                          client="public", idempotency_key=uuid.uuid4().hex, request_hash="h",
                          at=at, kind=kind, amount=amount)


async def _accept(store: Store, tx: NewTransaction) -> None:
    now = datetime.now(UTC)
    window = SnapshotRequest(tx.msisdn, now - timedelta(hours=1), now - timedelta(days=1), now)
    assert isinstance(await store.accept(tx, window), Accepted)


async def _move(store: Store, tx: NewTransaction, expect: TxState, state: TxState,
                **kw: Any) -> None:
    now = datetime.now(UTC)
    move = Transition(tx.id, expect, state, now, (HistoryEntry(state, now),), **kw)
    assert await store.transition(move) is not None


async def _snapshot(store: Store, start: datetime, end: datetime) -> dict[str, Any]:
    period = Period(start, end)
    series, owed = await store.reports.series(period, "hour", TZ)
    return {
        "series": series, "owed": owed,
        "bono": await store.reports.breakdown(period, "bono"),
        "segment": await store.reports.breakdown(period, "segment"),
        "rule": await store.reports.breakdown(period, "rule"),
        "peak": await store.reports.peak_hours(period, TZ),
        "latency": await store.reports.latency(period, "day", TZ),
    }


async def test_facts_rollups_corrections_and_rebuild(database_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(database_url) as store:
            a = _new(MONDAY_10 + timedelta(minutes=5), "5491100000001")
            b = _new(MONDAY_10 + timedelta(minutes=50), "5491100000002", bono="SMS_200_30D")
            c = _new(MONDAY_10 + timedelta(hours=1, minutes=1), "5491100000003")
            d = _new(MONDAY_10 + timedelta(hours=1, minutes=2), "5491100000004")
            adv = _new(MONDAY_10 + timedelta(hours=1, minutes=3), "5491100000005",
                       kind=TxKind.ADVANCE, amount=1000)
            for tx in (a, b, c, d, adv):
                await _accept(store, tx)
            await _move(store, a, TxState.RECEIVED, TxState.COMPLETED, price=60000,
                        profile_id="PREPAID", segment="prepaid")
            await _move(store, b, TxState.RECEIVED, TxState.REJECTED, profile_id="VIP",
                        segment="vip", reasons=(Reason("NO_BALANCE", "m"), Reason("LIMIT", "n")))
            await _move(store, c, TxState.RECEIVED, TxState.CHARGED, price=60000, step=1)
            await _move(store, c, TxState.CHARGED, TxState.INCONSISTENT)
            await _move(store, adv, TxState.RECEIVED, TxState.COMPLETED, amount=1000, fee=100,
                        owed=1100)
            day = (MONDAY_10 - timedelta(hours=10), MONDAY_10 + timedelta(hours=14))
            before = await _snapshot(store, *day)
            rows = {(r["at"].hour, r["kind"]): r for r in before["series"]}
            assert rows[10, "purchase"]["received"] == 2
            assert rows[10, "purchase"]["completed"] == 1
            assert rows[10, "purchase"]["rejected"] == 1
            assert rows[10, "purchase"]["revenue"] == 60000
            assert rows[11, "purchase"]["received"] == 2  # d still in flight: received only
            assert rows[11, "purchase"]["inconsistent"] == 1
            assert rows[11, "advance"]["fees"] == 100
            assert rows[11, "advance"]["granted"] == 1000
            assert before["owed"] == 1100
            assert {r["key"]: r["count"] for r in before["rule"]} == {"NO_BALANCE": 1,
                                                                       "LIMIT": 1}
            assert {r["key"]: r["count"] for r in before["segment"]} == {
                "prepaid": 1, "vip": 1, "": 2}
            assert before["peak"] == {(0, 10): 2, (0, 11): 3}

            # folding changes nothing a report says
            assert await store.reports.fold() > 0
            assert await _snapshot(store, *day) == before
            # the inconsistent one is refunded later: its fact is taken back
            await _move(store, c, TxState.INCONSISTENT, TxState.REFUNDED)
            await _move(store, d, TxState.RECEIVED, TxState.FAILED)
            after = await _snapshot(store, *day)
            rows = {(r["at"].hour, r["kind"]): r for r in after["series"]}
            assert rows[11, "purchase"]["inconsistent"] == 0
            assert rows[11, "purchase"]["refunded"] == 1
            assert rows[11, "purchase"]["refunds"] == 60000
            assert rows[11, "purchase"]["failed"] == 1
            latency = {r["outcome"]: r["count"] for r in after["latency"]}
            assert latency == {"completed": 1, "rejected": 1, "refunded": 1, "failed": 1}
            # a rebuild from the movements says the same, folded or not
            assert await store.reports.rebuild() == 5
            assert await _snapshot(store, *day) == after
            assert await store.reports.rebuild(MONDAY_10, MONDAY_10 + timedelta(hours=1)) == 2
            assert await _snapshot(store, *day) == after
            # the store reads histograms over the database's own ladder
            ladder = await store.bridge.run(
                lambda conn: conn.fetchval("SELECT report_latency_ladder()"), transaction=False)
            assert tuple(ladder) == LADDER
            # an empty period: no rows
            empty = await _snapshot(store, MONDAY_10 - timedelta(days=3),
                                    MONDAY_10 - timedelta(days=2))
            assert empty["series"] == [] and empty["peak"] == {} and empty["bono"] == []
