"""`PurchaseService`: what the API calls. Routes each mobile's work to its subscriber actor,
lets clients wait for a purchase's final state, lists offers, reads transactions.

`open_purchase_service` opens the subscriber actors and the service over them. The service is
the actors' only caller and speaks for them: what the actor library raises becomes an answer
about the purchase (`Expired`, `Unsettled`) or this package's `Busy` / `Crowded`, so the API
never learns that actors exist."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import attrs
import trio

from actors import (
    ActorCrashed,
    ActorStopped,
    ActorSystem,
    AskTimeout,
    Overloaded,
    SystemStatistics,
    SystemStopped,
    open_actor_system,
)
from gestor.model import NewTransaction, Transaction
from gestor.purchase._actor import Buy, Ticket, actor_factory
from gestor.purchase._completions import Completions
from gestor.purchase._deps import PurchaseDeps, SubscriberView
from gestor.purchase._portrait import Portrait, portrait
from gestor.purchase._saga import final
from gestor.rules import Offer
from gestor.store import (
    Accepted,
    AcceptOutcome,
    Expired,
    KeyReused,
    PendingExists,
    Replayed,
    StoreUnavailable,
    Unsettled,
)

logger = logging.getLogger("gestor.purchase")

#: How much longer than its actor's turn (bounded by the deadline plus `accept_settle`) a
#: purchase's ask waits: normally the turn answers first, so an ask that times out is rare.
ASK_SLACK = 1.0


@attrs.frozen
class OfferList:
    msisdn: str
    profile_id: str
    rules_version: int
    currency: str
    offers: tuple[Offer, ...]
    catalogue_version: int = 0


class Busy(Exception):
    """Admission control refused a purchase: this worker is at `max_in_flight` sagas or
    `max_accepting` purchases waiting to be accepted. Nothing was written; retry later."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} at its limit of {limit}")
        self.what = what
        self.limit = limit


class Crowded(Exception):
    """Too many requests for one mobile at once: its actor's mailbox stayed full. Nothing was
    written; retry shortly."""

    def __init__(self, msisdn: str) -> None:
        super().__init__(f"too many requests for mobile {msisdn} at once")
        self.msisdn = msisdn


@attrs.frozen
class PurchaseStatistics:
    in_flight: int
    started: int
    finished: int
    accepting: int
    shed: int
    max_in_flight: int
    max_accepting: int
    expired: int = 0  # answered "nothing was done" after the acceptance deadline
    unsettled: int = 0  # answered "outcome unknown" (503 OUTCOME_UNKNOWN)


@attrs.define
class PurchaseService:
    deps: PurchaseDeps
    actors: ActorSystem[object, object]
    completions: Completions
    max_in_flight: int = 20000
    max_accepting: int = 256
    #: A purchase must be taken by the database within this many seconds of arriving, or it is
    #: refused with nothing written (`Expired`).
    accept_timeout: float = 3.0
    #: An acceptance the database took (the statement may have been sent) gets this much
    #: longer to answer; after that the client is told the outcome is unknown (`Unsettled`).
    accept_settle: float = 1.0
    _accepting: int = 0
    _shed: int = 0
    _expired: int = 0
    _unsettled: int = 0

    async def purchase(self, tx: NewTransaction) -> AcceptOutcome | Unsettled:
        """Have the mobile's actor accept `tx` within `accept_timeout`, or raise `Busy` at
        once when this worker is at a bound (cheap shedding keeps the latency of what it does
        take bounded). `Busy`, `Overloaded` (from the actor system) and `Expired` mean nothing
        was written and nothing will be; `Unsettled` that it may have been: only a retry with
        the same Idempotency-Key can tell. `Crowded` when the mobile's actor has too many
        waiting (nothing written). While this worker knows the database is down,
        `DatabaseDown` at once (nothing sent)."""
        self.deps.store.health.check()
        if len(self.completions) >= self.max_in_flight:
            self._shed += 1
            raise Busy("purchases in flight", self.max_in_flight)
        if self._accepting >= self.max_accepting:
            self._shed += 1
            raise Busy("purchases waiting to be accepted", self.max_accepting)
        if tx.accept_by is None:
            # by the wall clock, as the database's it is compared with (`tx.at` is the
            # injectable business clock: reports bucket by it)
            accept_by = datetime.now(UTC) + timedelta(seconds=self.accept_timeout)
            tx = attrs.evolve(tx, accept_by=accept_by)
        deadline = trio.current_time() + self.accept_timeout
        ticket = Ticket()
        self._accepting += 1
        try:
            outcome = await self.actors.ask(
                tx.msisdn, Buy(tx, deadline, ticket),
                timeout=self.accept_timeout + self.accept_settle + ASK_SLACK,
            )
        except Overloaded as exc:  # never reached the mailbox
            raise Crowded(tx.msisdn) from exc
        except (AskTimeout, ActorCrashed, ActorStopped, SystemStopped) as exc:
            outcome = self._gave_up(tx, ticket, exc)
        finally:
            self._accepting -= 1
        if isinstance(outcome, Expired):
            self._expired += 1
        elif isinstance(outcome, Unsettled):
            self._unsettled += 1
        assert isinstance(outcome, Accepted | Replayed | KeyReused | PendingExists | Expired
                          | Unsettled)
        return outcome

    @staticmethod
    def _gave_up(tx: NewTransaction, ticket: Ticket, exc: Exception) -> Expired | Unsettled:
        """What can truthfully be said of a purchase whose actor gave no answer."""
        if not ticket.started:  # still in the mailbox (or never handled): it never will be
            ticket.withdrawn = True
            return Expired(f"its subscriber's actor did not take it in time ({exc!r})")
        crashed = exc.__cause__ if isinstance(exc, ActorCrashed) else None
        if not ticket.sent or (isinstance(crashed, StoreUnavailable) and not crashed.sent):
            return Expired(f"it failed before anything was written ({exc!r})")
        logger.warning("purchase %s (key %r): outcome unknown: %r", tx.id, tx.idempotency_key,
                       exc)
        return Unsettled(f"its subscriber's actor gave no answer ({exc!r})")

    async def wait_final(self, tx: Transaction, patience: float) -> Transaction:
        """`tx` once final, or as it stands after `patience` seconds. Never raises for want of
        the database: an accepted purchase goes on whether or not it can be read now, so the
        answer is the latest state known (a 202 with it), not an error that would suggest the
        purchase failed."""
        if final(tx):
            return tx
        latest = tx
        completion = self.completions.get(tx.id)
        with trio.move_on_after(patience):
            if completion is not None:
                await completion.done.wait()
                if completion.final is not None:
                    return completion.final
            else:  # running in another worker or under the recoverer: poll the database
                delay = 0.05
                while True:
                    latest = await self._read(latest)
                    if final(latest):
                        return latest
                    await trio.sleep(delay)
                    delay = min(delay * 2, 0.5)
        with trio.move_on_after(1.0):
            latest = await self._read(latest)
        return latest

    async def _read(self, latest: Transaction) -> Transaction:
        """`latest` read again, or as it was if the database can't answer now (any failure to
        read is not the purchase's: it must not turn an accepted purchase's answer into a 5xx)."""
        try:
            return await self.deps.store.get(latest.id) or latest
        except StoreUnavailable:
            return latest
        except Exception:
            logger.exception("reading transaction %s failed; answering its last known state",
                             latest.id)
            return latest

    async def view(self, msisdn: str) -> SubscriberView:
        """The subscriber's history and restrictions as committed now (a batched read per
        call, never a per-process cache: another worker or node may have just sold them a
        bono)."""
        request = self.deps.snapshot_request(msisdn)
        return SubscriberView.of(msisdn, await self.deps.store.snapshot(request), request.now)

    async def portrait(self, msisdn: str, channel: str = "api") -> Portrait:
        """The subscriber through the profiler, now (`_portrait`: read only)."""
        return await portrait(self.deps, msisdn, channel)

    async def offers(self, msisdn: str, channel: str) -> OfferList:
        view = await self.view(msisdn)
        customer = await self.deps.profiles.get(msisdn)
        rules = self.deps.rules  # once: one rules version, one catalogue version
        listing = rules.listing(self.deps.context(customer, channel, view, self.deps.now()))
        return OfferList(
            msisdn=msisdn,
            profile_id=listing.profile.profile_id,
            rules_version=listing.version,
            currency=rules.catalogue.currency,
            offers=listing.offers,
            catalogue_version=rules.catalogue.version,
        )

    async def get(self, tx_id: uuid.UUID) -> Transaction | None:
        return await self.deps.store.get(tx_id)

    async def transactions(self, msisdn: str, states: Sequence[str] | None, limit: int,
                           client: str | None = None, kinds: Sequence[str] | None = None
                           ) -> list[Transaction]:
        return await self.deps.store.transactions_for(msisdn, states, limit, client, kinds)

    def in_flight(self) -> list[uuid.UUID]:
        """Transactions whose saga runs in this worker right now."""
        return self.completions.in_flight()

    def actor_statistics(self) -> SystemStatistics:
        return self.actors.statistics()

    def statistics(self) -> PurchaseStatistics:
        return PurchaseStatistics(
            in_flight=len(self.completions), started=self.completions.started,
            finished=self.completions.finished,
            accepting=self._accepting, shed=self._shed, max_in_flight=self.max_in_flight,
            max_accepting=self.max_accepting, expired=self._expired,
            unsettled=self._unsettled,
        )


@asynccontextmanager
async def open_purchase_service(
    deps: PurchaseDeps, *, mailbox_size: int = 64, idle_timeout: float = 30.0,
    send_timeout: float = 1.0, max_in_flight: int = 20000, max_accepting: int = 256,
    accept_timeout: float = 3.0, accept_settle: float = 1.0,
) -> AsyncIterator[PurchaseService]:
    """The subscriber actors (one per msisdn, passivated when idle) and the service over
    them; on exit the actors stop (sagas still running are the recoverer's)."""
    completions = Completions()
    async with open_actor_system(
        actor_factory(deps, completions, accept_settle=accept_settle),
        mailbox_size=mailbox_size, idle_timeout=idle_timeout, send_timeout=send_timeout,
        name="subscribers",
    ) as actors:
        yield PurchaseService(
            deps, actors, completions, max_in_flight=max_in_flight,
            max_accepting=max_accepting, accept_timeout=accept_timeout,
            accept_settle=accept_settle,
        )
