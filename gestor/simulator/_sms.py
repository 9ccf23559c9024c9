"""The operator's SMS gateway, simulated (platform ``sms``): messages to subscribers, kept so a
test or an operator can read what was sent, idempotent by the sender's ``id``.

Plain records and the pure rules of one message (check, replay or refuse); the simulator
(:mod:`._simulator`) stores them and journals them like its other records.
"""

from __future__ import annotations

import attrs

from ._synthetic import is_valid_msisdn

__all__ = ["MAX_TEXT", "SmsControl", "SmsRecord", "SmsRequest", "sms_refusal"]

#: Characters one message may hold (a few concatenated SMS segments).
MAX_TEXT = 918
_MAX_ID = 128


@attrs.frozen
class SmsRequest:
    to: str
    text: str
    id: str


@attrs.frozen
class SmsRecord:
    id: str
    to: str
    text: str
    created_at: str
    ts: float
    status: str = "sent"


@attrs.frozen
class SmsControl:
    """``PUT /control/sms``: the next ``fail_next`` messages are answered ``503 UNAVAILABLE``
    (and not sent), to test a sender's retries deterministically."""

    fail_next: int = 0


def sms_refusal(existing: SmsRecord | None, req: SmsRequest) -> tuple[int, object] | None:
    """The answer to a message without sending it: the stored one again for the same id and
    body, 409 for the same id with another body, 400 for a bad id, number or text; None when it
    is a new, well-formed one."""
    if existing is not None:
        if existing.to != req.to or existing.text != req.text:
            return 409, {"code": "IDEMPOTENCY_MISMATCH",
                         "message": f"message {req.id!r} already exists with another to/text"}
        return 200, existing
    if not req.id or len(req.id) > _MAX_ID:
        return 400, {"code": "INVALID_REQUEST", "message": f"id must be 1..{_MAX_ID} characters"}
    if not is_valid_msisdn(req.to):
        return 400, {"code": "INVALID_MSISDN", "message": "to must be 8-15 digits"}
    if not req.text.strip() or len(req.text) > MAX_TEXT:
        return 400, {"code": "INVALID_TEXT",
                     "message": f"text must be 1..{MAX_TEXT} characters, not all blank"}
    return None
