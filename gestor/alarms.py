"""Alarms: persisted first, then fanned out (DESIGN D8).

`AlarmHub.raise_alarm` writes the alarm (the store NOTIFYs every worker in the same transaction)
and logs it. Each worker's hub LISTENs, reads what is new since the last id it saw and hands it to
its local subscribers, so an alarm raised by any worker reaches every websocket once, in id order.
A subscriber that connects with `since` first gets what it missed from the database. Sinks
(webhooks) get each alarm from the worker that raised it, so N workers don't send N copies.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import attrs
import trio

from gestor.model import Alarm, NewAlarm, Severity
from gestor.store import Store, StoreUnavailable

logger = logging.getLogger("gestor.alarms")

#: In `details` of an alarm stored after it was announced live: replay shows it, the live
#: feed (which already had it) does not repeat it.
_ANNOUNCED = "announced_live"

_LOG_LEVEL = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING,
              Severity.CRITICAL: logging.ERROR}


@attrs.frozen
class AlarmHubStatistics:
    subscribers: int
    raised: int
    delivered: int
    dropped_subscribers: int
    last_id: int


@attrs.define
class AlarmHub:
    store: Store
    subscriber_buffer: int = 1000
    sinks: list[Callable[[Alarm], None]] = attrs.field(factory=list)
    _subscribers: set[trio.MemorySendChannel[Alarm]] = attrs.field(factory=set)
    _wakeup: trio.Event = attrs.field(factory=trio.Event)
    _last_id: int = 0
    _raised: int = 0
    _delivered: int = 0
    _dropped: int = 0

    async def raise_alarm(self, new: NewAlarm) -> Alarm:
        alarm = await self.store.raise_alarm(new)
        self._raised += 1
        logger.log(
            _LOG_LEVEL[alarm.severity], "alarm %d %s: %s (msisdn=%s transaction=%s)",
            alarm.id, alarm.kind, alarm.message, alarm.msisdn, alarm.transaction_id,
        )
        self._wakeup.set()  # don't wait for our own NOTIFY to come back
        for sink in self.sinks:
            sink(alarm)
        return alarm

    def announce_unsaved(self, new: NewAlarm, *, to_sinks: bool) -> Alarm:
        """Deliver `new` to this worker's subscribers (and, with `to_sinks`, its sinks) now,
        although it can't be stored yet (the database is down): it goes out with id 0
        (rendered `null`). Store it later with `store_announced`."""
        alarm = Alarm(0, datetime.now(UTC), new.kind, new.severity, new.message, new.msisdn,
                      new.transaction_id, dict(new.details))
        self._raised += 1
        self._fan_out(alarm)
        if to_sinks:
            for sink in self.sinks:
                sink(alarm)
        return alarm

    async def store_announced(self, new: NewAlarm) -> Alarm:
        """Persist an alarm already announced live (`announce_unsaved`) so that replay with
        `?since=` shows it; live subscribers don't get it a second time."""
        alarm = await self.store.raise_alarm(
            attrs.evolve(new, details={**new.details, _ANNOUNCED: True}))
        self._wakeup.set()
        return alarm

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the alarms table and fan new alarms out, until cancelled."""
        self._last_id = await self.store.latest_alarm_id()
        await self.store.listen_alarms(lambda _id: self._wakeup.set())
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            try:
                after = await self.store.alarms_after(self._last_id)
            except StoreUnavailable:
                continue  # the LISTEN's resumption wakes us once the database is back
            for alarm in after:
                self._last_id = alarm.id
                if not alarm.details.get(_ANNOUNCED):
                    self._fan_out(alarm)

    def _fan_out(self, alarm: Alarm) -> None:
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(alarm)
                self._delivered += 1
            except trio.WouldBlock:
                # Too slow to keep up: cut it loose; it reconnects with `since` and loses nothing.
                self._subscribers.discard(channel)
                channel.close()
                self._dropped += 1
            except trio.BrokenResourceError:
                self._subscribers.discard(channel)

    @contextlib.asynccontextmanager
    async def subscribe(self, since: int | None = None) -> AsyncIterator[AsyncIterator[Alarm]]:
        """Alarms in id order: those after `since` from the database, then live ones."""
        send, receive = trio.open_memory_channel[Alarm](self.subscriber_buffer)
        self._subscribers.add(send)

        async def stream() -> AsyncIterator[Alarm]:
            seen = since if since is not None else self._last_id
            if since is not None:
                for alarm in await self.store.alarms_after(since, limit=10_000):
                    seen = alarm.id
                    yield alarm
            async for alarm in receive:
                if alarm.id == 0:  # announced before it could be stored (database down)
                    yield alarm
                elif alarm.id > seen:
                    seen = alarm.id
                    yield alarm

        try:
            yield stream()
        finally:
            self._subscribers.discard(send)
            send.close()
            receive.close()

    def statistics(self) -> AlarmHubStatistics:
        return AlarmHubStatistics(
            subscribers=len(self._subscribers),
            raised=self._raised,
            delivered=self._delivered,
            dropped_subscribers=self._dropped,
            last_id=self._last_id,
        )
