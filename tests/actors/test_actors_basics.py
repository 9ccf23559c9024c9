"""Activation on demand, ordering, concurrency, statistics and API shape."""

from __future__ import annotations

import inspect
from collections.abc import Hashable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
from actors import (
    Actor,
    ActorBase,
    ActorContext,
    ActorStatistics,
    ActorSystem,
    SystemStatistics,
    open_actor_system,
)
from actors._context import ActorContext as _Cell
from actors._mailbox import Mailbox, PendingAsk


class Counter(ActorBase[Any, Any]):
    """Counts "inc" messages; "get" returns the count; log records the calls."""

    def __init__(self, key: Hashable, log: list[tuple[Any, ...]]) -> None:
        self.key = key
        self.log = log
        self.count = 0

    async def on_start(self, ctx: ActorContext) -> None:
        self.log.append(("start", ctx.key))

    async def handle(self, ctx: ActorContext, message: Any) -> Any:
        self.log.append(("handle", ctx.key, message))
        if message == "inc":
            self.count += 1
        return self.count

    async def on_stop(self, ctx: ActorContext) -> None:
        self.log.append(("stop", ctx.key))


async def test_first_message_activates_and_ask_returns_handler_value() -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(5):
        async with open_actor_system(lambda key: Counter(key, log)) as system:
            assert not system.is_live("a")
            assert await system.ask("a", "inc") == 1
            assert system.is_live("a")
            assert await system.ask("a", "inc") == 2
            assert await system.ask("b", "inc") == 1
            assert log[:2] == [("start", "a"), ("handle", "a", "inc")]
            stats = system.statistics()
            assert stats.live_actors == 2
            assert stats.activations == 2
            assert stats.messages == 3


async def test_tell_and_tell_nowait_are_delivered_in_order() -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(5):
        async with open_actor_system(lambda key: Counter(key, log)) as system:
            await system.tell("a", 1)
            system.tell_nowait("a", 2)
            await system.tell("a", 3)
            system.tell_nowait("a", 4)
            assert await system.ask("a", "get") == 0
            handled = [entry[2] for entry in log if entry[0] == "handle"]
            assert handled == [1, 2, 3, 4, "get"]


class Probe(ActorBase[Any, Any]):
    """Records concurrency inside handle; "block" waits on an event."""

    active = 0
    max_active = 0

    def __init__(self, release: trio.Event, seen: list[Any]) -> None:
        self.release = release
        self.seen = seen

    async def handle(self, ctx: ActorContext, message: Any) -> Any:
        type(self).active += 1
        type(self).max_active = max(type(self).max_active, type(self).active)
        try:
            self.seen.append(message)
            if message == "block":
                await self.release.wait()
            await trio.lowlevel.checkpoint()
            return message
        finally:
            type(self).active -= 1


async def test_one_message_at_a_time_per_key_no_reentrancy() -> None:
    release = trio.Event()
    seen: list[Any] = []

    class P(Probe):
        pass

    with trio.fail_after(5):
        async with open_actor_system(lambda key: P(release, seen)) as system:
            results: list[Any] = []

            async def asker(i: int) -> None:
                results.append(await system.ask("k", i))

            await system.tell("k", "block")
            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(asker, i)
                await trio.testing.wait_all_tasks_blocked()
                assert seen == ["block"]  # nobody entered handle while it is busy
                assert system.actor_statistics("k") is not None
                release.set()
            assert P.max_active == 1
            assert sorted(results) == list(range(20))


async def test_different_keys_run_concurrently() -> None:
    release = trio.Event()
    seen: list[Any] = []
    with trio.fail_after(5):
        async with (
            open_actor_system(lambda key: Probe(release, seen)) as system,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(system.ask, "slow", "block")
            await trio.testing.wait_all_tasks_blocked()
            # "slow" is stuck in handle; another key still answers.
            assert await system.ask("fast", "hello") == "hello"
            release.set()


async def test_actor_can_ask_another_actor() -> None:
    class Relay(ActorBase[Any, Any]):
        async def handle(self, ctx: ActorContext, message: Any) -> Any:
            if ctx.key == "front":
                return ("front", await ctx.system.ask("back", message))
            return ("back", message)

    with trio.fail_after(5):
        async with open_actor_system(lambda key: Relay()) as system:
            assert await system.ask("front", 7) == ("front", ("back", 7))


async def test_statistics_records_are_frozen_and_complete() -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(5):
        async with open_actor_system(lambda key: Counter(key, log), name="subs") as system:
            await system.ask("a", "inc")
            stats = system.statistics()
            assert isinstance(stats, SystemStatistics)
            assert stats.name == "subs"
            for field in (
                "live_actors",
                "activations",
                "passivations",
                "restarts",
                "crashes",
                "messages",
                "mailbox_depth_total",
                "waiting_senders",
                "overload_rejections",
                "evictions",
            ):
                assert isinstance(getattr(stats, field), int)
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                stats.live_actors = 5  # type: ignore[misc]
            actor_stats = system.actor_statistics("a")
            assert isinstance(actor_stats, ActorStatistics)
            assert actor_stats.key == "a"
            assert actor_stats.state == "running"
            assert actor_stats.mailbox_depth == 0
            assert actor_stats.waiting_senders == 0
            assert actor_stats.messages == 1
            assert actor_stats.restarts == 0
            assert actor_stats.running_tasks == 0
            assert actor_stats.idle_since is not None
            assert system.actor_statistics("nobody") is None
            assert system.live_keys() == ["a"]
        assert system.statistics().closed


async def test_runtime_objects_are_slotted() -> None:
    # Per-actor and per-ask objects must not carry a __dict__ (memory).
    for cls in (_Cell, Mailbox, PendingAsk):
        assert "__dict__" not in dir(cls), cls
        assert hasattr(cls, "__slots__")


async def test_public_api_shape() -> None:
    with trio.fail_after(5):
        expected = {
            "open_actor_system",
            "ActorSystem",
            "Actor",
            "ActorBase",
            "ActorContext",
            "Overloaded",
            "ActorCrashed",
            "ActorStopped",
            "AskTimeout",
            "SystemStopped",
            "SystemStatistics",
            "ActorStatistics",
        }
        assert expected <= set(actors.__all__)
        params = inspect.signature(open_actor_system).parameters
        assert params["mailbox_size"].default == 64
        assert params["idle_timeout"].default == 60.0
        assert params["send_timeout"].default == 1.0
        assert params["max_actors"].default is None
        assert params["max_restarts"].default == 3
        assert params["restart_window"].default == 10.0
        assert params["name"].default == "actors"
        assert inspect.signature(ActorSystem.ask).parameters["timeout"].default == 5.0
        for name in ("ask", "tell", "tell_nowait", "statistics", "actor_statistics", "is_live"):
            assert hasattr(ActorSystem, name)
        for name in ("start_soon", "start_timer", "cancel_timer", "stop", "key", "system"):
            assert hasattr(ActorContext, name) or name in ActorContext.__slots__
        # The behaviour protocol is satisfied by ActorBase subclasses.
        behaviour: Actor[Any, Any] = Counter("x", [])
        assert behaviour is not None
        imported = _imported_by_actors()
        assert "gestor" not in imported
        assert imported <= {
            "__future__",
            "attrs",
            "trio",
            "outcome",
            "collections",
            "typing",
            "contextlib",
            "heapq",
            "itertools",
            "logging",
            "math",
        }
        await trio.lowlevel.checkpoint()


def _imported_by_actors() -> set[str]:
    """Top-level modules imported by the actors package's source files."""
    import ast
    from pathlib import Path

    names: set[str] = set()
    for path in Path(actors.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


async def test_invalid_configuration_is_rejected() -> None:
    with trio.fail_after(5):
        bad: list[dict[str, Any]] = [
            {"mailbox_size": 0},
            {"idle_timeout": 0},
            {"send_timeout": -1},
            {"max_actors": 0},
            {"max_restarts": -1},
            {"restart_window": 0},
            {"timer_resolution": -1},
        ]
        for kwargs in bad:
            with pytest.raises(ValueError):
                async with open_actor_system(lambda key: Counter(key, []), **kwargs):
                    pass  # pragma: no cover


async def test_exception_in_body_propagates_unwrapped() -> None:
    log: list[tuple[Any, ...]] = []
    with trio.fail_after(5):
        with pytest.raises(KeyError):
            async with open_actor_system(lambda key: Counter(key, log)) as system:
                await system.ask("a", "inc")
                raise KeyError("body")
        assert ("stop", "a") in log  # shut down cleanly anyway


def test_every_error_is_an_actor_error() -> None:
    """The README's promise: a caller that does not care which error catches `ActorError`."""
    errors = {
        name
        for name in actors.__all__
        if isinstance(getattr(actors, name), type)
        and issubclass(getattr(actors, name), BaseException)
    }
    assert errors == {
        "ActorCrashed",
        "ActorError",
        "ActorStopped",
        "AskTimeout",
        "Overloaded",
        "SystemStopped",
    }
    assert all(issubclass(getattr(actors, name), actors.ActorError) for name in errors)
    assert issubclass(actors.ActorStopped, actors.ActorCrashed)
    assert issubclass(actors.AskTimeout, TimeoutError)
