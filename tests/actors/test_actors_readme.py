"""The example in actors/README.md runs, and passivates/reloads as described."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import trio
import trio.testing

import actors
from actors import ActorBase, ActorContext, open_actor_system

README = Path(actors.__file__).with_name("README.md")


def _example() -> dict[str, Any]:
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace: dict[str, Any] = {}
    exec(code.replace("trio.run(main)", ""), namespace)
    return namespace


async def test_readme_example_runs(autojump_clock: trio.testing.MockClock) -> None:
    example = _example()
    with trio.fail_after(10):
        await example["main"]()


async def test_readme_counter_passivates_and_reloads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counter = _example()["Counter"]
    store: dict[str, int] = {}
    with trio.fail_after(1000):
        async with open_actor_system(lambda key: counter(key, store), idle_timeout=60) as system:
            await system.tell("alice", "inc")
            assert await system.ask("alice", "inc") == 2
            await trio.sleep(61)
            assert not system.is_live("alice")
            assert store == {"alice": 2}
            assert await system.ask("alice", "inc") == 3


async def test_infinite_idle_timeout_never_passivates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Echo(ActorBase[Any, Any]):
        async def handle(self, ctx: ActorContext, message: Any) -> Any:
            return message

    with trio.fail_after(10**7):
        async with open_actor_system(lambda k: Echo(), idle_timeout=math.inf) as system:
            assert await system.ask("k", 1) == 1
            await trio.sleep(10**6)
            assert system.is_live("k")
            assert len(system._scheduler) == 0  # no idle checks at all
