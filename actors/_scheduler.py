"""One task that fires every deadline of an actor system: idle checks, timers and
ask timeouts.

Two heaps of ``(deadline, seq, target)`` replace a cancel scope (or a task) per
actor and per ``ask``, which keeps idle actors small and asks cheap: entering and
leaving a trio cancel scope costs about as much as the rest of an ask round trip.
Targets are called synchronously and must not block. An entry whose target has
become stale (answered ask, cancelled timer, dead actor) is skipped when popped,
and a heap is compacted when stale entries dominate it. Asks have their own heap
because nearly all of them go stale quickly: compacting it must not touch the
(possibly millions of) idle-check entries.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from typing import Protocol

import attrs
import trio

__all__ = ["Scheduler", "Target"]

logger = logging.getLogger("actors")

_COMPACT_MIN = 1024


class Target(Protocol):
    """Something with a deadline in the scheduler."""

    def _deadline_stale(self) -> bool:
        """True if the entry no longer matters (cancelled timer, dead actor)."""
        ...

    def _on_deadline(self, now: float) -> None:
        """Called once the deadline has passed; may schedule again."""
        ...


@attrs.define(eq=False, weakref_slot=False)
class _Heap:
    entries: list[tuple[float, int, Target]] = attrs.Factory(list)
    stale: int = 0

    def note_stale(self) -> None:
        self.stale += 1
        if self.stale > _COMPACT_MIN and self.stale * 2 > len(self.entries):
            self.entries = [entry for entry in self.entries if not entry[2]._deadline_stale()]
            heapq.heapify(self.entries)
            self.stale = 0

    def fire(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now:
            target = heapq.heappop(entries)[2]
            if target._deadline_stale():
                if self.stale:
                    self.stale -= 1
                continue
            try:
                target._on_deadline(now)
            except Exception:  # pragma: no cover - a bug in the runtime
                logger.exception("actors: deadline handler %r failed", target)
            entries = self.entries  # may have been compacted


@attrs.define(eq=False, weakref_slot=False)
class Scheduler:
    """Deadline heaps served by :meth:`run`."""

    #: Deadlines less than this far apart are served by one wake-up (so one may
    #: fire up to this late). Waking per deadline costs a cancel scope and a trio
    #: scheduling round each; under churn this batching ~doubles throughput.
    resolution: float = 0.0
    _main: _Heap = attrs.Factory(_Heap)
    _asks: _Heap = attrs.Factory(_Heap)
    _seq: itertools.count[int] = attrs.Factory(itertools.count)
    _scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._main.entries) + len(self._asks.entries)

    def schedule(self, deadline: float, target: Target) -> None:
        """Call ``target._on_deadline`` once :func:`trio.current_time` >= *deadline*."""
        heapq.heappush(self._main.entries, (deadline, next(self._seq), target))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    def schedule_ask(self, deadline: float, target: Target) -> None:
        """Like :meth:`schedule`, for a short-lived target (an ask's timeout)."""
        heapq.heappush(self._asks.entries, (deadline, next(self._seq), target))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    def note_stale(self) -> None:
        """Record that one :meth:`schedule` entry became stale (for compaction)."""
        self._main.note_stale()

    def note_ask_stale(self) -> None:
        """Record that one :meth:`schedule_ask` entry became stale."""
        self._asks.note_stale()

    async def run(self) -> None:
        """Serve deadlines forever (until cancelled)."""
        main, asks = self._main, self._asks
        while True:
            now = trio.current_time()
            main.fire(now)
            asks.fire(now)
            deadline = main.entries[0][0] if main.entries else math.inf
            if asks.entries and asks.entries[0][0] < deadline:
                deadline = asks.entries[0][0]
            with trio.CancelScope(deadline=max(deadline, now + self.resolution)) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
