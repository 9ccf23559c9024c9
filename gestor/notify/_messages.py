"""What each notification says: an alarm's e-mail (or short text) to operators, and the text a
subscriber gets when a movement is refunded or being settled after an inconsistency, from the
configured templates in the subscriber's language. Pure functions of records."""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs

from gestor.model import Alarm, Transaction

__all__ = ["Message", "alarm_email", "alarm_text", "movement_text", "price_of"]

_SMS_ALARM_MAX = 300


@attrs.frozen
class Message:
    subject: str
    body: str


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def alarm_email(alarm: Alarm) -> Message:
    """The e-mail operators get for `alarm`: a subject that says what and how bad, a body
    with everything the alarm carries and where to acknowledge it."""
    subject = (f"[Gestor] {alarm.severity.value.upper()} {alarm.kind} #{alarm.id}: "
               f"{_one_line(alarm.message, 120)}")
    lines = [
        alarm.message,
        "",
        f"alarm:       {alarm.id}",
        f"kind:        {alarm.kind}",
        f"severity:    {alarm.severity.value}",
        f"at:          {alarm.at.isoformat()}",
    ]
    if alarm.msisdn:
        lines.append(f"msisdn:      {alarm.msisdn}")
    if alarm.transaction_id:
        lines.append(f"transaction: {alarm.transaction_id}")
    if alarm.details:
        lines += ["", "details:", json.dumps(alarm.details, indent=2, sort_keys=True,
                                             default=str)]
    lines += ["", f"See it, and acknowledge it, in the console or with "
                  f"POST /v1/admin/alarms/{alarm.id}/acknowledge."]
    return Message(subject, "\n".join(lines) + "\n")


def alarm_text(alarm: Alarm) -> Message:
    """The short text an operator's phone gets for `alarm`."""
    text = _one_line(f"Gestor {alarm.severity.value.upper()} {alarm.kind} #{alarm.id}: "
                     f"{alarm.message}", _SMS_ALARM_MAX)
    return Message(text, text)


def price_of(tx: Transaction) -> int:
    """What the movement took from its payer, in minor units: a bono's price, or a transfer's
    amount plus its fee."""
    if tx.price is not None:
        return tx.price
    return (tx.amount or 0) + (tx.fee or 0)


def movement_text(tx: Transaction, event: str, language: str,
                  templates: Mapping[str, Mapping[str, str]], bono_name: str | None) -> Message:
    """The text `tx`'s payer gets when it enters state `event`, in `language`."""
    amount = price_of(tx)
    values = {
        "bono": bono_name or tx.bono_id or tx.kind.value,
        "amount": f"{amount // 100}.{amount % 100:02d}",
        "currency": tx.currency or "",
        "reference": str(tx.id)[:8],
        "msisdn": tx.msisdn,
        "kind": tx.kind.value,
    }
    text = " ".join(templates[event][language].format_map(values).split())
    return Message(text, text)
