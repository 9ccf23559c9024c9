"""The purchase state machine without any I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from gestor.model import Reason, Transaction, TxState
from gestor.purchase import Verdict
from gestor.purchase import _steps as steps

AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _tx(state: TxState = TxState.RECEIVED, price: int | None = None) -> Transaction:
    return Transaction(
        id=uuid.uuid4(), msisdn="5491100000001", bono_id="DATA_2GB_7D", channel="app",
        client="public", idempotency_key="k", request_hash="h", state=state, created_at=AT,
        updated_at=AT, price=price, currency="ARS" if price else None,
    )


OK = Verdict("PREPAID", 3, "ARS", operation=steps.DEBIT_AND_PROVISION, price=60000)
NO = Verdict("PREPAID", 3, "ARS", reasons=(Reason("LOW_BALANCE", "not enough", "balance"),))


def test_verdict_stages() -> None:
    assert OK.accepted and not NO.accepted
    assert [e.state for e in OK.stages(AT)] == [TxState.PROFILED, TxState.VALIDATED]
    assert [e.state for e in NO.stages(AT)] == [TxState.PROFILED]
    assert not Verdict("P", 1, "ARS").accepted  # no operation offered


def test_rejection_carries_profile_and_reasons() -> None:
    tx = _tx()
    move = steps.rejected(tx, NO, AT)
    assert (move.expect, move.state) == (TxState.RECEIVED, TxState.REJECTED)
    assert [e.state for e in move.events] == [TxState.PROFILED, TxState.REJECTED]
    assert move.reasons == NO.reasons and move.profile_id == "PREPAID"
    assert move.rules_version == 3 and move.price is None


def test_charge_then_complete() -> None:
    tx = _tx()
    move = steps.charged(tx, OK, AT)
    assert move.state is TxState.CHARGED and move.price == 60000
    assert [e.state for e in move.events] == [TxState.PROFILED, TxState.VALIDATED,
                                             TxState.CHARGED]
    tx = steps.applied(tx, move, AT)
    assert tx.state is TxState.CHARGED and tx.price == 60000 and tx.operation == OK.operation
    done = steps.completed(tx, AT)
    assert done.expect is TxState.CHARGED and [e.state for e in done.events] == [
        TxState.COMPLETED]
    final = steps.applied(tx, done, AT)
    assert final.state.terminal and len(final.history) == 4


def test_provision_only_completes_from_received_with_all_stages() -> None:
    free = Verdict("VIP", 1, "ARS", operation=steps.PROVISION_ONLY, price=0)
    move = steps.completed(_tx(), AT, free)
    assert move.expect is TxState.RECEIVED and move.operation == steps.PROVISION_ONLY
    assert [e.state for e in move.events] == [TxState.PROFILED, TxState.VALIDATED,
                                             TxState.COMPLETED]


def test_refund_and_inconsistency_from_charged() -> None:
    tx = _tx(TxState.CHARGED, price=60000)
    why = Reason("PROVISIONING_FAILED", "prov said 500")
    refunded = steps.refunded(tx, why, AT)
    assert (refunded.expect, refunded.state) == (TxState.CHARGED, TxState.REFUNDED)
    assert refunded.reasons == (why,)
    broken = steps.inconsistent(tx, why, AT)
    assert broken.state is TxState.INCONSISTENT and not broken.state.terminal


def test_failure_before_charging_is_terminal() -> None:
    move = steps.failed(_tx(), Reason("PLATFORM_UNAVAILABLE", "dwh down"), AT)
    assert move.state is TxState.FAILED and move.state.terminal
    assert [e.state for e in move.events] == [TxState.FAILED]
    with_verdict = steps.failed(_tx(), Reason("INSUFFICIENT_BALANCE", "402"), AT, OK)
    assert [e.state for e in with_verdict.events] == [TxState.PROFILED, TxState.VALIDATED,
                                                     TxState.FAILED]
