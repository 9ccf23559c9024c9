"""Crashes, restarts, restart intensity and isolation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Hashable
from typing import Any

import pytest
import trio
import trio.testing

from actors import (
    ActorBase,
    ActorContext,
    ActorCrashed,
    ActorStopped,
    open_actor_system,
)


class Boom(Exception):
    pass


class Registry:
    def __init__(self) -> None:
        self.incarnations: dict[Hashable, int] = {}
        self.stops: list[Hashable] = []
        self.fail_start = 0  # number of on_start calls that should still fail
        self.entered = trio.Event()
        self.release = trio.Event()


class Flaky(ActorBase[Any, Any]):
    def __init__(self, key: Hashable, reg: Registry) -> None:
        self.reg = reg
        self.incarnation = 0
        self.state = "fresh"

    async def on_start(self, ctx: ActorContext) -> None:
        self.reg.incarnations[ctx.key] = self.reg.incarnations.get(ctx.key, 0) + 1
        self.incarnation = self.reg.incarnations[ctx.key]
        if self.reg.fail_start:
            self.reg.fail_start -= 1
            raise Boom("on_start")

    async def handle(self, ctx: ActorContext, message: Any) -> Any:
        if message == "boom":
            self.state = "dirty"
            raise Boom(f"boom in {ctx.key}")
        if message == "block":
            self.reg.entered.set()
            await self.reg.release.wait()
        return (message, self.incarnation, self.state)

    async def on_stop(self, ctx: ActorContext) -> None:
        self.reg.stops.append(ctx.key)


async def test_crash_fails_the_ask_and_restarts_fresh(caplog: pytest.LogCaptureFixture) -> None:
    reg = Registry()
    with trio.fail_after(10):
        async with open_actor_system(lambda k: Flaky(k, reg)) as system:
            assert await system.ask("sub-1", "hi") == ("hi", 1, "fresh")
            with (
                caplog.at_level(logging.ERROR, logger="actors"),
                pytest.raises(ActorCrashed) as info,
            ):
                await system.ask("sub-1", "boom")
            crashed = info.value
            assert crashed.key == "sub-1"
            assert isinstance(crashed.error, Boom)
            assert crashed.__cause__ is crashed.error
            records = [r for r in caplog.records if r.name == "actors"]
            assert records and "'sub-1'" in records[0].getMessage()
            assert records[0].exc_info is not None and records[0].exc_info[1] is crashed.error
            # Restarted: a fresh behaviour, on_start ran again, state reloaded.
            assert await system.ask("sub-1", "hi") == ("hi", 2, "fresh")
            stats = system.statistics()
            assert stats.crashes == 1
            assert stats.restarts == 1
            assert system.actor_statistics("sub-1").restarts == 1  # type: ignore[union-attr]
            assert reg.stops == []  # on_stop is not called for a crashed behaviour


async def test_queued_messages_survive_a_restart() -> None:
    reg = Registry()
    with trio.fail_after(10):
        async with open_actor_system(lambda k: Flaky(k, reg)) as system:
            results: list[Any] = []

            async def ask(message: str) -> None:
                results.append(await system.ask("k", message))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask, "block")
                await reg.entered.wait()
                system.tell_nowait("k", "boom")
                nursery.start_soon(ask, "after")
                await trio.testing.wait_all_tasks_blocked()
                assert system.actor_statistics("k").mailbox_depth == 2  # type: ignore[union-attr]
                reg.release.set()
            assert results == [("block", 1, "fresh"), ("after", 2, "fresh")]


async def test_too_many_crashes_stop_the_actor_for_a_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reg = Registry()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Flaky(k, reg), max_restarts=2, restart_window=10
        ) as system:
            for _ in range(2):
                with pytest.raises(ActorCrashed) as info:
                    await system.ask("k", "boom")
                assert type(info.value) is ActorCrashed
            # Third crash within the window: stopped. Messages queued behind it fail.
            pending: list[BaseException] = []

            async def queued_ask() -> None:
                try:
                    await system.ask("k", "queued")
                except ActorStopped as exc:
                    pending.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(system.tell, "k", "block")
                await reg.entered.wait()
                system.tell_nowait("k", "boom")
                nursery.start_soon(queued_ask)
                await trio.testing.wait_all_tasks_blocked()
                system.tell_nowait("k", "dropped")
                reg.release.set()
            assert len(pending) == 1
            stopped = pending[0]
            assert isinstance(stopped, ActorCrashed)  # ActorStopped is a kind of crash
            assert isinstance(stopped.error, Boom)
            assert not system.is_live("k")
            stats = system.statistics()
            assert stats.stopped_actors == 1
            assert stats.backoff_keys == 1
            assert stats.dropped_messages == 1
            assert stats.crashes == 3
            assert stats.restarts == 2
            # During the back-off, further messages are refused at once.
            t0 = trio.current_time()
            with pytest.raises(ActorStopped) as info2:
                await system.ask("k", "hi")
            assert info2.value.until == pytest.approx(t0 + 10)
            with pytest.raises(ActorStopped):
                system.tell_nowait("k", "hi")
            with pytest.raises(ActorStopped):
                await system.tell("k", "hi")
            assert not system.is_live("k")
            # Other keys are not affected.
            assert (await system.ask("other", "hi"))[0] == "hi"
            # After the back-off the key can be activated again.
            await trio.sleep(10)
            assert (await system.ask("k", "hi"))[0] == "hi"
            assert system.statistics().backoff_keys == 0


async def test_crashes_spread_over_time_keep_restarting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reg = Registry()
    with trio.fail_after(200):
        async with open_actor_system(
            lambda k: Flaky(k, reg), max_restarts=1, restart_window=10, idle_timeout=1000
        ) as system:
            for _ in range(5):
                with pytest.raises(ActorCrashed) as info:
                    await system.ask("k", "boom")
                assert not isinstance(info.value, ActorStopped)
                await trio.sleep(11)
            assert system.statistics().restarts == 5
            assert system.statistics().stopped_actors == 0


async def test_on_start_crash_counts_and_message_is_kept() -> None:
    reg = Registry()
    reg.fail_start = 1
    with trio.fail_after(10):
        async with open_actor_system(lambda k: Flaky(k, reg)) as system:
            # First on_start fails; the restarted actor handles the message.
            assert await system.ask("k", "hi") == ("hi", 2, "fresh")
            stats = system.statistics()
            assert stats.crashes == 1
            assert stats.restarts == 1


async def test_on_start_always_failing_stops_the_actor() -> None:
    reg = Registry()
    reg.fail_start = 100
    with trio.fail_after(10):
        async with open_actor_system(lambda k: Flaky(k, reg), max_restarts=3) as system:
            with pytest.raises(ActorStopped) as info:
                await system.ask("k", "hi")
            assert isinstance(info.value.error, Boom)
            assert reg.incarnations["k"] == 4  # first start + 3 restarts
            assert system.statistics().crashes == 4


async def test_factory_error_counts_as_crash() -> None:
    def factory(key: Hashable) -> Flaky:
        raise Boom("factory")

    with trio.fail_after(10):
        async with open_actor_system(factory, max_restarts=0) as system:
            with pytest.raises(ActorStopped) as info:
                await system.ask("k", "hi")
            assert isinstance(info.value.error, Boom)


async def test_crash_loop_in_one_actor_does_not_affect_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reg = Registry()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Flaky(k, reg), max_restarts=2, restart_window=1
        ) as system:

            async def hammer() -> None:
                for _ in range(50):
                    with contextlib.suppress(ActorCrashed):
                        await system.ask("bad", "boom")
                    await trio.sleep(0.1)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(hammer)
                for i in range(50):
                    assert await system.ask("good", i) == (i, 1, "fresh")
                    await trio.sleep(0.1)
            assert system.statistics().crashes > 3
            assert reg.incarnations["good"] == 1
