"""Bounded mailboxes, Overloaded, ask timeouts and late replies."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

from actors import ActorBase, ActorContext, AskTimeout, Overloaded, open_actor_system


class Gate(ActorBase[Any, Any]):
    """Blocks on `release` for "block"; records and echoes every message."""

    def __init__(self, entered: trio.Event, release: trio.Event, seen: list[Any]) -> None:
        self.entered = entered
        self.release = release
        self.seen = seen

    async def handle(self, ctx: ActorContext, message: Any) -> Any:
        if message == "block":
            self.entered.set()
            await self.release.wait()
        self.seen.append(message)
        return message


async def test_full_mailbox_raises_overloaded(autojump_clock: trio.testing.MockClock) -> None:
    entered, release, seen = trio.Event(), trio.Event(), list[Any]()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Gate(entered, release, seen), mailbox_size=2, send_timeout=1.5
        ) as system:
            await system.tell("k", "block")
            await entered.wait()
            system.tell_nowait("k", 1)
            await system.tell("k", 2)
            assert system.statistics().mailbox_depth_total == 2
            assert system.actor_statistics("k").mailbox_depth == 2  # type: ignore[union-attr]

            with pytest.raises(Overloaded) as info:
                system.tell_nowait("k", 3)
            assert info.value.key == "k"
            assert info.value.mailbox_size == 2

            t0 = trio.current_time()
            with pytest.raises(Overloaded):
                await system.tell("k", 4)
            assert trio.current_time() - t0 == pytest.approx(1.5)

            t0 = trio.current_time()
            with pytest.raises(Overloaded):
                await system.ask("k", 5, timeout=10)
            assert trio.current_time() - t0 == pytest.approx(1.5)

            stats = system.statistics()
            assert stats.overload_rejections == 3
            assert stats.waiting_senders == 0  # the timed-out senders withdrew
            release.set()
            assert await system.ask("k", "after") == "after"
            assert seen == ["block", 1, 2, "after"]


async def test_blocked_sender_gets_in_when_room_frees_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered, release, seen = trio.Event(), trio.Event(), list[Any]()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Gate(entered, release, seen), mailbox_size=1, send_timeout=30
        ) as system:
            await system.tell("k", "block")
            await entered.wait()
            system.tell_nowait("k", 1)
            replies: list[Any] = []

            async def asker() -> None:
                replies.append(await system.ask("k", 2, timeout=60))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(system.tell, "k", "waiting")
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(asker)
                await trio.testing.wait_all_tasks_blocked()
                stats = system.statistics()
                assert stats.waiting_senders == 2
                assert stats.mailbox_depth_total == 1
                assert system.actor_statistics("k").waiting_senders == 2  # type: ignore[union-attr]
                await trio.sleep(10)  # within send_timeout
                release.set()
            assert replies == [2]
            assert seen == ["block", 1, "waiting", 2]  # FIFO, blocked senders included
            stats = system.statistics()
            assert stats.waiting_senders == 0
            assert stats.mailbox_depth_total == 0
            assert stats.overload_rejections == 0


async def test_ask_timeout_and_late_reply_is_discarded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered, release, seen = trio.Event(), trio.Event(), list[Any]()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Gate(entered, release, seen)) as system:
            t0 = trio.current_time()
            with pytest.raises(AskTimeout) as info:
                await system.ask("k", "block", timeout=2)
            assert trio.current_time() - t0 == pytest.approx(2)
            assert info.value.key == "k"
            assert isinstance(info.value, TimeoutError)
            assert system.statistics().ask_timeouts == 1
            release.set()  # the handler now returns; nobody is waiting for the reply
            assert await system.ask("k", "next") == "next"
            assert seen == ["block", "next"]
            assert system.statistics().crashes == 0


async def test_ask_timeout_shorter_than_send_timeout_on_full_mailbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered, release, seen = trio.Event(), trio.Event(), list[Any]()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Gate(entered, release, seen), mailbox_size=1, send_timeout=5
        ) as system:
            await system.tell("k", "block")
            await entered.wait()
            system.tell_nowait("k", 1)
            with pytest.raises(AskTimeout):
                await system.ask("k", 2, timeout=1)
            release.set()


async def test_cancelled_ask_is_abandoned_cleanly(autojump_clock: trio.testing.MockClock) -> None:
    entered, release, seen = trio.Event(), trio.Event(), list[Any]()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Gate(entered, release, seen)) as system:
            with trio.move_on_after(1) as scope:
                await system.ask("k", "block", timeout=100)
            assert scope.cancelled_caught
            assert system.statistics().ask_timeouts == 0  # cancelled, not timed out
            release.set()
            assert await system.ask("k", "x") == "x"


async def test_senders_to_different_keys_do_not_block_each_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered, release, seen = trio.Event(), trio.Event(), list[Any]()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Gate(entered, release, seen), mailbox_size=1, send_timeout=1
        ) as system:
            await system.tell("slow", "block")
            await entered.wait()
            system.tell_nowait("slow", 1)
            with pytest.raises(Overloaded):
                system.tell_nowait("slow", 2)
            for i in range(50):
                await system.tell(("fast", i), i)
            assert await system.ask(("fast", 0), "ok") == "ok"
            release.set()


async def test_timed_out_ask_still_queued_is_handled_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered, release, seen = trio.Event(), trio.Event(), list[Any]()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Gate(entered, release, seen)) as system:
            await system.tell("k", "block")
            await entered.wait()
            with pytest.raises(AskTimeout):
                await system.ask("k", "queued", timeout=1)
            release.set()
            assert await system.ask("k", "next") == "next"
            assert seen == ["block", "queued", "next"]  # delivered intact, reply dropped


async def test_zero_send_timeout_and_infinite_ask_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered, release, seen = trio.Event(), trio.Event(), list[Any]()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Gate(entered, release, seen), mailbox_size=1, send_timeout=0
        ) as system:
            assert await system.ask("k", "hi", timeout=math.inf) == "hi"
            await system.tell("k", "block")
            await entered.wait()
            await system.tell("k", 1)
            t0 = trio.current_time()
            with pytest.raises(Overloaded):
                await system.tell("k", 2)
            assert trio.current_time() == t0  # refused at once
            release.set()


async def test_many_asks_leave_no_scheduler_garbage() -> None:
    entered, release, seen = trio.Event(), trio.Event(), list[Any]()
    with trio.fail_after(30):
        async with open_actor_system(lambda k: Gate(entered, release, seen)) as system:
            for i in range(5000):
                assert await system.ask(i % 7, i) == i
            # Answered asks' timeout entries are compacted away, not kept for 5 s.
            assert len(system._scheduler._asks.entries) <= 2 * 1024 + 2
            stats = system.statistics()
            assert stats.messages == 5000
            assert stats.ask_timeouts == 0
