"""`database_down` / `database_recovered`: alarms about the database itself.

They can't follow the rule "persisted first, then fanned out" (DESIGN D8): the database is what
is missing. So each worker, when its database health state changes, announces the alarm to its
own websocket subscribers at once (id `null`: not stored yet), and when the database is back the
pair is stored, so a client replaying with `?since=` sees it afterwards.

N workers, one copy. Every worker notices the outage by itself and tells its own websocket
clients (each client is connected to exactly one worker, so each gets one copy). Only one
worker per data directory, the *announcer*, also sends the webhooks and stores the pair: the
one holding an exclusive lock on `<data dir>/alarms.announcer.lock`. The kernel releases the
lock when its holder dies, and the others try to take it at each change, so a worker that is
restarted never leaves the alarms without an announcer. (Nodes with data directories of their
own each announce once: each reports its own view of the database.)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
from pathlib import Path

import attrs
import trio

from gestor.alarms._hub import AlarmHub
from gestor.model import NewAlarm, Severity
from gestor.store import DatabaseHealth, HealthChange, StoreUnavailable

logger = logging.getLogger("gestor.alarms")


@attrs.define
class AnnouncerLock:
    """Whether this process is the one that sends webhooks and stores database alarms."""

    path: Path
    _fd: int | None = None

    def held(self) -> bool:
        """True if this process holds the lock (taking it now if it is free)."""
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # can't coordinate: better a copy too many than none
            logger.warning("cannot open %s (%s): announcing database alarms anyway",
                           self.path, exc)
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _down_alarm(change: HealthChange, incident: str) -> NewAlarm:
    return NewAlarm(
        "database_down", Severity.CRITICAL,
        f"database unreachable since {change.at:%H:%M:%S} UTC: {change.reason}; requests that "
        "need it are answered 503 until it is back",
        details={"incident": incident, "since": change.at.isoformat(), "reason": change.reason,
                 "worker": os.getpid()},
    )


def _recovered_alarm(change: HealthChange, incident: str, down_id: int | None) -> NewAlarm:
    down_for = (change.at - change.down_since).total_seconds()
    return NewAlarm(
        "database_recovered", Severity.INFO,
        f"database reachable again after {down_for:.1f} s (resolves the database_down of "
        f"{change.down_since:%H:%M:%S} UTC)",
        details={"incident": incident, "resolves": {"kind": "database_down", "id": down_id,
                                                    "incident": incident},
                 "down_since": change.down_since.isoformat(), "down_for_s": round(down_for, 3),
                 "worker": os.getpid()},
    )


@attrs.define
class _Outage:
    incident: str
    down: NewAlarm
    back: HealthChange | None = None
    down_id: int | None = None  # once stored


async def raise_database_alarms(
    hub: AlarmHub, health: DatabaseHealth, announcer: AnnouncerLock, *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Announce every change of `health` as `database_down` / `database_recovered`, and store
    each pair once the database is back (if this worker is the announcer), until cancelled."""
    changes = health.watch()
    task_status.started()
    try:
        await _follow(hub, changes, announcer)
    finally:
        announcer.release()


async def _follow(hub: AlarmHub, changes: trio.MemoryReceiveChannel[HealthChange],
                  announcer: AnnouncerLock) -> None:
    current: _Outage | None = None
    unsaved: list[_Outage] = []  # over, not stored yet (oldest first)
    async for change in changes:
        mine = announcer.held()
        if not change.up:
            incident = str(uuid.uuid4())
            current = _Outage(incident, _down_alarm(change, incident))
            hub.announce_unsaved(current.down, to_sinks=mine)
            continue
        if current is None:
            continue
        current.back = change
        hub.announce_unsaved(_recovered_alarm(change, current.incident, None), to_sinks=mine)
        if mine:
            unsaved.append(current)
        current = None
        # If the database fails again meanwhile, the next recovery stores what is left.
        with contextlib.suppress(StoreUnavailable):
            while unsaved:
                outage = unsaved[0]
                assert outage.back is not None
                if outage.down_id is None:
                    outage.down_id = (await hub.store_announced(outage.down)).id
                await hub.store_announced(
                    _recovered_alarm(outage.back, outage.incident, outage.down_id))
                await hub.resolve("database_down", None, "the database answers again",
                                  details={"incident": outage.incident})
                unsaved.pop(0)
