"""Who is calling, and what they may do: API keys, their scopes and roles, checked before each
route; never logged, never echoed.

Every /v1 request is authenticated before its route runs, and the caller, a `Principal`
(gestor/keys.py), is kept on `quart.g.principal`:

* `Authorization: Bearer <key>`: a stored key (`gk_<id>_<secret>`, `gestor keys create`), a
  `GESTOR_API_KEYS` bootstrap channel key, or the bootstrap admin key (`GESTOR_ADMIN_KEY` or
  `<data dir>/admin.key`). A wrong key is 401 `UNAUTHORIZED`; a revoked or expired one 401
  `KEY_REVOKED` / `KEY_EXPIRED` (said only to whoever holds its secret).
* No key, bound to a loopback address and no channel key configured (no `GESTOR_API_KEYS`, no
  active channel key stored): the open mode of a developer's machine. Channel calls, reads and
  the alarm feed are served; `X-Client-Id` names the client. Anywhere else no key is 401.

Channel calls need a channel key whose scopes cover them (`403 FORBIDDEN_SCOPE` naming the
missing `scope`: `call:purchase`, `channel:web`, `msisdn:5491...`, `read:all`); operator keys may
only read. Admin routes need an operator key whose role reaches the route's (`ROUTE_ROLES`:
403 `FORBIDDEN_ROLE` naming the `role`); the alarm feed and `/metrics` need `viewer` (both open
in the open mode). The operator recorded
for a change is the key's name, never a header. A browser, which cannot set a websocket's
headers, offers its key as a subprotocol (`gestor.key.<base64url>`, beside `gestor.v1`, the one
the server picks): never in the URL, which access logs record.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
from datetime import UTC, datetime
from typing import Any

from quart import current_app, g, request, websocket

from gestor.api._problems import ApiProblem
from gestor.keyring import KeyRing
from gestor.keys import (
    BOOTSTRAP_ADMIN,
    Principal,
    bootstrap_channel,
    is_loopback,
    open_principal,
    parse,
    principal_of,
    secret_matches,
)
from gestor.model import Actor, Transaction
from gestor.settings import Settings

logger = logging.getLogger("gestor.api")

_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,64}")

#: The role each admin route needs, by (method, route rule). A route missing here needs
#: `admin` (and is logged): tests/integration/test_keys_routes.py holds every route to a line.
ROUTE_ROLES: dict[tuple[str, str], str] = {
    ("GET", "/v1/admin/statistics"): "viewer",
    ("GET", "/v1/admin/reconciliation"): "viewer",
    ("GET", "/v1/admin/alarms"): "viewer",
    ("POST", "/v1/admin/alarms/<raw_id>/resolve"): "operator",
    ("POST", "/v1/admin/alarms/<raw_id>/acknowledge"): "operator",
    ("GET", "/v1/admin/mobiles/<raw_msisdn>"): "viewer",
    ("GET", "/v1/admin/mobiles/<raw_msisdn>/restrictions"): "viewer",
    ("PUT", "/v1/admin/mobiles/<raw_msisdn>/restrictions/<code>"): "operator",
    ("DELETE", "/v1/admin/mobiles/<raw_msisdn>/restrictions/<code>"): "operator",
    ("GET", "/v1/admin/rules"): "viewer",
    ("GET", "/v1/admin/rules/<raw>"): "viewer",
    # Checking a rule set changes nothing: as a read.
    ("POST", "/v1/admin/rules/validate"): "viewer",
    ("POST", "/v1/admin/rules/dry-run"): "viewer",
    ("POST", "/v1/admin/rules/<raw>/dry-run"): "viewer",
    ("POST", "/v1/admin/rules"): "admin",
    ("POST", "/v1/admin/rules/<raw>/activate"): "admin",
    ("GET", "/v1/admin/catalogue"): "viewer",
    ("GET", "/v1/admin/catalogue/<raw>"): "viewer",
    ("POST", "/v1/admin/catalogue/validate"): "viewer",  # changes nothing: as a read
    ("POST", "/v1/admin/catalogue"): "admin",
    ("POST", "/v1/admin/catalogue/<raw>/activate"): "admin",
    ("GET", "/v1/admin/audit"): "viewer",
    ("GET", "/v1/admin/notifications"): "viewer",
    ("GET", "/v1/admin/rates"): "viewer",
    ("GET", "/v1/admin/me"): "viewer",
    ("GET", "/v1/admin/reports/series"): "viewer",
    ("GET", "/v1/admin/reports/breakdown"): "viewer",
    ("GET", "/v1/admin/reports/peak-hours"): "viewer",
    ("GET", "/v1/admin/reports/latency"): "viewer",
    ("GET", "/v1/admin/keys"): "admin",
    ("POST", "/v1/admin/keys"): "admin",
    ("POST", "/v1/admin/keys/<key_id>/revoke"): "admin",
    ("POST", "/v1/admin/keys/<key_id>/rotate"): "admin",
    ("GET", "/v1/admin/ledger/trial-balance"): "viewer",
    ("GET", "/v1/admin/ledger/entries"): "viewer",
    ("POST", "/v1/admin/ledger/closes"): "operator",
    ("GET", "/v1/admin/ledger/closes/<raw_day>"): "viewer",
    # Outside /v1: Prometheus scrapes with a viewer key (open, as the alarm feed, on a
    # loopback server without channel keys).
    ("GET", "/metrics"): "viewer",
}

#: The call each channel route is, by (method, route rule) (the scopes `call:<call>`).
ROUTE_CALLS: dict[tuple[str, str], str] = {
    ("POST", "/v1/purchases"): "purchase",
    ("POST", "/v1/transfers"): "transfers",
    ("POST", "/v1/advances"): "advances",
    ("POST", "/v1/topups"): "topups",
    ("GET", "/v1/mobiles/<raw_msisdn>/bonos"): "list",
    ("GET", "/v1/transactions/<tx_id>"): "status",
    ("GET", "/v1/mobiles/<raw_msisdn>/transactions"): "status",
}

#: The websocket routes and the role they need.
WEBSOCKET_ROLES: dict[str, str] = {"/v1/alarms": "viewer"}

#: A browser cannot set headers on a websocket: it offers its key as a subprotocol,
#: `gestor.key.<the key in base64url, unpadded>`, next to `gestor.v1`, the one the server
#: chooses (never the one carrying the key). Not in the URL: URLs are logged.
WEBSOCKET_PROTOCOL = "gestor.v1"
_KEY_PROTOCOL = "gestor.key."

_warned: set[tuple[str, str]] = set()


def _bearer(headers: Any) -> str | None:
    scheme, _, token = str(headers.get("Authorization", "")).partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _equal(token: str, key: str) -> bool:
    return bool(key) and hmac.compare_digest(token.encode(), key.encode())


def _unauthorized(detail: str, code: str = "UNAUTHORIZED") -> ApiProblem:
    return ApiProblem(401, code, detail, field="Authorization",
                      headers={"WWW-Authenticate": 'Bearer realm="gestor"'})


def _keyring() -> KeyRing:
    keyring: KeyRing = current_app.keyring  # type: ignore[attr-defined]
    return keyring


async def is_open(settings: Settings, keyring: KeyRing) -> bool:
    """Whether callers without a key are served: on loopback with no channel key configured."""
    return (is_loopback(settings.bind) and not settings.api_keys
            and not await keyring.has_channel_keys())


def websocket_token(headers: Any) -> str | None:
    """The key a browser offered as a websocket subprotocol (`gestor.key.<base64url>`), if
    any; 401 for one that does not decode."""
    for offered in str(headers.get("Sec-WebSocket-Protocol", "")).split(","):
        offered = offered.strip()
        if offered.startswith(_KEY_PROTOCOL):
            encoded = offered.removeprefix(_KEY_PROTOCOL)
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise _unauthorized("the key offered as a websocket subprotocol is not "
                                    "base64url") from None
    return None


async def authenticate(settings: Settings, keyring: KeyRing, headers: Any,
                       token: str | None = None) -> Principal | None:
    """The caller's principal; None without a key where keys are needed; 401 for a bad key.
    `token`: a key given otherwise than as `Authorization: Bearer` (a websocket's
    subprotocol)."""
    if token is None:
        token = _bearer(headers)
    if token is None or token == "":
        if not await is_open(settings, keyring):
            return None
        client = str(headers.get("X-Client-Id", "public"))
        if not _CLIENT_ID.fullmatch(client):
            raise ApiProblem(400, "INVALID_CLIENT_ID", "X-Client-Id must be 1 to 64 printable "
                             "ASCII characters without spaces", field="X-Client-Id")
        return open_principal(client)
    if _equal(token, settings.admin_key):
        return BOOTSTRAP_ADMIN
    matched = None
    for name, key in settings.api_keys.items():  # every one compared: constant time
        if _equal(token, key):
            matched = name
    if matched is not None:
        return bootstrap_channel(matched)
    parsed = parse(token)
    if parsed is None:
        raise _unauthorized("this API key is not valid")
    key_id, secret = parsed
    record = await keyring.record(key_id)
    if record is None or not secret_matches(record, secret):
        raise _unauthorized("this API key is not valid")
    status = record.status(datetime.now(UTC))
    if status == "revoked":
        raise _unauthorized(f"API key {key_id} was revoked", "KEY_REVOKED")
    if status == "expired":
        raise _unauthorized(f"API key {key_id} has expired", "KEY_EXPIRED")
    return principal_of(record)


def _forbidden_role(role: str, principal: Principal) -> ApiProblem:
    what = (f"role {principal.role}" if principal.kind == "operator"
            else "a channel key" if principal.kind == "channel" else "no key")
    return ApiProblem(403, "FORBIDDEN_ROLE", f"this needs an operator key with role {role} "
                      f"or above; the key used has {what}", field="Authorization", role=role)


def forbidden_scope(scope: str) -> ApiProblem:
    return ApiProblem(403, "FORBIDDEN_SCOPE", f"this API key's scopes do not include {scope}",
                      field="Authorization", scope=scope)


def _route_key(method: str) -> tuple[str, str] | None:
    """(method, rule) of the request's route; None for no route, or an OPTIONS request (it
    only lists methods: any authenticated caller may ask)."""
    rule = request.url_rule
    if rule is None or method == "OPTIONS":
        return None
    return ("GET" if method == "HEAD" else method), rule.rule


def _undeclared(route: tuple[str, str]) -> None:
    if route not in _warned:
        _warned.add(route)
        logger.warning("route %s %s declares no role or call: refused to keys below admin",
                       *route)


async def check_request(settings: Settings) -> None:
    """Authenticate a /v1 request and check its route's role or call (`before_request`)."""
    path = request.path
    if not path.startswith("/v1/"):
        route = _route_key(request.method)
        if route is not None and route in ROUTE_ROLES:  # /metrics
            await _check_operator_route(settings, ROUTE_ROLES[route])
        return
    principal = await authenticate(settings, _keyring(), request.headers)
    if principal is not None:
        g.principal = principal
    route = _route_key(request.method)
    if path.startswith("/v1/admin/"):
        if principal is None or principal.kind == "open":
            raise _unauthorized("an operator API key is required (Authorization: Bearer <key>)")
        role = ROUTE_ROLES.get(route, "admin") if route is not None else "viewer"
        if route is not None and route not in ROUTE_ROLES:
            _undeclared(route)
        if not principal.has_role(role):
            raise _forbidden_role(role, principal)
        return
    if principal is None:
        raise _unauthorized("an API key is required (Authorization: Bearer <key>)")
    if route is None or principal.kind == "open":
        return
    call = ROUTE_CALLS.get(route)
    if call is None:  # a route that forgot to say which call it is: fail closed
        _undeclared(route)
        if not principal.has_role("admin"):
            raise forbidden_scope(f"call:{route[0]} {route[1]}")
        return
    missing = principal.missing_call(call)
    if missing is not None:
        raise forbidden_scope(missing)


async def _check_operator_route(settings: Settings, role: str) -> None:
    """A route outside /v1 for operators' tools: an operator key with `role`, or none where
    the server is open."""
    principal = await authenticate(settings, _keyring(), request.headers)
    if principal is None:
        raise _unauthorized("an operator API key is required (Authorization: Bearer <key>)")
    g.principal = principal
    if principal.kind != "open" and not principal.has_role(role):
        raise _forbidden_role(role, principal)


async def check_websocket(settings: Settings) -> None:
    """Authenticate a websocket handshake (`before_websocket`): the alarm feed needs an
    operator key (viewer or above), unless open; the key as `Authorization: Bearer`, or from a
    browser as a subprotocol (`WEBSOCKET_PROTOCOL`)."""
    headers = websocket.headers
    token = _bearer(headers)
    principal = await authenticate(settings, _keyring(), headers,
                                   token if token is not None else websocket_token(headers))
    if principal is None:
        raise _unauthorized("an operator API key is required (Authorization: Bearer <key>)")
    g.principal = principal
    role = WEBSOCKET_ROLES.get(websocket.path, "admin")
    if principal.kind != "open" and not principal.has_role(role):
        raise _forbidden_role(role, principal)


# -- what a route asks ---------------------------------------------------------------------------
def principal() -> Principal:
    """The authenticated caller of this request."""
    found: Principal | None = g.get("principal")
    if found is None:  # pragma: no cover - check_request ran first
        raise _unauthorized("an API key is required (Authorization: Bearer <key>)")
    return found


def allow_channel(channel: str) -> None:
    missing = principal().missing_channel(channel)
    if missing is not None:
        raise forbidden_scope(missing)


def allow_msisdn(msisdn: str) -> None:
    missing = principal().missing_msisdn(msisdn)
    if missing is not None:
        raise forbidden_scope(missing)


def allow_read(tx: Transaction) -> None:
    """A transaction may be read by its own client, or by a key granted `read:all`."""
    caller = principal()
    allow_msisdn(tx.msisdn)
    if not caller.reads_all() and tx.client != caller.name:
        raise forbidden_scope("read:all")


def own_client() -> str | None:
    """The client whose transactions alone the caller may read, or None for any."""
    caller = principal()
    return None if caller.reads_all() else caller.name


def request_client(settings: Settings, headers: Any = None) -> str:
    """The calling client's name (the scope of its Idempotency-Keys)."""
    return principal().name


def require_admin(settings: Settings) -> str:
    """The acting operator's name, as changes record it (the route's role was checked before
    it ran)."""
    return acting(settings).name


def acting(settings: Settings) -> Actor:
    """The acting operator (or key) as the audit trail records it: the key's public id and
    name (`Actor("admin", "admin")` for the bootstrap admin key)."""
    return principal().actor
