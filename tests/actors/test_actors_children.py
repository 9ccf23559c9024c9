"""Child tasks started with ctx.start_soon."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from actors import ActorBase, ActorContext, open_actor_system


class Fetcher(ActorBase[Any, Any]):
    """("fetch", x) starts a child that reports ("result", x * 2) back via the mailbox."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.results: list[Any] = []

    async def handle(self, ctx: ActorContext, message: Any) -> Any:
        kind, arg = message
        if kind == "fetch":
            ctx.start_soon(self.fetch, ctx, arg)
        elif kind == "fail":
            ctx.start_soon(self.fail, arg)
        elif kind == "forever":
            ctx.start_soon(self.forever, arg)
        elif kind == "result":
            self.results.append(arg)
        elif kind == "results":
            return list(self.results)
        elif kind == "stop":
            ctx.stop()
        elif kind == "crash":
            raise RuntimeError("crash")
        return None

    async def fetch(self, ctx: ActorContext, x: int) -> None:
        await trio.sleep(1)
        await ctx.system.tell(ctx.key, ("result", x * 2))

    async def fail(self, arg: Any) -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError(f"child failed {arg}")

    async def forever(self, tag: Any) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.log.append(("cancelled", tag))


async def test_child_reports_back_through_the_mailbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Fetcher(log)) as system:
            await system.ask("k", ("fetch", 1))
            await system.ask("k", ("fetch", 2))
            assert system.statistics().running_tasks == 2
            assert system.actor_statistics("k").running_tasks == 2  # type: ignore[union-attr]
            await trio.sleep(2)
            assert sorted(await system.ask("k", ("results", None))) == [2, 4]
            assert system.statistics().running_tasks == 0


async def test_child_exception_is_logged_and_harmless(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[Any] = []
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Fetcher(log)) as system:
            with caplog.at_level(logging.ERROR, logger="actors"):
                await system.ask("sub-9", ("fail", "x"))
                await trio.sleep(1)
            records = [r for r in caplog.records if r.name == "actors"]
            assert len(records) == 1
            assert "'sub-9'" in records[0].getMessage()
            assert records[0].exc_info is not None
            assert isinstance(records[0].exc_info[1], ValueError)
            stats = system.statistics()
            assert stats.child_task_errors == 1
            assert stats.crashes == 0  # the actor itself is fine
            assert stats.restarts == 0
            assert await system.ask("sub-9", ("results", None)) == []


async def test_stop_cancels_children(autojump_clock: trio.testing.MockClock) -> None:
    log: list[Any] = []
    with trio.fail_after(1000):
        async with open_actor_system(lambda k: Fetcher(log), idle_timeout=5) as system:
            await system.ask("k", ("forever", "a"))
            await trio.sleep(100)
            assert system.is_live("k")  # a running child keeps it alive
            await system.ask("k", ("stop", None))
            await trio.testing.wait_all_tasks_blocked()
            assert log == [("cancelled", "a")]
            assert not system.is_live("k")
            assert system.statistics().running_tasks == 0


async def test_restart_cancels_children(autojump_clock: trio.testing.MockClock) -> None:
    log: list[Any] = []
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Fetcher(log)) as system:
            await system.ask("k", ("forever", "a"))
            with pytest.raises(Exception, match="crash"):
                await system.ask("k", ("crash", None))
            # The next message is handled by the restarted actor, after the old
            # incarnation's children were cancelled and finished.
            assert await system.ask("k", ("results", None)) == []
            assert log == [("cancelled", "a")]
            assert system.actor_statistics("k").running_tasks == 0  # type: ignore[union-attr]


async def test_start_soon_after_the_actor_left_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    saved: list[ActorContext] = []

    class Keeper(ActorBase[Any, Any]):
        async def handle(self, ctx: ActorContext, message: Any) -> Any:
            saved.append(ctx)

    with trio.fail_after(100):
        async with open_actor_system(lambda k: Keeper(), idle_timeout=1) as system:
            await system.ask("k", None)
            await trio.sleep(5)
            assert not system.is_live("k")
            with pytest.raises(RuntimeError):
                saved[0].start_soon(trio.sleep, 1)
            with pytest.raises(RuntimeError):
                saved[0].start_timer("t", 1, None)
