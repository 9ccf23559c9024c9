"""What can go wrong when calling a platform, sorted by what it means for the caller.

* :class:`PlatformRejected` - a definite business "no": nothing happened.
* :class:`PlatformUnavailable` - the request was definitely not performed (and
  :class:`CircuitOpen`, its subclass, when it was not even sent).
* :class:`OutcomeUnknown` - a mutating request may or may not have been performed: resolve it
  by asking (``lookup_debit``) or by retrying with the same id, never by guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "CircuitOpen",
    "OutcomeUnknown",
    "PlatformError",
    "PlatformRejected",
    "PlatformUnavailable",
]


class PlatformError(Exception):
    """Base of every platform failure; ``platform`` is ``dwh``, ``ocs`` or ``prov``."""

    def __init__(self, platform: str, message: str) -> None:
        super().__init__(f"{platform}: {message}")
        self.platform = platform
        self.message = message


class PlatformRejected(PlatformError):
    """The platform answered a definite "no" (4xx with a ``code``); nothing happened.

    ``detail`` is the platform's human-readable message (may be empty); ``body`` is the whole
    decoded error answer (e.g. ``body["balance"]`` with ``INSUFFICIENT_BALANCE``).
    """

    def __init__(
        self,
        platform: str,
        code: str,
        status: int,
        detail: str = "",
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(platform, f"{status} {code}" + (f": {detail}" if detail else ""))
        self.code = code
        self.status = status
        self.detail = detail
        self.body: dict[str, Any] = dict(body or {})


class PlatformUnavailable(PlatformError):
    """The request was definitely not performed (connection refused, 5xx, outage, ...).

    ``retryable`` is False when retrying now cannot help (local saturation, open circuit).
    """

    def __init__(
        self, platform: str, message: str, *, status: int | None = None, retryable: bool = True
    ) -> None:
        super().__init__(platform, message)
        self.status = status
        self.retryable = retryable


class CircuitOpen(PlatformUnavailable):
    """The platform's circuit breaker is open: the request was not sent."""

    def __init__(self, platform: str, retry_after: float) -> None:
        super().__init__(
            platform, f"circuit open, next probe in {retry_after:.2f}s", retryable=False
        )
        self.retry_after = retry_after


class OutcomeUnknown(PlatformError):
    """A mutating request was sent but no answer came: it may have been performed."""
