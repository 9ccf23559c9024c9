"""The one crossing between trio and asyncio (DESIGN D1).

asyncpg only speaks asyncio. `open_bridge` runs a trio-asyncio loop for the life of the store
and an asyncpg pool inside it; `Bridge.run` executes one asyncio coroutine function on a pooled
connection, inside one database transaction, in exactly one crossing. A `Lane` is a dedicated
connection for the hot batched work: it skips the pool's acquire/release bookkeeping (asyncio
timers, a queue), which measured here is nearly half the CPU of a crossing (563 → 301 µs for a
`SELECT 1`). Nothing outside `gestor.store` sees asyncio.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import attrs
import trio
import trio_asyncio

logger = logging.getLogger("gestor.store")

T = TypeVar("T")
Work = Callable[..., Awaitable[T]]


class StoreUnavailable(Exception):
    """The database could not be reached or refused the connection."""


#: What a lost or unreachable database raises through asyncpg.
_UNREACHABLE = (
    OSError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
)


@attrs.frozen
class BridgeStatistics:
    crossings: int
    in_flight: int
    pool_size: int
    pool_idle: int


@attrs.define
class Bridge:
    """A pool of asyncpg connections reachable from any trio task."""

    _loop: Any
    _pool: Any
    _dsn: str
    _crossings: int = 0
    _in_flight: int = 0
    _listeners: list[Any] = attrs.field(factory=list)
    _lanes: list[Lane] = attrs.field(factory=list)

    async def run(self, work: Work[T], *args: Any, transaction: bool = True) -> T:
        """Run `await work(conn, *args)` on a pooled connection in one crossing. With
        `transaction` (the default) it runs inside BEGIN/COMMIT."""
        self._crossings += 1
        self._in_flight += 1
        try:
            result: T = await trio_asyncio.aio_as_trio(_on_connection, loop=self._loop)(
                self._pool, work, args, transaction
            )
            return result
        except _UNREACHABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        finally:
            self._in_flight -= 1

    def lane(self, *, timeout: float = 30.0) -> Lane:
        """A dedicated connection (opened on first use, reopened after it is lost) for one
        task's sequential crossings; `timeout` bounds each crossing."""
        lane = Lane(self, timeout)
        self._lanes.append(lane)
        return lane

    async def add_listener(self, channel: str, callback: Callable[[str], None]) -> None:
        """LISTEN on `channel` over a dedicated connection; `callback(payload)` is called in
        this trio thread for every NOTIFY."""

        async def _listen() -> None:
            conn = await asyncpg.connect(self._dsn)
            self._listeners.append(conn)
            await conn.add_listener(channel, lambda _c, _pid, _ch, payload: callback(payload))

        await trio_asyncio.aio_as_trio(_listen, loop=self._loop)()

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(
            crossings=self._crossings,
            in_flight=self._in_flight,
            pool_size=self._pool.get_size(),
            pool_idle=self._pool.get_idle_size(),
        )

    async def _close(self) -> None:
        async def _close_all() -> None:
            for conn in self._listeners:
                await conn.close()
            for lane in self._lanes:
                if lane.conn is not None:
                    await lane.conn.close()
            await self._pool.close()

        with trio.move_on_after(10) as scope:
            await trio_asyncio.aio_as_trio(_close_all, loop=self._loop)()
        if scope.cancelled_caught:
            logger.warning("database pool did not close within 10 s; terminating it")
            self._pool.terminate()
            for lane in self._lanes:
                if lane.conn is not None:
                    lane.conn.terminate()


@attrs.define
class Lane:
    """One dedicated connection, used by one task at a time (a batcher's worker)."""

    bridge: Bridge
    timeout: float
    conn: Any = None

    async def run(self, work: Work[T], *args: Any) -> T:
        """`await work(conn, *args)` on this lane's connection, outside a transaction block
        (each hot statement is atomic on its own), in one crossing."""
        bridge = self.bridge
        bridge._crossings += 1
        bridge._in_flight += 1
        try:
            with trio.fail_after(self.timeout):
                result: T = await trio_asyncio.aio_as_trio(_on_lane, loop=bridge._loop)(
                    self, work, args
                )
            return result
        except _UNREACHABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        except trio.TooSlowError as exc:
            raise StoreUnavailable(f"no answer from the database in {self.timeout} s") from exc
        finally:
            bridge._in_flight -= 1


async def _on_lane(lane: Lane, work: Work[T], args: tuple[Any, ...]) -> T:
    if lane.conn is None or lane.conn.is_closed():
        lane.conn = None
        lane.conn = await asyncpg.connect(lane.bridge._dsn)
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
    """Open the asyncio loop and the connection pool; close both on exit."""
    async with trio_asyncio.open_loop() as loop:
        try:
            pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool, loop=loop)(
                dsn, min_size=min_size, max_size=max_size, command_timeout=30,
                reset=_keep_session,
            )
        except (OSError, asyncpg.exceptions.PostgresError) as exc:
            raise StoreUnavailable(f"cannot connect to the database: {exc}") from exc
        bridge = Bridge(loop, pool, dsn)
        try:
            yield bridge
        finally:
            with trio.CancelScope(shield=True):
                await bridge._close()
