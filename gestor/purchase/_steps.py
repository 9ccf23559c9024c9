"""The purchase state machine, sans I/O: pure functions from what just happened to the durable
`Transition` to write (DESIGN "A purchase, step by step" and D4).

Side-effect-free steps (profile, validation) are not written on their own: their history entries
travel with the next durable point, so a purchase costs about three write transactions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs

from gestor.model import HistoryEntry, Reason, Transaction, Transition, TxState

DEBIT_AND_PROVISION = "debit_and_provision"
PROVISION_ONLY = "provision_only"


@attrs.frozen
class Verdict:
    """What the rules decided for one purchase."""

    profile_id: str
    rules_version: int
    currency: str
    operation: str | None = None
    catalogue_version: int | None = None
    price: int | None = None
    reasons: tuple[Reason, ...] = ()

    @property
    def accepted(self) -> bool:
        return not self.reasons and self.operation is not None

    def stages(self, at: datetime) -> tuple[HistoryEntry, ...]:
        """History of the rule stages: profiled, then validated when the rules let it through."""
        profiled = HistoryEntry(
            TxState.PROFILED, at, f"profile {self.profile_id} (rules v{self.rules_version})"
        )
        if not self.accepted:
            return (profiled,)
        return (profiled, HistoryEntry(TxState.VALIDATED, at, f"operation {self.operation}"))


def _move(tx: Transaction, state: TxState, at: datetime, events: tuple[HistoryEntry, ...],
          verdict: Verdict | None = None, reasons: tuple[Reason, ...] | None = None) -> Transition:
    if verdict is None:
        return Transition(tx.id, tx.state, state, at, events, reasons=reasons)
    return Transition(
        tx.id, tx.state, state, at, events,
        price=verdict.price, currency=verdict.currency, operation=verdict.operation,
        profile_id=verdict.profile_id, rules_version=verdict.rules_version, reasons=reasons,
        catalogue_version=verdict.catalogue_version,
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
    """The charging system confirmed the debit: from now on money is involved."""
    note = note or f"debited {verdict.price} {verdict.currency}"
    events = (*verdict.stages(at), HistoryEntry(TxState.CHARGED, at, note))
    return _move(tx, TxState.CHARGED, at, events, verdict)


def charge_found(tx: Transaction, price: int, currency: str, at: datetime) -> Transition:
    """Recovery found the debit of an interrupted purchase: carry on from `charged`."""
    events = (HistoryEntry(TxState.CHARGED, at, f"debit of {price} {currency} found by recovery"),)
    return Transition(tx.id, tx.state, TxState.CHARGED, at, events, price=price,
                      currency=currency, operation=DEBIT_AND_PROVISION)


def completed(tx: Transaction, at: datetime, verdict: Verdict | None = None) -> Transition:
    """The bundle was provisioned: terminal success. `verdict` when nothing was written since
    acceptance (an operation that charges nothing)."""
    stages = verdict.stages(at) if verdict else ()
    events = (*stages, HistoryEntry(TxState.COMPLETED, at, "bundle provisioned"))
    return _move(tx, TxState.COMPLETED, at, events, verdict)


def refunded(tx: Transaction, reason: Reason, at: datetime) -> Transition:
    """Provisioning failed after the debit and the refund went through: terminal."""
    events = (HistoryEntry(TxState.REFUNDED, at, f"{reason.code}; debit refunded"),)
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
    )


def reasons_from(failures: Iterable[tuple[str, str, str | None]]) -> tuple[Reason, ...]:
    return tuple(Reason(code, message, rule_id) for code, message, rule_id in failures)
