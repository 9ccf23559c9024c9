"""The purchase saga: the I/O shell around `_steps` (DESIGN "A purchase, step by step", D4).

Runs one accepted transaction to its end: profile → rules → debit → provision → complete, with a
refund when provisioning fails after the debit, and `inconsistent` plus a critical alarm when the
refund fails too. Every external call carries the transaction id as its idempotency key; every
durable point is written before the next side effect.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

import trio

from gestor.metrics import (
    MOVEMENTS,
    MOVEMENTS_HANDED_OVER,
    MOVEMENTS_INCONSISTENT,
    SAGA_STEP_SECONDS,
)
from gestor.model import NewAlarm, Reason, Severity, Transaction, Transition, TxState
from gestor.platforms import DebitReceipt, OutcomeUnknown, PlatformError, PlatformRejected
from gestor.purchase import _steps as steps
from gestor.purchase._deps import PurchaseDeps, SubscriberView
from gestor.rules import CompiledRules
from gestor.store import StoreUnavailable

logger = logging.getLogger("gestor.purchase")

T = TypeVar("T")

_REFUND_NAMESPACE = uuid.UUID("5b1f3c8e-9a53-4a57-9d0e-2a4f4f1f0c11")


class SagaAbandoned(Exception):
    """A durable write lost its race (another worker owns the transaction now) or the database
    stayed unreachable; the recoverer takes over from the last durable state."""


#: The movement kind this saga runs (the `kind` label of its metrics).
KIND = "purchase"


class _Step:
    """`with _Step("debit"):` times one step of the saga (gestor_saga_step_duration_seconds)."""

    __slots__ = ("key", "started")

    def __init__(self, step: str) -> None:
        self.key = (KIND, step)
        self.started = time.perf_counter()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        SAGA_STEP_SECONDS.observe(self.key, time.perf_counter() - self.started)


def count_movement(tx: Transaction | None, before: TxState | None) -> None:
    """Count a movement that ended as `tx` (None: its saga stopped without a state) having
    been in state `before` (None: its saga ran it from the start) in the movement metrics."""
    if tx is None:
        MOVEMENTS_HANDED_OVER.inc((KIND,))
    elif tx.state.terminal:
        if before is None or not before.terminal:
            MOVEMENTS.inc((KIND, tx.state.value))
    elif tx.state is TxState.INCONSISTENT:
        if before is not TxState.INCONSISTENT:
            MOVEMENTS_INCONSISTENT.inc((KIND,))
    elif before is None:
        MOVEMENTS_HANDED_OVER.inc((KIND,))


def refund_id(tx_id: uuid.UUID) -> str:
    """The refund's idempotency key: derived from the transaction, so a retry is the same one."""
    return str(uuid.uuid5(_REFUND_NAMESPACE, str(tx_id)))


async def write(deps: PurchaseDeps, tx: Transaction, move: Transition) -> Transaction:
    delay = 0.05
    for attempt in range(6):
        try:
            with _Step("write"):
                at = await deps.store.transition(move)
            if at is not None:
                return steps.applied(tx, move, at)
            raise SagaAbandoned(f"{tx.id}: no longer in state {move.expect}")
        except StoreUnavailable:
            if attempt == 5:
                raise
            await trio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _platform_reason(exc: PlatformError, stage: str) -> Reason:
    if isinstance(exc, PlatformRejected):
        return Reason(exc.code, f"{exc.platform} refused the {stage}: {exc.detail or exc.code}")
    return Reason(
        "PLATFORM_UNAVAILABLE", f"{stage} could not be completed: {exc.platform} unavailable"
    )


async def run_purchase(deps: PurchaseDeps, tx: Transaction, view: SubscriberView,
                       rules: CompiledRules | None = None) -> Transaction:
    """Drive `tx` (just accepted, state `received`) to a final state; returns it as stored.
    `rules`: the rules and catalogue versions active when it was accepted (it keeps them, and
    its price, whatever is activated meanwhile); the active ones by default."""
    rules = deps.rules if rules is None else rules
    now = deps.now()
    try:
        with _Step("profile"):
            customer = await deps.profiles.get(tx.msisdn)
    except PlatformError as exc:
        return await write(deps, tx, steps.failed(tx, _platform_reason(exc, "profile"), now))

    with _Step("rules"):
        verdict = deps.decide(tx, customer, view, now, rules)
    if not verdict.accepted:
        return await write(deps, tx, steps.rejected(tx, verdict, now))
    assert verdict.price is not None

    bono = rules.catalogue.get(tx.bono_id)
    assert bono is not None  # `decide` rejects a bono its catalogue does not have
    if verdict.operation == steps.PROVISION_ONLY:
        try:
            with _Step("provision"):
                await deps.platforms.provision(str(tx.id), tx.msisdn, bono.as_dict())
        except PlatformError as exc:
            reason = _platform_reason(exc, "provisioning")
            return await write(deps, tx, steps.failed(tx, reason, deps.now(), verdict))
        return await write(deps, tx, steps.completed(tx, deps.now(), verdict))

    # debit_and_provision
    try:
        with _Step("debit"):
            receipt = await deps.platforms.debit(str(tx.id), tx.msisdn, verdict.price)
        note = f"debited {verdict.price} {verdict.currency}, balance {receipt.balance_after}"
    except OutcomeUnknown:
        found = await _resolve_debit(deps, tx)
        if found is None:
            reason = Reason("CHARGE_FAILED", "the charging system did not take the debit")
            return await write(deps, tx, steps.failed(tx, reason, deps.now(), verdict))
        note = f"debited {verdict.price} {verdict.currency} (confirmed by lookup)"
    except PlatformError as exc:
        reason = _platform_reason(exc, "debit")
        return await write(deps, tx, steps.failed(tx, reason, deps.now(), verdict))
    tx = await write(deps, tx, steps.charged(tx, verdict, deps.now(), note))
    return await provision_charged(deps, tx)


class _CantTell:
    """What `_ask` returns when the platform never answered."""


_CANT_TELL = _CantTell()


async def _ask(lookup: Callable[[], Awaitable[T]], pauses: Sequence[float]) -> T | _CantTell:
    """`await lookup()` until it answers, at most `len(pauses)` times, pausing after each
    failure for the next pause."""
    for pause in pauses:
        try:
            return await lookup()
        except PlatformError:
            await trio.sleep(pause)
    return _CANT_TELL


async def _abandon_unknown(deps: PurchaseDeps, tx: Transaction, kind: str, what: str,
                           details: Mapping[str, Any] | None = None) -> NoReturn:
    """An outcome nobody can tell yet: a critical alarm, and the transaction stays in its last
    durable state for the recoverer, which asks again later. Never a guess."""
    await deps.alarms.raise_alarm(
        NewAlarm(kind, Severity.CRITICAL, what, msisdn=tx.msisdn, transaction_id=tx.id,
                 details=dict(details or {}))
    )
    raise SagaAbandoned(f"{tx.id}: {what}")


async def _resolve_debit(deps: PurchaseDeps, tx: Transaction) -> DebitReceipt | None:
    """An unknown debit outcome is settled by asking the charging system, never by guessing."""
    found = await _ask(lambda: deps.platforms.lookup_debit(str(tx.id)), (0.2, 0.4, 0.8, 1.6, 3.2))
    if isinstance(found, _CantTell):
        await _abandon_unknown(deps, tx, "charge_unknown",
                               "debit outcome unknown and the charging system cannot be asked")
    return found


async def provision_charged(deps: PurchaseDeps, tx: Transaction) -> Transaction:
    """From `charged`: provision the bono as the catalogue version it was sold from has it;
    on failure refund; if the refund fails, inconsistent."""
    bono = (await deps.rulebook.catalogue_version(tx.catalogue_version)).get(tx.bono_id)
    assert tx.price is not None
    if bono is None:  # charged by recovery for a bono no catalogue it can read has
        return await refund_charged(deps, tx, Reason(
            "UNKNOWN_BONO", f"bono {tx.bono_id!r} is not in the catalogue; debit refunded"))
    try:
        with _Step("provision"):
            await deps.platforms.provision(str(tx.id), tx.msisdn, bono.as_dict())
    except OutcomeUnknown as exc:
        # It may have been given: ask before refunding a bundle the subscriber has.
        given = await provisioned(deps, tx)
        if given is None:  # can't tell: leave it charged for the recoverer
            await _abandon_unknown(
                deps, tx, "provision_unknown",
                "charged; provisioning outcome unknown and provisioning cannot be asked",
                {"bono_id": tx.bono_id, "price": tx.price},
            )
        if given:
            return await write(deps, tx, steps.completed(tx, deps.now()))
        reason = _platform_reason(exc, "provisioning")
    except PlatformError as exc:
        reason = _platform_reason(exc, "provisioning")
    else:
        return await write(deps, tx, steps.completed(tx, deps.now()))
    logger.warning("provisioning failed for %s (%s); refunding", tx.id, reason.code)
    return await refund_charged(deps, tx, Reason("PROVISIONING_FAILED", reason.message))


async def provisioned(deps: PurchaseDeps, tx: Transaction) -> bool | None:
    """Whether `tx`'s bundle was given, asking provisioning a few times; None if it can't be
    asked (then neither refunding nor completing is safe: the recoverer asks again later)."""
    found = await _ask(lambda: deps.platforms.lookup_provision(str(tx.id)), (0.2, 0.4, 0.0))
    return None if isinstance(found, _CantTell) else found is not None


async def refund_charged(deps: PurchaseDeps, tx: Transaction, reason: Reason) -> Transaction:
    """Give the money back; if that fails, mark the transaction inconsistent and alarm."""
    assert tx.price is not None
    try:
        with _Step("refund"):
            await deps.platforms.refund(refund_id(tx.id), str(tx.id), tx.msisdn, tx.price)
    except PlatformError as exc:
        why = _platform_reason(exc, "refund")
        tx = await write(
            deps, tx,
            steps.inconsistent(tx, Reason("REFUND_FAILED", f"{reason.message}; {why.message}"),
                               deps.now()),
        )
        await deps.alarms.raise_alarm(
            NewAlarm(
                "refund_failed", Severity.CRITICAL,
                f"charged {tx.price} {tx.currency} but not provisioned, and the refund failed",
                msisdn=tx.msisdn, transaction_id=tx.id,
                details={"bono_id": tx.bono_id, "price": tx.price, "cause": why.message},
            )
        )
        return tx
    return await write(deps, tx, steps.refunded(tx, reason, deps.now()))


def final(tx: Transaction) -> bool:
    """Whether a waiting client can be answered: terminal, or settled as inconsistent."""
    return tx.state.terminal or tx.state is TxState.INCONSISTENT

