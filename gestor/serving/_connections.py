"""The open client connections of one worker, which of them are idle, and the cap on them."""

from __future__ import annotations

import attrs
import trio


@attrs.frozen
class ConnectionStatistics:
    cap: int
    open: int  # admitted and not yet closed (evicted ones no longer count)
    idle: int  # open with no request in progress
    accepted: int  # admitted since start
    evicted: int  # idle ones closed to make room for a new one at the cap
    refused: int  # new ones turned away at the cap because none was idle


@attrs.define(eq=False)
class ConnectionTable:
    """Admission of client connections under `cap`.

    A connection is idle while its keep-alive timer runs (between requests, or before its first
    request head is complete); the timer's cancel scope is kept here so that the oldest idle
    connection can be closed at once for a new one. Insertion order of `_idle` is the order in
    which connections became idle, so its first entry is the oldest.
    """

    cap: int
    _open: set[object] = attrs.field(factory=set)
    _idle: dict[object, trio.CancelScope] = attrs.field(factory=dict)
    _accepted: int = 0
    _evicted: int = 0
    _refused: int = 0

    def __attrs_post_init__(self) -> None:
        if self.cap < 1:
            raise ValueError(f"connection cap must be >= 1, got {self.cap}")

    def admit(self, connection: object) -> bool:
        """Room for `connection`: at the cap the oldest idle connection is told to close (and
        stops counting); False when every open connection is busy."""
        if len(self._open) >= self.cap and not self.evict_oldest_idle():
            self._refused += 1
            return False
        self._open.add(connection)
        self._accepted += 1
        return True

    def evict_oldest_idle(self) -> bool:
        """Close the connection idle the longest; False if none is idle."""
        if not self._idle:
            return False
        victim = next(iter(self._idle))
        scope = self._idle.pop(victim)
        self._open.discard(victim)
        self._evicted += 1
        scope.cancel()
        return True

    def became_idle(self, connection: object, timer: trio.CancelScope) -> None:
        if connection in self._open:
            self._idle.pop(connection, None)
            self._idle[connection] = timer

    def became_busy(self, connection: object, timer: trio.CancelScope) -> None:
        # a timer restarted before the old one finished must not unmark the new one
        if self._idle.get(connection) is timer:
            del self._idle[connection]

    def closed(self, connection: object) -> None:
        self._open.discard(connection)
        self._idle.pop(connection, None)

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            cap=self.cap, open=len(self._open), idle=len(self._idle), accepted=self._accepted,
            evicted=self._evicted, refused=self._refused,
        )
