"""State of the platform simulator: subscribers, balances, debits, refunds, credits, top-ups,
bundles and the text messages of the SMS gateway.

Plain synchronous state (one trio thread, no locks needed). Subscribers and their starting
balances are synthetic (see ``_synthetic``); every change is applied through one ``_apply``
path, which is also how the optional journal is replayed on start.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import msgspec
import trio

from ._config import SimulatorConfig
from ._faults import FaultInjector
from ._journal import Journal
from ._sms import SmsControl, SmsRecord, SmsRequest, sms_refusal
from ._synthetic import (
    SyntheticProfile,
    is_valid_msisdn,
    synthetic_account,
    synthetic_profile,
)
from ._topups import (
    NOTICE_DISABLED,
    NOTICE_PENDING,
    Notification,
    TopupRecord,
    TopupRequest,
)

__all__ = [
    "AccountOverride",
    "AccountView",
    "BundleRecord",
    "CreditRecord",
    "CreditRequest",
    "DebitRecord",
    "DebitRequest",
    "LedgerEntry",
    "ProvisionRequest",
    "RefundRecord",
    "RefundRequest",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStatistics",
    "open_simulator",
]

CURRENCY = "ARS"
LINE_STATUSES = ("active", "suspended", "barred")
_MAX_ID = 128

Result = tuple[int, Any]


def _error(status: int, code: str, message: str, **extra: Any) -> Result:
    return status, {"code": code, "message": message, **extra}


def _iso(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


# ----------------------------------------------------------------------------------------------
# wire requests (decoded straight from JSON bodies by msgspec)


@attrs.frozen
class DebitRequest:
    id: str
    msisdn: str
    amount: int
    reason: str | None = None


@attrs.frozen
class CreditRequest:
    id: str
    msisdn: str
    amount: int
    currency: str | None = None
    reason: str | None = None


@attrs.frozen
class RefundRequest:
    id: str
    debit_id: str
    msisdn: str
    amount: int


@attrs.frozen
class ProvisionRequest:
    id: str
    msisdn: str
    bono_id: str
    validity_days: int
    data_mb: int = 0
    voice_min: int = 0
    sms: int = 0


@attrs.frozen
class AccountOverride:
    balance: int | None = None
    line_status: str | None = None
    roaming: bool | None = None
    credit_limit: int | None = None


# ----------------------------------------------------------------------------------------------
# stored records (also the JSON answers)


@attrs.frozen
class DebitRecord:
    id: str
    msisdn: str
    amount: int
    balance_after: int
    created_at: str
    ts: float
    reason: str | None = None
    status: str = "debited"
    refunded: bool = False
    refund_id: str | None = None


@attrs.frozen
class RefundRecord:
    id: str
    debit_id: str
    msisdn: str
    amount: int
    balance_after: int
    created_at: str
    ts: float
    status: str = "refunded"


@attrs.frozen
class CreditRecord:
    id: str
    msisdn: str
    amount: int
    balance_after: int
    created_at: str
    ts: float
    reason: str | None = None
    currency: str = CURRENCY
    status: str = "credited"


@attrs.frozen
class BundleRecord:
    id: str
    msisdn: str
    bono_id: str
    validity_days: int
    data_mb: int
    voice_min: int
    sms: int
    created_at: str
    expires_at: str
    ts: float
    status: str = "provisioned"


@attrs.frozen
class LedgerEntry:
    kind: str  # "debit" | "refund" | "credit" | "topup"
    id: str
    msisdn: str
    amount: int
    created_at: str
    ts: float
    debit_id: str | None = None


@attrs.frozen
class AccountView:
    msisdn: str
    balance: int
    line_status: str
    roaming: bool
    credit_limit: int
    currency: str = CURRENCY


@attrs.define
class _AccountState:
    msisdn: str
    balance: int
    line_status: str
    roaming: bool
    credit_limit: int
    debits: int = 0
    debited_total: int = 0
    refunds: int = 0
    refunded_total: int = 0
    credits: int = 0
    credited_total: int = 0
    topups: int = 0
    topped_up_total: int = 0
    provisioned: int = 0

    def view(self) -> AccountView:
        return AccountView(
            self.msisdn, self.balance, self.line_status, self.roaming, self.credit_limit
        )


@attrs.frozen
class SimulatorStatistics:
    accounts: int
    debits: int
    refunds: int
    debited_total: int
    refunded_total: int
    credits: int
    credited_total: int
    topups: int
    topped_up_total: int
    provisioned: int
    requests: int
    in_flight: int
    peak_in_flight: int
    journal_records: int


# ----------------------------------------------------------------------------------------------
# the simulator


def _check_id(value: str, what: str = "id") -> Result | None:
    if not value or len(value) > _MAX_ID:
        return _error(400, "INVALID_REQUEST", f"{what} must be 1..{_MAX_ID} characters")
    return None


@attrs.define
class Simulator:
    """All simulator state. Methods return ``(http_status, json_payload)``."""

    config: SimulatorConfig
    faults: FaultInjector
    _journal: Journal | None = None
    _accounts: dict[str, _AccountState] = attrs.field(factory=dict)
    _debits: dict[str, DebitRecord] = attrs.field(factory=dict)
    _refunds: dict[str, RefundRecord] = attrs.field(factory=dict)
    _credits: dict[str, CreditRecord] = attrs.field(factory=dict)
    _topups: dict[str, TopupRecord] = attrs.field(factory=dict)
    _bundles: dict[str, BundleRecord] = attrs.field(factory=dict)
    #: Text messages the SMS gateway took, by id, in the order they came.
    _sms: dict[str, SmsRecord] = attrs.field(factory=dict)
    #: `PUT /control/sms` `fail_next`: messages still to refuse with 503.
    _sms_fail_next: int = 0
    _ledger: list[LedgerEntry] = attrs.field(factory=list)
    _debited_total: int = 0
    _refunded_total: int = 0
    _credited_total: int = 0
    _topped_up_total: int = 0
    #: Called when a top-up whose notification is pending is made (the notifier's wake-up).
    on_notice_pending: Callable[[], None] | None = None
    #: Called with the updated top-up after each notification attempt is recorded (an
    #: observer for tests and embedders: must not raise).
    on_notice: Callable[[TopupRecord], None] | None = None
    requests_by_op: dict[str, int] = attrs.field(factory=dict)
    in_flight: int = 0  # platform requests being served right now
    peak_in_flight: int = 0
    #: Debit requests being served right now, and the most ever at once, per msisdn (a client
    #: that serialises a mobile's purchases never has two of its debits in flight).
    _debits_in_flight: dict[str, int] = attrs.field(factory=dict)
    _peak_debits: dict[str, int] = attrs.field(factory=dict)

    @classmethod
    def create(cls, config: SimulatorConfig) -> Simulator:
        """A simulator with no journal even if ``config.state_dir`` is set."""
        return cls(config, FaultInjector.create(config.faults, config.seed))

    @classmethod
    def open(cls, config: SimulatorConfig) -> Simulator:
        """A simulator with its journal opened and replayed (blocking file I/O); close() it."""
        simulator = cls.create(config)
        if config.state_dir is not None:
            journal, records = Journal.open(config.state_dir, fsync=config.fsync)
            try:
                simulator.attach_journal(journal, records)
            except BaseException:
                journal.close()
                raise
        return simulator

    # -- journal -----------------------------------------------------------------------------

    def attach_journal(self, journal: Journal, records: list[Any]) -> None:
        for record in records:
            self._replay(record)
        self._journal = journal

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _replay(self, record: Mapping[str, Any]) -> None:
        kind = record.get("t")
        if kind == "debit":
            self._apply_debit(msgspec.convert(record["r"], DebitRecord))
        elif kind == "refund":
            self._apply_refund(msgspec.convert(record["r"], RefundRecord))
        elif kind == "credit":
            self._apply_credit(msgspec.convert(record["r"], CreditRecord))
        elif kind == "topup":
            self._apply_topup(msgspec.convert(record["r"], TopupRecord))
        elif kind == "notice":
            self._apply_notice(record["reference"], msgspec.convert(record["r"], Notification))
        elif kind == "bundle":
            self._apply_bundle(msgspec.convert(record["r"], BundleRecord))
        elif kind == "sms":
            self._apply_sms(msgspec.convert(record["r"], SmsRecord))
        elif kind == "account":
            self._apply_override(record["msisdn"], msgspec.convert(record["r"], AccountOverride))
        elif kind == "reset":
            self._clear()
        else:
            raise ValueError(f"unknown journal record {kind!r}")

    def _record(self, kind: str, payload: Any, **extra: Any) -> None:
        if self._journal is not None:
            self._journal.append({"t": kind, "r": payload, **extra})

    # -- helpers -------------------------------------------------------------------------------

    def _account(self, msisdn: str) -> _AccountState:
        state = self._accounts.get(msisdn)
        if state is None:
            base = synthetic_account(msisdn)
            state = self._accounts[msisdn] = _AccountState(
                msisdn, base.balance, base.line_status, base.roaming, base.credit_limit
            )
        return state

    def count(self, op: str) -> None:
        self.requests_by_op[op] = self.requests_by_op.get(op, 0) + 1

    def debit_arrived(self, msisdn: str) -> None:
        """A debit request for `msisdn` is being served (until `debit_left`)."""
        now = self._debits_in_flight[msisdn] = self._debits_in_flight.get(msisdn, 0) + 1
        if now > self._peak_debits.get(msisdn, 0):
            self._peak_debits[msisdn] = now

    def debit_left(self, msisdn: str) -> None:
        left = self._debits_in_flight[msisdn] - 1
        if left:
            self._debits_in_flight[msisdn] = left
        else:
            del self._debits_in_flight[msisdn]

    # -- reads ---------------------------------------------------------------------------------

    def subscriber(self, msisdn: str) -> SyntheticProfile | None:
        return synthetic_profile(msisdn) if is_valid_msisdn(msisdn) else None

    def account(self, msisdn: str) -> AccountView | None:
        return self._account(msisdn).view() if is_valid_msisdn(msisdn) else None

    def lookup_debit(self, debit_id: str) -> DebitRecord | None:
        return self._debits.get(debit_id)

    def lookup_refund(self, refund_id: str) -> RefundRecord | None:
        return self._refunds.get(refund_id)

    def lookup_credit(self, credit_id: str) -> CreditRecord | None:
        return self._credits.get(credit_id)

    def lookup_topup(self, reference: str) -> TopupRecord | None:
        return self._topups.get(reference)

    def pending_topups(self) -> list[TopupRecord]:
        """The top-ups whose notification is not delivered yet, oldest first."""
        return [t for t in self._topups.values() if t.notification.status == NOTICE_PENDING]

    def lookup_bundle(self, bundle_id: str) -> BundleRecord | None:
        return self._bundles.get(bundle_id)

    # -- debits --------------------------------------------------------------------------------

    def debit(self, req: DebitRequest) -> Result:
        if (answer := _replay_or_refusal("debit", self._debits.get(req.id), req)) is not None:
            return answer
        account = self._account(req.msisdn)
        if (refused := _refused_if_inactive(account)) is not None:
            return refused
        if account.balance - req.amount < -account.credit_limit:
            return _error(
                402, "INSUFFICIENT_BALANCE", "not enough balance", balance=account.balance
            )
        ts = time.time()
        record = DebitRecord(
            id=req.id,
            msisdn=req.msisdn,
            amount=req.amount,
            balance_after=account.balance - req.amount,
            created_at=_iso(ts),
            ts=ts,
            reason=req.reason,
        )
        self._record("debit", record)
        self._apply_debit(record)
        return 200, record

    def _apply_debit(self, record: DebitRecord) -> None:
        account = self._account(record.msisdn)
        account.balance -= record.amount
        account.debits += 1
        account.debited_total += record.amount
        self._debits[record.id] = record
        self._debited_total += record.amount
        self._ledger.append(
            LedgerEntry("debit", record.id, record.msisdn, record.amount, record.created_at,
                        record.ts)
        )

    # -- refunds -------------------------------------------------------------------------------

    def refund(self, req: RefundRequest) -> Result:
        existing = self._refunds.get(req.id)
        if existing is not None:
            if (existing.debit_id, existing.msisdn, existing.amount) != (
                req.debit_id, req.msisdn, req.amount
            ):
                return _error(
                    409,
                    "IDEMPOTENCY_MISMATCH",
                    f"refund {req.id!r} already exists with another debit/msisdn/amount",
                )
            return 200, existing
        if (bad := _check_id(req.id)) is not None:
            return bad
        debit = self._debits.get(req.debit_id)
        if debit is None:
            return _error(404, "NOT_FOUND", f"no debit {req.debit_id!r}")
        if debit.refunded:
            return _error(
                409, "ALREADY_REFUNDED", f"debit {debit.id!r} already refunded",
                refund_id=debit.refund_id,
            )
        if req.msisdn != debit.msisdn:
            return _error(409, "DEBIT_MISMATCH", "msisdn differs from the debit's")
        if not 0 < req.amount <= debit.amount:
            return _error(400, "INVALID_AMOUNT", "amount must be in 1..the debited amount")
        ts = time.time()
        account = self._account(req.msisdn)
        record = RefundRecord(
            id=req.id,
            debit_id=req.debit_id,
            msisdn=req.msisdn,
            amount=req.amount,
            balance_after=account.balance + req.amount,
            created_at=_iso(ts),
            ts=ts,
        )
        self._record("refund", record)
        self._apply_refund(record)
        return 200, record

    def _apply_refund(self, record: RefundRecord) -> None:
        account = self._account(record.msisdn)
        account.balance += record.amount
        account.refunds += 1
        account.refunded_total += record.amount
        debit = self._debits.get(record.debit_id)
        if debit is not None:
            self._debits[debit.id] = attrs.evolve(debit, refunded=True, refund_id=record.id)
        self._refunds[record.id] = record
        self._refunded_total += record.amount
        self._ledger.append(
            LedgerEntry("refund", record.id, record.msisdn, record.amount, record.created_at,
                        record.ts, record.debit_id)
        )

    # -- credits -------------------------------------------------------------------------------

    def credit(self, req: CreditRequest) -> Result:
        """Add ``amount`` to the balance; idempotent by ``id`` exactly like :meth:`debit`."""
        if (answer := _replay_or_refusal("credit", self._credits.get(req.id), req)) is not None:
            return answer
        if req.currency is not None and req.currency != CURRENCY:
            return _error(400, "INVALID_CURRENCY", f"currency must be {CURRENCY}")
        account = self._account(req.msisdn)
        if (refused := _refused_if_inactive(account)) is not None:
            return refused
        ts = time.time()
        record = CreditRecord(
            id=req.id,
            msisdn=req.msisdn,
            amount=req.amount,
            balance_after=account.balance + req.amount,
            created_at=_iso(ts),
            ts=ts,
            reason=req.reason,
        )
        self._record("credit", record)
        self._apply_credit(record)
        return 200, record

    def _apply_credit(self, record: CreditRecord) -> None:
        account = self._account(record.msisdn)
        account.balance += record.amount
        account.credits += 1
        account.credited_total += record.amount
        self._credits[record.id] = record
        self._credited_total += record.amount
        self._ledger.append(
            LedgerEntry("credit", record.id, record.msisdn, record.amount, record.created_at,
                        record.ts)
        )

    # -- top-ups -------------------------------------------------------------------------------

    def topup(self, req: TopupRequest) -> Result:
        """A recharge on the recharge platform: ``amount`` added to the balance, idempotent by
        ``reference`` (generated when not given) like a debit by id, and its notification to
        Gestor pending when ``topup_notify_url`` is configured."""
        reference = req.reference if req.reference is not None else uuid.uuid4().hex
        existing = self._topups.get(reference)
        if existing is not None:
            if existing.msisdn != req.msisdn or existing.amount != req.amount:
                return _error(
                    409,
                    "IDEMPOTENCY_MISMATCH",
                    f"top-up {reference!r} already exists with another msisdn/amount",
                )
            return 200, existing
        if (bad := _check_id(reference, "reference")) is not None:
            return bad
        if not all("!" <= c <= "~" for c in reference):
            # it travels as the notification's Idempotency-Key header
            return _error(400, "INVALID_REQUEST", "reference must be printable ASCII, no spaces")
        if not is_valid_msisdn(req.msisdn):
            return _error(400, "INVALID_MSISDN", "msisdn must be 8-15 digits")
        if req.amount <= 0:
            return _error(400, "INVALID_AMOUNT", "amount must be a positive integer")
        account = self._account(req.msisdn)
        if (refused := _refused_if_inactive(account)) is not None:
            return refused
        ts = time.time()
        notifying = self.config.topup_notify_url is not None
        record = TopupRecord(
            reference=reference,
            msisdn=req.msisdn,
            amount=req.amount,
            balance_after=account.balance + req.amount,
            created_at=_iso(ts),
            ts=ts,
            notification=Notification(NOTICE_PENDING if notifying else NOTICE_DISABLED),
        )
        self._record("topup", record)
        self._apply_topup(record)
        if notifying and self.on_notice_pending is not None:
            self.on_notice_pending()
        return 200, record

    def _apply_topup(self, record: TopupRecord) -> None:
        account = self._account(record.msisdn)
        account.balance += record.amount
        account.topups += 1
        account.topped_up_total += record.amount
        self._topups[record.reference] = record
        self._topped_up_total += record.amount
        self._ledger.append(
            LedgerEntry("topup", record.reference, record.msisdn, record.amount,
                        record.created_at, record.ts)
        )

    def notice_attempted(
        self, topup: TopupRecord, status: int | None, error: str | None
    ) -> TopupRecord | None:
        """Record one attempt to notify ``topup`` (its answer's ``status``, or the ``error``
        that left it without one). Returns the updated top-up, or None when ``topup`` is no
        longer current (forgotten by a reset): then the notifier stops."""
        current = self._topups.get(topup.reference)
        if current is None or current.created_at != topup.created_at:
            return None
        notification = current.notification.after(status, error, _iso(time.time()))
        self._record("notice", notification, reference=topup.reference)
        updated = self._apply_notice(topup.reference, notification)
        if updated is not None and self.on_notice is not None:
            self.on_notice(updated)
        return updated

    def _apply_notice(self, reference: str, notification: Notification) -> TopupRecord | None:
        current = self._topups.get(reference)
        if current is None:
            return None
        updated = self._topups[reference] = attrs.evolve(current, notification=notification)
        return updated

    # -- provisioning --------------------------------------------------------------------------

    def provision(self, req: ProvisionRequest) -> Result:
        existing = self._bundles.get(req.id)
        if existing is not None:
            if (existing.msisdn, existing.bono_id) != (req.msisdn, req.bono_id):
                return _error(
                    409,
                    "IDEMPOTENCY_MISMATCH",
                    f"bundle {req.id!r} already exists with another msisdn/bono",
                )
            return 200, existing
        if (bad := _check_id(req.id)) is not None:
            return bad
        if not is_valid_msisdn(req.msisdn):
            return _error(400, "INVALID_MSISDN", "msisdn must be 8-15 digits")
        if not req.bono_id:
            return _error(400, "INVALID_REQUEST", "bono_id is required")
        if req.validity_days <= 0 or min(req.data_mb, req.voice_min, req.sms) < 0:
            return _error(400, "INVALID_REQUEST", "validity_days > 0 and quotas >= 0 required")
        ts = time.time()
        record = BundleRecord(
            id=req.id,
            msisdn=req.msisdn,
            bono_id=req.bono_id,
            validity_days=req.validity_days,
            data_mb=req.data_mb,
            voice_min=req.voice_min,
            sms=req.sms,
            created_at=_iso(ts),
            expires_at=_iso(ts + req.validity_days * 86_400),
            ts=ts,
        )
        self._record("bundle", record)
        self._apply_bundle(record)
        return 200, record

    def _apply_bundle(self, record: BundleRecord) -> None:
        self._account(record.msisdn).provisioned += 1
        self._bundles[record.id] = record

    # -- control -------------------------------------------------------------------------------

    def override_account(self, msisdn: str, override: AccountOverride) -> Result:
        if not is_valid_msisdn(msisdn):
            return _error(400, "INVALID_MSISDN", "msisdn must be 8-15 digits")
        if override.line_status is not None and override.line_status not in LINE_STATUSES:
            return _error(400, "INVALID_REQUEST", f"line_status must be one of {LINE_STATUSES}")
        if override.credit_limit is not None and override.credit_limit < 0:
            return _error(400, "INVALID_REQUEST", "credit_limit must be >= 0")
        self._record("account", override, msisdn=msisdn)
        self._apply_override(msisdn, override)
        return 200, self._account(msisdn).view()

    def _apply_override(self, msisdn: str, override: AccountOverride) -> None:
        account = self._account(msisdn)
        if override.balance is not None:
            account.balance = override.balance
        if override.line_status is not None:
            account.line_status = override.line_status
        if override.roaming is not None:
            account.roaming = override.roaming
        if override.credit_limit is not None:
            account.credit_limit = override.credit_limit

    # -- SMS gateway ---------------------------------------------------------------------------

    def send_sms(self, req: SmsRequest) -> Result:
        """Take a text message for `req.to`; idempotent by `id` (the same id and body: the
        stored message again, nothing sent twice; another body: 409)."""
        if (answer := sms_refusal(self._sms.get(req.id), req)) is not None:
            return answer
        if self._sms_fail_next > 0:
            self._sms_fail_next -= 1
            return _error(503, "UNAVAILABLE", "injected by /control/sms fail_next")
        ts = time.time()
        record = SmsRecord(id=req.id, to=req.to, text=req.text, created_at=_iso(ts), ts=ts)
        self._record("sms", record)
        self._apply_sms(record)
        return 200, record

    def _apply_sms(self, record: SmsRecord) -> None:
        self._sms[record.id] = record

    def sms_sent(self, to: str | None = None) -> list[SmsRecord]:
        """The messages taken, oldest first; with `to`, only those to that number."""
        return [m for m in self._sms.values() if to is None or m.to == to]

    def control_sms(self, control: SmsControl) -> Result:
        if control.fail_next < 0:
            return _error(400, "INVALID_REQUEST", "fail_next must be >= 0")
        self._sms_fail_next = control.fail_next
        return 200, {"fail_next": self._sms_fail_next, "sent": len(self._sms)}

    def reset(self) -> None:
        """Forget every debit, refund, credit, top-up, bundle, account override and request
        count."""
        if self._journal is not None:
            self._journal.truncate()
        self._clear()

    def _clear(self) -> None:
        self._accounts.clear()
        self._debits.clear()
        self._refunds.clear()
        self._credits.clear()
        self._topups.clear()
        self._bundles.clear()
        self._sms.clear()
        self._sms_fail_next = 0
        self._ledger.clear()
        self._debited_total = self._refunded_total = self._credited_total = 0
        self._topped_up_total = 0
        self.requests_by_op.clear()
        self.peak_in_flight = self.in_flight
        self._peak_debits = dict(self._debits_in_flight)

    def ledger(self, since: float | None = None, until: float | None = None) -> list[LedgerEntry]:
        """Money movements (debits, refunds, credits, top-ups) with ``since <= ts < until``
        (epoch seconds), oldest first."""
        return [
            entry
            for entry in self._ledger
            if (since is None or entry.ts >= since) and (until is None or entry.ts < until)
        ]

    def stats(self, msisdn: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "debits": len(self._debits),
            "refunds": len(self._refunds),
            "debited_total": self._debited_total,
            "refunded_total": self._refunded_total,
            "credits": len(self._credits),
            "credited_total": self._credited_total,
            "topups": len(self._topups),
            "topped_up_total": self._topped_up_total,
            "notifications": self._notifications(),
            "provisioned": len(self._bundles),
            "sms_sent": len(self._sms),
            "requests_by_op": dict(sorted(self.requests_by_op.items())),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "max_concurrent_debits_per_msisdn": max(self._peak_debits.values(), default=0),
        }
        if msisdn is not None and is_valid_msisdn(msisdn):
            account = self._account(msisdn)
            out["per_msisdn"] = {
                "msisdn": msisdn,
                "balance": account.balance,
                "line_status": account.line_status,
                "debits": account.debits,
                "debited_total": account.debited_total,
                "refunds": account.refunds,
                "refunded_total": account.refunded_total,
                "credits": account.credits,
                "credited_total": account.credited_total,
                "topups": account.topups,
                "topped_up_total": account.topped_up_total,
                "provisioned": account.provisioned,
                "max_concurrent_debits": self._peak_debits.get(msisdn, 0),
            }
        return out

    def _notifications(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for topup in self._topups.values():
            status = topup.notification.status
            counts[status] = counts.get(status, 0) + 1
        return dict(sorted(counts.items()))

    def statistics(self) -> SimulatorStatistics:
        return SimulatorStatistics(
            accounts=len(self._accounts),
            debits=len(self._debits),
            refunds=len(self._refunds),
            debited_total=self._debited_total,
            refunded_total=self._refunded_total,
            credits=len(self._credits),
            credited_total=self._credited_total,
            topups=len(self._topups),
            topped_up_total=self._topped_up_total,
            provisioned=len(self._bundles),
            requests=sum(self.requests_by_op.values()),
            in_flight=self.in_flight,
            peak_in_flight=self.peak_in_flight,
            journal_records=0 if self._journal is None else self._journal.appended,
        )


@asynccontextmanager
async def open_simulator(config: SimulatorConfig) -> AsyncIterator[Simulator]:
    """A simulator, its journal (if ``config.state_dir``) opened and replayed off the loop."""
    simulator = await trio.to_thread.run_sync(Simulator.open, config)
    try:
        yield simulator
    finally:
        simulator.close()


def _replay_or_refusal(kind: str, existing: DebitRecord | CreditRecord | None,
                       req: DebitRequest | CreditRequest) -> Result | None:
    """What a debit or credit answers without touching a balance: the stored record again for
    the same id and body, 409 for the same id with another body, 400 for a bad id, msisdn or
    amount; None when it is a new, well-formed one."""
    if existing is not None:
        if existing.msisdn != req.msisdn or existing.amount != req.amount:
            return _error(
                409,
                "IDEMPOTENCY_MISMATCH",
                f"{kind} {req.id!r} already exists with another msisdn/amount",
            )
        return 200, existing
    if (bad := _check_id(req.id)) is not None:
        return bad
    if not is_valid_msisdn(req.msisdn):
        return _error(400, "INVALID_MSISDN", "msisdn must be 8-15 digits")
    if req.amount <= 0:
        return _error(400, "INVALID_AMOUNT", "amount must be a positive integer")
    return None


def _refused_if_inactive(account: _AccountState) -> Result | None:
    """403 LINE_NOT_ACTIVE for a line money cannot move on (debits, credits, top-ups)."""
    if account.line_status != "active":
        return _error(
            403, "LINE_NOT_ACTIVE", f"line is {account.line_status}",
            line_status=account.line_status,
        )
    return None
