"""`Store`: the application's whole view of PostgreSQL.

Hot paths are micro-batched (DESIGN D1): durable writes (acceptances and transitions share one
group-commit writer, so a crossing is one database transaction and one fsync for the lot),
transaction reads by id, and subscriber snapshots. Cold paths (listings, alarms, recovery) cross
once per call.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import attrs
import trio

from gestor.model import (
    Alarm,
    NewAlarm,
    NewTransaction,
    SubscriberSnapshot,
    Transaction,
    Transition,
)
from gestor.store import _alarms, _restrictions, _rule_sets, _transactions
from gestor.store._batch import Batcher, BatcherStatistics
from gestor.store._bridge import Bridge, BridgeStatistics, open_bridge
from gestor.store._health import DatabaseHealth, HealthStatistics
from gestor.store._migrate import migrate
from gestor.store._restrictions import Restriction
from gestor.store._rule_sets import AuditEntry, RuleSetRecord
from gestor.store._transactions import AcceptOutcome, SnapshotRequest

Write = NewTransaction | Transition | SnapshotRequest
WriteOutcome = AcceptOutcome | bool | SubscriberSnapshot


async def _write_retrying_deadlocks(
    conn: Any, accepts: Sequence[NewTransaction], moves: Sequence[Transition], attempts: int = 3
) -> tuple[list[AcceptOutcome], list[bool]]:
    """The batch's one statement, again if PostgreSQL broke a deadlock by aborting it: it is
    atomic, so nothing of it was applied, and running it again is the same request."""
    for attempt in range(attempts):
        try:
            return await _transactions.write_batch(conn, accepts, moves)
        except asyncpg.exceptions.DeadlockDetectedError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


async def _write_batch(conn: Any, items: Sequence[Write]) -> list[WriteOutcome]:
    """One statement (and commit) for a mixed batch of acceptances and transitions; then, in
    the same crossing, one statement for the snapshots of subscribers whose first purchase
    rode along (their actor needs both before its saga starts)."""
    accepts = [i for i in items if isinstance(i, NewTransaction)]
    moves = [i for i in items if isinstance(i, Transition)]
    loads = [i for i in items if isinstance(i, SnapshotRequest)]
    accepted, moved = (await _write_retrying_deadlocks(conn, accepts, moves)
                       if accepts or moves else ([], []))
    loaded = await _transactions.snapshot_batch(conn, loads) if loads else []
    a, m, s = iter(accepted), iter(moved), iter(loaded)
    out: list[WriteOutcome] = []
    for i in items:
        if isinstance(i, NewTransaction):
            out.append(next(a))
        elif isinstance(i, Transition):
            out.append(next(m))
        else:
            out.append(next(s))
    return out


@attrs.frozen
class StoreStatistics:
    bridge: BridgeStatistics
    health: HealthStatistics
    batchers: tuple[BatcherStatistics, ...]


@attrs.define
class Store:
    bridge: Bridge
    _writes: Batcher[Write, WriteOutcome]
    _gets: Batcher[uuid.UUID, Transaction | None]
    _snapshots: Batcher[SnapshotRequest, SubscriberSnapshot]

    # -- hot, batched ------------------------------------------------------------------------
    async def accept(self, tx: NewTransaction) -> AcceptOutcome:
        """Record a new purchase, taking its msisdn's pending slot (D3) and its idempotency
        key (D5); or say why not."""
        outcome = await self._writes.submit(tx)
        assert not isinstance(outcome, bool | SubscriberSnapshot)
        return outcome

    async def accept_and_load(self, tx: NewTransaction, request: SnapshotRequest
                              ) -> tuple[AcceptOutcome, SubscriberSnapshot]:
        """`accept(tx)` and `snapshot(request)` in one crossing: a fresh subscriber actor's
        first purchase needs both, and a crossing is most of what a statement costs."""
        outcome, snapshot = await self._writes.submit_together(tx, request)
        assert not isinstance(outcome, bool | SubscriberSnapshot)
        assert isinstance(snapshot, SubscriberSnapshot)
        return outcome, snapshot

    async def transition(self, move: Transition) -> bool:
        """Apply a durable state change; False if the row was no longer in `move.expect`."""
        outcome = await self._writes.submit(move)
        assert isinstance(outcome, bool)
        return outcome

    async def get(self, tx_id: uuid.UUID) -> Transaction | None:
        return await self._gets.submit(tx_id)

    async def snapshot(self, request: SnapshotRequest) -> SubscriberSnapshot:
        return await self._snapshots.submit(request)

    # -- cold ----------------------------------------------------------------------------------
    async def transactions_for(
        self, msisdn: str, states: Sequence[str] | None = None, limit: int = 50
    ) -> list[Transaction]:
        return await self.bridge.run(
            _transactions.list_for_msisdn, msisdn, states, limit, transaction=False
        )

    async def claim_stale(self, stale_before: datetime, now: datetime, limit: int = 100
                          ) -> list[Transaction]:
        """Lease stale non-terminal transactions for recovery (see `_transactions`)."""
        return await self.bridge.run(_transactions.claim_stale, stale_before, now, limit)

    async def touch(self, ids: Sequence[uuid.UUID], now: datetime) -> int:
        """Renew the recovery lease of transactions this worker is still driving."""
        return await self.bridge.run(_transactions.touch, list(ids), now)

    async def raise_alarm(self, alarm: NewAlarm) -> Alarm:
        return await self.bridge.run(_alarms.insert_alarm, alarm)

    async def alarms_after(self, after_id: int, limit: int = 1000) -> list[Alarm]:
        return await self.bridge.run(_alarms.alarms_after, after_id, limit, transaction=False)

    async def latest_alarm_id(self) -> int:
        return await self.bridge.run(_alarms.latest_alarm_id, transaction=False)

    async def listen_alarms(self, callback: Callable[[int], None]) -> None:
        """`callback(alarm_id)` for every alarm any worker raises from now on; `callback(0)`
        when the LISTEN was lost and made again (alarms may have been missed meanwhile)."""
        await self.bridge.add_listener(_alarms.ALARM_CHANNEL, lambda p: callback(int(p)),
                                       lambda: callback(0))

    # -- rule sets ------------------------------------------------------------------------------
    async def seed_rules(self, source: str, description: str) -> RuleSetRecord:
        return await self.bridge.run(_rule_sets.seed, source, description)

    async def create_rules(self, source: str, description: str, actor: str,
                           based_on: int | None) -> RuleSetRecord:
        return await self.bridge.run(_rule_sets.create, source, description, actor, based_on)

    async def rules(self, version: int) -> RuleSetRecord | None:
        return await self.bridge.run(_rule_sets.get, version, transaction=False)

    async def active_rules(self) -> RuleSetRecord | None:
        return await self.bridge.run(_rule_sets.active, transaction=False)

    async def rule_sets(self) -> list[RuleSetRecord]:
        return await self.bridge.run(_rule_sets.listing, transaction=False)

    async def activate_rules(self, version: int, actor: str) -> RuleSetRecord | None:
        return await self.bridge.run(_rule_sets.activate, version, actor)

    async def rules_audit(self, version: int | None = None) -> list[AuditEntry]:
        return await self.bridge.run(_rule_sets.audit, version, transaction=False)

    async def listen_rules(self, callback: Callable[[int], None]) -> None:
        """`callback(version)` whenever any worker activates a rule set; `callback(0)` when
        the LISTEN was lost and made again (an activation may have been missed meanwhile)."""
        await self.bridge.add_listener(_rule_sets.RULES_CHANNEL, lambda p: callback(int(p)),
                                       lambda: callback(0))

    # -- restrictions ---------------------------------------------------------------------------
    async def restrictions(self, msisdn: str) -> list[Restriction]:
        return await self.bridge.run(_restrictions.list_for, msisdn, transaction=False)

    async def restrict(self, msisdn: str, code: str, reason: str | None,
                       until: datetime | None) -> Restriction:
        return await self.bridge.run(_restrictions.put, msisdn, code, reason, until)

    async def lift(self, msisdn: str, code: str) -> bool:
        return await self.bridge.run(_restrictions.delete, msisdn, code)

    async def listen_subscribers(self, callback: Callable[[str], None]) -> None:
        """`callback(msisdn)` whenever any worker changes a subscriber's restrictions."""
        await self.bridge.add_listener(_restrictions.SUBSCRIBER_CHANNEL, callback)

    async def ping(self) -> bool:
        async def _ping(conn: Any) -> bool:
            return bool(await conn.fetchval("SELECT true"))

        return await self.bridge.run(_ping, transaction=False)

    @property
    def health(self) -> DatabaseHealth:
        """Whether the database is reachable, as this worker last saw it."""
        return self.bridge.health

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            bridge=self.bridge.statistics(),
            health=self.bridge.health.statistics(),
            batchers=tuple(
                b.statistics() for b in (self._writes, self._gets, self._snapshots)
            ),
        )


@contextlib.asynccontextmanager
async def open_store(
    dsn: str,
    *,
    pool_size: int = 10,
    max_batch: int = 256,
    apply_migrations: bool = True,
) -> AsyncIterator[Store]:
    """Connect, migrate (unless told not to) and run the batchers until exit."""
    async with open_bridge(dsn, min_size=1, max_size=pool_size) as bridge:
        if apply_migrations:
            await migrate(bridge)

        def lanes(fn: Any, count: int) -> list[Callable[[Sequence[Any]], Any]]:
            # Each batch is one statement: atomic without BEGIN/COMMIT round trips. Each
            # worker of a batcher has its own connection (opened when first needed).
            def runner() -> Callable[[Sequence[Any]], Any]:
                lane = bridge.lane()

                async def run(items: Sequence[Any]) -> Any:
                    return await lane.run(fn, items)

                return run

            return [runner() for _ in range(count)]

        store = Store(
            bridge,
            Batcher("writes", lanes(_write_batch, 2), max_batch=max_batch),
            Batcher("reads", lanes(_transactions.get_batch, 2), max_batch=max_batch),
            Batcher("snapshots", lanes(_transactions.snapshot_batch, 2), max_batch=max_batch),
        )
        async with trio.open_nursery() as nursery:
            for batcher in (store._writes, store._gets, store._snapshots):
                await nursery.start(batcher.run)
            health = bridge.health
            await nursery.start(health.run, bridge.probe, bridge.restore_listeners)
            yield store
            nursery.cancel_scope.cancel()
