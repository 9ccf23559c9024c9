"""`PurchaseService`: what the API calls. Routes each mobile's work to its subscriber actor,
lets clients wait for a purchase's final state, lists offers, reads transactions."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence

import attrs
import trio

from actors import ActorError, ActorSystem
from gestor.model import NewTransaction, Transaction
from gestor.purchase._actor import Buy, Reload, View
from gestor.purchase._deps import PurchaseDeps, SubscriberView
from gestor.purchase._saga import final
from gestor.rules import Offer
from gestor.store import (
    Accepted,
    AcceptOutcome,
    KeyReused,
    PendingExists,
    Replayed,
    StoreUnavailable,
)


@attrs.frozen
class OfferList:
    msisdn: str
    profile_id: str
    rules_version: int
    currency: str
    offers: tuple[Offer, ...]


@attrs.define
class _Completion:
    done: trio.Event = attrs.field(factory=trio.Event)
    final: Transaction | None = None


class Busy(Exception):
    """Admission control refused a purchase: this worker is at `max_in_flight` sagas or
    `max_accepting` purchases waiting to be accepted. Nothing was written; retry later."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} at its limit of {limit}")
        self.what = what
        self.limit = limit


@attrs.frozen
class PurchaseStatistics:
    in_flight: int
    started: int
    finished: int
    accepting: int
    shed: int
    max_in_flight: int
    max_accepting: int


@attrs.define
class PurchaseService:
    deps: PurchaseDeps
    actors: ActorSystem[object, object] = attrs.field(init=False)
    ask_timeout: float = 5.0
    max_in_flight: int = 20000
    max_accepting: int = 256
    _completions: dict[uuid.UUID, _Completion] = attrs.field(factory=dict)
    _started: int = 0
    _finished: int = 0
    _accepting: int = 0
    _shed: int = 0

    def bind(self, actors: ActorSystem[object, object]) -> None:
        self.actors = actors

    # -- called by the actor -----------------------------------------------------------------
    def track(self, tx_id: uuid.UUID) -> None:
        self._completions[tx_id] = _Completion()
        self._started += 1

    def finished(self, tx_id: uuid.UUID, tx: Transaction | None) -> None:
        completion = self._completions.pop(tx_id, None)
        self._finished += 1
        if completion is not None:
            completion.final = tx
            completion.done.set()

    # -- called by the API -------------------------------------------------------------------
    async def purchase(self, tx: NewTransaction) -> AcceptOutcome:
        """Have the mobile's actor accept `tx`, or raise `Busy` at once when this worker is
        at a bound (cheap shedding keeps the latency of what it does take bounded)."""
        if len(self._completions) >= self.max_in_flight:
            self._shed += 1
            raise Busy("purchases in flight", self.max_in_flight)
        if self._accepting >= self.max_accepting:
            self._shed += 1
            raise Busy("purchases waiting to be accepted", self.max_accepting)
        self._accepting += 1
        try:
            outcome = await self.actors.ask(tx.msisdn, Buy(tx), timeout=self.ask_timeout)
        finally:
            self._accepting -= 1
        if isinstance(outcome, StoreUnavailable):
            raise outcome
        assert isinstance(outcome, Accepted | Replayed | KeyReused | PendingExists)
        return outcome

    async def wait_final(self, tx: Transaction, patience: float) -> Transaction:
        """`tx` once final, or as it stands after `patience` seconds."""
        if final(tx):
            return tx
        completion = self._completions.get(tx.id)
        if completion is not None:
            with trio.move_on_after(patience):
                await completion.done.wait()
            if completion.final is not None:
                return completion.final
        else:  # running in another worker or under the recoverer: poll the database
            with trio.move_on_after(patience):
                delay = 0.05
                while True:
                    current = await self.deps.store.get(tx.id)
                    if current is not None and final(current):
                        return current
                    await trio.sleep(delay)
                    delay = min(delay * 2, 0.5)
        return await self.deps.store.get(tx.id) or tx

    async def view(self, msisdn: str) -> SubscriberView:
        view = await self.actors.ask(msisdn, View(), timeout=self.ask_timeout)
        if isinstance(view, StoreUnavailable):
            raise view
        assert isinstance(view, SubscriberView)
        return view

    async def offers(self, msisdn: str, channel: str) -> OfferList:
        view = await self.view(msisdn)
        customer = await self.deps.profiles.get(msisdn)
        listing = self.deps.rules.listing(
            self.deps.context(customer, channel, view, self.deps.now())
        )
        return OfferList(
            msisdn=msisdn,
            profile_id=listing.profile.profile_id,
            rules_version=listing.version,
            currency=self.deps.catalogue.currency,
            offers=listing.offers,
        )

    async def get(self, tx_id: uuid.UUID) -> Transaction | None:
        return await self.deps.store.get(tx_id)

    async def transactions(self, msisdn: str, states: Sequence[str] | None, limit: int
                           ) -> list[Transaction]:
        return await self.deps.store.transactions_for(msisdn, states, limit)

    async def follow_subscriber_changes(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Have live subscriber actors reload what any worker changed about them."""
        changed_send, changed = trio.open_memory_channel[str](1000)

        def on_change(msisdn: str) -> None:
            # In a burst beyond the buffer, those actors read it when they next activate.
            with contextlib.suppress(trio.WouldBlock):
                changed_send.send_nowait(msisdn)

        await self.deps.store.listen_subscribers(on_change)
        task_status.started()
        async for msisdn in changed:
            if self.actors.is_live(msisdn):
                # Passivating or stopped: the next activation reads it anyway.
                with contextlib.suppress(ActorError):
                    await self.actors.tell(msisdn, Reload())

    async def reload(self, msisdn: str) -> None:
        """Make this worker's actor for `msisdn`, if live, re-read its stored data now."""
        if self.actors.is_live(msisdn):
            answer: object = None
            with contextlib.suppress(ActorError):
                answer = await self.actors.ask(msisdn, Reload(), timeout=self.ask_timeout)
            if isinstance(answer, StoreUnavailable):
                raise answer

    def in_flight(self) -> list[uuid.UUID]:
        """Transactions whose saga runs in this worker right now."""
        return list(self._completions)

    def statistics(self) -> PurchaseStatistics:
        return PurchaseStatistics(
            in_flight=len(self._completions), started=self._started, finished=self._finished,
            accepting=self._accepting, shed=self._shed, max_in_flight=self.max_in_flight,
            max_accepting=self.max_accepting,
        )
