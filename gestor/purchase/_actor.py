"""The subscriber actor: one per msisdn, serialising that mobile's purchases (DESIGN D3).

Its turn for a `Buy` is short: check the local pending purchase, record the new one in the
database (which takes the cross-process guard), start the saga as a child task, reply. So a
second purchase while the first is in flight gets its 409 at once instead of queueing behind it.

The actor keeps nothing about its subscriber but the purchase it runs: what the rules read about
the subscriber's history and restrictions comes with every acceptance, read in the same database
crossing as the insert that took the guard (`Store.accept`), so limits hold across workers and
nodes (DESIGN D1). The customer's profile fetch starts as soon as the local checks pass, so it
overlaps that crossing instead of following it.

Honest answers: a `Buy` carries its acceptance deadline. A turn that starts after it writes
nothing (`Expired`); the store withdraws an acceptance no batch has taken by then, and bounds the
wait for one that was sent (`Unsettled`). When an unsettled acceptance's late answer is
`Accepted`, the actor takes the purchase on as if it had been accepted in its turn: the client
was told "outcome unknown, ask again with the same Idempotency-Key", and that retry finds it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Hashable

import attrs
import trio

from actors import ActorBase, ActorContext
from gestor.logs import msisdn_var, transaction_id_var
from gestor.model import NewTransaction, Transaction
from gestor.platforms import PlatformError
from gestor.purchase._completions import Completions
from gestor.purchase._deps import PurchaseDeps, SubscriberView
from gestor.purchase._saga import SagaAbandoned, count_movement, run_purchase
from gestor.rules import CompiledRules
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


@attrs.define
class Ticket:
    """Where a `Buy` stands, shared by its asker and the actor (one trio thread, no races): an
    asker that gives up can tell "never started, and now never will" from "may be written"."""

    started: bool = False  # the actor's turn for it began
    sent: bool = False  # the acceptance was handed to the store (it may be written)
    withdrawn: bool = False  # the asker gave up before the turn began: it must not start


@attrs.frozen
class Buy:
    """Start a purchase (reply: the store's `AcceptOutcome`, or `Unsettled`). Nothing is
    written once `deadline` (trio clock) has passed before the turn, or its ticket is
    withdrawn."""

    tx: NewTransaction
    deadline: float = math.inf
    ticket: Ticket = attrs.field(factory=Ticket, eq=False)


@attrs.define
class SubscriberActor(ActorBase[object, object]):
    msisdn: str
    deps: PurchaseDeps
    completions: Completions
    #: How much longer an acceptance the database took (the statement may have been sent) gets
    #: to answer after its deadline before the asker is told the outcome is unknown.
    accept_settle: float
    pending: Transaction | None = None
    #: (client, Idempotency-Key) of acceptances whose answer is awaited after their turn gave
    #: up: a retry with the same key is still "unknown" until that answer comes.
    _unsettled: dict[tuple[str, str], trio.Event] = attrs.field(factory=dict)

    async def handle(self, ctx: ActorContext, message: object) -> object:
        if isinstance(message, Buy):
            return await self._buy(ctx, message)
        raise TypeError(f"unexpected message {message!r}")

    async def _buy(self, ctx: ActorContext, buy: Buy) -> AcceptOutcome | Unsettled:
        new, deadline, ticket = buy.tx, buy.deadline, buy.ticket
        msisdn_var.set(new.msisdn)  # this turn's log lines name the purchase and its mobile
        transaction_id_var.set(str(new.id))
        if ticket.withdrawn:  # its asker gave up and answered "nothing was done"
            return Expired("its asker gave up before the subscriber's actor took it")
        ticket.started = True
        settled = self._unsettled.get((new.client, new.idempotency_key))
        if settled is not None:  # an earlier request with this key may still be written
            with trio.move_on_at(deadline):
                await settled.wait()
            if not settled.is_set():
                return Unsettled("an earlier request with this Idempotency-Key is still "
                                 "unsettled")
        pending = self.pending
        if pending is not None:  # fast path: one of ours is in flight
            if (pending.client, pending.idempotency_key) == (new.client, new.idempotency_key):
                same = pending.request_hash == new.request_hash
                return Replayed(pending) if same else KeyReused(pending)
            return PendingExists(pending)
        if trio.current_time() >= deadline:
            return Expired("the subscriber's actor took it after its acceptance deadline")
        ctx.start_soon(self._prefetch_profile)
        deps = self.deps
        ticket.sent = True
        outcome = await deps.store.accept(new, deps.snapshot_request(self.msisdn),
                                          deadline=deadline, settle=self.accept_settle)
        if isinstance(outcome, Accepted):
            self._start(ctx, outcome)
        elif isinstance(outcome, Unsettled) and outcome.answer is not None:
            ctx.start_soon(self._settle, ctx, new, outcome.answer)
            self._unsettled[(new.client, new.idempotency_key)] = trio.Event()
            return Unsettled(outcome.reason)
        return outcome

    def _start(self, ctx: ActorContext, accepted: Accepted) -> None:
        tx = accepted.transaction
        view = SubscriberView.of(self.msisdn, accepted.subscriber, tx.created_at)
        rules = self.deps.rules  # its versions (and price) from now to its end
        ctx.start_soon(self._run, tx, view, rules)  # first: it raises if the actor is stopping
        self.pending = tx
        self.completions.track(tx.id)

    async def _settle(self, ctx: ActorContext, new: NewTransaction,
                      answer: Callable[[], Awaitable[AcceptOutcome]]) -> None:
        """The late answer of an acceptance its turn gave up on: if the database accepted it
        after all, run its saga here, as its turn would have. Retries with its key wait for
        this (within their own deadline)."""
        key = (new.client, new.idempotency_key)
        msisdn_var.set(new.msisdn)
        transaction_id_var.set(str(new.id))
        try:
            await self._take_late(ctx, new, answer)
        finally:
            settled = self._unsettled.pop(key, None)
            if settled is not None:
                settled.set()

    async def _take_late(self, ctx: ActorContext, new: NewTransaction,
                         answer: Callable[[], Awaitable[AcceptOutcome]]) -> None:
        try:
            outcome = await answer()
        except Exception as exc:  # the crossing broke: if the row was written, it is stale
            logger.warning("purchase %s (key %r): acceptance unsettled (%r); if it was "
                           "written, the recoverer resumes it", new.id, new.idempotency_key, exc)
            return
        if not isinstance(outcome, Accepted):
            logger.info("purchase %s (key %r): late answer %s, nothing written", new.id,
                        new.idempotency_key, type(outcome).__name__)
            return
        logger.info("purchase %s (key %r) accepted late: its saga starts now", new.id,
                    new.idempotency_key)
        try:
            self._start(ctx, outcome)
        except RuntimeError as exc:  # stopping
            logger.warning("purchase %s accepted late, but its saga can't start here (%r): "
                           "the recoverer resumes it", new.id, exc)

    async def _prefetch_profile(self) -> None:
        # The saga's own fetch joins this one (or finds it cached); a failure is its to report.
        with contextlib.suppress(PlatformError):
            await self.deps.profiles.get(self.msisdn)

    async def _run(self, tx: Transaction, view: SubscriberView, rules: CompiledRules) -> None:
        """The saga, as a child task of this actor (it keeps the actor alive while it runs),
        deciding on the history its acceptance read, under the versions active then."""
        final: Transaction | None = None
        msisdn_var.set(tx.msisdn)  # the saga's own task: every line it logs names them
        transaction_id_var.set(str(tx.id))
        try:
            final = await run_purchase(self.deps, tx, view, rules)
        except (SagaAbandoned, StoreUnavailable) as exc:  # a line, not a traceback
            logger.warning("purchase %s handed to the recoverer: %s", tx.id, exc)
        except Exception:
            logger.exception("purchase %s failed unexpectedly; the recoverer resumes it", tx.id)
        finally:
            self._ended(tx, final)

    def _ended(self, tx: Transaction, final: Transaction | None) -> None:
        # Runs in the saga's task, but is synchronous: no other turn of this actor interleaves.
        if self.pending is not None and self.pending.id == tx.id:
            self.pending = None
        self.deps.profiles.forget(self.msisdn)
        self.deps.profiles.forget(tx.receiver)  # a beneficiary's balance may have changed too
        count_movement(final, None)
        self.completions.end(tx.id, final)


def actor_factory(deps: PurchaseDeps, completions: Completions, *, accept_settle: float
                  ) -> Callable[[Hashable], SubscriberActor]:
    def build(key: Hashable) -> SubscriberActor:
        assert isinstance(key, str)
        return SubscriberActor(key, deps, completions, accept_settle)

    return build



