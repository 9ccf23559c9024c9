"""A worker's view of the stored API keys: each key read once and kept briefly.

A key's record is kept at most `bound` seconds (1 s) after it was read; any change to a key
(revoke, rotate, create) NOTIFYs `gestor_keys` and drops the copy in every worker at once. So a
revocation takes effect everywhere within milliseconds, and within `bound` even if a
notification is lost (a lost LISTEN also drops every copy when it is made again). Whether any
channel key is active (which closes the open loopback mode) is kept the same way, and read
again in the background every `bound / 2`, so that requests without a key never wait for it.
Concurrent requests with the same uncached key share one read.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import attrs
import trio

from gestor.store import KeyRecord, KeyStore, StoreUnavailable

logger = logging.getLogger("gestor.keys")

T = TypeVar("T")


@attrs.define
class _Entry(Generic[T]):
    value: T
    read_at: float
    generation: int


@attrs.frozen
class KeyRingStatistics:
    cached: int
    reads: int
    hits: int
    invalidations: int


@attrs.define
class KeyRing:
    keys: KeyStore
    bound: float = 1.0
    _records: dict[str, _Entry[KeyRecord | None]] = attrs.field(factory=dict)
    _channel_keys: _Entry[bool] | None = None
    _reading: dict[str, trio.Event] = attrs.field(factory=dict)
    #: Bumped by every notification: a read that began before one is not cached.
    _generation: int = 0
    _reads: int = 0
    _hits: int = 0
    _invalidations: int = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Follow key changes made by any process, until cancelled."""
        await self.keys.listen(self._changed, self.clear)
        await self.has_channel_keys()
        task_status.started()
        while True:  # kept fresh, so that requests without a key never wait for it
            await trio.sleep(self.bound / 2)
            with contextlib.suppress(StoreUnavailable):
                await self._read_channel_keys()

    def _changed(self, key_id: str) -> None:
        self._generation += 1
        self._invalidations += 1
        self._records.pop(key_id, None)
        self._channel_keys = None

    def clear(self) -> None:
        self._generation += 1
        self._invalidations += 1
        self._records.clear()
        self._channel_keys = None

    def _fresh(self, entry: _Entry[T] | None) -> bool:
        return entry is not None and trio.current_time() - entry.read_at < self.bound

    async def _shared(self, slot: str, read: Callable[[], Awaitable[None]]) -> None:
        """Run `read` once for every concurrent caller of the same `slot`."""
        waiting = self._reading.get(slot)
        if waiting is not None:
            await waiting.wait()
            return
        done = self._reading[slot] = trio.Event()
        try:
            await read()
        finally:
            del self._reading[slot]
            done.set()

    async def record(self, key_id: str) -> KeyRecord | None:
        """The stored key `key_id` (None if there is none), at most `bound` seconds old."""
        for _ in range(3):
            entry = self._records.get(key_id)
            if self._fresh(entry):
                assert entry is not None
                self._hits += 1
                return entry.value

            async def read() -> None:
                generation, started = self._generation, trio.current_time()
                self._reads += 1
                value = await self.keys.get(key_id)
                if generation == self._generation:
                    self._records[key_id] = _Entry(value, started, generation)
                    if len(self._records) > 10_000:  # ids that do not exist, say
                        self._records.pop(next(iter(self._records)))

            await self._shared(f"key:{key_id}", read)
        # Notifications kept arriving while reading: read once more, without caching.
        self._reads += 1
        return await self.keys.get(key_id)

    async def has_channel_keys(self) -> bool:
        """Whether any channel key is active in the database (at most `bound` s old)."""
        for _ in range(3):
            entry = self._channel_keys
            if self._fresh(entry):
                assert entry is not None
                return entry.value

            await self._shared("channel-keys", self._read_channel_keys)
        return await self.keys.has_active_channel_keys()

    async def _read_channel_keys(self) -> None:
        generation, started = self._generation, trio.current_time()
        value = await self.keys.has_active_channel_keys()
        if generation == self._generation:
            self._channel_keys = _Entry(value, started, generation)

    def statistics(self) -> KeyRingStatistics:
        return KeyRingStatistics(len(self._records), self._reads, self._hits,
                                 self._invalidations)
