"""Reconciliation: Gestor's transactions against the charging system's ledger for a period.

`reconcile(transactions, ledger)` is the matcher, without I/O; `run_reconciliation` reads
both sides and matches them; `render_text` and `render_json` format the report for
`gestor reconcile` and the admin API.

A ledger movement belongs to a transaction by id: a debit's `id` is the transaction id, a
refund names it in `debit_id`; the other steps of a movement (a transfer's credit, an advance,
a top-up's recovery debit, a reversing debit) carry ids derived from the transaction's
(`gestor.purchase.step_id`). A transaction belongs to the period it was created in. A movement
in the period whose transaction Gestor does not have at all belongs to this period. The
recharges themselves (`topup` in the ledger) are the subscriber's, not Gestor's: not matched.

Money is counted from the subscribers' side: `net` is what was debited, less what was refunded
and what was credited (a transfer's credit, an advance); a completed movement accounts for its
debits less its credits (a purchase: its price; a transfer: its fee; an advance: minus its
amount; a top-up: what it collected).
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import msgspec

from gestor.model import Transaction, TxKind, TxState
from gestor.platforms import LedgerEntry, PlatformError, Platforms
from gestor.purchase import refund_id, step_id
from gestor.reconcile_ledger import LedgerComparison, compare_ledger, export_nets
from gestor.store import Store, subscriber_nets, transactions_between, transactions_by_id

__all__ = [
    "DEFAULT_GRACE",
    "Mismatch",
    "MismatchKind",
    "ReconciliationReport",
    "Totals",
    "Unsettled",
    "reconcile",
    "render_json",
    "render_text",
    "run_reconciliation",
]

logger = logging.getLogger("gestor.reconcile")

#: How far past the period's ends the ledger is read, so that a movement a little before or
#: after its transaction's creation is still matched with it.
DEFAULT_GRACE = timedelta(hours=1)

_PROVISION_ONLY = "provision_only"
_SETTLED_PRICE = frozenset(
    {TxState.CHARGED, TxState.COMPLETED, TxState.REFUNDED, TxState.INCONSISTENT}
)
_NO_SALE = frozenset({TxState.FAILED, TxState.REJECTED})


class MismatchKind(enum.StrEnum):
    """Ways Gestor and the charging system can disagree about a transaction."""

    CHARGED_NOT_RECORDED = "charged_not_recorded"  # money kept; Gestor says no sale
    RECORDED_NOT_CHARGED = "recorded_not_charged"  # Gestor says charged; no debit
    AMOUNT_MISMATCH = "amount_mismatch"  # debit amount != Gestor's price
    REFUNDED_BUT_COMPLETED = "refunded_but_completed"  # a refund for a completed sale
    REFUND_MISSING = "refund_missing"  # Gestor says refunded; no refund
    REFUND_WITHOUT_DEBIT = "refund_without_debit"  # more refunded than debited
    CREDITED_NOT_RECORDED = "credited_not_recorded"  # money given; Gestor has no such credit


_KIND_ORDER = {kind: i for i, kind in enumerate(MismatchKind)}


@attrs.frozen
class Mismatch:
    """One disagreement. Amounts are cents; `debited`/`refunded` are the ledger's sums."""

    kind: MismatchKind
    transaction_id: str
    msisdn: str
    state: TxState | None  # Gestor's state; None when Gestor has no such transaction
    price: int | None  # Gestor's price
    debited: int
    refunded: int
    created_at: datetime | None  # the transaction's, else the first movement's
    detail: str


@attrs.frozen
class Unsettled:
    """A transaction still in flight (or `inconsistent`): listed, not a mismatch."""

    transaction_id: str
    msisdn: str
    state: TxState
    price: int | None
    debited: int
    refunded: int
    created_at: datetime
    updated_at: datetime


@attrs.frozen
class Totals:
    """Sums over the matched data, in cents. `net` must equal `completed + unsettled`."""

    transactions: int
    debits: int
    refunds: int
    debited: int
    refunded: int
    net: int  # debited - refunded - credited
    completed: int  # what the completed transactions cost (debits less credits)
    unsettled: int  # net charged for unsettled transactions
    credits: int = 0
    credited: int = 0

    @property
    def difference(self) -> int:
        return self.net - self.completed - self.unsettled

    @property
    def balanced(self) -> bool:
        return self.difference == 0


@attrs.frozen
class ReconciliationReport:
    since: datetime | None
    until: datetime | None
    mismatches: tuple[Mismatch, ...]
    unsettled: tuple[Unsettled, ...]
    totals: Totals
    strict: bool = False  # unsettled transactions count against `ok`
    #: The ledger's subscriber entries against the export, per movement and per day (None:
    #: not compared, as `reconcile()` alone does not read the ledger).
    ledger: LedgerComparison | None = None

    @property
    def ok(self) -> bool:
        """No mismatch, the totals balance, the ledger agrees, and (when strict) nothing
        unsettled."""
        if self.mismatches or not self.totals.balanced:
            return False
        if self.ledger is not None and not self.ledger.ok:
            return False
        return not (self.strict and self.unsettled)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes in ISO 8601, amounts in cents."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        out["ok"] = self.ok
        out["totals"]["difference"] = self.totals.difference
        out["totals"]["balanced"] = self.totals.balanced
        if self.ledger is not None:
            out["ledger"]["ok"] = self.ledger.ok
            for day, shown in zip(self.ledger.days, out["ledger"]["days"], strict=True):
                shown["difference"] = day.difference
        return out


# -- matching -------------------------------------------------------------------------------------


def _expected_charge(tx: Transaction) -> int:
    """What its debits take, completed."""
    if tx.steps:
        done = {s.partition(":")[0] for s in tx.steps}
        return (tx.price or 0 if "debit" in done else 0) + (
            tx.collected or 0 if "recover" in done else 0)
    if tx.operation == _PROVISION_ONLY or tx.price is None:
        return 0
    return tx.price


def _expected_credit(tx: Transaction) -> int:
    """What its credits give, completed (a transfer's credit, an advance)."""
    done = {s.partition(":")[0] for s in tx.steps}
    return tx.amount or 0 if done & {"credit", "advance"} else 0


def _aliases(transactions: Iterable[Transaction]) -> dict[str, str]:
    """The ledger ids of the steps of these movements other than their debit (whose id is
    the transaction's), to the transaction id."""
    out: dict[str, str] = {}
    for tx in transactions:
        if tx.kind is TxKind.PURCHASE and not tx.amount:
            continue  # a bono paid from the balance: debit and refund only
        tid = str(tx.id)
        for action in ("credit", "advance", "recover", "reverse:credit", "reverse:advance"):
            out[step_id(tx.id, action)] = tid
    return out


@attrs.define
class _Tally:
    debits: int = 0
    refunds: int = 0
    debited: int = 0
    refunded: int = 0
    completed: int = 0
    unsettled: int = 0
    credits: int = 0
    credited: int = 0


def _match(
    tid: str,
    tx: Transaction | None,
    moves: Sequence[LedgerEntry],
    tally: _Tally,
    mismatches: list[Mismatch],
    unsettled: list[Unsettled],
) -> None:
    debited = sum(m.amount for m in moves if m.kind == "debit")
    refunded = sum(m.amount for m in moves if m.kind == "refund")
    has_debit = any(m.kind == "debit" for m in moves)
    has_refund = any(m.kind == "refund" for m in moves)
    credited = sum(m.amount for m in moves if m.kind == "credit")
    net = debited - refunded - credited
    tally.debits += sum(1 for m in moves if m.kind == "debit")
    tally.refunds += sum(1 for m in moves if m.kind == "refund")
    tally.credits += sum(1 for m in moves if m.kind == "credit")
    tally.debited += debited
    tally.refunded += refunded
    tally.credited += credited

    def found(kind: MismatchKind, detail: str) -> None:
        if tx is not None:
            msisdn, state, price, at = tx.msisdn, tx.state, tx.price, tx.created_at
        else:
            msisdn, state, price = moves[0].msisdn, None, None
            at = datetime.fromtimestamp(moves[0].ts, UTC)
        mismatches.append(
            Mismatch(kind, tid, msisdn, state, price, debited, refunded, at, detail)
        )

    if refunded > debited:
        found(MismatchKind.REFUND_WITHOUT_DEBIT,
              f"refunds of {refunded} exceed the debits of {debited}")
    if tx is not None and (tx.kind is not TxKind.PURCHASE or tx.amount):
        _match_movement(tx, found, tally, unsettled, debited, refunded, credited, tid)
        return
    if tx is None:
        if debited - refunded > 0:
            found(MismatchKind.CHARGED_NOT_RECORDED,
                  f"{debited - refunded} debited (net of refunds) but Gestor has no such "
                  "transaction")
        if credited > 0:
            found(MismatchKind.CREDITED_NOT_RECORDED,
                  f"{credited} credited but Gestor has no such transaction")
        return

    expected = _expected_charge(tx)
    state = tx.state
    if has_debit and state in _SETTLED_PRICE and debited != expected:
        found(MismatchKind.AMOUNT_MISMATCH, f"debited {debited}, Gestor's price is {expected}")
    if state is TxState.COMPLETED:
        tally.completed += expected
        if expected > 0 and not has_debit:
            found(MismatchKind.RECORDED_NOT_CHARGED, f"completed at {expected} with no debit")
        if has_refund:
            found(MismatchKind.REFUNDED_BUT_COMPLETED,
                  f"completed, but {refunded} was refunded")
    elif state is TxState.CHARGED and not has_debit:
        found(MismatchKind.RECORDED_NOT_CHARGED, "recorded as charged with no debit")
    elif state is TxState.REFUNDED:
        if not has_refund:
            missing = "no refund" if has_debit else "no refund (and no debit)"
            found(MismatchKind.REFUND_MISSING, f"recorded as refunded; {missing}")
        elif net > 0:
            found(MismatchKind.CHARGED_NOT_RECORDED,
                  f"recorded as refunded, but {net} is still debited")
    elif state in _NO_SALE:
        if net > 0:
            found(MismatchKind.CHARGED_NOT_RECORDED, f"{state.value}, but {net} is debited")
    else:  # received, profiled, validated, charged with its debit, inconsistent
        tally.unsettled += net
        unsettled.append(
            Unsettled(tid, tx.msisdn, state, tx.price, debited, refunded, tx.created_at,
                      tx.updated_at)
        )


def _match_movement(tx: Transaction, found: Any, tally: _Tally, unsettled: list[Unsettled],
                    debited: int, refunded: int, credited: int, tid: str) -> None:
    """A transfer, an advance, a top-up or a bono financed by an advance: by its totals."""
    net = debited - refunded - credited
    state = tx.state
    if state is TxState.COMPLETED:
        charge, credit = _expected_charge(tx), _expected_credit(tx)
        tally.completed += charge - credit
        if charge > 0 and not debited:
            found(MismatchKind.RECORDED_NOT_CHARGED, f"completed at {charge} with no debit")
        elif debited - refunded != charge or credited != credit:
            found(MismatchKind.AMOUNT_MISMATCH,
                  f"debited {debited - refunded} and credited {credited}; Gestor's "
                  f"{tx.kind} took {charge} and gave {credit}")
    elif state in (TxState.REFUNDED, *_NO_SALE):
        if net != 0 or (state in _NO_SALE and (debited or credited)):
            found(MismatchKind.CHARGED_NOT_RECORDED,
                  f"{state.value}, but {debited - refunded} is debited and {credited} credited")
    else:
        tally.unsettled += net
        unsettled.append(Unsettled(tid, tx.msisdn, state, tx.price, debited, refunded,
                                   tx.created_at, tx.updated_at))


def reconcile(
    transactions: Iterable[Transaction],
    ledger: Iterable[LedgerEntry],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    strict: bool = False,
) -> ReconciliationReport:
    """Match every transaction with the ledger movements of its id, and every movement with
    its transaction; report each disagreement. Repeated movements (same kind and id) count
    once. `since`/`until` are only recorded in the report."""
    by_id = {str(tx.id): tx for tx in sorted(transactions, key=lambda t: (t.created_at, t.id))}
    aliases = _aliases(by_id.values())
    moves: dict[str, list[LedgerEntry]] = {}
    seen: set[tuple[str, str]] = set()
    for entry in sorted(ledger, key=lambda e: e.ts):
        if (entry.kind, entry.id) in seen or entry.kind == "topup":
            continue
        seen.add((entry.kind, entry.id))
        owner = aliases.get(entry.transaction_id, entry.transaction_id)
        moves.setdefault(owner, []).append(entry)
    tally = _Tally()
    mismatches: list[Mismatch] = []
    unsettled: list[Unsettled] = []
    for tid, tx in by_id.items():
        _match(tid, tx, moves.get(tid, ()), tally, mismatches, unsettled)
    for tid, group in moves.items():
        if tid not in by_id:
            _match(tid, None, group, tally, mismatches, unsettled)
    mismatches.sort(key=lambda m: _KIND_ORDER[m.kind])  # stable: oldest first within a kind
    totals = Totals(
        transactions=len(by_id),
        debits=tally.debits,
        refunds=tally.refunds,
        debited=tally.debited,
        refunded=tally.refunded,
        net=tally.debited - tally.refunded - tally.credited,
        completed=tally.completed,
        unsettled=tally.unsettled,
        credits=tally.credits,
        credited=tally.credited,
    )
    return ReconciliationReport(since, until, tuple(mismatches), tuple(unsettled), totals, strict)


# -- reading both sides ---------------------------------------------------------------------------


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _epoch(created_at: str) -> float:
    try:
        return datetime.fromisoformat(created_at).timestamp()
    except ValueError:
        return 0.0


async def _confirm(platforms: Platforms, tids: Iterable[str]) -> list[LedgerEntry]:
    """Movements of these transactions found by point lookups (a movement can fall outside the
    exported window, e.g. a refund made long after its debit)."""
    found: list[LedgerEntry] = []
    for tid in sorted(tids):
        tx_id = _as_uuid(tid)
        try:
            debit = await platforms.lookup_debit(tid)
            if debit is None:
                continue
            found.append(LedgerEntry("debit", debit.id, debit.msisdn, debit.amount,
                                     debit.created_at, _epoch(debit.created_at)))
            if not debit.refunded or tx_id is None:
                continue
            refund = await platforms.lookup_refund(refund_id(tx_id))
        except PlatformError as exc:
            logger.warning("could not confirm the movements of %s: %s", tid, exc)
            continue
        if refund is not None:
            found.append(LedgerEntry("refund", refund.id, refund.msisdn or debit.msisdn,
                                     refund.amount, refund.created_at,
                                     _epoch(refund.created_at), refund.debit_id))
    return found


_CONFIRMABLE = frozenset(
    {MismatchKind.RECORDED_NOT_CHARGED, MismatchKind.REFUND_MISSING,
     MismatchKind.REFUND_WITHOUT_DEBIT}
)


async def run_reconciliation(
    store: Store,
    platforms: Platforms,
    since: datetime,
    until: datetime,
    *,
    strict: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    timezone: str = "UTC",
) -> ReconciliationReport:
    """Reconcile the transactions created in `[since, until)` (aware datetimes).

    Reads Gestor first and the ledger second, so every debit or refund behind a state Gestor
    recorded is already in the ledger read (safe while purchases go on). The ledger is read
    `grace` beyond both ends; movements there count only for this period's transactions.
    A movement in the period whose transaction exists but belongs to another period is left
    to that period. Mismatches that a missing movement would explain are confirmed by
    `lookup_debit`/`lookup_refund` before they are reported. Raises PlatformError or
    StoreUnavailable when a side cannot be read.
    """
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware")
    if since >= until:
        raise ValueError("since must be before until")
    transactions = await store.bridge.run(transactions_between, since, until, transaction=False)
    ledger = await platforms.ledger(since - grace, until + grace)
    ours = {str(tx.id) for tx in transactions}
    aliases = _aliases(transactions)
    start, end = since.timestamp(), until.timestamp()
    groups: dict[str, list[LedgerEntry]] = {}
    for entry in ledger:
        if entry.kind == "topup":
            continue
        owner = aliases.get(entry.transaction_id, entry.transaction_id)
        groups.setdefault(owner, []).append(entry)
    matched: list[LedgerEntry] = []
    strays: dict[str, list[LedgerEntry]] = {}
    for tid, group in groups.items():
        if tid in ours:
            matched.extend(group)
        elif any(start <= e.ts < end for e in group):
            strays[tid] = group
    if strays:
        ids = [u for u in map(_as_uuid, strays) if u is not None]
        elsewhere = await store.bridge.run(transactions_by_id, ids, transaction=False)
        for tx in elsewhere:
            strays.pop(str(tx.id), None)
        for group in strays.values():
            matched.extend(group)
    report = reconcile(transactions, matched, since=since, until=until, strict=strict)
    suspects = {m.transaction_id for m in report.mismatches
                if m.kind in _CONFIRMABLE and m.state is not None}
    extra: list[LedgerEntry] = []
    if suspects:
        extra = await _confirm(platforms, suspects)
        if extra:
            report = reconcile(transactions, [*matched, *extra], since=since, until=until,
                               strict=strict)
    nets = await store.bridge.run(subscriber_nets, [tx.id for tx in transactions],
                                  transaction=False)
    recharges = [e for e in ledger if e.kind == "topup"]

    def compare(more: Sequence[LedgerEntry]) -> LedgerComparison:
        exported = export_nets(transactions, [*matched, *extra, *more, *recharges], aliases)
        return compare_ledger(transactions, nets, exported, timezone)

    comparison = compare(())
    differing = {d.transaction_id for d in comparison.differences} - suspects
    if differing:  # a refund (or debit) outside the window read: looked up before reporting
        found = await _confirm(platforms, differing)
        if found:
            comparison = compare(found)
    return attrs.evolve(report, ledger=comparison)


# -- rendering ------------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render_text(report: ReconciliationReport) -> str:
    """The report for a human (amounts in cents)."""
    t = report.totals
    lines = [
        f"reconciliation {_when(report.since)} .. {_when(report.until)}",
        f"  transactions {t.transactions}; ledger: {t.debits} debits = {t.debited}, "
        f"{t.refunds} refunds = {t.refunded}, {t.credits} credits = {t.credited}, "
        f"net {t.net} (cents)",
        f"  completed {t.completed} + unsettled {t.unsettled} "
        + ("= net: balanced" if t.balanced else f"!= net {t.net}: off by {t.difference}"),
    ]
    if report.mismatches:
        lines.append(f"mismatches ({len(report.mismatches)}):")
        for m in report.mismatches:
            state = m.state.value if m.state is not None else "absent"
            price = "-" if m.price is None else str(m.price)
            lines.append(
                f"  {m.kind.value:<22} {m.transaction_id}  {m.msisdn}  {_when(m.created_at)}  "
                f"state={state} price={price} debited={m.debited} refunded={m.refunded}: "
                f"{m.detail}"
            )
    if report.unsettled:
        note = " (counted: --strict)" if report.strict else " (not mismatches)"
        lines.append(f"unsettled ({len(report.unsettled)}){note}:")
        for u in report.unsettled:
            price = "-" if u.price is None else str(u.price)
            lines.append(
                f"  {u.state.value:<12} {u.transaction_id}  {u.msisdn}  "
                f"created {_when(u.created_at)} updated {_when(u.updated_at)}  "
                f"price={price} debited={u.debited} refunded={u.refunded}"
            )
    if report.ledger is not None:
        lines += _ledger_lines(report.ledger)
    if report.ok:
        lines.append("OK: Gestor and the charging system agree")
    else:
        problems = [f"{len(report.mismatches)} mismatch(es)"]
        if not t.balanced:
            problems.append("totals do not balance")
        if report.strict and report.unsettled:
            problems.append(f"{len(report.unsettled)} unsettled")
        if report.ledger is not None and not report.ledger.ok:
            problems.append("the ledger differs")
        lines.append("NOT OK: " + ", ".join(problems))
    return "\n".join(lines) + "\n"


def _ledger_lines(ledger: LedgerComparison) -> list[str]:
    lines = ["ledger (subscriber entries of settled movements) against the export, per day:"]
    for d in ledger.days:
        state = "agree" if d.difference == 0 else f"off by {d.difference}"
        lines.append(f"  {d.day.isoformat()}  {d.movements} movements  ledger {d.ledger}  "
                     f"charging system {d.charging_system}: {state}")
    if ledger.differences:
        lines.append(f"ledger differences ({len(ledger.differences)}):")
        lines += [f"  {d.transaction_id}  {d.msisdn}  state={d.state.value}  "
                  f"ledger {d.ledger} != charging system {d.charging_system}"
                  for d in ledger.differences]
    return lines


def render_json(report: ReconciliationReport) -> bytes:
    return msgspec.json.encode(report.as_dict())
