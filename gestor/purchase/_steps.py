"""The movement state machine, sans I/O: pure functions from what just happened to the durable
`Transition` to write (DESIGN "A purchase, step by step", D4 and D10).

A movement runs its operation's steps in order: each step done is written (`charged` with the
count of steps done) before the next one starts, the last one ends it (`completed`); a step that
fails after others were done has them compensated in reverse order (`refunded`), or, when a
compensation fails too, `inconsistent`. Side-effect-free steps (profile, validation) are not
written on their own: their history entries travel with the next durable point, so a purchase
(debit, provision) costs about three write transactions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs

from gestor.model import HistoryEntry, Reason, Transaction, Transition, TxState
from gestor.rules import STANDARD_OPERATIONS

DEBIT_AND_PROVISION = "debit_and_provision"
PROVISION_ONLY = "provision_only"
_STANDARD = {o.name: tuple(s.encode() for s in o.steps) for o in STANDARD_OPERATIONS}


@attrs.frozen
class Verdict:
    """What the rules decided for one purchase."""

    profile_id: str
    rules_version: int
    currency: str
    operation: str | None = None
    catalogue_version: int | None = None
    price: int | None = None  # what the payer's debit step takes (a transfer: amount + fee)
    reasons: tuple[Reason, ...] = ()
    #: The operation's steps as its rule set declares them (`do` or `do:undo`); empty: the
    #: standard operation of that name.
    steps: tuple[str, ...] = ()
    amount: int | None = None  # credited (transfer, advance) or collected at most (top-up)
    fee: int | None = None
    owed: int | None = None  # the debt an advance step leaves (amount + fee)
    collected: int | None = None  # what a top-up's recover step takes
    #: The customer's segment as the data warehouse gave it (reports break movements down by it).
    segment: str | None = None

    @property
    def accepted(self) -> bool:
        return not self.reasons and self.operation is not None

    @property
    def plan(self) -> tuple[str, ...]:
        return self.steps or _STANDARD.get(self.operation or "", ())

    def stages(self, at: datetime) -> tuple[HistoryEntry, ...]:
        """History of the rule stages: profiled, then validated when the rules let it through."""
        profiled = HistoryEntry(
            TxState.PROFILED, at, f"profile {self.profile_id} (rules v{self.rules_version})"
        )
        if not self.accepted:
            return (profiled,)
        return (profiled, HistoryEntry(TxState.VALIDATED, at, f"operation {self.operation}"))


def _move(tx: Transaction, state: TxState, at: datetime, events: tuple[HistoryEntry, ...],
          verdict: Verdict | None = None, reasons: tuple[Reason, ...] | None = None,
          step: int | None = None) -> Transition:
    if verdict is None:
        return Transition(tx.id, tx.state, state, at, events, reasons=reasons, step=step)
    accepted = verdict.accepted
    return Transition(
        tx.id, tx.state, state, at, events,
        price=verdict.price, currency=verdict.currency, operation=verdict.operation,
        profile_id=verdict.profile_id, rules_version=verdict.rules_version, reasons=reasons,
        catalogue_version=verdict.catalogue_version, segment=verdict.segment,
        amount=verdict.amount, fee=verdict.fee, step=step,
        owed=verdict.owed if accepted else None,
        collected=verdict.collected if accepted else None,
        steps=verdict.plan if accepted else None,
    )


def decided(tx: Transaction, verdict: Verdict) -> Transaction:
    """`tx` as its verdict sets it up (in memory, before its first durable point): what its
    steps read (price, amounts, steps)."""
    return attrs.evolve(
        tx, price=verdict.price, currency=verdict.currency, operation=verdict.operation,
        profile_id=verdict.profile_id, rules_version=verdict.rules_version,
        catalogue_version=verdict.catalogue_version,
        amount=verdict.amount if verdict.amount is not None else tx.amount,
        fee=verdict.fee, owed=verdict.owed, collected=verdict.collected, steps=verdict.plan,
    )


def rejected(tx: Transaction, verdict: Verdict, at: datetime) -> Transition:
    """The rules said no: terminal, nothing was charged."""
    note = ", ".join(r.code for r in verdict.reasons)
    events = (*verdict.stages(at), HistoryEntry(TxState.REJECTED, at, note))
    return _move(tx, TxState.REJECTED, at, events, verdict, verdict.reasons)


def failed(tx: Transaction, reason: Reason, at: datetime,
           verdict: Verdict | None = None) -> Transition:
    """Could not go on and nothing is charged: terminal."""
    stages = verdict.stages(at) if verdict else ()
    events = (*stages, HistoryEntry(TxState.FAILED, at, reason.code))
    return _move(tx, TxState.FAILED, at, events, verdict, (reason,))


def charged(tx: Transaction, verdict: Verdict, at: datetime, note: str | None = None
            ) -> Transition:
    """The first step of its operation is done (a purchase's debit): from now on money is
    involved. Records the verdict."""
    note = note or f"debited {verdict.price} {verdict.currency}"
    events = (*verdict.stages(at), HistoryEntry(TxState.CHARGED, at, note))
    return _move(tx, TxState.CHARGED, at, events, verdict, step=1)


def progressed(tx: Transaction, done: int, at: datetime, note: str) -> Transition:
    """Step `done` (counting from 1) of its operation is done; more follow."""
    events = (HistoryEntry(TxState.CHARGED, at, note),)
    return _move(tx, TxState.CHARGED, at, events, step=done)


def charge_found(tx: Transaction, price: int, currency: str, at: datetime) -> Transition:
    """Recovery found the debit of an interrupted purchase: carry on from `charged`."""
    events = (HistoryEntry(TxState.CHARGED, at, f"debit of {price} {currency} found by recovery"),)
    return Transition(tx.id, tx.state, TxState.CHARGED, at, events, price=price,
                      currency=currency, operation=DEBIT_AND_PROVISION, step=1,
                      steps=_STANDARD[DEBIT_AND_PROVISION])


def completed(tx: Transaction, at: datetime, verdict: Verdict | None = None,
              note: str = "bundle provisioned") -> Transition:
    """The last step is done: terminal success. `verdict` when nothing was written since
    acceptance (an operation of one step)."""
    stages = verdict.stages(at) if verdict else ()
    events = (*stages, HistoryEntry(TxState.COMPLETED, at, note))
    done = len(verdict.plan) if verdict else len(tx.steps) or None
    return _move(tx, TxState.COMPLETED, at, events, verdict, step=done)


def refunded(tx: Transaction, reason: Reason, at: datetime, note: str = "debit refunded"
             ) -> Transition:
    """A step failed after others were done, and every one of those was compensated:
    terminal."""
    events = (HistoryEntry(TxState.REFUNDED, at, f"{reason.code}; {note}"),)
    return _move(tx, TxState.REFUNDED, at, events, reasons=(reason,))


def inconsistent(tx: Transaction, reason: Reason, at: datetime) -> Transition:
    """Charged, not provisioned, and the refund failed: needs the recoverer or a human."""
    events = (HistoryEntry(TxState.INCONSISTENT, at, reason.message),)
    return _move(tx, TxState.INCONSISTENT, at, events, reasons=(reason,))


def applied(tx: Transaction, move: Transition, at: datetime) -> Transaction:
    """The transaction as it is after `move` was written, committed at `at` (the database's
    clock, which also stamps its history entries): saves a read after each write."""
    return attrs.evolve(
        tx,
        state=move.state,
        updated_at=at,
        history=tx.history + tuple(attrs.evolve(e, at=at) for e in move.events),
        price=move.price if move.price is not None else tx.price,
        currency=move.currency or tx.currency,
        operation=move.operation or tx.operation,
        profile_id=move.profile_id or tx.profile_id,
        rules_version=move.rules_version or tx.rules_version,
        catalogue_version=move.catalogue_version or tx.catalogue_version,
        reasons=move.reasons if move.reasons is not None else tx.reasons,
        amount=move.amount if move.amount is not None else tx.amount,
        fee=move.fee if move.fee is not None else tx.fee,
        collected=move.collected if move.collected is not None else tx.collected,
        owed=move.owed if move.owed is not None else tx.owed,
        step=move.step if move.step is not None else tx.step,
        steps=move.steps if move.steps is not None else tx.steps,
    )


def reasons_from(failures: Iterable[tuple[str, str, str | None]]) -> tuple[Reason, ...]:
    return tuple(Reason(code, message, rule_id) for code, message, rule_id in failures)
