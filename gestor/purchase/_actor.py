"""The subscriber actor: one per msisdn, serialising that mobile's purchases (DESIGN D3).

Its turn for a `Buy` is short: check the local pending purchase, record the new one in the
database (which takes the cross-process guard), start the saga as a child task, reply. So a
second purchase while the first is in flight gets its 409 at once instead of queueing behind it.

The actor keeps nothing about its subscriber but the purchase it runs: what the rules read about
the subscriber's history and restrictions comes with every acceptance, read in the same database
crossing as the insert that took the guard (`Store.accept`), so limits hold across workers and
nodes (DESIGN D1). The customer's profile fetch starts as soon as the local checks pass, so it
overlaps that crossing instead of following it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import attrs

from actors import ActorBase, ActorContext
from gestor.model import NewTransaction, Transaction
from gestor.platforms import PlatformError
from gestor.purchase._deps import SubscriberView
from gestor.purchase._saga import SagaAbandoned, run_purchase
from gestor.store import Accepted, AcceptOutcome, KeyReused, PendingExists, Replayed

if TYPE_CHECKING:
    from gestor.purchase._service import PurchaseService

logger = logging.getLogger("gestor.purchase")


@attrs.frozen
class Buy:
    """Start a purchase (reply: the store's `AcceptOutcome`)."""

    tx: NewTransaction


@attrs.define
class SubscriberActor(ActorBase[object, object]):
    msisdn: str
    service: PurchaseService
    pending: Transaction | None = None

    async def handle(self, ctx: ActorContext, message: object) -> object:
        if isinstance(message, Buy):
            return await self._buy(ctx, message.tx)
        raise TypeError(f"unexpected message {message!r}")

    async def _buy(self, ctx: ActorContext, new: NewTransaction) -> AcceptOutcome:
        pending = self.pending
        if pending is not None:  # fast path: one of ours is in flight
            if (pending.client, pending.idempotency_key) == (new.client, new.idempotency_key):
                same = pending.request_hash == new.request_hash
                return Replayed(pending) if same else KeyReused(pending)
            return PendingExists(pending)
        ctx.start_soon(self._prefetch_profile)
        deps = self.service.deps
        outcome = await deps.store.accept(new, deps.snapshot_request(self.msisdn))
        if isinstance(outcome, Accepted):
            tx = outcome.transaction
            self.pending = tx
            self.service.track(tx.id)
            ctx.start_soon(self._run, tx, SubscriberView.of(self.msisdn, outcome.subscriber,
                                                            tx.created_at))
        return outcome

    async def _prefetch_profile(self) -> None:
        # The saga's own fetch joins this one (or finds it cached); a failure is its to report.
        with contextlib.suppress(PlatformError):
            await self.service.deps.profiles.get(self.msisdn)

    async def _run(self, tx: Transaction, view: SubscriberView) -> None:
        """The saga, as a child task of this actor (it keeps the actor alive while it runs),
        deciding on the history its acceptance read."""
        final: Transaction | None = None
        try:
            final = await run_purchase(self.service.deps, tx, view)
        except SagaAbandoned as exc:
            logger.warning("purchase %s handed to the recoverer: %s", tx.id, exc)
        except Exception:
            logger.exception("purchase %s failed unexpectedly; the recoverer resumes it", tx.id)
        finally:
            self._ended(tx, final)

    def _ended(self, tx: Transaction, final: Transaction | None) -> None:
        # Runs in the saga's task, but is synchronous: no other turn of this actor interleaves.
        if self.pending is not None and self.pending.id == tx.id:
            self.pending = None
        self.service.deps.profiles.forget(self.msisdn)
        self.service.finished(tx.id, final)


def actor_factory(service: PurchaseService) -> Callable[[Hashable], SubscriberActor]:
    def build(key: Hashable) -> SubscriberActor:
        assert isinstance(key, str)
        return SubscriberActor(key, service)

    return build



