"""Input validation for the API: each check names the field it refuses."""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec

from gestor.api._problems import ApiProblem

_MSISDN = re.compile(r"\+?([1-9][0-9]{7,14})")
_KEY = re.compile(r"[\x21-\x7e]{1,200}")
CHANNELS = frozenset({"ussd", "app", "ivr", "web", "retail", "api"})
_PURCHASE_FIELDS = frozenset({"msisdn", "bono_id", "channel"})


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
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiProblem(
            400, "INVALID_TRANSACTION_ID", "the transaction id must be a UUID", field="id"
        ) from None


def json_object(raw: bytes | str) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ApiProblem(400, "INVALID_JSON", f"the body is not valid JSON: {exc}",
                         field="body") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "INVALID_JSON", "the body must be a JSON object", field="body")
    return body


def purchase_body(body: dict[str, Any]) -> tuple[str, str, str]:
    unknown = sorted(set(body) - _PURCHASE_FIELDS)
    if unknown:
        raise ApiProblem(422, "UNKNOWN_FIELD", f"unknown field {unknown[0]!r}", field=unknown[0])
    if "msisdn" not in body:
        raise ApiProblem(422, "MISSING_FIELD", "msisdn is required", field="msisdn")
    if "bono_id" not in body:
        raise ApiProblem(422, "MISSING_FIELD", "bono_id is required", field="bono_id")
    bono = body["bono_id"]
    if not isinstance(bono, str) or not bono or len(bono) > 64:
        raise ApiProblem(422, "INVALID_BONO_ID", "bono_id must be a non-empty string",
                         field="bono_id")
    return msisdn(body["msisdn"]), bono, channel(body.get("channel"))


def prefer_wait(header: str | None, max_wait: float) -> float:
    """Seconds from `Prefer: wait=N` (RFC 7240), capped at `max_wait`; 0 when absent."""
    if not header:
        return 0.0
    for part in header.split(","):
        for token in part.split(";"):
            name, _, value = token.strip().partition("=")
            if name.strip().lower() == "wait":
                try:
                    seconds = float(value.strip())
                except ValueError:
                    raise ApiProblem(400, "INVALID_PREFER", "Prefer: wait=N needs a number of "
                                     "seconds", field="Prefer") from None
                if seconds < 0 or seconds != seconds:
                    raise ApiProblem(400, "INVALID_PREFER", "Prefer: wait=N must be >= 0",
                                     field="Prefer")
                return min(seconds, max_wait)
    return 0.0
