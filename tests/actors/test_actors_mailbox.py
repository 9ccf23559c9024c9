"""Unit tests of the low-level pieces: Mailbox, PendingAsk, Scheduler."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors._mailbox import EMPTY, WAKE, Counters, Mailbox, PendingAsk
from actors._scheduler import Scheduler


async def test_mailbox_fifo_capacity_and_counters() -> None:
    with trio.fail_after(5):
        counters = Counters()
        box = Mailbox(2, counters)
        assert box.get_nowait() is EMPTY
        assert box.put_nowait(1)
        assert box.put_nowait(2)
        assert not box.put_nowait(3)
        assert (box.depth, counters.queued) == (2, 2)
        assert box.get_nowait() == 1
        assert box.get_nowait() == 2
        assert box.get_nowait() is EMPTY
        assert (box.depth, counters.queued) == (0, 0)
        assert box._buffer is None  # no buffer kept while empty
        await trio.lowlevel.checkpoint()


async def test_mailbox_hands_over_to_parked_receiver_and_wake() -> None:
    with trio.fail_after(5):
        box = Mailbox(1, Counters())
        got: list[object] = []

        async def receiver() -> None:
            got.append(await box.get())
            got.append(await box.get())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            assert box.parked
            assert box.put_nowait("direct")
            assert box.depth == 0  # went straight to the receiver
            await trio.testing.wait_all_tasks_blocked()
            assert box.wake()
            assert not box.wake()
        assert got == ["direct", WAKE]


async def test_mailbox_blocked_senders_are_fifo_and_cancellable() -> None:
    with trio.fail_after(5):
        counters = Counters()
        box = Mailbox(1, counters)
        box.put_nowait(0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.put, 1)
            await trio.testing.wait_all_tasks_blocked()
            cancel_me = trio.CancelScope()

            async def put_cancellable() -> None:
                with cancel_me:
                    await box.put("withdrawn")

            nursery.start_soon(put_cancellable)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(box.put, 2)
            await trio.testing.wait_all_tasks_blocked()
            assert box.waiting_senders == 3
            cancel_me.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert counters.waiting_senders == 2
            items = []
            for _ in range(3):
                items.append(box.get_nowait())
                await trio.testing.wait_all_tasks_blocked()
        assert items == [0, 1, 2]
        assert box.get_nowait() is EMPTY
        assert counters.waiting_senders == 0
        assert counters.queued == 0


async def test_pending_ask_result_error_and_abandon(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(5):
        ask = PendingAsk("m")
        ask.set_result(1)
        ask.set_result(2)  # ignored
        assert await ask.wait() == 1

        ask = PendingAsk("m")
        ask.set_error(ValueError("x"))
        with pytest.raises(ValueError):
            await ask.wait()

        ask = PendingAsk("m")
        with trio.move_on_after(1):
            await ask.wait()
        assert not ask.pending
        ask.set_result("late")  # discarded silently

        ask = PendingAsk("m")
        async with trio.open_nursery() as nursery:

            async def answer() -> None:
                await trio.lowlevel.checkpoint()
                ask.set_result("ok")

            nursery.start_soon(answer)
            assert await ask.wait() == "ok"


class _Target:
    def __init__(self, log: list[tuple[str, float]], name: str) -> None:
        self.log = log
        self.name = name
        self.stale = False

    def _deadline_stale(self) -> bool:
        return self.stale

    def _on_deadline(self, now: float) -> None:
        self.log.append((self.name, now))


async def test_scheduler_fires_in_deadline_order(autojump_clock: trio.testing.MockClock) -> None:
    log: list[tuple[str, float]] = []
    scheduler = Scheduler()
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(scheduler.run)
            await trio.testing.wait_all_tasks_blocked()
            t0 = trio.current_time()
            scheduler.schedule(t0 + 5, _Target(log, "b"))
            await trio.sleep(1)
            scheduler.schedule(t0 + 2, _Target(log, "a"))  # earlier: wakes the scheduler
            stale = _Target(log, "stale")
            scheduler.schedule(t0 + 3, stale)
            stale.stale = True
            scheduler.note_stale()
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
        assert [(name, t - t0) for name, t in log] == [("a", 2), ("b", 5)]
        assert len(scheduler) == 0


async def test_scheduler_compacts_stale_entries() -> None:
    with trio.fail_after(5):
        scheduler = Scheduler()
        targets = [_Target([], str(i)) for i in range(3000)]
        for i, target in enumerate(targets):
            scheduler.schedule(1e9 + i, target)
        for target in targets[:2500]:
            target.stale = True
            scheduler.note_stale()
        assert len(scheduler) <= 1500  # compacted once stale entries were the majority
        assert sum(e[2]._deadline_stale() for e in scheduler._main.entries) == scheduler._main.stale
        await trio.lowlevel.checkpoint()
