"""Decoding database rows into domain records (and the JSON columns both ways)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from gestor.model import Alarm, HistoryEntry, Reason, Severity, Transaction, TxKind, TxState

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.decode


def encode_history(entries: Iterable[HistoryEntry]) -> str:
    return _json_encode([e.as_dict() for e in entries]).decode()


def encode_reasons(reasons: Iterable[Reason]) -> str:
    return _json_encode([r.as_dict() for r in reasons]).decode()


def encode_json(value: Any) -> str:
    return _json_encode(value).decode()


def decode_json(raw: str) -> Any:
    return _json_decode(raw)


def _history(raw: str) -> tuple[HistoryEntry, ...]:
    return tuple(
        # In UTC like the row's columns (the database stamps entries in its session time zone).
        HistoryEntry(TxState(e["state"]), datetime.fromisoformat(e["at"]).astimezone(UTC),
                     e.get("note"))
        for e in _json_decode(raw)
    )


def _reasons(raw: str) -> tuple[Reason, ...]:
    return tuple(Reason(r["code"], r["message"], r.get("rule")) for r in _json_decode(raw))


def transaction_from_row(row: Mapping[str, Any]) -> Transaction:
    return Transaction(
        id=row["id"],
        msisdn=row["msisdn"],
        bono_id=row["bono_id"] or "",
        channel=row["channel"],
        client=row["client"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        state=TxState(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        price=row["price"],
        currency=row["currency"],
        operation=row["operation"],
        profile_id=row["profile_id"],
        rules_version=row["rules_version"],
        reasons=_reasons(row["reasons"]),
        history=_history(row["history"]),
        catalogue_version=row.get("catalogue_version"),
        kind=TxKind(row["kind"]),
        beneficiary=row["beneficiary"],
        amount=row["amount"],
        fee=row["fee"],
        collected=row["collected"],
        owed=row["owed"],
        step=row["step"],
        steps=tuple(row["steps"] or ()),
        reference=row["reference"],
    )


def alarm_from_row(row: Mapping[str, Any]) -> Alarm:
    return Alarm(
        id=row["id"],
        at=row["at"],
        kind=row["kind"],
        severity=Severity(row["severity"]),
        message=row["message"],
        msisdn=row["msisdn"],
        transaction_id=row["transaction_id"],
        details=_json_decode(row["details"]),
        subject=row.get("subject"),
        resolved_by=row.get("resolved_by"),
        resolved_at=row.get("resolved_at"),
        acknowledged_by=row.get("acknowledged_by"),
        acknowledged_at=row.get("acknowledged_at"),
        ack_note=row.get("ack_note"),
    )
