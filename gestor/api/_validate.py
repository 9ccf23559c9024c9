"""Input validation for the API: each check names the field it refuses."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, get_args

from gestor.api._body import json_object
from gestor.api._decode import body_as
from gestor.api._problems import ApiProblem
from gestor.api._requests import (
    INTEGER_MAX,
    MAX_SECONDS,
    MSISDN_PATTERN,
    ChannelName,
    PurchaseRequest,
)

__all__ = [
    "CHANNELS", "INTEGER_MAX", "MAX_SECONDS", "alarm_since", "beneficiary", "bono_id", "channel",
    "flag",
    "idempotency_key", "instant",
    "json_object", "limit", "msisdn", "prefer_wait", "purchase_body", "restriction_code",
    "rule_version", "transaction_id", "whole_number",
]

_MSISDN = re.compile(MSISDN_PATTERN)
_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_DIGITS = re.compile(r"[0-9]{1,20}")  # ASCII only: '²'.isdigit() is True in Python
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}")
_CODE = re.compile(r"[A-Z0-9_]{1,40}")
_SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
#: Largest values of PostgreSQL's bigint (alarm ids) and integer (rule-set versions): ids
#: beyond them cannot exist.
BIGINT_MAX = 2**63 - 1
#: Times the API takes (reconciliation periods, restriction ends) lie within these years.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
CHANNELS = frozenset(get_args(ChannelName))


def msisdn(value: Any, field: str = "msisdn") -> str:
    """An E.164 number: 8 to 15 digits, optional leading +, no leading zero. Returns digits."""
    if not isinstance(value, str):
        raise ApiProblem(422, "INVALID_MSISDN", f"{field} must be a string of digits", field=field)
    match = _MSISDN.fullmatch(value)
    if match is None:
        raise ApiProblem(
            422, "INVALID_MSISDN",
            f"{field} must be an E.164 number: 8 to 15 digits with the country code, "
            f"no leading zero (got {value[:32]!r})",
            field=field,
        )
    return match.group(1)


def beneficiary(value: Any, payer: str, field: str = "beneficiary") -> str:
    """Another mobile than the payer's (`payer` in its normal form)."""
    found = msisdn(value, field)
    if found == payer:
        raise ApiProblem(422, "INVALID_BENEFICIARY",
                         f"{field} must be another mobile than msisdn", field=field)
    return found


def channel(value: Any, field: str = "channel") -> str:
    if value is None:
        return "api"
    if not isinstance(value, str) or value not in CHANNELS:
        raise ApiProblem(
            422, "INVALID_CHANNEL", f"{field} must be one of {', '.join(sorted(CHANNELS))}",
            field=field,
        )
    return value


def idempotency_key(value: str | None) -> str:
    if value is None:
        raise ApiProblem(
            400, "IDEMPOTENCY_KEY_REQUIRED",
            "an Idempotency-Key header is required so that retries never buy twice",
            field="Idempotency-Key",
        )
    if not _KEY.fullmatch(value):
        raise ApiProblem(
            400, "INVALID_IDEMPOTENCY_KEY",
            "Idempotency-Key must be 1 to 200 printable ASCII characters without spaces",
            field="Idempotency-Key",
        )
    return value


def transaction_id(value: str) -> uuid.UUID:
    if not _UUID.fullmatch(value):
        raise ApiProblem(
            400, "INVALID_TRANSACTION_ID", "the transaction id must be a UUID", field="id"
        )
    return uuid.UUID(value)


def whole_number(raw: str, field: str, code: str, low: int = 0, high: int = BIGINT_MAX) -> int:
    """`raw` as an int in low..high: ASCII digits only, at most 20 of them."""
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiProblem(400, code, f"{field} must be a whole number from {low} to {high}",
                         field=field)
    return int(raw)


def limit(raw: str | None, default: int = 50, high: int = 500) -> int:
    """The `limit` query parameter of a listing."""
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= high:
        raise ApiProblem(422, "INVALID_LIMIT", f"limit must be 1..{high}", field="limit")
    return int(raw)


def alarm_since(raw: str | None) -> int | None:
    """`?since=<alarm id>` of the alarm feed: None (live only) or the last id seen."""
    if raw is None:
        return None
    return whole_number(raw, "since", "INVALID_SINCE")


def rule_version(raw: str) -> int:
    """A rule-set version in a path: a whole number 1..INTEGER_MAX."""
    return whole_number(raw, "version", "INVALID_VERSION", 1, INTEGER_MAX)


def restriction_code(raw: str) -> str:
    if not _CODE.fullmatch(raw):
        raise ApiProblem(422, "INVALID_CODE", "a restriction code is 1-40 of A-Z, 0-9, _",
                         field="code")
    return raw


def bono_id(value: Any, field: str = "bono_id") -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ApiProblem(422, "INVALID_BONO_ID", f"{field} must be a non-empty string "
                         "of at most 64 characters", field=field)
    return value


def instant(raw: Any, field: str, default: datetime) -> datetime:
    """An ISO 8601 time (UTC when it names no offset) within EARLIEST..LATEST."""
    if raw is None:
        return default
    if not isinstance(raw, str) or not raw.isascii() or len(raw) > 40:
        raise ApiProblem(422, "INVALID_TIME", f"{field} must be an ISO 8601 time", field=field)
    try:
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiProblem(422, "INVALID_TIME", f"{field} must be an ISO 8601 time",
                         field=field) from None
    if not EARLIEST <= value < LATEST:
        raise ApiProblem(422, "INVALID_TIME", f"{field} must lie between "
                         f"{EARLIEST.date()} and {LATEST.date()}", field=field)
    return value


def flag(raw: str | None, field: str) -> bool:
    """A boolean query parameter: true/false, 1/0, yes/no (any case); absent is false."""
    if raw is None:
        return False
    value = raw.lower()
    if value in {"1", "true", "yes"}:
        return True
    if value in {"0", "false", "no", ""}:
        return False
    raise ApiProblem(422, "INVALID_FLAG", f"{field} must be true or false", field=field)


def purchase_body(body: dict[str, Any]) -> tuple[str, str, str, str | None]:
    """(msisdn in its normal form, bono_id, channel, beneficiary in its normal form or None)
    of a purchase body."""
    wanted = body_as(PurchaseRequest, body)
    payer = msisdn(wanted.msisdn)
    other = None if wanted.beneficiary is None else beneficiary(wanted.beneficiary, payer)
    return payer, bono_id(wanted.bono_id), channel(wanted.channel), other


def prefer_wait(header: str | None, max_wait: float) -> float:
    """Seconds from `Prefer: wait=N` (RFC 7240), capped at `max_wait`; 0 when absent."""
    if not header:
        return 0.0
    for part in header.split(","):
        for token in part.split(";"):
            name, _, value = token.strip().partition("=")
            if name.strip().lower() == "wait":
                if not _SECONDS.fullmatch(value.strip()):
                    raise ApiProblem(400, "INVALID_PREFER", "Prefer: wait=N needs a number of "
                                     "seconds (N >= 0)", field="Prefer")
                return min(float(value.strip()), max_wait)
    return 0.0
