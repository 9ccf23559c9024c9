"""`PurchaseService` sheds purchases beyond `max_accepting` waiting for their actor, at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from gestor.model import NewTransaction
from gestor.purchase import Busy, PurchaseService
from gestor.purchase._completions import Completions


@attrs.define
class _SlowActors:
    """Stands in for the actor system: every ask waits until `release` is set."""

    release: trio.Event = attrs.field(factory=trio.Event)
    asked: int = 0

    async def ask(self, key: Any, message: Any, **_: Any) -> Any:
        self.asked += 1
        await self.release.wait()
        from gestor.store import PendingExists

        return PendingExists(message.tx)  # any outcome will do


@attrs.frozen
class _Up:
    """The database as a worker sees it: up (the health check passes)."""

    def check(self) -> None:
        pass


@attrs.frozen
class _Deps:
    store: Any = attrs.field(factory=lambda: type("Store", (), {"health": _Up()})())


def _tx(i: int) -> NewTransaction:
    return NewTransaction(uuid.uuid4(), f"54911000{i:05d}", "SMS_200_30D", "ussd", "c",
                          f"k{i}", "h", datetime.now(UTC))


async def test_purchases_beyond_max_accepting_are_shed_without_reaching_an_actor(
    autojump_clock: trio.abc.Clock,
) -> None:
    actors = _SlowActors()
    service = PurchaseService(_Deps(), actors, Completions(),  # type: ignore[arg-type]
                              max_accepting=3)
    done: list[object] = []

    async def one(i: int) -> None:
        done.append(await service.purchase(_tx(i)))

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(one, i)
        await trio.testing.wait_all_tasks_blocked()
        assert service.statistics().accepting == 3
        with pytest.raises(Busy):
            await service.purchase(_tx(99))
        assert actors.asked == 3 and service.statistics().shed == 1
        actors.release.set()
    assert len(done) == 3
    stats = service.statistics()
    assert stats.accepting == 0 and stats.shed == 1
