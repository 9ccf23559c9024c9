"""Passivation: idle timeout, hand-over during on_stop, ctx.stop(), max_actors eviction."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import trio
import trio.testing

from actors import ActorBase, ActorContext, open_actor_system


class Store:
    """Fake persistence: state survives passivation through on_stop/on_start."""

    def __init__(self) -> None:
        self.saved: dict[Hashable, int] = {}
        self.log: list[tuple[Any, ...]] = []
        self.stopping = trio.Event()
        self.release_stop: trio.Event | None = None


class Persistent(ActorBase[Any, Any]):
    def __init__(self, key: Hashable, store: Store) -> None:
        self.store = store
        self.value = 0

    async def on_start(self, ctx: ActorContext) -> None:
        self.value = self.store.saved.get(ctx.key, 0)
        self.store.log.append(("start", ctx.key, trio.current_time()))

    async def handle(self, ctx: ActorContext, message: Any) -> Any:
        self.store.log.append(("handle", ctx.key, message))
        if message == "inc":
            self.value += 1
        elif message == "stop":
            ctx.stop()
        return self.value

    async def on_stop(self, ctx: ActorContext) -> None:
        self.store.log.append(("stop", ctx.key, trio.current_time()))
        self.store.stopping.set()
        if self.store.release_stop is not None:
            await self.store.release_stop.wait()
        self.store.saved[ctx.key] = self.value


def kinds(store: Store) -> list[str]:
    return [entry[0] for entry in store.log]


async def test_idle_actor_is_passivated_and_reactivated_with_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Persistent(k, store), idle_timeout=10) as system:
            start = trio.current_time()
            assert await system.ask("a", "inc") == 1
            await trio.sleep(9)
            assert system.is_live("a")  # not idle long enough yet
            assert await system.ask("a", "inc") == 2  # activity resets the idle clock
            await trio.sleep(9.5)
            assert system.is_live("a")
            await store.stopping.wait()
            stop_time = store.log[-1][2]
            assert stop_time - start == 19  # 9 s + 10 s idle after the last message
            await trio.testing.wait_all_tasks_blocked()
            assert not system.is_live("a")
            assert system.actor_statistics("a") is None
            assert not system._registry  # gone from memory
            stats = system.statistics()
            assert stats.live_actors == 0
            assert stats.passivations == 1
            assert store.saved == {"a": 2}
            # The next message activates it again and on_start reloads the state.
            assert await system.ask("a", "inc") == 3
            assert kinds(store).count("start") == 2
            assert system.statistics().activations == 2


async def test_message_arriving_during_on_stop_goes_to_next_activation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store()
    store.release_stop = trio.Event()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Persistent(k, store), idle_timeout=5) as system:
            assert await system.ask("a", "inc") == 1
            await store.stopping.wait()  # on_stop is running (blocked)
            assert system.is_live("a")
            assert system.actor_statistics("a").state == "stopping"  # type: ignore[union-attr]
            result: list[int] = []

            async def late_ask() -> None:
                result.append(await system.ask("a", "inc"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(late_ask)
                await trio.testing.wait_all_tasks_blocked()
                system.tell_nowait("a", "inc")  # queued behind the ask
                await trio.testing.wait_all_tasks_blocked()
                assert system.actor_statistics("a").mailbox_depth == 2  # type: ignore[union-attr]
                store.release_stop.set()
                store.release_stop = None  # later on_stops do not block
            # Both messages were handled by a fresh activation that reloaded state 1.
            assert result == [2]
            assert kinds(store) == ["start", "handle", "stop", "start", "handle", "handle"]
            assert await system.ask("a", "get") == 3
            stats = system.statistics()
            assert stats.activations == 2
            assert stats.passivations == 1


async def test_wake_race_message_wins_over_passivation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Persistent(k, store), idle_timeout=5) as system:
            await system.ask("a", "inc")
            cell = system._registry["a"]
            # The scheduler decided "idle" and woke the actor, but a message slips
            # in before the actor task runs: it must be handled, not dropped.
            cell._last_activity -= 100
            assert cell._mailbox.wake()
            system.tell_nowait("a", "inc")
            assert await system.ask("a", "get") == 2
            assert kinds(store).count("stop") == 0


async def test_ctx_stop_passivates_after_current_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Persistent(k, store), idle_timeout=1000) as system:
            await system.ask("a", "inc")
            system.tell_nowait("a", "stop")
            await store.stopping.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert not system.is_live("a")
            assert store.saved == {"a": 1}
            assert system.statistics().passivations == 1


async def test_ctx_stop_keeps_queued_messages_for_next_activation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Persistent(k, store), idle_timeout=1000) as system:
            await system.tell("a", "stop")
            await system.tell("a", "inc")
            assert await system.ask("a", "inc") == 2
            assert kinds(store) == ["start", "handle", "stop", "start", "handle", "handle"]


class Busy(ActorBase[Any, Any]):
    """Starts a child task that runs for `message` seconds."""

    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log

    async def handle(self, ctx: ActorContext, message: Any) -> Any:
        async def child(seconds: float) -> None:
            await trio.sleep(seconds)
            self.log.append(("child-done", trio.current_time()))

        ctx.start_soon(child, message)

    async def on_stop(self, ctx: ActorContext) -> None:
        self.log.append(("stop", trio.current_time()))


async def test_not_passivated_while_child_task_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Busy(log), idle_timeout=5) as system:
            t0 = trio.current_time()
            await system.ask("a", 20)
            await trio.sleep(19)
            assert system.is_live("a")
            assert system.actor_statistics("a").running_tasks == 1  # type: ignore[union-attr]
            assert system.actor_statistics("a").idle_since is None  # type: ignore[union-attr]
            await trio.sleep(2)
            assert system.is_live("a")  # child ended at 20; idle clock restarted
            await trio.sleep(5)
            assert not system.is_live("a")
            assert [entry[0] for entry in log] == ["child-done", "stop"]
            assert log[1][1] - t0 == 25


async def test_many_keys_passivate_and_memory_is_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store()
    with trio.fail_after(100):
        async with open_actor_system(lambda k: Persistent(k, store), idle_timeout=1) as system:
            for i in range(500):
                await system.tell(i, "inc")
            assert system.statistics().live_actors > 0
            await trio.sleep(5)
            stats = system.statistics()
            assert stats.live_actors == 0
            assert stats.passivations == 500
            assert len(system._scheduler) == 0  # no idle checks left behind
            assert len(store.saved) == 500


async def test_max_actors_evicts_least_recently_used_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Persistent(k, store), idle_timeout=1000, max_actors=2
        ) as system:
            await system.ask("a", "inc")
            await system.ask("b", "inc")
            await system.ask("a", "inc")  # "a" is now more recently used than "b"
            await system.ask("c", "inc")  # over the cap: evict "b"
            await store.stopping.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert not system.is_live("b")
            assert system.is_live("a")
            assert system.is_live("c")
            stats = system.statistics()
            assert stats.live_actors == 2
            assert stats.evictions == 1
            assert stats.passivations == 1
            assert store.saved == {"b": 1}
            # An evicted actor comes back on demand with its state.
            assert await system.ask("b", "inc") == 2


async def test_max_actors_with_no_idle_actor_still_activates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    release = trio.Event()

    class Blocking(ActorBase[Any, Any]):
        async def handle(self, ctx: ActorContext, message: Any) -> Any:
            if message == "block":
                await release.wait()
            return message

    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Blocking(), idle_timeout=1000, max_actors=1
        ) as system:
            await system.tell("a", "block")
            await trio.testing.wait_all_tasks_blocked()
            # "a" is busy, so it cannot be evicted: "b" is activated over the cap.
            assert await system.ask("b", "hi") == "hi"
            stats = system.statistics()
            assert stats.live_actors == 2
            assert stats.evictions == 0
            release.set()
            # The next activation evicts an idle one to get back under the cap.
            await trio.testing.wait_all_tasks_blocked()
            assert await system.ask("c", "hi") == "hi"
            await trio.testing.wait_all_tasks_blocked()
            assert system.statistics().live_actors <= 2


async def test_eviction_is_cancelled_when_a_message_arrives_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store()
    with trio.fail_after(100):
        async with open_actor_system(
            lambda k: Persistent(k, store), idle_timeout=1000, max_actors=1
        ) as system:
            await system.ask("a", "inc")
            system.tell_nowait("b", "inc")  # activates "b", marks "a" for eviction
            cell = system._registry["a"]
            assert cell._evicting
            # A message for "a" arrives before its task runs: "a" stays.
            system.tell_nowait("a", "inc")
            assert await system.ask("a", "get") == 2
            assert system.is_live("a")
            assert system._evicting == 0


async def test_stop_in_on_start_still_makes_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []

    class Stopper(ActorBase[Any, Any]):
        async def on_start(self, ctx: ActorContext) -> None:
            log.append("start")
            ctx.stop()

        async def handle(self, ctx: ActorContext, message: Any) -> Any:
            log.append(message)
            return message

        async def on_stop(self, ctx: ActorContext) -> None:
            log.append("stop")

    with trio.fail_after(100):
        async with open_actor_system(lambda k: Stopper(), idle_timeout=1000) as system:
            system.tell_nowait("k", 1)
            system.tell_nowait("k", 2)
            assert await system.ask("k", 3) == 3
            await trio.testing.wait_all_tasks_blocked()
            assert not system.is_live("k")
            # One message per activation: no stop/start loop without progress.
            assert log == ["start", 1, "stop", "start", 2, "stop", "start", 3, "stop"]
