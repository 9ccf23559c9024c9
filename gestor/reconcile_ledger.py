"""Reconciliation of the ledger (issue 12): what the ledger's subscriber accounts say each
settled movement moved on each line's balance, against what the charging system's export
says, per movement and per day. Without I/O: `gestor.reconcile` reads both sides.

From the export, a movement moved on a line: its debits (minus), refunds and credits (plus),
and for a top-up the recharge itself (its reference). From the ledger: the credits less the
debits of `subscriber:<msisdn>` in the movement's entries. Movements still in flight (or
`inconsistent`) are left out: the reconciliation lists them as unsettled already.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from zoneinfo import ZoneInfo

import attrs

from gestor.model import Transaction, TxKind, TxState
from gestor.platforms import LedgerEntry

__all__ = ["LedgerComparison", "LedgerDay", "LedgerDifference", "compare_ledger",
           "export_nets"]

_SETTLED = frozenset({TxState.COMPLETED, TxState.REJECTED, TxState.FAILED, TxState.REFUNDED})
_SIGN = {"debit": -1, "refund": 1, "credit": 1, "topup": 1}


@attrs.frozen
class LedgerDifference:
    """A settled movement whose ledger entries moved a line otherwise than the export says."""

    transaction_id: str
    msisdn: str
    state: TxState
    ledger: int  # credits - debits of subscriber:<msisdn> in its entries
    charging_system: int  # what the export moved on that line for it


@attrs.frozen
class LedgerDay:
    """A day's settled movements (created that day in the timezone), both sides' totals."""

    day: date
    movements: int
    ledger: int
    charging_system: int

    @property
    def difference(self) -> int:
        return self.ledger - self.charging_system


@attrs.frozen
class LedgerComparison:
    differences: tuple[LedgerDifference, ...]
    days: tuple[LedgerDay, ...]

    @property
    def ok(self) -> bool:
        return not self.differences and all(d.difference == 0 for d in self.days)


def export_nets(transactions: Iterable[Transaction], export: Iterable[LedgerEntry],
                owner_of: Mapping[str, str]) -> dict[tuple[str, str], int]:
    """{(transaction id, msisdn): net} from the export: each entry once (by kind and id), owned
    through `owner_of` (a step's id to its transaction's), top-ups by their reference."""
    by_reference = {tx.reference: str(tx.id) for tx in transactions
                    if tx.kind is TxKind.TOPUP and tx.reference}
    nets: dict[tuple[str, str], int] = defaultdict(int)
    seen: set[tuple[str, str]] = set()
    for entry in export:
        if (entry.kind, entry.id) in seen:
            continue
        seen.add((entry.kind, entry.id))
        if entry.kind == "topup":
            owner = by_reference.get(entry.id)
            if owner is None:
                continue  # a recharge Gestor was not told of in this period
        else:
            owner = owner_of.get(entry.transaction_id, entry.transaction_id)
        nets[owner, entry.msisdn] += _SIGN[entry.kind] * entry.amount
    return dict(nets)


def compare_ledger(transactions: Iterable[Transaction],
                   ledger: Mapping[tuple[str, str], int],
                   exported: Mapping[tuple[str, str], int], timezone: str
                   ) -> LedgerComparison:
    """Per settled movement and line, the ledger's net against the export's; per day (of the
    movement's creation in `timezone`), both totals."""
    zone = ZoneInfo(timezone)
    lines: dict[str, set[str]] = defaultdict(set)
    for tid, msisdn in (*ledger, *exported):
        lines[tid].add(msisdn)
    differences: list[LedgerDifference] = []
    days: dict[date, list[int]] = {}
    for tx in sorted(transactions, key=lambda t: (t.created_at, t.id)):
        if tx.state not in _SETTLED:
            continue
        tid = str(tx.id)
        day = days.setdefault(tx.created_at.astimezone(zone).date(), [0, 0, 0])
        day[0] += 1
        for msisdn in sorted(lines.get(tid, ())):
            ours, theirs = ledger.get((tid, msisdn), 0), exported.get((tid, msisdn), 0)
            day[1] += ours
            day[2] += theirs
            if ours != theirs:
                differences.append(LedgerDifference(tid, msisdn, tx.state, ours, theirs))
    return LedgerComparison(
        tuple(differences),
        tuple(LedgerDay(d, n, ours, theirs) for d, (n, ours, theirs) in sorted(days.items())))
