"""Who is calling: channel API keys and the admin key, compared in constant time, never logged.

Without channel keys configured, channel calls are open and `X-Client-Id` names the client (the
scope of Idempotency-Keys). With keys (`GESTOR_API_KEYS`), every /v1 call needs one, and its
name is the client. Admin calls always need the admin key: none or a wrong key is 401, a valid
channel key 403.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

from quart import request

from gestor.api._problems import ApiProblem
from gestor.model import Actor
from gestor.settings import Settings

_OPERATOR = re.compile(r"[\w.@-]{1,64}", re.ASCII)
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,64}")


def _bearer(headers: Any) -> bytes | None:
    scheme, _, token = str(headers.get("Authorization", "")).partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" else None


def _matches(token: bytes | None, key: str) -> bool:
    return token is not None and bool(key) and hmac.compare_digest(token, key.encode())


def _channel_name(token: bytes | None, settings: Settings) -> str | None:
    for name, key in settings.api_keys.items():
        if _matches(token, key):
            return name
    return None


def request_client(settings: Settings, headers: Any = None) -> str:
    """The calling client's name, or a 401 problem."""
    headers = headers if headers is not None else request.headers
    if not settings.api_keys:
        client = str(headers.get("X-Client-Id", "public"))
        if not _CLIENT_ID.fullmatch(client):
            raise ApiProblem(400, "INVALID_CLIENT_ID", "X-Client-Id must be 1 to 64 printable "
                             "ASCII characters without spaces", field="X-Client-Id")
        return client
    token = _bearer(headers)
    name = _channel_name(token, settings)
    if name is not None:
        return name
    if _matches(token, settings.admin_key):
        return "admin"
    raise ApiProblem(401, "UNAUTHORIZED", "an API key is required (Authorization: Bearer <key>)",
                     field="Authorization", headers={"WWW-Authenticate": 'Bearer realm="gestor"'})


def require_admin(settings: Settings) -> str:
    """The acting admin ("admin", or "admin:<X-Operator>"), or a 401/403 problem."""
    token = _bearer(request.headers)
    if _matches(token, settings.admin_key):
        operator = request.headers.get("X-Operator", "")
        return f"admin:{operator}" if _OPERATOR.fullmatch(operator) else "admin"
    if _channel_name(token, settings) is not None:
        raise ApiProblem(403, "FORBIDDEN", "this API key may not use admin operations",
                         field="Authorization")
    raise ApiProblem(401, "UNAUTHORIZED", "an admin API key is required "
                     "(Authorization: Bearer <key>)", field="Authorization",
                     headers={"WWW-Authenticate": 'Bearer realm="gestor-admin"'})


def acting(settings: Settings) -> Actor:
    """Who is making this admin call, for the audit trail: the acting key's public id and its
    name (today the one admin key, named as `require_admin` names it); a 401/403 problem if the
    caller may not use admin operations."""
    return Actor("admin-key", require_admin(settings))
