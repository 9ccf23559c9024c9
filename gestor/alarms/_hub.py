"""Alarms: persisted first, then fanned out (DESIGN D8), and resolved when their cause settles.

`AlarmHub.raise_alarm` writes the alarm (the store NOTIFYs every worker in the same transaction)
and logs it. Each worker's hub LISTENs (and polls every few seconds, in case a NOTIFY was lost),
reads everything new since the last id it saw, page after page until it has caught up, and hands
it to its local subscribers, so an alarm raised by any worker reaches every websocket once, in
id order. A subscriber that connects with `since`, or whose buffer overflows while its client is
slow, reads from the database page by page until it has caught up, then follows the live ones
again: no gap and no duplicate, whatever the backlog. Sinks (webhooks) get each alarm from the
worker that raised it, so N workers don't send N copies.

Critical alarms (`OPENING_KINDS`) stay open, in the database, until `resolve` raises a
`resolved` alarm naming them (`details.resolves`: their ids). One already open of a kind on the
same subject is not raised twice.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import trio

from gestor.metrics import ALARMS_RAISED
from gestor.model import Actor, Alarm, NewAlarm, Severity, Transaction, TxState
from gestor.store import Store, StoreUnavailable

logger = logging.getLogger("gestor.alarms")

#: In `details` of an alarm stored after it was announced live: replay shows it, the live
#: feed (which already had it) does not repeat it.
_ANNOUNCED = "announced_live"

_LOG_LEVEL = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING,
              Severity.CRITICAL: logging.ERROR}

#: Kinds of alarm that stay open until resolved, and what each is about: "transaction" (its
#: transaction id), "platform" (`details["platform"]`) or "system" (no key).
OPENING_KINDS: Mapping[str, str] = {
    "charge_unknown": "transaction",
    "provision_unknown": "transaction",
    "refund_failed": "transaction",
    "stuck": "transaction",
    "platform_down": "platform",
    "database_down": "system",
}

#: The transaction alarms a state settles: once final, all of them; once `inconsistent` (the
#: refund failed, so what happened is known), the unknown outcomes; once `charged`, the debit's.
_SETTLED_BY: Mapping[TxState, tuple[str, ...]] = {
    TxState.CHARGED: ("charge_unknown",),
    TxState.INCONSISTENT: ("charge_unknown", "provision_unknown"),
}
_TRANSACTION_KINDS = tuple(k for k, about in OPENING_KINDS.items() if about == "transaction")


def _settled_kinds(state: TxState) -> tuple[str, ...]:
    return _TRANSACTION_KINDS if state.terminal else _SETTLED_BY.get(state, ())


def subject_of(alarm: NewAlarm) -> str | None:
    """The key an alarm of an opening kind is resolved by; None for an event alarm."""
    about = OPENING_KINDS.get(alarm.kind)
    if about is None:
        return None
    if about == "transaction":
        if alarm.transaction_id is None:
            raise ValueError(f"a {alarm.kind} alarm needs its transaction id")
        return str(alarm.transaction_id)
    if about == "platform":
        return str(alarm.details.get("platform", ""))
    return ""


def _key(key: uuid.UUID | str | None) -> str:
    return "" if key is None else str(key)


@attrs.frozen
class AlarmHubStatistics:
    subscribers: int
    raised: int
    resolved: int
    delivered: int
    #: Times a subscriber's buffer overflowed and it caught up from the database instead.
    catch_ups: int
    last_id: int


@attrs.define(eq=False)
class _Subscriber:
    send: trio.MemorySendChannel[Alarm]
    receive: trio.MemoryReceiveChannel[Alarm]
    #: Set when live alarms were not buffered for it (replay pending, or its buffer overflowed):
    #: it reads the database from its last id before following the live ones again.
    behind: bool


@attrs.define
class AlarmHub:
    store: Store
    subscriber_buffer: int = 1000
    #: Alarms read per database query (the hub following the table, a subscriber catching up).
    page_size: int = 500
    #: Seconds between reads of the table with no NOTIFY (a lost NOTIFY never strands alarms).
    poll_interval: float = 5.0
    sinks: list[Callable[[Alarm], None]] = attrs.field(factory=list)
    _subscribers: set[_Subscriber] = attrs.field(factory=set)
    _wakeup: trio.Event = attrs.field(factory=trio.Event)
    _last_id: int = 0
    _raised: int = 0
    _resolved: int = 0
    _delivered: int = 0
    _catch_ups: int = 0

    async def raise_alarm(self, new: NewAlarm) -> Alarm:
        """Persist `new`, log it, wake the local fan-out and hand it to the sinks. An alarm of an
        `OPENING_KINDS` kind stays open until `resolve` names it; while one of its kind is open
        on the same subject, raising it again returns that one and raises nothing new."""
        subject = subject_of(new)
        if subject is None:
            alarm, created = await self.store.raise_alarm(new), True
        else:
            alarm, created = await self.store.raise_open_alarm(new, subject)
        if not created:
            logger.debug("alarm %s on %r already open as %d", new.kind, subject, alarm.id)
            return alarm
        self._announce(alarm)
        return alarm

    async def resolve(self, kinds: str | Iterable[str], key: uuid.UUID | str | None,
                      message: str, *, msisdn: str | None = None,
                      transaction_id: uuid.UUID | None = None,
                      details: Mapping[str, Any] | None = None) -> Alarm | None:
        """Resolve every open alarm of `kinds` whose key is `key`: a transaction id for the
        transaction kinds, a platform's name for `platform_down`, None for system-wide kinds
        such as `database_down`. In one database transaction this persists an info `resolved`
        alarm carrying `message`, `details` plus `{"resolves": [ids], "resolves_kinds": [...]}`,
        and marks those alarms resolved by it (so `GET /v1/admin/alarms?state=open` no longer
        lists them); the `resolved` alarm is fanned out like any other. Returns it, or None when
        nothing of those kinds was open for `key` (then nothing is written). Safe to call from
        any worker, any number of times: each open alarm is resolved once.

        Example (the database supervisor, once the database answers again)::

            await hub.raise_alarm(NewAlarm("database_recovered", Severity.INFO, "..."))
            await hub.resolve("database_down", None, "the database answers again")
        """
        wanted = [kinds] if isinstance(kinds, str) else sorted(set(kinds))
        resolution = NewAlarm("resolved", Severity.INFO, message, msisdn=msisdn,
                              transaction_id=transaction_id, details=dict(details or {}))
        outcome = await self.store.resolve_alarms(wanted, _key(key), resolution)
        if outcome is None:
            return None
        alarm, opened = outcome
        self._resolved += len(opened)
        self._announce(alarm)
        return alarm

    async def resolve_by_hand(self, alarm_id: int, operator: Actor, note: str = ""
                              ) -> tuple[Alarm | None, Alarm | None]:
        """An operator declares alarm `alarm_id` settled (say a `platform_down` raised by a
        worker that died before its circuit closed); the audit trail records it. (the
        `resolved` alarm, None) if it was open; (None, the alarm) if it was not; (None, None)
        if there is no such alarm."""
        message = f"resolved by {operator.name}" + (f": {note}" if note else "")
        resolution = NewAlarm("resolved", Severity.INFO, message,
                              details={"by": operator.name, "note": note})
        outcome = await self.store.resolve_alarm(alarm_id, resolution, operator)
        if not isinstance(outcome, tuple):
            return None, outcome
        alarm, opened = outcome
        self._resolved += len(opened)
        self._announce(alarm)
        return alarm, None

    async def resolve_transaction(self, tx: Transaction) -> Alarm | None:
        """Resolve the alarms `tx`'s state settles: all of its alarms once it is final; its
        unknown debit once `charged`; both unknown outcomes once `inconsistent`."""
        return await self._resolve_settled(tx.id, tx.msisdn, tx.state, _settled_kinds(tx.state))

    async def resolve_settled(self) -> int:
        """Resolve every open transaction alarm whose transaction has since reached a state
        that settles it, whoever moved it there (a saga, another worker, a recoverer that died
        before resolving); the recoverer calls this on each pass. Returns how many resolved."""
        pending: dict[uuid.UUID, tuple[str, TxState, set[str]]] = {}
        for tx_id, msisdn, kind, state in await self.store.open_transaction_alarms(
                _TRANSACTION_KINDS):
            tx_state = TxState(state)
            if kind in _settled_kinds(tx_state):
                pending.setdefault(tx_id, (msisdn, tx_state, set()))[2].add(kind)
        count = 0
        for tx_id, (msisdn, tx_state, kinds) in pending.items():
            if await self._resolve_settled(tx_id, msisdn, tx_state, tuple(kinds)) is not None:
                count += 1
        return count

    async def _resolve_settled(self, tx_id: uuid.UUID, msisdn: str, state: TxState,
                               kinds: tuple[str, ...]) -> Alarm | None:
        if not kinds:
            return None
        return await self.resolve(
            kinds, tx_id, f"purchase settled: {state}", msisdn=msisdn,
            transaction_id=tx_id, details={"state": state.value},
        )

    def _announce(self, alarm: Alarm) -> None:
        self._raised += 1
        ALARMS_RAISED.inc((alarm.kind, alarm.severity.value))
        ids: dict[str, object] = {"alarm_id": alarm.id, "kind": alarm.kind}
        if alarm.msisdn:
            ids["msisdn"] = alarm.msisdn
        if alarm.transaction_id:
            ids["transaction_id"] = str(alarm.transaction_id)
        logger.log(
            _LOG_LEVEL[alarm.severity], "alarm %d %s: %s (msisdn=%s transaction=%s)",
            alarm.id, alarm.kind, alarm.message, alarm.msisdn, alarm.transaction_id, extra=ids,
        )
        self._wakeup.set()  # don't wait for our own NOTIFY to come back
        for sink in self.sinks:
            sink(alarm)

    def announce_unsaved(self, new: NewAlarm, *, to_sinks: bool) -> Alarm:
        """Deliver `new` to this worker's subscribers (and, with `to_sinks`, its sinks) now,
        although it can't be stored yet (the database is down): it goes out with id 0
        (rendered `null`). Store it later with `store_announced`."""
        alarm = Alarm(0, datetime.now(UTC), new.kind, new.severity, new.message, new.msisdn,
                      new.transaction_id, dict(new.details))
        self._raised += 1
        ALARMS_RAISED.inc((alarm.kind, alarm.severity.value))
        self._fan_out(alarm)
        if to_sinks:
            for sink in self.sinks:
                sink(alarm)
        return alarm

    async def store_announced(self, new: NewAlarm) -> Alarm:
        """Persist an alarm already announced live (`announce_unsaved`) so that replay with
        `?since=` shows it; live subscribers don't get it a second time."""
        new = attrs.evolve(new, details={**new.details, _ANNOUNCED: True})
        subject = subject_of(new)
        if subject is None:
            alarm = await self.store.raise_alarm(new)
        else:  # open (database_down) until `resolve` names it
            alarm, _created = await self.store.raise_open_alarm(new, subject)
        self._wakeup.set()
        return alarm

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the alarms table and fan new alarms out, until cancelled."""
        self._last_id = await self.store.latest_alarm_id()
        await self.store.listen_alarms(lambda _id: self._wakeup.set())
        task_status.started()
        while True:
            with trio.move_on_after(self.poll_interval):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            try:
                await self._catch_up()
            except StoreUnavailable:
                continue  # the LISTEN's resumption (or the next poll) wakes us once it's back

    async def _catch_up(self) -> None:
        """Fan out everything after the last id seen, page after page, until caught up."""
        while True:
            page = await self.store.alarms_after(self._last_id, self.page_size)
            for alarm in page:
                self._last_id = alarm.id
                if not alarm.details.get(_ANNOUNCED):  # its live copy went out already
                    self._fan_out(alarm)
            if len(page) < self.page_size:
                return

    def _fan_out(self, alarm: Alarm) -> None:
        for sub in list(self._subscribers):
            if sub.behind:
                continue  # it reads this one from the database
            try:
                sub.send.send_nowait(alarm)
                self._delivered += 1
            except trio.WouldBlock:
                sub.behind = True  # its client is slow: it catches up from the database
                self._catch_ups += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(sub)

    @contextlib.asynccontextmanager
    async def subscribe(self, since: int | None = None) -> AsyncIterator[AsyncIterator[Alarm]]:
        """Alarms in id order, each once: those after `since` (every one, read from the
        database a page at a time), then live ones; without `since`, live ones only."""
        send, receive = trio.open_memory_channel[Alarm](self.subscriber_buffer)
        sub = _Subscriber(send, receive, behind=since is not None)
        seen = since if since is not None else self._last_id
        self._subscribers.add(sub)

        async def stream() -> AsyncIterator[Alarm]:
            nonlocal seen
            while True:
                if sub.behind:
                    # What was buffered before it fell behind is in the database too.
                    with contextlib.suppress(trio.WouldBlock):
                        while True:
                            receive.receive_nowait()
                    sub.behind = False  # live alarms are buffered again from here on
                    while True:
                        page = await self.store.alarms_after(seen, self.page_size)
                        for alarm in page:
                            seen = alarm.id
                            yield alarm
                        if len(page) < self.page_size:
                            break
                    continue
                alarm = await receive.receive()
                if alarm.id == 0:  # announced before it could be stored (database down)
                    yield alarm
                elif alarm.id > seen:
                    seen = alarm.id
                    yield alarm

        try:
            yield stream()
        finally:
            self._subscribers.discard(sub)
            send.close()
            receive.close()

    def statistics(self) -> AlarmHubStatistics:
        return AlarmHubStatistics(
            subscribers=len(self._subscribers),
            raised=self._raised,
            resolved=self._resolved,
            delivered=self._delivered,
            catch_ups=self._catch_ups,
            last_id=self._last_id,
        )
