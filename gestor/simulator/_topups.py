"""Top-ups: recharges a subscriber makes on the operator's recharge platform, and the state of
the notification the simulator sends Gestor about each one.

Plain records (the JSON answers of ``/control/topups`` and the journal's lines) and the pure
rules of a notification's life; the delivery itself is :mod:`._notifier`'s.
"""

from __future__ import annotations

import attrs

__all__ = [
    "NOTICE_DELIVERED",
    "NOTICE_DISABLED",
    "NOTICE_PENDING",
    "NOTICE_REJECTED",
    "Notification",
    "TopupRecord",
    "TopupRequest",
    "is_final_answer",
]

#: No notification: ``topup_notify_url`` was not configured when the top-up was made.
NOTICE_DISABLED = "disabled"
#: Not delivered yet: being tried, or waiting for the next attempt (or for a restart).
NOTICE_PENDING = "pending"
#: Gestor answered 2xx.
NOTICE_DELIVERED = "delivered"
#: Gestor answered a 4xx that retrying cannot change: the notifier gave up.
NOTICE_REJECTED = "rejected"

#: 4xx answers that mean "not now" rather than "no": retried like a 5xx.
_RETRYABLE_4XX = frozenset({408, 425, 429})


def is_final_answer(status: int) -> bool:
    """Whether an answer with this HTTP status ends the notification's retries."""
    return 200 <= status < 300 or (400 <= status < 500 and status not in _RETRYABLE_4XX)


@attrs.frozen
class TopupRequest:
    msisdn: str
    amount: int
    reference: str | None = None


@attrs.frozen
class Notification:
    """Where the notification of one top-up stands."""

    status: str  # disabled | pending | delivered | rejected
    attempts: int = 0
    last_status: int | None = None  # HTTP status of the last answer, if one came
    last_error: str | None = None  # why the last attempt got no answer (timeout, refused, ...)
    updated_at: str | None = None  # when the last attempt ended

    def after(self, status: int | None, error: str | None, at: str) -> Notification:
        """This notification after one more attempt that got ``status`` (or ``error``)."""
        if status is not None and is_final_answer(status):
            outcome = NOTICE_DELIVERED if status < 300 else NOTICE_REJECTED
        else:
            outcome = NOTICE_PENDING
        return Notification(outcome, self.attempts + 1, status, error, at)


@attrs.frozen
class TopupRecord:
    """A top-up (a recharge, not a Gestor credit) and its notification."""

    reference: str
    msisdn: str
    amount: int
    balance_after: int
    created_at: str
    ts: float
    notification: Notification
    status: str = "topped_up"
