"""`Store`: the application's whole view of PostgreSQL.

Hot paths are micro-batched (DESIGN D1): durable writes (acceptances and transitions share one
group-commit writer, so a crossing is one database transaction and one fsync for the lot),
transaction reads by id, and subscriber snapshots. Cold paths (listings, alarms, recovery) cross
once per call.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import asyncpg
import attrs
import trio

from gestor.model import (
    Actor,
    Alarm,
    NewAlarm,
    NewTransaction,
    SubscriberSnapshot,
    Transaction,
    Transition,
)
from gestor.store import (
    _alarms,
    _audit,
    _ledger,
    _notifications,
    _peak_hours,
    _rate_limits,
    _restrictions,
    _transactions,
    _versions,
)
from gestor.store._audit import AuditRecord
from gestor.store._batch import Batcher, BatcherStatistics, Queued
from gestor.store._bridge import Bridge, BridgeStatistics, open_bridge
from gestor.store._health import DatabaseHealth, HealthStatistics, StoreUnavailable
from gestor.store._ledger import AccountTotals, DayCheck, Posting
from gestor.store._migrate import migrate
from gestor.store._notifications import Delivery, RouteRow
from gestor.store._reports import Reports
from gestor.store._restrictions import Restriction
from gestor.store._transactions import (
    Accepted,
    AcceptOutcome,
    Expired,
    KeyReused,
    PendingExists,
    Replayed,
    SnapshotRequest,
)
from gestor.store._versioned import Versions
from gestor.store._versions import AuditEntry, PartnerMoved, VersionRecord


@attrs.frozen
class _Accept:
    """An acceptance as the write batcher carries it: the purchase, and the windows of the
    history its rules will read."""

    tx: NewTransaction
    window: SnapshotRequest


Write = _Accept | Transition
_ACCEPT_OUTCOMES = (Accepted, Replayed, KeyReused, PendingExists, Expired)
WriteOutcome = AcceptOutcome | datetime | None


@attrs.frozen
class Unsettled:
    """The acceptance was sent to the database but its answer did not come within the bound
    (or the connection broke): the purchase may have been written or not, nobody knows yet.
    `answer()`, when given, waits for the crossing's late answer (or raises its error)."""

    reason: str
    answer: Callable[[], Awaitable[AcceptOutcome]] | None = attrs.field(
        default=None, eq=False, repr=False
    )


async def _write_retrying_deadlocks(
    conn: Any, accepts: Sequence[_Accept], moves: Sequence[Transition], attempts: int = 3
) -> tuple[list[AcceptOutcome], list[datetime | None]]:
    """The batch's one statement, again if PostgreSQL broke a deadlock by aborting it: it is
    atomic, so nothing of it was applied, and running it again is the same request."""
    for attempt in range(attempts):
        try:
            return await _transactions.write_batch(
                conn, [a.tx for a in accepts], moves, [a.window for a in accepts])
        except asyncpg.exceptions.DeadlockDetectedError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


async def _write_batch(conn: Any, items: Sequence[Write]) -> list[WriteOutcome]:
    """One statement (and commit) for a mixed batch of acceptances and transitions, which also
    reads each accepted row as committed with its subscriber's history (exact, whatever process
    wrote what: `_transactions.write_batch`)."""
    accepts = [i for i in items if isinstance(i, _Accept)]
    moves = [i for i in items if isinstance(i, Transition)]
    accepted, moved = await _write_retrying_deadlocks(conn, accepts, moves)
    a, m = iter(accepted), iter(moved)
    return [next(a) if isinstance(i, _Accept) else next(m) for i in items]


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
    async def accept(self, tx: NewTransaction, window: SnapshotRequest, *,
                     deadline: float = math.inf, settle: float = 1.0
                     ) -> AcceptOutcome | Unsettled:
        """Record a new purchase, taking its msisdn's pending slot (D3) and its idempotency
        key (D5); or say why not. `Accepted` carries the row as committed (`created_at` is the
        database's clock at the guard) and the subscriber's history over `window`'s day and
        month as committed at that moment, read in the same crossing: what its rules read.
        With a `deadline` (trio clock), see `_accept`."""
        results = await self._accept(self._writes.put(_Accept(tx, window)), deadline, settle)
        if isinstance(results, Expired | Unsettled):
            return results
        outcome = results[0]
        assert isinstance(outcome, _ACCEPT_OUTCOMES)
        return outcome

    @staticmethod
    async def _accept(queued: Queued[Write, WriteOutcome], deadline: float, settle: float
                      ) -> list[WriteOutcome] | Expired | Unsettled:
        """The crossing's answer for an acceptance, or the truth about why there is none:

        - still queued at `deadline` (no worker took it into a batch): withdrawn, and so
          certainly never written → `Expired`;
        - taken (the statement may have been sent): its answer is awaited until
          `deadline + settle`; the INSERT itself refuses rows past their `accept_by` by the
          database's clock, so a stalled database that wakes late answers `Expired`. No answer
          by then → `Unsettled`, whose `answer()` waits for the late one;
        - the crossing failed before a connection could be made → `Expired` (nothing was
          sent); any other failure → `Unsettled` (it may have committed before it broke).
        """
        def failed(exc: Exception) -> Expired | Unsettled:
            if isinstance(exc, StoreUnavailable) and not exc.sent:
                return Expired(f"the database could not be reached: {exc}")
            return Unsettled(f"the database crossing failed: {exc!r}")

        try:
            with trio.move_on_at(deadline):
                return await queued.results()
            if queued.withdraw():
                return Expired("the database did not take it before its acceptance deadline")
            with trio.move_on_at(deadline + settle):
                return await queued.results()
        except Exception as exc:
            return failed(exc)

        async def answer() -> AcceptOutcome:
            outcome = (await queued.results())[0]
            assert outcome is not None and not isinstance(outcome, datetime)  # not a transition
            return outcome

        return Unsettled("the database did not answer in time", answer)

    async def transition(self, move: Transition) -> datetime | None:
        """Apply a durable state change: its committed `updated_at` (the database's clock;
        `move.events` are stamped with it), or None if the row was no longer in
        `move.expect`."""
        outcome = await self._writes.submit(move)
        assert outcome is None or isinstance(outcome, datetime)
        return outcome

    async def get(self, tx_id: uuid.UUID) -> Transaction | None:
        return await self._gets.submit(tx_id)

    async def snapshot(self, request: SnapshotRequest) -> SubscriberSnapshot:
        """A subscriber's history and restrictions as committed now (listings, dry runs)."""
        return await self._snapshots.submit(request)

    # -- cold ----------------------------------------------------------------------------------
    async def transactions_for(
        self, msisdn: str, states: Sequence[str] | None = None, limit: int = 50,
        client: str | None = None, kinds: Sequence[str] | None = None,
    ) -> list[Transaction]:
        """A mobile's movements as payer or beneficiary, newest first; with `client`, only
        that client's; with `kinds`, only those kinds."""
        return await self.bridge.run(
            _transactions.list_for_msisdn, msisdn, states, limit, client, kinds,
            transaction=False,
        )

    async def peak_hours(self, msisdn: str, since: datetime, until: datetime, tz: str
                         ) -> dict[tuple[int, int], int]:
        """{(weekday 0 = Monday, hour): movements} `msisdn` made (as payer) in [since, until),
        in time zone `tz`; empty cells absent."""
        return await self.bridge.run(_peak_hours.peak_hours, msisdn, since, until, tz,
                                     transaction=False)

    async def claim_stale(self, stale_before: datetime, now: datetime, limit: int = 100
                          ) -> list[Transaction]:
        """Lease stale non-terminal transactions for recovery (see `_transactions`)."""
        return await self.bridge.run(_transactions.claim_stale, stale_before, now, limit)

    async def touch(self, ids: Sequence[uuid.UUID], now: datetime) -> int:
        """Renew the recovery lease of transactions this worker is still driving."""
        return await self.bridge.run(_transactions.touch, list(ids), now)

    async def raise_alarm(self, alarm: NewAlarm) -> Alarm:
        """Persist an event alarm (one that needs no resolution) and NOTIFY every worker."""
        created, _ = await self.bridge.run(_alarms.insert_alarm, alarm, None)
        return created

    async def raise_open_alarm(self, alarm: NewAlarm, subject: str) -> tuple[Alarm, bool]:
        """Persist `alarm`, open on `subject` until resolved, and NOTIFY; if one of its kind is
        already open on that subject, that one instead, and False (nothing written)."""
        return await self.bridge.run(_alarms.insert_alarm, alarm, subject)

    async def resolve_alarms(self, kinds: Sequence[str], subject: str, resolution: NewAlarm
                             ) -> tuple[Alarm, list[Alarm]] | None:
        """Persist `resolution` naming every open alarm of `kinds` on `subject` and mark them
        resolved by it, in one transaction; None if none was open."""
        return await self.bridge.run(_alarms.resolve_alarms, list(kinds), subject, resolution)

    async def resolve_alarm(self, alarm_id: int, resolution: NewAlarm, actor: Actor
                            ) -> tuple[Alarm, list[Alarm]] | Alarm | None:
        """`actor` resolves alarm `alarm_id` by `resolution` if it is open (audited); else the
        alarm as it is, or None if there is none."""
        return await self.bridge.run(_alarms.resolve_alarm, alarm_id, resolution, actor)

    async def acknowledge_alarm(self, alarm_id: int, actor: Actor, note: str = ""
                                ) -> tuple[Alarm, bool] | None:
        """`actor` acknowledges the open alarm `alarm_id` (audited): (the alarm, True); (the
        alarm as it is, False) if it is not open or already acknowledged; None if none."""
        return await self.bridge.run(_alarms.acknowledge_alarm, alarm_id, actor, note)

    async def open_transaction_alarms(self, kinds: Sequence[str]
                                      ) -> list[tuple[uuid.UUID, str, str, str]]:
        """(transaction id, msisdn, kind, transaction state) of each open alarm of `kinds`."""
        return await self.bridge.run(_alarms.open_transaction_alarms, list(kinds),
                                     transaction=False)

    async def alarms_after(self, after_id: int, limit: int = 1000) -> list[Alarm]:
        return await self.bridge.run(_alarms.alarms_after, after_id, limit, transaction=False)

    async def list_alarms(self, after_id: int = 0, limit: int = 100, state: str | None = None,
                          kinds: Sequence[str] | None = None, before_id: int | None = None
                          ) -> list[Alarm]:
        """Alarms after `after_id` in id order (with `before_id`: before it, newest first),
        `state` ('open', 'acknowledged', 'unacknowledged', 'resolved') and `kinds`
        filtering."""
        return await self.bridge.run(_alarms.list_alarms, after_id, limit, state,
                                     list(kinds) if kinds else None, before_id,
                                     transaction=False)

    async def latest_alarm_id(self) -> int:
        return await self.bridge.run(_alarms.latest_alarm_id, transaction=False)

    async def listen_alarms(self, callback: Callable[[int], None]) -> None:
        """`callback(alarm_id)` for every alarm any worker raises from now on; `callback(0)`
        when the LISTEN was lost and made again (alarms may have been missed meanwhile)."""
        await self.bridge.add_listener(_alarms.ALARM_CHANNEL, lambda p: callback(int(p)),
                                       lambda: callback(0))

    # -- notifications outbox (gestor.notify) ----------------------------------------------------
    async def replace_notification_routes(self, routes: Sequence[RouteRow]) -> None:
        """Make `routes` what the outbox's triggers follow (every worker, at start)."""
        await self.bridge.run(_notifications.replace_routes, list(routes))

    async def claim_notifications(self, limit: int, lease: float) -> list[Delivery]:
        """Take up to `limit` due deliveries for one attempt each (`FOR UPDATE SKIP LOCKED`),
        not due again for `lease` seconds unless `finish_notification` says so."""
        return await self.bridge.run(_notifications.claim, limit, lease, transaction=False)

    async def finish_notification(self, delivery_id: int, attempt: int, state: str, *,
                                  retry_in: float = 0.0, error: str | None = None,
                                  language: str | None = None, subject: str | None = None,
                                  body: str | None = None) -> bool:
        """Record attempt `attempt` of a delivery: 'sent', 'failed', or 'pending' again in
        `retry_in` seconds; False if another attempt has claimed it since."""
        return await self.bridge.run(_notifications.finish, delivery_id, attempt, state,
                                     retry_in, error, language, subject, body,
                                     transaction=False)

    async def next_notification_due(self) -> float | None:
        """Seconds until the next pending delivery is due; None when none is pending."""
        return await self.bridge.run(_notifications.next_due, transaction=False)

    async def notifications(self, *, after_id: int = 0, limit: int = 100,
                            alarm_id: int | None = None,
                            transaction_id: uuid.UUID | None = None, state: str | None = None,
                            channel: str | None = None) -> list[Delivery]:
        """Deliveries after `after_id` in id order, filtered by what is given."""
        return await self.bridge.run(_notifications.listing, after_id, limit, alarm_id,
                                     transaction_id, state, channel, transaction=False)

    async def listen_notifications(self, callback: Callable[[], None]) -> None:
        """`callback()` whenever a delivery is queued, and when the LISTEN was made again."""
        await self.bridge.add_listener(_notifications.NOTIFY_CHANNEL, lambda _p: callback(),
                                       callback)

    # -- versioned admin data: rule sets and the catalogue ---------------------------------------
    @property
    def rule_versions(self) -> Versions:
        """Rule-set versions (DESIGN D6)."""
        return Versions(self.bridge, _versions.RULES)

    @property
    def reports(self) -> Reports:
        """The reports over every worker and node (migration 0013)."""
        return Reports(self.bridge)

    @property
    def catalogue_versions(self) -> Versions:
        """Bono catalogue versions."""
        return Versions(self.bridge, _versions.CATALOGUE)

    async def seed_rules(self, source: str, description: str) -> VersionRecord:
        return await self.rule_versions.seed(source, description)

    async def create_rules(self, source: str, description: str, actor: Actor,
                           based_on: int | None) -> VersionRecord:
        return await self.rule_versions.create(source, description, actor, based_on)

    async def rules(self, version: int) -> VersionRecord | None:
        return await self.rule_versions.get(version)

    async def active_rules(self) -> VersionRecord | None:
        return await self.rule_versions.active()

    async def rule_sets(self) -> list[VersionRecord]:
        return await self.rule_versions.listing()

    async def activate_rules(self, version: int, actor: Actor, catalogue: int | None = None
                             ) -> VersionRecord | PartnerMoved | None:
        """Activate rule-set `version`; with `catalogue`, only while that catalogue version is
        the active one (the rules were compiled against it)."""
        return await self.rule_versions.activate(version, actor, catalogue)

    async def rules_audit(self, version: int | None = None) -> list[AuditEntry]:
        return await self.rule_versions.audit(version)

    async def listen_rules(self, callback: Callable[[int], None]) -> None:
        """`callback(version)` whenever any worker activates a rule set; `callback(0)` when
        the LISTEN was lost and made again (an activation may have been missed meanwhile)."""
        await self.rule_versions.listen(callback)

    # -- audit trail ----------------------------------------------------------------------------
    async def audit_trail(self, *, after_id: int = 0, since: datetime | None = None,
                          actor: str | None = None, action: str | None = None,
                          limit: int = 100) -> list[AuditRecord]:
        """The audit trail, oldest first (see `_audit.listing`)."""
        return await self.bridge.run(_audit.listing, after_id, since, actor, action, limit,
                                     transaction=False)

    # -- ledger ---------------------------------------------------------------------------------
    async def trial_balance(self, since: datetime, until: datetime) -> tuple[AccountTotals, ...]:
        """Per account, the debits and credits posted in `[since, until)`."""
        return await self.bridge.run(_ledger.trial_balance, since, until, transaction=False)

    async def ledger_entries(self, since: datetime, until: datetime, *,
                             account: str | None = None,
                             transaction_id: uuid.UUID | None = None, after_id: int = 0,
                             limit: int = 100) -> list[Posting]:
        """The entries posted in `[since, until)`, in posting order (see `_ledger.entries`)."""
        return await self.bridge.run(_ledger.entries, since, until, account, transaction_id,
                                     after_id, limit, transaction=False)

    async def ledger_balance(self, account: str) -> int:
        """Debits - credits of `account` over all time (0 without entries)."""
        found = await self.bridge.run(_ledger.balances, [account], transaction=False)
        return found[account]

    async def ledger_balances(self, accounts: Sequence[str]) -> dict[str, int]:
        """`ledger_balance` of each of these accounts, in one read."""
        found: dict[str, int] = await self.bridge.run(_ledger.balances, list(accounts),
                                                      transaction=False)
        return found

    async def close_ledger_day(self, day: date, timezone: str, actor: Actor) -> DayCheck:
        """Freeze `day`'s totals (audited), or check them if it is closed already."""
        return await self.bridge.run(_ledger.close_day, day, timezone, actor)

    async def check_ledger_day(self, day: date) -> DayCheck | None:
        """A closed day's frozen totals against its entries now (None: not closed)."""
        return await self.bridge.run(_ledger.check_day, day, transaction=False)

    # -- restrictions ---------------------------------------------------------------------------
    async def restrictions(self, msisdn: str) -> list[Restriction]:
        return await self.bridge.run(_restrictions.list_for, msisdn, transaction=False)

    async def restrict(self, msisdn: str, code: str, reason: str | None,
                       until: datetime | None, actor: Actor) -> Restriction:
        """Set or replace a restriction; audited (`restriction.put`) in the same transaction."""
        return await self.bridge.run(_restrictions.put, msisdn, code, reason, until, actor)

    async def lift(self, msisdn: str, code: str, actor: Actor) -> Restriction | None:
        """Delete a restriction: what was deleted (audited, `restriction.delete`), or None."""
        return await self.bridge.run(_restrictions.delete, msisdn, code, actor)

    # -- rate limits (gestor.ratelimits) ---------------------------------------------------------
    async def exchange_rate_limits(self, rows: Sequence[tuple[str, int, int, float, float]],
                                   demand_seconds: float) -> Mapping[str, tuple[float, float]]:
        """Add this worker's (bucket, used, asked, rate, burst) to the shared buckets and read
        each one's (level, demand): one statement (see `_rate_limits`)."""
        return await self.bridge.run(_rate_limits.exchange, rows, demand_seconds,
                                     transaction=False)

    async def forget_rate_limits(self, idle_seconds: float) -> int:
        return await self.bridge.run(_rate_limits.forget_full, idle_seconds, transaction=False)

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
