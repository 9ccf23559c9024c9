"""Micro-batching (group commit) for the hot database work (DESIGN D1).

Submitters hand one item each to a `Batcher` and wait for its answer; a few worker tasks (one
per runner, each runner normally bound to its own database connection) drain whatever is
queued, run the whole batch as one statement in one crossing, and answer every submitter. Under
load a crossing carries tens of items; when idle an item goes alone at once.

A submitter may withdraw an item that no worker has taken into a batch yet (`Queued.withdraw`):
it is then guaranteed never to run. Once taken, the statement may have been sent, so its fate is
only known when the crossing answers: that is what lets a caller that gives up say truthfully
whether nothing was done or the outcome is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import attrs
import trio

from gestor.metrics import DB_BATCH_SIZE

In = TypeVar("In")
Out = TypeVar("Out")


class Withdrawn(Exception):
    """The item was withdrawn before any worker took it: it never ran."""


@attrs.define(slots=True)
class _Slot(Generic[In, Out]):
    item: In
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Out | None = None
    error: BaseException | None = None
    taken: bool = False  # a worker has put it into a batch (it may have run)
    withdrawn: bool = False  # its submitter took it back before that: it never runs


@attrs.define(eq=False)
class Queued(Generic[In, Out]):
    """Items handed to a `Batcher` by `Batcher.put`: wait for their answers, or take them back
    while no worker has taken any of them."""

    _slots: list[_Slot[In, Out]]

    @property
    def taken(self) -> bool:
        """Whether a worker has taken any of the items into a batch (it may have run)."""
        return any(slot.taken for slot in self._slots)

    def withdraw(self) -> bool:
        """Take the items back if no worker has taken any: True, and none of them will ever
        run (waiting for them raises `Withdrawn`). False if one was taken already: then they
        run, and `results()` tells how."""
        if self.taken:
            return False
        for slot in self._slots:
            slot.withdrawn = True
            slot.error = Withdrawn()
            slot.done.set()
        return True

    async def results(self) -> list[Out]:
        """Their results in order, once every item has one (the first error is raised)."""
        for slot in self._slots:
            await slot.done.wait()
        for slot in self._slots:
            if slot.error is not None:
                raise slot.error
        return [slot.result for slot in self._slots]  # type: ignore[misc]


@attrs.frozen
class BatcherStatistics:
    name: str
    queued: int
    in_flight_batches: int
    batches: int
    items: int
    largest_batch: int
    errors: int
    withdrawn: int = 0  # items their submitters took back before a worker took them

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


@attrs.define
class Batcher(Generic[In, Out]):
    """Batches items into calls of `runner(items) -> results` (one result per item, same
    order); one worker task per runner, so at most `len(runners)` batches run at once. If the
    runner raises, every item of that batch gets the exception."""

    name: str
    runners: Sequence[Callable[[Sequence[In]], Awaitable[Sequence[Out]]]]
    max_batch: int = 256
    _send: trio.MemorySendChannel[_Slot[In, Out]] = attrs.field(init=False)
    _recv: trio.MemoryReceiveChannel[_Slot[In, Out]] = attrs.field(init=False)
    _batches: int = 0
    _items: int = 0
    _largest: int = 0
    _errors: int = 0
    _in_flight: int = 0
    _withdrawn: int = 0
    _gathering: trio.Lock = attrs.field(factory=trio.Lock)

    def __attrs_post_init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[_Slot[In, Out]](math.inf)

    async def submit(self, item: In) -> Out:
        slot: _Slot[In, Out] = _Slot(item)
        self._send.send_nowait(slot)
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    async def submit_together(self, *items: In) -> list[Out]:
        """Queue `items` at once, so one batch normally carries them all; their results in
        order (the first error of any is raised)."""
        return await self.put(*items).results()

    def put(self, *items: In) -> Queued[In, Out]:
        """Queue `items` at once (one batch normally carries them all) and return at once:
        the caller waits for `results()` or withdraws them while none is taken."""
        slots: list[_Slot[In, Out]] = [_Slot(item) for item in items]
        for slot in slots:
            self._send.send_nowait(slot)
        return Queued(slots)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the worker tasks until cancelled."""
        async with trio.open_nursery() as nursery:
            for runner in self.runners:
                nursery.start_soon(self._worker, runner)
            task_status.started()

    async def _worker(self, runner: Callable[[Sequence[In]], Awaitable[Sequence[Out]]]
                      ) -> None:
        while True:
            # One worker gathers at a time: idle workers all waiting on the channel would each
            # be handed one item of a burst, and a burst is what a batch is for.
            async with self._gathering:
                batch: list[_Slot[In, Out]] = []
                while not batch:  # withdrawn items are dropped here, never run
                    try:
                        self._take(await self._recv.receive(), batch)
                    except trio.EndOfChannel:
                        return
                while len(batch) < self.max_batch:
                    try:
                        self._take(self._recv.receive_nowait(), batch)
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
            await self._run(runner, batch)

    def _take(self, slot: _Slot[In, Out], batch: list[_Slot[In, Out]]) -> None:
        if slot.withdrawn:
            self._withdrawn += 1
        else:
            slot.taken = True
            batch.append(slot)

    async def _run(self, runner: Callable[[Sequence[In]], Awaitable[Sequence[Out]]],
                   batch: list[_Slot[In, Out]]) -> None:
        self._batches += 1
        self._items += len(batch)
        self._largest = max(self._largest, len(batch))
        DB_BATCH_SIZE.observe((self.name,), len(batch))
        self._in_flight += 1
        try:
            results = await runner([slot.item for slot in batch])
        except Exception as exc:
            self._errors += 1
            for slot in batch:
                slot.error = exc
                slot.done.set()
        else:
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
                slot.done.set()
        finally:
            self._in_flight -= 1

    def statistics(self) -> BatcherStatistics:
        return BatcherStatistics(
            name=self.name,
            queued=self._recv.statistics().current_buffer_used,
            in_flight_batches=self._in_flight,
            batches=self._batches,
            items=self._items,
            largest_batch=self._largest,
            errors=self._errors,
            withdrawn=self._withdrawn,
        )
