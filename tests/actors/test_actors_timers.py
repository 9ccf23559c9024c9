"""Timers: ticks through the mailbox, repeat, cancel, replace, coalescing, passivation."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from actors import ActorBase, ActorContext, open_actor_system


class Ticker(ActorBase[Any, Any]):
    """Commands are tuples; ticks are ("tick", name) and are logged with their time."""

    def __init__(self, log: list[tuple[Any, ...]], release: trio.Event | None = None) -> None:
        self.log = log
        self.release = release

    async def handle(self, ctx: ActorContext, message: Any) -> Any:
        kind = message[0]
        if kind == "arm":
            _, name, delay, repeat = message
            ctx.start_timer(name, delay, ("tick", name), repeat=repeat)
        elif kind == "cancel":
            return ctx.cancel_timer(message[1])
        elif kind == "tick":
            self.log.append(("tick", message[1], trio.current_time()))
        elif kind == "block":
            assert self.release is not None
            await self.release.wait()
            if len(message) > 1:
                ctx.cancel_timer(message[1])
        elif kind == "sleep":
            await trio.sleep(message[1])
        return None

    async def on_stop(self, ctx: ActorContext) -> None:
        self.log.append(("stop", ctx.key, trio.current_time()))


def ticks(log: list[tuple[Any, ...]]) -> list[tuple[Any, Any]]:
    return [(entry[1], entry[2]) for entry in log if entry[0] == "tick"]


async def test_one_shot_timer_delivers_through_the_mailbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Ticker(log), idle_timeout=1000) as system:
            t0 = trio.current_time()
            await system.ask("k", ("arm", "t", 3, None))
            assert system.statistics().active_timers == 1
            assert system.actor_statistics("k").timers == 1  # type: ignore[union-attr]
            await trio.sleep(10)
            assert ticks(log) == [("t", pytest.approx(t0 + 3))]
            stats = system.statistics()
            assert stats.timer_ticks == 1
            assert stats.active_timers == 0
            assert system.actor_statistics("k").timers == 0  # type: ignore[union-attr]


async def test_repeating_timer_and_cancel(autojump_clock: trio.testing.MockClock) -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Ticker(log), idle_timeout=1000) as system:
            t0 = trio.current_time()
            await system.ask("k", ("arm", "r", 1, 2))
            await trio.sleep(6)  # ticks at 1, 3, 5
            assert await system.ask("k", ("cancel", "r")) is True
            assert await system.ask("k", ("cancel", "r")) is False
            await trio.sleep(10)
            assert [t - t0 for _, t in ticks(log)] == pytest.approx([1, 3, 5])
            assert system.statistics().active_timers == 0


async def test_start_timer_replaces_same_name(autojump_clock: trio.testing.MockClock) -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Ticker(log), idle_timeout=1000) as system:
            t0 = trio.current_time()
            await system.ask("k", ("arm", "t", 5, None))
            await system.ask("k", ("arm", "t", 2, None))
            await system.ask("k", ("arm", "u", 3, None))
            await trio.sleep(10)
            assert [(n, t - t0) for n, t in ticks(log)] == [
                ("t", pytest.approx(2)),
                ("u", pytest.approx(3)),
            ]
            assert system.statistics().active_timers == 0


async def test_cancel_suppresses_a_tick_already_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    release = trio.Event()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Ticker(log, release), idle_timeout=1000) as system:
            await system.ask("k", ("arm", "t", 1, None))
            await system.tell("k", ("block", "t"))  # cancels "t" when released
            await trio.sleep(5)  # the tick fired and sits in the mailbox
            assert system.actor_statistics("k").mailbox_depth == 1  # type: ignore[union-attr]
            release.set()
            await system.ask("k", ("noop",))
            assert ticks(log) == []
            assert system.statistics().timer_ticks == 0


async def test_repeating_timer_never_queues_more_than_one_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Ticker(log), idle_timeout=1000) as system:
            await system.ask("k", ("arm", "r", 1, 1))
            await system.tell("k", ("sleep", 30))  # slow handler: ticks pile up?
            await trio.sleep(20)
            depth = system.actor_statistics("k").mailbox_depth  # type: ignore[union-attr]
            assert depth == 1
            await trio.sleep(15)
            await system.ask("k", ("cancel", "r"))
            # 1 tick before the sleep + 1 coalesced tick + ticks after the sleep.
            assert len(ticks(log)) <= 8


async def test_tick_waits_for_room_in_a_full_mailbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    release = trio.Event()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Ticker(log, release), idle_timeout=1000, mailbox_size=1
        ) as system:
            await system.ask("k", ("arm", "t", 1, None))
            await system.tell("k", ("block",))
            await system.tell("k", ("noop",))  # mailbox now full
            await trio.sleep(5)  # tick fired: it waits for room
            assert system.statistics().waiting_senders == 1
            release.set()
            await trio.sleep(1)
            assert [name for name, _ in ticks(log)] == ["t"]


async def test_timers_do_not_keep_an_actor_alive_and_die_with_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Ticker(log), idle_timeout=10) as system:
            t0 = trio.current_time()
            await system.ask("k", ("arm", "r", 1, 1))
            await system.ask("k", ("arm", "late", 50, None))
            await trio.sleep(30)
            stop = [entry for entry in log if entry[0] == "stop"]
            assert stop and stop[0][2] - t0 == pytest.approx(10)
            assert not system.is_live("k")
            count = len(ticks(log))
            assert 8 <= count <= 10
            stats = system.statistics()
            assert stats.active_timers == 0
            await trio.sleep(60)  # cancelled timers never re-activate the key
            assert len(ticks(log)) == count
            assert not system.is_live("k")
            assert system.statistics().activations == 1


async def test_timer_argument_validation() -> None:
    errors: list[BaseException] = []

    class Bad(ActorBase[Any, Any]):
        async def handle(self, ctx: ActorContext, message: Any) -> Any:
            for delay, repeat in ((-1, None), (1, 0)):
                try:
                    ctx.start_timer("t", delay, "x", repeat=repeat)
                except ValueError as exc:
                    errors.append(exc)

    with trio.fail_after(10):
        async with open_actor_system(lambda k: Bad()) as system:
            await system.ask("k", "go")
    assert len(errors) == 2
