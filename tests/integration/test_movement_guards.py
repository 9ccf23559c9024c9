"""The guard of every mobile a movement touches (DESIGN D3 generalised, 0010) against a real
PostgreSQL: taken with the acceptance for payer and beneficiary, released with the final state,
deadlock-free under crossing batches; and a mobile's listing in either role."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
import trio.lowlevel

from gestor.model import HistoryEntry, NewTransaction, Role, Transition, TxKind, TxState
from gestor.store import Accepted, PendingExists, SnapshotRequest, Store, open_store

A, B, C = "5491100000001", "5491100000002", "5491100000003"


def _new(msisdn: str, beneficiary: str | None = None, kind: TxKind = TxKind.TRANSFER,
         key: str | None = None) -> NewTransaction:
    return NewTransaction(
        id=uuid.uuid4(), msisdn=msisdn, bono_id="", channel="app", client="public",
        idempotency_key=key or uuid.uuid4().hex, request_hash="h", at=datetime.now(UTC),
        kind=kind, beneficiary=beneficiary, amount=1000,
    )


def _window(msisdn: str) -> SnapshotRequest:
    now = datetime.now(UTC)
    return SnapshotRequest(msisdn, now - timedelta(hours=1), now - timedelta(days=1), now)


async def _end(store: Store, tx_id: uuid.UUID, state: TxState = TxState.COMPLETED) -> None:
    now = datetime.now(UTC)
    assert await store.transition(
        Transition(tx_id, TxState.RECEIVED, state, now, (HistoryEntry(state, now),)))


async def _guards(store: Store) -> dict[str, uuid.UUID]:
    async def read(conn: Any) -> dict[str, uuid.UUID]:
        rows = await conn.fetch("SELECT msisdn, transaction_id FROM mobile_guards")
        return {r["msisdn"]: r["transaction_id"] for r in rows}

    return await store.bridge.run(read, transaction=False)


async def test_a_transfer_guards_both_mobiles_until_it_ends(database_url: str) -> None:
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            transfer = _new(A, B)
            out = await store.accept(transfer, _window(A))
            assert isinstance(out, Accepted)
            assert await _guards(store) == {A: transfer.id, B: transfer.id}
            # Any movement on either mobile, in either role, is refused, naming the transfer.
            for other in (_new(B, C), _new(C, B), _new(A, C), _new(C, A),
                          _new(B, kind=TxKind.ADVANCE)):
                refused = await store.accept(other, _window(other.msisdn))
                assert isinstance(refused, PendingExists), other
                assert refused.transaction.id == transfer.id
            # Nothing was written for them, not even a guard of the free mobile C.
            assert await _guards(store) == {A: transfer.id, B: transfer.id}
            await _end(store, transfer.id)
            assert await _guards(store) == {}
            again = await store.accept(_new(B, C), _window(B))
            assert isinstance(again, Accepted)


async def test_listing_shows_each_mobiles_role_and_filters_by_kind(database_url: str) -> None:
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            made = []
            for new in (_new(A, B), _new(B, kind=TxKind.ADVANCE), _new(C, A)):
                out = await store.accept(new, _window(new.msisdn))
                assert isinstance(out, Accepted)
                made.append(new.id)
                await _end(store, new.id)
            of_a = await store.transactions_for(A)
            assert [t.id for t in of_a] == [made[2], made[0]]
            assert [t.role_of(A) for t in of_a] == [Role.BENEFICIARY, Role.PAYER]
            of_b = await store.transactions_for(B, kinds=["advance"])
            assert [(t.id, t.kind) for t in of_b] == [(made[1], TxKind.ADVANCE)]
            assert [t.id for t in await store.transactions_for(B)] == [made[1], made[0]]


async def test_crossing_transfers_never_deadlock_and_never_overlap(database_url: str) -> None:
    """Many concurrent transfers among four mobiles in both directions, batched together by
    the store: every acceptance answers (no deadlock aborts a batch), and at every moment at
    most one accepted movement holds each mobile."""
    mobiles = [A, B, C, "5491100000004"]
    rng = random.Random(7)
    holding: dict[str, uuid.UUID] = {}
    accepted = 0

    async def one(store: Store) -> None:
        nonlocal accepted
        payer, beneficiary = rng.sample(mobiles, 2)
        new = _new(payer, beneficiary)
        out = await store.accept(new, _window(payer))
        if isinstance(out, Accepted):
            for m in (payer, beneficiary):
                assert m not in holding, (m, holding)
                holding[m] = new.id
            accepted += 1
            await trio.lowlevel.checkpoint()
            for m in (payer, beneficiary):
                del holding[m]
            await _end(store, new.id)
        else:
            assert isinstance(out, PendingExists)

    with trio.fail_after(120):
        async with open_store(database_url) as store:
            for _ in range(10):
                async with trio.open_nursery() as nursery:
                    for _ in range(60):
                        nursery.start_soon(one, store)
            assert accepted >= 10
            assert await _guards(store) == {}
