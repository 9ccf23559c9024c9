"""The subscriber actor: one per msisdn, serialising that mobile's purchases (DESIGN D3).

Its turn for a `Buy` is short: check the local pending purchase, record the new one in the
database (which takes the cross-process guard), start the saga as a child task, reply. So a
second purchase while the first is in flight gets its 409 at once instead of queueing behind it.

State (counters, restrictions) is read when first needed: a fresh actor's first purchase
reads it in the same database crossing as its acceptance (`Store.accept_and_load`), a `View`
with a batched read. The customer's profile fetch starts as soon as the local checks pass, so
it overlaps that crossing instead of following it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import attrs

from actors import ActorBase, ActorContext
from gestor.model import (
    NewTransaction,
    PurchaseCounters,
    SubscriberSnapshot,
    Transaction,
    TxState,
)
from gestor.platforms import PlatformError
from gestor.purchase._deps import SubscriberView, counters_after
from gestor.purchase._saga import SagaAbandoned, run_purchase
from gestor.store import (
    Accepted,
    AcceptOutcome,
    KeyReused,
    PendingExists,
    Replayed,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from gestor.purchase._service import PurchaseService

logger = logging.getLogger("gestor.purchase")


@attrs.frozen
class Buy:
    """Start a purchase (reply: the store's `AcceptOutcome`)."""

    tx: NewTransaction


@attrs.frozen
class View:
    """What the actor knows about its subscriber (reply: `SubscriberView`)."""


@attrs.frozen
class Reload:
    """The subscriber's stored data changed (restrictions): read it again."""


@attrs.define
class SubscriberActor(ActorBase[object, object]):
    msisdn: str
    service: PurchaseService
    pending: Transaction | None = None
    counters: PurchaseCounters = attrs.field(factory=PurchaseCounters)
    restrictions: tuple[str, ...] = ()
    _loaded: bool = False  # counters and restrictions are the stored ones

    async def _load(self) -> None:
        deps = self.service.deps
        self._apply(await deps.store.snapshot(deps.snapshot_request(self.msisdn)))

    def _apply(self, snapshot: SubscriberSnapshot) -> None:
        self.counters = snapshot.counters
        self.restrictions = snapshot.restrictions
        self._loaded = True

    async def loaded(self) -> SubscriberView:
        """The subscriber's view, its stored state read first if this actor hasn't yet."""
        if not self._loaded:
            await self._load()
        return self.view()

    async def handle(self, ctx: ActorContext, message: object) -> object:
        try:
            if isinstance(message, Buy):
                return await self._buy(ctx, message.tx)
            if isinstance(message, View):
                return await self.loaded()
            if isinstance(message, Reload):
                await self._load()
                return None
        except StoreUnavailable as exc:
            # Not this actor's fault (nor a crash to log with a traceback per request): the
            # store's health state says once that the database is unreachable. The asker
            # gets the exception as its answer and raises it (`PurchaseService`).
            return exc
        raise TypeError(f"unexpected message {message!r}")

    def view(self) -> SubscriberView:
        return SubscriberView(self.msisdn, self.pending, self.counters, self.restrictions)

    async def _buy(self, ctx: ActorContext, new: NewTransaction) -> AcceptOutcome:
        pending = self.pending
        if pending is not None:  # fast path: one of ours is in flight
            if (pending.client, pending.idempotency_key) == (new.client, new.idempotency_key):
                same = pending.request_hash == new.request_hash
                return Replayed(pending) if same else KeyReused(pending)
            return PendingExists(pending)
        ctx.start_soon(self._prefetch_profile)
        store = self.service.deps.store
        if self._loaded:
            outcome = await store.accept(new)
        else:
            request = self.service.deps.snapshot_request(self.msisdn)
            outcome, snapshot = await store.accept_and_load(new, request)
            self._apply(snapshot)
        if isinstance(outcome, Accepted):
            tx = outcome.transaction
            self.pending = tx
            self.service.track(tx.id)
            ctx.start_soon(self._run, tx)
        return outcome

    async def _prefetch_profile(self) -> None:
        # The saga's own fetch joins this one (or finds it cached); a failure is its to report.
        with contextlib.suppress(PlatformError):
            await self.service.deps.profiles.get(self.msisdn)

    async def _run(self, tx: Transaction) -> None:
        """The saga, as a child task of this actor (it keeps the actor alive while it runs)."""
        final: Transaction | None = None
        try:
            final = await run_purchase(self.service.deps, tx, self.view())
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
        if final is not None and final.state is TxState.COMPLETED:
            self.counters = counters_after(self.counters, final, self.service.deps.tz)
        self.service.deps.profiles.forget(self.msisdn)
        self.service.finished(tx.id, final)


def actor_factory(service: PurchaseService) -> Callable[[Hashable], SubscriberActor]:
    def build(key: Hashable) -> SubscriberActor:
        assert isinstance(key, str)
        return SubscriberActor(key, service)

    return build



