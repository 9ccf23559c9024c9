"""`PurchaseService` and the subscriber actor keep the acceptance deadline: a `Buy` whose turn
comes after it writes nothing, and an asker that gives up on a `Buy` still in the mailbox
withdraws it (`Expired`: nothing written, nor ever will be); one that gives up on a turn already
under way says `Unsettled`. The store is a stand-in here: it only records what reaches it
(the database side is tested in tests/integration/test_accept_deadline.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import attrs
import trio
import trio.testing

from gestor.model import NewTransaction, Transaction, TxState
from gestor.purchase import PurchaseService, open_purchase_service
from gestor.store import Expired, PendingExists, Unsettled

MSISDN = "5491100000001"


def _new(key: str) -> NewTransaction:
    return NewTransaction(uuid.uuid4(), MSISDN, "SMS_200_30D", "ussd", "c", key, "h",
                          datetime.now(UTC))


def _pending() -> Transaction:
    now = datetime.now(UTC)
    return Transaction(uuid.uuid4(), MSISDN, "SMS_200_30D", "ussd", "c", "other", "h",
                       TxState.RECEIVED, now, now)


@attrs.define
class _StalledStore:
    """Every acceptance reaching it waits `stall` seconds, then finds another purchase
    pending (no saga starts). `seen` lists the Idempotency-Keys that reached it."""

    stall: float
    seen: list[str] = attrs.field(factory=list)
    health: _Health = attrs.field(factory=lambda: _Health())

    async def accept(self, new: NewTransaction, window: Any, **_: Any) -> Any:
        self.seen.append(new.idempotency_key)
        await trio.sleep(self.stall)
        return PendingExists(_pending())


@attrs.define
class _Health:
    def check(self) -> None:
        pass


@attrs.define
class _Profiles:
    async def get(self, msisdn: str) -> dict[str, Any]:
        return {}

    def forget(self, msisdn: str) -> None:
        pass


@attrs.define
class _Deps:
    store: _StalledStore
    profiles: _Profiles = attrs.field(factory=_Profiles)

    def snapshot_request(self, msisdn: str) -> None:
        return None


async def _purchase(service: PurchaseService, key: str, out: dict[str, object]) -> None:
    out[key] = await service.purchase(_new(key))


async def test_a_buy_whose_turn_comes_after_its_deadline_writes_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The first purchase's acceptance takes 3.5 s: within its own bound (3 s + 1 s settle),
    # past the second's deadline (3 s), before the second's asker gives up (3 + 1 + 1 s).
    store = _StalledStore(stall=3.5)
    out: dict[str, object] = {}
    deps: Any = _Deps(store)
    async with (open_purchase_service(deps, accept_timeout=3.0) as service,
                trio.open_nursery() as nursery):
        nursery.start_soon(_purchase, service, "first", out)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_purchase, service, "second", out)
    assert isinstance(out["first"], PendingExists)
    assert isinstance(out["second"], Expired)
    assert "after its acceptance deadline" in out["second"].reason
    assert store.seen == ["first"]  # the second never reached the store
    stats = service.statistics()
    assert (stats.expired, stats.unsettled) == (1, 0)


async def test_an_asker_that_gives_up_withdraws_a_queued_buy_and_reports_a_started_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The store stalls longer than any ask waits: the first turn is under way when its asker
    # gives up (Unsettled: it may have been written); the second is still in the mailbox
    # (Expired, and its turn, when it comes, writes nothing).
    store = _StalledStore(stall=20.0)
    out: dict[str, object] = {}
    deps: Any = _Deps(store)
    async with open_purchase_service(deps, accept_timeout=3.0) as service:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_purchase, service, "first", out)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(_purchase, service, "second", out)
        assert trio.current_time() < 10  # the answers came before the store did
        assert isinstance(out["first"], Unsettled)
        assert isinstance(out["second"], Expired)
        assert "did not take it in time" in out["second"].reason
        await trio.sleep(30)  # the stalled acceptance ends; the queued Buy gets its turn
        assert service.actor_statistics().messages == 2
    assert store.seen == ["first"]


@attrs.define
class _UnsettledStore:
    """The first acceptance is unsettled; its late answer (`Expired`) comes when `late` is
    set. Later ones find another purchase pending."""

    late: trio.Event = attrs.field(factory=trio.Event)
    seen: list[str] = attrs.field(factory=list)
    health: _Health = attrs.field(factory=lambda: _Health())

    async def accept(self, new: NewTransaction, window: Any, **_: Any) -> Any:
        self.seen.append(new.idempotency_key)
        if len(self.seen) == 1:
            async def answer() -> Any:
                await self.late.wait()
                return Expired("the database took it after its acceptance deadline")

            return Unsettled("the database did not answer in time", answer)
        return PendingExists(_pending())


async def test_a_retry_with_the_key_of_an_unsettled_purchase_stays_unknown_until_it_settles(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = _UnsettledStore()
    deps: Any = _Deps(store)
    async with open_purchase_service(deps, accept_timeout=3.0) as service:
        first = await service.purchase(_new("k"))
        assert isinstance(first, Unsettled) and first.answer is None  # the actor keeps it
        again = await service.purchase(_new("k"))
        # Not "nothing was done": the first may still be written.
        assert isinstance(again, Unsettled) and "still unsettled" in again.reason
        assert isinstance(await service.purchase(_new("other")), PendingExists)
        assert store.seen == ["k", "other"]
        store.late.set()  # the first's late answer: nothing was written
        await trio.testing.wait_all_tasks_blocked()
        assert isinstance(await service.purchase(_new("k")), PendingExists)
        assert store.seen == ["k", "other", "k"]  # now the key goes to the database again
