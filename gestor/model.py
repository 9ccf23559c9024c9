"""The domain records every layer shares: transactions, their states and history, alarms.

Plain frozen attrs records with no I/O. `gestor.store` persists them, `gestor.purchase` moves
them through their states, `gestor.api` renders them.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import attrs


class TxState(enum.StrEnum):
    """States of a purchase transaction (DESIGN "A purchase, step by step")."""

    RECEIVED = "received"
    PROFILED = "profiled"
    VALIDATED = "validated"
    CHARGED = "charged"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"
    REFUNDED = "refunded"
    INCONSISTENT = "inconsistent"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {TxState.COMPLETED, TxState.REJECTED, TxState.FAILED, TxState.REFUNDED}
)
#: Non-terminal states: a transaction in one of these is "pending" for its msisdn (DESIGN D3).
#: `inconsistent` counts: money is in limbo until the recoverer or a human settles it.
PENDING_STATES = frozenset(s for s in TxState if s not in TERMINAL_STATES)


class TxKind(enum.StrEnum):
    """What a movement does (DESIGN D10). All share the states, the guard and the saga."""

    PURCHASE = "purchase"  # a bono, for the payer or for a beneficiary
    TRANSFER = "transfer"  # airtime from the payer to a beneficiary
    ADVANCE = "advance"  # a balance advance credited to the payer, owed until top-ups settle it
    TOPUP = "topup"  # a recharge the payer made: collects what the payer's advances still owe


class Role(enum.StrEnum):
    """A mobile's part in a movement."""

    PAYER = "payer"
    BENEFICIARY = "beneficiary"


@attrs.frozen
class HistoryEntry:
    """One step of a transaction's life, as shown in its history."""

    state: TxState
    at: datetime
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state.value, "at": self.at.isoformat()}
        if self.note:
            out["note"] = self.note
        return out


@attrs.frozen
class Reason:
    """Why a transaction was rejected or failed: a stable code and a human message."""

    code: str
    message: str
    rule_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.rule_id:
            out["rule"] = self.rule_id
        return out


@attrs.frozen
class NewTransaction:
    """A movement as accepted from a channel, before anything external happened. `msisdn` is
    the payer; `bono_id` is "" for a movement that is not a purchase."""

    id: uuid.UUID
    msisdn: str
    bono_id: str
    channel: str
    client: str
    idempotency_key: str
    request_hash: str
    at: datetime  # when the request arrived, on the worker's clock (not the record's time)
    #: The acceptance deadline: the INSERT refuses the row once the database's clock has passed
    #: it, so a statement that reaches a stalled database too late writes nothing.
    accept_by: datetime | None = None
    kind: TxKind = TxKind.PURCHASE
    beneficiary: str | None = None
    amount: int | None = None  # a transfer's, advance's or top-up's amount
    reference: str | None = None  # a top-up's reference on the recharge platform

    @property
    def mobiles(self) -> tuple[str, ...]:
        """Every mobile it touches (each one guarded), in msisdn order."""
        return tuple(sorted({self.msisdn, self.beneficiary or self.msisdn}))


@attrs.frozen
class Transaction:
    """A movement as persisted (a purchase unless `kind` says otherwise)."""

    id: uuid.UUID
    msisdn: str
    bono_id: str
    channel: str
    client: str
    idempotency_key: str
    request_hash: str
    state: TxState
    created_at: datetime
    updated_at: datetime
    price: int | None = None
    currency: str | None = None
    operation: str | None = None
    profile_id: str | None = None
    rules_version: int | None = None
    reasons: tuple[Reason, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    catalogue_version: int | None = None
    kind: TxKind = TxKind.PURCHASE
    beneficiary: str | None = None
    amount: int | None = None
    fee: int | None = None
    #: What a top-up collected of the payer's debt; what an advance left owed (amount + fee).
    collected: int | None = None
    owed: int | None = None
    #: Its operation's steps as decided (`do` or `do:undo`) and how many are done (durable
    #: before the next one starts).
    steps: tuple[str, ...] = ()
    step: int = 0
    reference: str | None = None

    @property
    def pending(self) -> bool:
        return not self.state.terminal

    @property
    def receiver(self) -> str:
        """The mobile that receives the bono or the airtime."""
        return self.beneficiary or self.msisdn

    def role_of(self, msisdn: str) -> Role:
        return Role.PAYER if msisdn == self.msisdn else Role.BENEFICIARY


@attrs.frozen
class Transition:
    """A durable move of one transaction from `expect` to `state` (optimistic: it applies only
    if the stored state is still `expect`). `events` are appended to the history; the optional
    fields, when given, are set on the row."""

    id: uuid.UUID
    expect: TxState
    state: TxState
    at: datetime
    events: tuple[HistoryEntry, ...]
    price: int | None = None
    currency: str | None = None
    operation: str | None = None
    profile_id: str | None = None
    rules_version: int | None = None
    reasons: tuple[Reason, ...] | None = None
    catalogue_version: int | None = None
    amount: int | None = None
    fee: int | None = None
    collected: int | None = None
    owed: int | None = None
    step: int | None = None
    steps: tuple[str, ...] | None = None
    segment: str | None = None  # the customer's segment, set with the verdict (for reports)


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@attrs.frozen
class NewAlarm:
    """An alarm to raise (persisted first, then fanned out: DESIGN D8)."""

    kind: str
    severity: Severity
    message: str
    msisdn: str | None = None
    transaction_id: uuid.UUID | None = None
    details: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Alarm:
    """A persisted alarm event. `id` is monotonic: clients replay with `?since=<id>`. An
    alarm announced while the database is down has id 0 until it is stored."""

    id: int
    at: datetime
    kind: str
    severity: Severity
    message: str
    msisdn: str | None
    transaction_id: uuid.UUID | None
    details: dict[str, Any]
    #: What an alarm that must be resolved is about (transaction id, platform, '' for the
    #: system); None for an alarm that is an event only.
    subject: str | None = None
    #: The `resolved` alarm that settled it, and when (None while open).
    resolved_by: int | None = None
    resolved_at: datetime | None = None
    #: Who acknowledged it (the acting key's name), when, and what they said (None if nobody).
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    ack_note: str | None = None

    @property
    def state(self) -> str | None:
        """'open' or 'resolved' for an alarm that must be resolved; None for an event. An
        acknowledged alarm is still open: its cause has not settled."""
        if self.resolved_at is not None:
            return "resolved"
        return None if self.subject is None else "open"

    def lifecycle(self) -> dict[str, Any]:
        """Where the alarm stands: its state, what resolved it, who acknowledged it."""
        acknowledged = None
        if self.acknowledged_at is not None:
            acknowledged = {"by": self.acknowledged_by, "at": self.acknowledged_at.isoformat(),
                            "note": self.ack_note or ""}
        return {
            "state": self.state,
            "resolved_by": self.resolved_by,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "acknowledged": acknowledged,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id or None,  # 0: announced before it could be stored (database down)
            "at": self.at.isoformat(),
            "kind": self.kind,
            "severity": self.severity.value,
            "message": self.message,
            "msisdn": self.msisdn,
            "transaction_id": str(self.transaction_id) if self.transaction_id else None,
            "details": self.details,
        }


@attrs.frozen
class PurchaseCounters:
    """What a subscriber did recently: the `history` the rules see. Purchases are the bonos it
    bought (for itself or another mobile); gifts, the bonos and airtime it gave another mobile;
    `owed`, what its advances still owe after its top-ups (whenever they were made)."""

    purchases_today: int = 0
    purchases_month: int = 0
    spent_today: int = 0
    spent_month: int = 0
    last_purchase_at: datetime | None = None
    gifts_today: int = 0
    gifted_today: int = 0
    owed: int = 0


@attrs.frozen
class SubscriberSnapshot:
    """Everything a subscriber actor loads when it activates, in one read. (A pending purchase
    in the database is not part of it: the database guard answers for those.)"""

    counters: PurchaseCounters
    restrictions: tuple[str, ...]


@attrs.frozen
class Actor:
    """Who made an admin or key action, as the audit trail records it: the acting key's public
    id (never the key itself) and its name (`cli:<user>` for the command line)."""

    id: str
    name: str
