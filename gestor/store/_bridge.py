"""The one crossing between trio and asyncio (DESIGN D1).

asyncpg only speaks asyncio. `open_bridge` runs an asyncio event loop in a thread of its own for
the life of the store, with an asyncpg pool in it. `Bridge.run` executes one asyncio coroutine
function on a pooled connection, inside one database transaction, in exactly one crossing. A
`Lane` is a dedicated connection for the hot batched work: it skips the pool's acquire/release
bookkeeping (asyncio timers, a queue), nearly half the CPU of a crossing here. Nothing outside
`gestor.store` sees asyncio.

Why a thread rather than trio-asyncio (which runs the asyncio loop inside trio's): there, every
asyncio callback is a trip through trio's scheduler, and a crossing takes 7-8 of them (task
start, reader, synchronize, future callbacks, done callback, reschedule). Under load each trip
waits for a whole trio tick, so a database round trip costs 8 ticks: measured here with 5 ms
ticks, a `SELECT 1` took 37-42 ms (p50) through trio-asyncio against 11 ms through this thread,
and 303 against 220 µs of CPU when idle. Here the asyncio side runs on its own epoll and the
answer comes back to trio in one trip (`TrioToken.run_sync_soon`). The price is the GIL: the
loop thread needs it to read each answer, so `open_bridge` lowers the interpreter's switch
interval to 0.5 ms (a thread waiting for the GIL gets it within that; it costs nothing while
only one thread runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import attrs
import outcome
import trio

from gestor.metrics import DB_CROSSING_SECONDS
from gestor.store._health import DatabaseHealth, StoreUnavailable

logger = logging.getLogger("gestor.store")

T = TypeVar("T")
Work = Callable[..., Awaitable[T]]

#: Longest the loop thread waits for the GIL while trio's thread holds it (seconds).
SWITCH_INTERVAL = 0.0005


class _NotConnected(Exception):
    """A lane could not open its connection: nothing was sent."""


class _QuietPoolFloor(logging.Filter):
    """asyncpg's pool logs a traceback each time it fails to reopen its minimum of
    connections (every 1-60 s while the database is down); the store's health state already
    says, in one line, that the database is unreachable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to restore the pool connection")


logging.getLogger("asyncpg.pool").addFilter(_QuietPoolFloor())

#: What a lost or unreachable database raises through asyncpg.
_UNREACHABLE = (
    OSError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
)


@attrs.define
class _LoopThread:
    """An asyncio loop running forever in a daemon thread, and trio's way into it."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    token: trio.lowlevel.TrioToken

    @classmethod
    def start(cls) -> _LoopThread:
        loop = asyncio.SelectorEventLoop()
        thread = threading.Thread(target=_run_forever, args=(loop,), name="gestor-store",
                                  daemon=True)
        thread.start()
        return cls(loop, thread, trio.lowlevel.current_trio_token())

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await fn(*args)` on the loop thread; cancelling the caller cancels it there (and
        waits for it to end, so nothing runs on after the caller has gone)."""
        task = trio.lowlevel.current_task()
        token = self.token
        started: list[asyncio.Future[T]] = []
        raise_cancel: Callable[[], object] | None = None

        def deliver(fut: asyncio.Future[T]) -> None:
            result: outcome.Outcome[T]
            if fut.cancelled():
                result = outcome.Error(asyncio.CancelledError())
            else:
                result = outcome.capture(fut.result)
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        def begin() -> None:
            try:
                fut = asyncio.ensure_future(fn(*args), loop=self.loop)
            except BaseException as exc:  # not even started: the caller must still hear of it
                token.run_sync_soon(trio.lowlevel.reschedule, task, outcome.Error(exc))
                return
            started.append(fut)
            fut.add_done_callback(deliver)

        def stop() -> None:  # runs after begin(): call_soon_threadsafe keeps the order
            if started:
                started[0].cancel()

        def abort(raise_cancel_arg: Callable[[], object]) -> trio.lowlevel.Abort:
            nonlocal raise_cancel
            raise_cancel = raise_cancel_arg
            self.loop.call_soon_threadsafe(stop)
            return trio.lowlevel.Abort.FAILED  # woken by deliver() once it has ended

        self.loop.call_soon_threadsafe(begin)
        try:
            value: T = await trio.lowlevel.wait_task_rescheduled(abort)
        except asyncio.CancelledError as exc:
            if raise_cancel is not None:
                raise_cancel()  # raises trio.Cancelled
            raise StoreUnavailable("the database loop stopped") from exc
        return value

    async def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        await trio.to_thread.run_sync(self.thread.join)
        self.loop.close()


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


@attrs.frozen
class BridgeStatistics:
    crossings: int
    in_flight: int
    pool_size: int
    pool_idle: int


@attrs.define
class _Listener:
    """A LISTEN on its own connection, made again after the connection is lost."""

    channel: str
    callback: Callable[[str], None]
    on_resume: Callable[[], None] | None
    conn: Any = None


@attrs.define
class Bridge:
    """A pool of asyncpg connections reachable from any trio task."""

    _side: _LoopThread
    _pool: Any
    _dsn: str
    health: DatabaseHealth = attrs.field(factory=DatabaseHealth)
    _crossings: int = 0
    _in_flight: int = 0
    _listeners: list[_Listener] = attrs.field(factory=list)
    _lanes: list[Lane] = attrs.field(factory=list)
    _probe_conn: Any = None

    async def run(self, work: Work[T], *args: Any, transaction: bool = True) -> T:
        """Run `await work(conn, *args)` on a pooled connection in one crossing. With
        `transaction` (the default) it runs inside BEGIN/COMMIT."""
        return await self._cross(_on_connection, self._pool, work, args, transaction)

    async def _cross(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One crossing, counted; a lost or unreachable database is `StoreUnavailable`, and
        while the database is known to be down, `DatabaseDown` before anything is sent."""
        self.health.check()
        self._crossings += 1
        self._in_flight += 1
        started = time.perf_counter()
        try:
            return await self._side.call(fn, *args)
        except _NotConnected as exc:
            self.health.suspect()
            raise StoreUnavailable(str(exc), sent=False) from exc.__cause__
        except _UNREACHABLE as exc:
            self.health.suspect()
            raise StoreUnavailable(str(exc)) from exc
        finally:
            self._in_flight -= 1
            DB_CROSSING_SECONDS.observe((), time.perf_counter() - started)

    def lane(self, *, timeout: float = 30.0) -> Lane:
        """A dedicated connection (opened on first use, reopened after it is lost) for one
        task's sequential crossings; `timeout` bounds each crossing."""
        lane = Lane(self, timeout)
        self._lanes.append(lane)
        return lane

    async def add_listener(self, channel: str, callback: Callable[[str], None],
                           on_resume: Callable[[], None] | None = None) -> None:
        """LISTEN on `channel` over a dedicated connection; `callback(payload)` is called in
        trio's thread for every NOTIFY. If the connection is lost, the LISTEN is made again
        once the database answers, then `on_resume()` is called (what was notified in
        between is lost: re-read what matters)."""
        listener = _Listener(channel, callback, on_resume)
        self._listeners.append(listener)
        await self._side.call(self._listen, listener)

    async def _listen(self, listener: _Listener) -> None:  # on the loop thread
        token = self._side.token
        health = self.health

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(listener.callback, payload)

        def lost(_conn: Any) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(health.suspect)

        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.add_listener(listener.channel, notified)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(lost)
        listener.conn = conn

    async def restore_listeners(self) -> None:
        """LISTEN again on every listener whose connection was lost; tell each one."""
        for listener in self._listeners:
            if listener.conn is not None and not listener.conn.is_closed():
                continue
            await self._side.call(self._listen, listener)
            logger.debug("LISTEN %s restored", listener.channel)
            if listener.on_resume is not None:
                listener.on_resume()

    async def probe(self) -> None:
        """`SELECT 1` on a connection kept for probing (reopened when lost), whatever the
        health state says; raises what reaching the database raised. Bound it with
        `trio.fail_after`: cancelling it drops the probing connection."""
        await self._side.call(self._probe)

    async def _probe(self) -> None:  # on the loop thread
        if self._probe_conn is None or self._probe_conn.is_closed():
            self._probe_conn = None
            self._probe_conn = await asyncpg.connect(self._dsn)
        try:
            await self._probe_conn.fetchval("SELECT 1")
        except BaseException:
            self._probe_conn.terminate()
            self._probe_conn = None
            raise

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(
            crossings=self._crossings,
            in_flight=self._in_flight,
            pool_size=self._pool.get_size(),
            pool_idle=self._pool.get_idle_size(),
        )

    async def _close(self) -> None:
        async def _close_all() -> None:
            for conn in self._connections():
                with contextlib.suppress(Exception):
                    await conn.close()
            await self._pool.close()

        def _terminate() -> None:
            self._pool.terminate()
            for conn in self._connections():
                conn.terminate()

        with trio.move_on_after(10) as scope:
            await self._side.call(_close_all)
        if scope.cancelled_caught:
            logger.warning("database pool did not close within 10 s; terminating it")
            self._side.loop.call_soon_threadsafe(_terminate)

    def _connections(self) -> list[Any]:
        conns = [listener.conn for listener in self._listeners]
        conns += [lane.conn for lane in self._lanes]
        conns.append(self._probe_conn)
        return [conn for conn in conns if conn is not None]


@attrs.define
class Lane:
    """One dedicated connection, used by one task at a time (a batcher's worker)."""

    bridge: Bridge
    timeout: float
    conn: Any = None

    async def run(self, work: Work[T], *args: Any) -> T:
        """`await work(conn, *args)` on this lane's connection, outside a transaction block
        (each hot statement is atomic on its own), in one crossing."""
        try:
            with trio.fail_after(self.timeout):
                return await self.bridge._cross(_on_lane, self, work, args)
        except trio.TooSlowError as exc:
            self.bridge.health.suspect()
            raise StoreUnavailable(f"no answer from the database in {self.timeout} s") from exc


async def _on_lane(lane: Lane, work: Work[T], args: tuple[Any, ...]) -> T:
    if lane.conn is None or lane.conn.is_closed():
        lane.conn = None
        try:
            lane.conn = await asyncpg.connect(lane.bridge._dsn)
        except _UNREACHABLE as exc:
            raise _NotConnected(str(exc) or type(exc).__name__) from exc
    return await work(lane.conn, *args)


async def _on_connection(pool: Any, work: Work[T], args: tuple[Any, ...], transaction: bool) -> T:
    async with pool.acquire() as conn:
        if not transaction:
            return await work(conn, *args)
        async with conn.transaction():
            return await work(conn, *args)


async def _keep_session(conn: Any) -> None:
    """Pool release without asyncpg's default reset query (`RESET ALL; UNLISTEN *; ...`), a
    second round trip per crossing: pooled connections never change session state (advisory
    locks are transaction-scoped, LISTEN has its own connections), and asyncpg still rolls
    back a transaction left open before calling this."""


@contextlib.asynccontextmanager
async def open_bridge(dsn: str, *, min_size: int = 2, max_size: int = 10) -> AsyncIterator[Bridge]:
    """Start the loop thread and the connection pool; close both on exit."""
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
    side = _LoopThread.start()
    try:
        try:
            pool = await side.call(functools.partial(
                asyncpg.create_pool, dsn, min_size=min_size, max_size=max_size,
                command_timeout=30, reset=_keep_session,
            ))
        except (OSError, asyncpg.exceptions.PostgresError) as exc:
            raise StoreUnavailable(f"cannot connect to the database: {exc}") from exc
        bridge = Bridge(side, pool, dsn)
        try:
            yield bridge
        finally:
            with trio.CancelScope(shield=True):
                await bridge._close()
    finally:
        with trio.CancelScope(shield=True):
            await side.stop()
