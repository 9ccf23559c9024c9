"""The movement saga: the I/O shell around `_steps` (DESIGN "A purchase, step by step", D4,
D10).

Runs one accepted movement to its end: profile(s) → rules → the steps of the operation the rules
chose, in order (a purchase: debit → provision), each one's outcome durable before the next
starts; when a step fails after others were done, their compensations in reverse order
(`refunded`), and `inconsistent` plus a critical alarm when a compensation fails too. Every
external call carries an idempotency key derived from the transaction id and the step
(`step_id`), so a retry, or the recoverer after a crash, is the same call.
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
from gestor.model import NewAlarm, Reason, Severity, Transaction, Transition, TxKind, TxState
from gestor.platforms import OutcomeUnknown, PlatformError, PlatformRejected
from gestor.purchase import _steps as steps
from gestor.purchase._deps import PurchaseDeps, SubscriberView
from gestor.rules import CompiledRules, Step, decode_steps
from gestor.store import StoreUnavailable

logger = logging.getLogger("gestor.purchase")

T = TypeVar("T")

_REFUND_NAMESPACE = uuid.UUID("5b1f3c8e-9a53-4a57-9d0e-2a4f4f1f0c11")


class _Step:
    """`with _Step(tx, "debit"):` times one step of a movement's saga
    (gestor_saga_step_duration_seconds, by kind and step)."""

    __slots__ = ("key", "started")

    def __init__(self, tx: Transaction, step: str) -> None:
        self.key = (tx.kind.value, step)
        self.started = time.perf_counter()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        SAGA_STEP_SECONDS.observe(self.key, time.perf_counter() - self.started)


def count_movement(tx: Transaction | None, before: TxState | None, kind: str = "purchase"
                   ) -> None:
    """Count a movement that ended as `tx` (None: its saga stopped without a state, `kind`
    then names its kind) having been in state `before` (None: its saga ran it from the start)
    in the movement metrics."""
    kind = tx.kind.value if tx is not None else kind
    if tx is None:
        MOVEMENTS_HANDED_OVER.inc((kind,))
    elif tx.state.terminal:
        if before is None or not before.terminal:
            MOVEMENTS.inc((kind, tx.state.value))
    elif tx.state is TxState.INCONSISTENT:
        if before is not TxState.INCONSISTENT:
            MOVEMENTS_INCONSISTENT.inc((kind,))
    elif before is None:
        MOVEMENTS_HANDED_OVER.inc((kind,))


class SagaAbandoned(Exception):
    """A durable write lost its race (another worker owns the transaction now) or the database
    stayed unreachable; the recoverer takes over from the last durable state."""


def refund_id(tx_id: uuid.UUID) -> str:
    """The refund's idempotency key: derived from the transaction, so a retry is the same one."""
    return str(uuid.uuid5(_REFUND_NAMESPACE, str(tx_id)))


def step_id(tx_id: uuid.UUID, action: str) -> str:
    """The idempotency key of one action of a movement on a platform: the transaction id for
    its debit and its provisioning (as purchases always had), `refund_id` for the refund, and a
    name derived from both for the others (credit, advance, recover, reverse:<step>). An
    operation holds each step once, so each action has its own key."""
    if action in ("debit", "provision"):
        return str(tx_id)
    if action == "refund":
        return refund_id(tx_id)
    return str(uuid.uuid5(_REFUND_NAMESPACE, f"{tx_id}:{action}"))


async def write(deps: PurchaseDeps, tx: Transaction, move: Transition) -> Transaction:
    delay = 0.05
    for attempt in range(6):
        try:
            with _Step(tx, "write"):
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


class StepFailed(Exception):
    """A step was refused or could not be done, and it certainly did not happen."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.message)
        self.reason = reason


#: The failure code of a step that failed after others were done (what they were undone for).
_FAILED_CODE = {"provision": "PROVISIONING_FAILED", "credit": "CREDIT_FAILED",
                "debit": "CHARGE_FAILED", "advance": "ADVANCE_FAILED",
                "recover": "RECOVERY_FAILED"}
_STAGE = {"debit": "debit", "credit": "credit", "advance": "advance",
          "provision": "provisioning", "recover": "recovery debit"}


async def run_purchase(deps: PurchaseDeps, tx: Transaction, view: SubscriberView,
                       rules: CompiledRules | None = None) -> Transaction:
    """Drive `tx` (just accepted, state `received`) to a final state; returns it as stored.
    `rules`: the rules and catalogue versions active when it was accepted (it keeps them, and
    its price, whatever is activated meanwhile); the active ones by default."""
    now = deps.now()
    try:
        with _Step(tx, "profile"):
            customer = await deps.profiles.get(tx.msisdn)
            beneficiary = None
            if tx.beneficiary is not None and tx.beneficiary != tx.msisdn:
                beneficiary = await deps.profiles.get(tx.beneficiary)
    except PlatformError as exc:
        return await write(deps, tx, steps.failed(tx, _platform_reason(exc, "profile"), now))

    with _Step(tx, "rules"):
        verdict = deps.decide(tx, customer, beneficiary, view, now, rules)
    if not verdict.accepted:
        return await write(deps, tx, steps.rejected(tx, verdict, now))
    return await run_steps(deps, steps.decided(tx, verdict), verdict)


async def run_steps(deps: PurchaseDeps, tx: Transaction, verdict: steps.Verdict | None = None
                    ) -> Transaction:
    """Run `tx`'s steps from `tx.step` on. `verdict`: not yet written (nothing durable since
    acceptance), it travels with the first durable point."""
    plan = decode_steps(tx.steps)
    for i in range(tx.step, len(plan)):
        step = plan[i]
        try:
            with _Step(tx, step.do):
                note = await _do(deps, tx, step)
        except StepFailed as exc:
            if i == 0:  # nothing was done: nothing to undo
                return await write(deps, tx, steps.failed(tx, exc.reason, deps.now(), verdict))
            code = _FAILED_CODE.get(step.do, "STEP_FAILED")
            logger.warning("%s failed for %s (%s); compensating", step.do, tx.id,
                           exc.reason.code)
            return await compensate(deps, tx, Reason(code, exc.reason.message))
        if i == len(plan) - 1:
            return await write(deps, tx, steps.completed(tx, deps.now(), verdict, note))
        if verdict is not None:
            tx = await write(deps, tx, steps.charged(tx, verdict, deps.now(), note))
            verdict = None
        else:
            tx = await write(deps, tx, steps.progressed(tx, i + 1, deps.now(), note))
    return tx


async def _do(deps: PurchaseDeps, tx: Transaction, step: Step) -> str:
    """One step on its platform; the history note of its success. Raises `StepFailed` when it
    certainly did not happen; abandons the saga (alarm) when nobody can tell."""
    key = step_id(tx.id, step.do)
    stage = _STAGE[step.do]
    currency = tx.currency or deps.catalogue.currency
    try:
        if step.do == "debit":
            assert tx.price is not None
            receipt = await deps.platforms.debit(key, tx.msisdn, tx.price)
            return f"debited {tx.price} {currency}, balance {receipt.balance_after}"
        if step.do in ("credit", "advance"):
            assert tx.amount is not None
            to = tx.receiver if step.do == "credit" else tx.msisdn
            credit = await deps.platforms.credit(key, to, tx.amount, reason=step.do)
            return f"{step.do}: credited {tx.amount} {currency} to {to}, " \
                   f"balance {credit.balance_after}"
        if step.do == "provision":
            # as the catalogue version it was sold from has it
            bono = (await deps.rulebook.catalogue_version(tx.catalogue_version)).get(tx.bono_id)
            if bono is None:  # charged by recovery for a bono no catalogue it can read has
                raise StepFailed(Reason("UNKNOWN_BONO", f"bono {tx.bono_id!r} is not in the "
                                        "catalogue"))
            await deps.platforms.provision(key, tx.receiver, bono.as_dict())
            return "bundle provisioned"
        if step.do == "recover":
            if not tx.collected:
                return "nothing owed"
            receipt = await deps.platforms.debit(key, tx.msisdn, tx.collected)
            return f"recovered {tx.collected} {currency} owed, balance {receipt.balance_after}"
        raise AssertionError(f"unknown step {step.do!r}")  # compile_rules refuses those
    except OutcomeUnknown as exc:
        happened = await _happened(deps, tx, step.do)
        if happened is None:
            if step.do == "provision":
                await _abandon_unknown(
                    deps, tx, "provision_unknown",
                    "charged; provisioning outcome unknown and provisioning cannot be asked",
                    {"bono_id": tx.bono_id, "price": tx.price},
                )
            await _abandon_unknown(
                deps, tx, "charge_unknown",
                f"{stage} outcome unknown and the charging system cannot be asked",
                {"step": step.do, "amount": tx.price if step.do == "debit" else tx.amount},
            )
        if happened:
            return f"{stage} done (confirmed by lookup)"
        if step.do == "debit" and tx.step == 0:
            raise StepFailed(Reason("CHARGE_FAILED", "the charging system did not take the "
                                                     "debit")) from exc
        raise StepFailed(_platform_reason(exc, stage)) from exc
    except PlatformError as exc:
        raise StepFailed(_platform_reason(exc, stage)) from exc


async def _happened(deps: PurchaseDeps, tx: Transaction, action: str) -> bool | None:
    """Whether `action` of `tx` happened on its platform, asking a few times; None if it
    can't be asked now (then nothing may be guessed: the recoverer asks again later)."""
    key = step_id(tx.id, action)
    p = deps.platforms
    lookups: dict[str, Callable[[], Awaitable[object | None]]] = {
        "debit": lambda: p.lookup_debit(key),
        "recover": lambda: p.lookup_debit(key),
        "credit": lambda: p.lookup_credit(key),
        "advance": lambda: p.lookup_credit(key),
        "provision": lambda: p.lookup_provision(key),
        "refund": lambda: p.lookup_refund(key),
    }
    if action.startswith("reverse:"):
        lookups[action] = lambda: p.lookup_debit(key)
    pauses = (0.2, 0.4, 0.8, 1.6, 3.2) if action in ("debit", "recover") else (0.2, 0.4, 0.0)
    found = await _ask(lookups[action], pauses)
    return None if isinstance(found, _CantTell) else found is not None


async def undo(deps: PurchaseDeps, tx: Transaction, step: Step) -> None:
    """Compensate one done step (idempotent by its own key)."""
    if step.undo == "refund":
        assert tx.price is not None
        await deps.platforms.refund(refund_id(tx.id), str(tx.id), tx.msisdn, tx.price)
    elif step.undo == "reverse":
        assert tx.amount is not None
        whose = tx.receiver if step.do == "credit" else tx.msisdn
        await deps.platforms.debit(step_id(tx.id, f"reverse:{step.do}"), whose, tx.amount)


async def compensations_started(deps: PurchaseDeps, tx: Transaction) -> bool | None:
    """Whether any compensation of `tx`'s done steps already happened (a saga was undoing
    them when it stopped); None if a platform can't be asked."""
    plan = decode_steps(tx.steps)
    for step in plan[:tx.step]:
        if step.undo is None:
            continue
        action = "refund" if step.undo == "refund" else f"reverse:{step.do}"
        found = await _happened(deps, tx, action)
        if found is None or found:
            return found
    return False


async def compensate(deps: PurchaseDeps, tx: Transaction, reason: Reason) -> Transaction:
    """Undo `tx`'s done steps in reverse order → `refunded`; if one fails, `inconsistent`
    and a critical alarm (the recoverer retries)."""
    plan = decode_steps(tx.steps)
    for step in reversed(plan[:tx.step]):
        if step.undo is None:
            continue
        try:
            await undo(deps, tx, step)
        except PlatformError as exc:
            why = _platform_reason(exc, "refund" if step.undo == "refund" else "reversal")
            tx = await write(
                deps, tx,
                steps.inconsistent(tx, Reason("REFUND_FAILED",
                                              f"{reason.message}; {why.message}"), deps.now()),
            )
            what = (f"charged {tx.price} {tx.currency} but not provisioned, and the refund "
                    "failed" if tx.kind is TxKind.PURCHASE and step.undo == "refund" else
                    f"{tx.kind} {reason.code}, and undoing its {step.do} failed")
            await deps.alarms.raise_alarm(
                NewAlarm(
                    "refund_failed", Severity.CRITICAL, what,
                    msisdn=tx.msisdn, transaction_id=tx.id,
                    details={"bono_id": tx.bono_id, "price": tx.price, "step": step.do,
                             "cause": why.message},
                )
            )
            return tx
    undone = [s.do for s in plan[:tx.step] if s.undo is not None]
    note = "debit refunded" if undone == ["debit"] else f"undone: {', '.join(reversed(undone))}"
    return await write(deps, tx, steps.refunded(tx, reason, deps.now(), note))


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


async def provisioned(deps: PurchaseDeps, tx: Transaction) -> bool | None:
    """Whether `tx`'s bundle was given, asking provisioning a few times; None if it can't be
    asked (then neither refunding nor completing is safe: the recoverer asks again later)."""
    return await _happened(deps, tx, "provision")


def final(tx: Transaction) -> bool:
    """Whether a waiting client can be answered: terminal, or settled as inconsistent."""
    return tx.state.terminal or tx.state is TxState.INCONSISTENT
