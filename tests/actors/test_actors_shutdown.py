"""Clean, bounded shutdown when leaving open_actor_system."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from actors import ActorBase, ActorContext, SystemStopped, open_actor_system


class Worker(ActorBase[Any, Any]):
    def __init__(self, log: list[tuple[Any, ...]], entered: trio.Event) -> None:
        self.log = log
        self.entered = entered

    async def handle(self, ctx: ActorContext, message: Any) -> Any:
        kind, arg = message
        if kind == "work":  # takes `arg` seconds
            self.entered.set()
            await trio.sleep(arg)
        elif kind == "hang":
            self.entered.set()
            await trio.sleep_forever()
        elif kind == "child":  # a child task of `arg` seconds

            async def child() -> None:
                try:
                    await trio.sleep(arg)
                    self.log.append(("child-done", arg, trio.current_time()))
                except trio.Cancelled:
                    self.log.append(("child-cancelled", arg, trio.current_time()))
                    raise

            ctx.start_soon(child)
        self.log.append(("handled", message))
        return message

    async def on_stop(self, ctx: ActorContext) -> None:
        self.log.append(("stop", ctx.key, trio.current_time()))


async def test_shutdown_finishes_current_message_and_fails_queued_asks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    entered = trio.Event()
    outcomes: dict[str, Any] = {}

    async def ask(name: str, message: Any) -> None:
        try:
            outcomes[name] = await system.ask("k", message, timeout=100)
        except SystemStopped as exc:
            outcomes[name] = exc

    with trio.fail_after(100):
        async with trio.open_nursery() as outside:
            async with open_actor_system(lambda k: Worker(log, entered)) as system:
                outside.start_soon(ask, "current", ("work", 3))
                await entered.wait()
                outside.start_soon(ask, "queued", ("work", 1))
                await trio.testing.wait_all_tasks_blocked()
                system.tell_nowait("k", ("work", 1))
                system.tell_nowait("k", ("work", 1))
                t0 = trio.current_time()
            # Left the block: the current message finished, the rest was refused.
            assert trio.current_time() - t0 == pytest.approx(3)
        assert outcomes["current"] == ("work", 3)
        assert isinstance(outcomes["queued"], SystemStopped)
        assert [entry[0] for entry in log] == ["handled", "stop"]
        stats = system.statistics()
        assert stats.closed
        assert stats.dropped_messages == 2
        assert stats.live_actors == 0
        with pytest.raises(SystemStopped):
            await system.ask("k", ("work", 0))
        with pytest.raises(SystemStopped):
            await system.tell("k", ("work", 0))
        with pytest.raises(SystemStopped):
            system.tell_nowait("other", ("work", 0))


async def test_shutdown_waits_for_children_up_to_grace_then_cancels(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Worker(log, trio.Event()), shutdown_grace=5
        ) as system:
            await system.ask("k", ("child", 3))
            await system.ask("k", ("child", 100))
            t0 = trio.current_time()
        kinds = [(entry[0], entry[1]) for entry in log if entry[0] != "handled"]
        assert kinds == [("child-done", 3), ("child-cancelled", 100), ("stop", "k")]
        assert log[-2][2] - t0 == pytest.approx(5)  # cancelled at the end of the grace
        assert trio.current_time() - t0 == pytest.approx(5)
        assert system.statistics().running_tasks == 0


async def test_shutdown_never_hangs_on_a_stuck_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    entered = trio.Event()
    outcome: list[BaseException] = []

    async def ask() -> None:
        try:
            await system.ask("k", ("hang", None), timeout=1000)
        except SystemStopped as exc:
            outcome.append(exc)

    with trio.fail_after(100):
        async with trio.open_nursery() as outside:
            async with open_actor_system(
                lambda k: Worker(log, entered), shutdown_timeout=7
            ) as system:
                outside.start_soon(ask)
                await entered.wait()
                system.tell_nowait("k", ("work", 1))
                t0 = trio.current_time()
            assert trio.current_time() - t0 == pytest.approx(7)
        assert len(outcome) == 1  # the asker was answered, not left hanging
        stats = system.statistics()
        assert stats.live_actors == 0
        assert stats.dropped_messages == 1


async def test_shutdown_never_hangs_on_a_stuck_on_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class StuckStop(ActorBase[Any, Any]):
        async def handle(self, ctx: ActorContext, message: Any) -> Any:
            return message

        async def on_stop(self, ctx: ActorContext) -> None:
            await trio.sleep_forever()

    with trio.fail_after(100):
        async with open_actor_system(lambda k: StuckStop(), shutdown_timeout=2) as system:
            await system.ask("k", 1)
            t0 = trio.current_time()
        assert trio.current_time() - t0 == pytest.approx(2)
        assert system.statistics().live_actors == 0


async def test_outer_cancellation_still_shuts_down_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(100):
        with trio.move_on_after(10) as scope:
            async with open_actor_system(lambda k: Worker(log, trio.Event())) as system:
                await system.ask("a", ("work", 0))
                await system.ask("b", ("work", 0))
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert sorted(entry[1] for entry in log if entry[0] == "stop") == ["a", "b"]
        assert system.statistics().live_actors == 0


async def test_shutdown_with_many_idle_actors_is_quick() -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(20):
        async with open_actor_system(lambda k: Worker(log, trio.Event())) as system:
            for i in range(2000):
                await system.tell(i, ("work", 0))
            await system.ask(0, ("work", 0))
        assert sum(1 for entry in log if entry[0] == "stop") == 2000
        assert system.statistics().live_actors == 0


async def test_crashed_actor_during_shutdown_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[Any] = []

    class CrashOnSlow(ActorBase[Any, Any]):
        async def on_start(self, ctx: ActorContext) -> None:
            starts.append(ctx.key)

        async def handle(self, ctx: ActorContext, message: Any) -> Any:
            await trio.sleep(1)
            raise ValueError("late crash")

    with trio.fail_after(100):
        async with open_actor_system(lambda k: CrashOnSlow()) as system:
            system.tell_nowait("k", 1)
            await trio.testing.wait_all_tasks_blocked()
        assert starts == ["k"]
        assert system.statistics().crashes == 1
        assert system.statistics().restarts == 0
