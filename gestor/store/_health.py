"""A worker's view of whether its database is reachable: up, or down since when and why.

The state flips down when a probe fails (a probe runs at once when a crossing fails to reach the
database or a LISTEN connection drops, and every `interval` seconds anyway) and back up when a
probe succeeds (every `retry_interval` while down). While down, `check()` refuses work before
anything is sent, so a caller that is told "unavailable" knows nothing was written. Each change
of state is one log line, and an event for whoever `watch`es (the database alarms).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import attrs
import trio

logger = logging.getLogger("gestor.store")


class StoreUnavailable(Exception):
    """The database could not be reached or refused the connection. `sent` is False when no
    connection could be made, so the work certainly did not run; True when it may have (the
    connection was lost or the answer late after the work was sent)."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class DatabaseDown(StoreUnavailable):
    """Refused before anything was sent: this worker knows the database is unreachable."""

    def __init__(self, reason: str, since: datetime) -> None:
        super().__init__(reason, sent=False)
        self.reason = reason
        self.since = since


def describe_failure(exc: BaseException) -> str:
    """Why the database could not be used, in words a person understands (no errno)."""
    seen: set[int] = set()
    while isinstance(exc, StoreUnavailable) and exc.__cause__ is not None \
            and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    if isinstance(exc, DatabaseDown):
        return exc.reason
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "the server is not running (its socket is missing)"
    if isinstance(exc, ConnectionResetError | BrokenPipeError
                  | asyncpg.exceptions.ConnectionDoesNotExistError
                  # asyncpg's protocol left mid-operation by a server that vanished (kill -9):
                  # "cannot switch to state 12; another operation (2) is in progress"
                  | asyncpg.exceptions.InternalClientError):
        return "connection lost"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | trio.TooSlowError):
        return "no answer in time"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _now() -> datetime:
    return datetime.now(UTC)


@attrs.frozen
class HealthChange:
    """The database went down (`up` false: since `at`, for `reason`) or came back (`up`
    true at `at`, after being down since `down_since`)."""

    up: bool
    at: datetime
    reason: str | None
    down_since: datetime


@attrs.frozen
class HealthStatistics:
    up: bool
    down_since: datetime | None
    reason: str | None
    outages: int
    probes: int
    refused: int


@attrs.define
class DatabaseHealth:
    """Up until a probe says otherwise. Driven by `run` (one task per store)."""

    #: Seconds between probes while up, and while down.
    interval: float = 2.0
    retry_interval: float = 0.5
    #: A probe that takes longer than this is a failure.
    probe_timeout: float = 2.0
    clock: Callable[[], datetime] = _now
    _down_since: datetime | None = None
    _reason: str | None = None
    _wakeup: trio.Event = attrs.field(factory=trio.Event)
    _outages: int = 0
    _probes: int = 0
    _refused: int = 0
    _watchers: list[trio.MemorySendChannel[HealthChange]] = attrs.field(factory=list)

    @property
    def up(self) -> bool:
        return self._down_since is None

    @property
    def down_since(self) -> datetime | None:
        return self._down_since

    @property
    def reason(self) -> str | None:
        return self._reason

    def describe(self) -> str:
        """`database reachable`, or `database unreachable since 12:03:04 UTC: <why>`."""
        if self._down_since is None:
            return "database reachable"
        return (f"database unreachable since {self._down_since:%H:%M:%S} UTC: "
                f"{self._reason}")

    def check(self) -> None:
        """Raise `DatabaseDown` at once while the database is known to be unreachable."""
        if self._down_since is not None:
            self._refused += 1
            raise DatabaseDown(self.describe(), self._down_since)

    def suspect(self) -> None:
        """Something failed to reach the database: probe now rather than at the next tick."""
        self._wakeup.set()

    def watch(self) -> trio.MemoryReceiveChannel[HealthChange]:
        """Every change of state from now on, in order (none is lost: they are few)."""
        send, receive = trio.open_memory_channel[HealthChange](float("inf"))
        self._watchers.append(send)
        return receive

    def mark_down(self, reason: str) -> None:
        if self._down_since is not None:
            self._reason = reason  # still down; the log already said so
            return
        self._down_since = self.clock()
        self._reason = reason
        self._outages += 1
        logger.error("%s", self.describe())
        self._signal(HealthChange(False, self._down_since, reason, self._down_since))

    def mark_up(self) -> None:
        if self._down_since is None:
            return
        since, now = self._down_since, self.clock()
        self._down_since = None
        self._reason = None
        logger.info("database reachable again (unreachable for %.1f s)",
                    (now - since).total_seconds())
        self._signal(HealthChange(True, now, None, since))

    def _signal(self, change: HealthChange) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.send_nowait(change)
            except trio.BrokenResourceError:
                self._watchers.remove(watcher)

    async def run(self, probe: Callable[[], Awaitable[object]],
                  on_reachable: Callable[[], Awaitable[object]] | None = None, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Probe until cancelled. `on_reachable` runs after every successful probe (it restores
        what a lost connection took, such as LISTENs); if it fails, the next probe comes soon."""
        task_status.started()
        while True:
            with trio.move_on_after(self.interval if self.up else self.retry_interval):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self._probes += 1
            try:
                with trio.fail_after(self.probe_timeout):
                    await probe()
            except trio.TooSlowError:
                self.mark_down(f"no answer within {self.probe_timeout:g} s")
                continue
            except Exception as exc:
                self.mark_down(describe_failure(exc))
                continue
            self.mark_up()
            if on_reachable is not None:
                try:
                    with trio.fail_after(self.probe_timeout):
                        await on_reachable()
                except Exception:
                    self.suspect()
                    await trio.sleep(self.retry_interval)

    def statistics(self) -> HealthStatistics:
        return HealthStatistics(
            up=self.up, down_since=self._down_since, reason=self._reason,
            outages=self._outages, probes=self._probes, refused=self._refused,
        )
