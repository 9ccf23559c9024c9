"""Reconciliation's matcher, without any I/O: every kind of mismatch, totals, rendering."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from gestor.model import Transaction, TxState
from gestor.platforms import LedgerEntry
from gestor.reconcile import (
    MismatchKind,
    ReconciliationReport,
    reconcile,
    render_json,
    render_text,
)

T0 = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
PRICE = 60000


# -- the matcher, without I/O ---------------------------------------------------------------------


def tx(state: TxState, price: int | None = PRICE, *, operation: str = "debit_and_provision",
       msisdn: str = "5491100000001", minute: int = 0) -> Transaction:
    at = T0 + timedelta(minutes=minute)
    return Transaction(
        id=uuid.uuid4(), msisdn=msisdn, bono_id="DATA_2GB_7D", channel="api", client="public",
        idempotency_key=uuid.uuid4().hex, request_hash="h", state=state, created_at=at,
        updated_at=at, price=price, currency="ARS", operation=operation,
    )


def debit(t: Transaction | str, amount: int = PRICE, msisdn: str = "5491100000001",
          ts: float = 0.0) -> LedgerEntry:
    tid = t if isinstance(t, str) else str(t.id)
    return LedgerEntry("debit", tid, msisdn, amount, "2025-01-31T12:00:01.000Z",
                       ts or T0.timestamp() + 1)


def refund(t: Transaction | str, amount: int = PRICE, msisdn: str = "5491100000001",
           refund_id: str | None = None) -> LedgerEntry:
    tid = t if isinstance(t, str) else str(t.id)
    return LedgerEntry("refund", refund_id or f"r-{tid}", msisdn, amount,
                       "2025-01-31T12:00:02.000Z", T0.timestamp() + 2, tid)


def kinds(report: ReconciliationReport) -> list[tuple[MismatchKind, str]]:
    return [(m.kind, m.transaction_id) for m in report.mismatches]


def test_agreeing_sides_are_ok_and_balanced() -> None:
    completed = tx(TxState.COMPLETED)
    refunded = tx(TxState.REFUNDED, minute=1)
    failed = tx(TxState.FAILED, None, minute=2)
    rejected = tx(TxState.REJECTED, minute=3)
    gift = tx(TxState.COMPLETED, 0, operation="provision_only", minute=4)
    report = reconcile([completed, refunded, failed, rejected, gift],
                       [debit(completed), debit(refunded), refund(refunded)])
    assert report.ok and report.mismatches == () and report.unsettled == ()
    t = report.totals
    assert (t.transactions, t.debits, t.refunds) == (5, 2, 1)
    assert (t.debited, t.refunded, t.net, t.completed, t.unsettled) == (
        2 * PRICE, PRICE, PRICE, PRICE, 0)
    assert t.balanced and t.difference == 0


def test_nothing_at_all_is_ok() -> None:
    report = reconcile([], [])
    assert report.ok and report.totals.net == 0


def test_charged_not_recorded() -> None:
    failed = tx(TxState.FAILED)
    rejected = tx(TxState.REJECTED, minute=1)
    partly = tx(TxState.REFUNDED, minute=2)
    stranger = str(uuid.uuid4())
    report = reconcile(
        [failed, rejected, partly],
        [debit(failed), debit(rejected), debit(partly), refund(partly, PRICE - 100),
         debit(stranger, 500, msisdn="5491100000009")],
    )
    assert not report.ok
    assert kinds(report) == [
        (MismatchKind.CHARGED_NOT_RECORDED, str(failed.id)),
        (MismatchKind.CHARGED_NOT_RECORDED, str(rejected.id)),
        (MismatchKind.CHARGED_NOT_RECORDED, str(partly.id)),
        (MismatchKind.CHARGED_NOT_RECORDED, stranger),
    ]
    absent = report.mismatches[-1]
    assert absent.state is None and absent.price is None and absent.msisdn == "5491100000009"
    assert absent.debited == 500 and absent.created_at == T0 + timedelta(seconds=1)
    first = report.mismatches[0]
    assert first.state is TxState.FAILED and first.price == PRICE and first.debited == PRICE
    assert report.totals.net == 2 * PRICE + 100 + 500 and report.totals.completed == 0


def test_a_debit_refunded_in_full_is_no_sale() -> None:
    failed = tx(TxState.FAILED)
    stranger = str(uuid.uuid4())
    report = reconcile([failed], [debit(failed), refund(failed), debit(stranger, 10),
                                  refund(stranger, 10)])
    assert report.ok, kinds(report)


def test_recorded_not_charged() -> None:
    completed = tx(TxState.COMPLETED)
    charged = tx(TxState.CHARGED, minute=1)
    report = reconcile([completed, charged], [])
    assert kinds(report) == [(MismatchKind.RECORDED_NOT_CHARGED, str(completed.id)),
                             (MismatchKind.RECORDED_NOT_CHARGED, str(charged.id))]
    assert report.unsettled == ()  # a charge with no debit is a mismatch, not in flight
    assert report.totals.completed == PRICE and report.totals.difference == -PRICE


def test_amount_mismatch() -> None:
    completed = tx(TxState.COMPLETED)
    gift = tx(TxState.COMPLETED, 0, operation="provision_only", minute=1)
    charged = tx(TxState.CHARGED, minute=2)
    report = reconcile([completed, gift, charged],
                       [debit(completed, PRICE + 1), debit(gift, 300), debit(charged, 5)])
    assert kinds(report) == [(MismatchKind.AMOUNT_MISMATCH, str(completed.id)),
                             (MismatchKind.AMOUNT_MISMATCH, str(gift.id)),
                             (MismatchKind.AMOUNT_MISMATCH, str(charged.id))]
    assert report.mismatches[0].debited == PRICE + 1 and report.mismatches[0].price == PRICE
    assert [u.transaction_id for u in report.unsettled] == [str(charged.id)]


def test_in_flight_before_the_price_is_written_is_no_amount_mismatch() -> None:
    received = tx(TxState.RECEIVED, None)  # debited; `charged` (with the price) not yet written
    report = reconcile([received], [debit(received)])
    assert report.ok and [u.state for u in report.unsettled] == [TxState.RECEIVED]
    assert report.totals.unsettled == PRICE and report.totals.balanced


def test_refunded_but_completed() -> None:
    completed = tx(TxState.COMPLETED)
    report = reconcile([completed], [debit(completed), refund(completed, 100)])
    assert kinds(report) == [(MismatchKind.REFUNDED_BUT_COMPLETED, str(completed.id))]
    assert report.mismatches[0].refunded == 100


def test_refund_missing() -> None:
    kept = tx(TxState.REFUNDED)
    nothing = tx(TxState.REFUNDED, minute=1)
    report = reconcile([kept, nothing], [debit(kept)])
    assert kinds(report) == [(MismatchKind.REFUND_MISSING, str(kept.id)),
                             (MismatchKind.REFUND_MISSING, str(nothing.id))]
    assert "no debit" in report.mismatches[1].detail


def test_refund_without_debit() -> None:
    failed = tx(TxState.FAILED)
    stranger = str(uuid.uuid4())
    report = reconcile([failed], [refund(failed), refund(stranger, 7)])
    assert kinds(report) == [(MismatchKind.REFUND_WITHOUT_DEBIT, str(failed.id)),
                             (MismatchKind.REFUND_WITHOUT_DEBIT, stranger)]


def test_one_transaction_can_disagree_in_several_ways() -> None:
    completed = tx(TxState.COMPLETED)
    report = reconcile([completed], [debit(completed, PRICE * 2), refund(completed, PRICE)])
    assert {m.kind for m in report.mismatches} == {MismatchKind.AMOUNT_MISMATCH,
                                                   MismatchKind.REFUNDED_BUT_COMPLETED}


def test_unsettled_are_listed_and_count_only_when_strict() -> None:
    received = tx(TxState.RECEIVED, None)
    validated = tx(TxState.VALIDATED, minute=1)
    charged = tx(TxState.CHARGED, minute=2)
    limbo = tx(TxState.INCONSISTENT, minute=3)
    completed = tx(TxState.COMPLETED, minute=4)
    moves = [debit(charged), debit(limbo), debit(completed)]
    report = reconcile([received, validated, charged, limbo, completed], moves)
    assert report.ok and report.mismatches == ()
    assert [u.state for u in report.unsettled] == [
        TxState.RECEIVED, TxState.VALIDATED, TxState.CHARGED, TxState.INCONSISTENT]
    t = report.totals
    assert (t.net, t.completed, t.unsettled) == (3 * PRICE, PRICE, 2 * PRICE) and t.balanced
    strict = reconcile([received, validated, charged, limbo, completed], moves, strict=True)
    assert not strict.ok and strict.mismatches == ()


def test_repeated_movements_count_once() -> None:
    completed = tx(TxState.COMPLETED)
    report = reconcile([completed], [debit(completed), debit(completed)])
    assert report.ok and report.totals.debits == 1 and report.totals.debited == PRICE


def test_mismatches_are_grouped_by_kind_oldest_first() -> None:
    late_failed = tx(TxState.FAILED, minute=9)
    early_completed = tx(TxState.COMPLETED, minute=1)
    early_failed = tx(TxState.FAILED, minute=0)
    report = reconcile([late_failed, early_completed, early_failed],
                       [debit(late_failed), debit(early_failed)])
    assert kinds(report) == [(MismatchKind.CHARGED_NOT_RECORDED, str(early_failed.id)),
                             (MismatchKind.CHARGED_NOT_RECORDED, str(late_failed.id)),
                             (MismatchKind.RECORDED_NOT_CHARGED, str(early_completed.id))]


def test_text_and_json_renderings() -> None:
    failed = tx(TxState.FAILED)
    charged = tx(TxState.CHARGED, minute=1)
    report = reconcile([failed, charged], [debit(failed), debit(charged)],
                       since=T0, until=T0 + timedelta(days=1))
    text = render_text(report)
    assert "2025-01-31T12:00:00Z .. 2025-02-01T12:00:00Z" in text
    assert "charged_not_recorded" in text and str(failed.id) in text
    assert "unsettled (1)" in text and "off by 60000" in text
    assert text.rstrip().endswith("NOT OK: 1 mismatch(es), totals do not balance")
    data = json.loads(render_json(report))
    assert data["ok"] is False and data["strict"] is False
    assert data["since"] == "2025-01-31T12:00:00Z"
    [mismatch] = data["mismatches"]
    assert mismatch == {
        "kind": "charged_not_recorded", "transaction_id": str(failed.id),
        "msisdn": "5491100000001", "state": "failed", "price": PRICE, "debited": PRICE,
        "refunded": 0, "created_at": "2025-01-31T12:00:00Z", "detail": mismatch["detail"],
    }
    assert data["unsettled"][0]["state"] == "charged"
    assert data["totals"]["net"] == 2 * PRICE and data["totals"]["unsettled"] == PRICE
    assert data["totals"]["difference"] == PRICE and data["totals"]["balanced"] is False
    clean = reconcile([], [])
    assert render_text(clean).rstrip().endswith("OK: Gestor and the charging system agree")
    assert json.loads(render_json(clean))["ok"] is True


