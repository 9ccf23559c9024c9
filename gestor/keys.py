"""API keys: their raw form, how a secret is checked, and who a key makes the caller.

A key is `gk_<id>_<secret>`: `id` (12 hex digits) is public and finds the key's row; `secret`
is 256 random bits (43 URL-safe base64 characters). Only `SHA-256(secret)` is stored. A plain
hash is right here, unlike for passwords: a slow, salted hash (bcrypt, Argon2) protects
low-entropy secrets people choose against guessing after a database leak, but a 256-bit random
secret cannot be guessed whatever the hash costs, and SHA-256 keeps checking a key (on every
request whose key is not cached) to a microsecond. It is compared in constant time.

A `Principal` is who a request acts for: a channel key (its name is the client, the scope of
its Idempotency-Keys; its scopes bound what it may do), an operator key (its name is the
operator's, its role bounds what they may do), or, on loopback with no channel keys
configured, an open caller.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Sequence
from datetime import datetime

import attrs

from gestor.model import Actor
from gestor.rules import CHANNELS
from gestor.store import CALLS, ROLES, KeyRecord, NewKey

PREFIX = "gk_"
#: In a key's channels or calls: any.
ANY = "*"
_RAW = re.compile(r"gk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3}


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_key() -> tuple[str, str, bytes]:
    """(public id, raw key to hand out once, hash of its secret to store)."""
    key_id = secrets.token_hex(6)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return key_id, f"{PREFIX}{key_id}_{secret}", digest(secret)


def parse(raw: str) -> tuple[str, str] | None:
    """(id, secret) of a raw key in the `gk_` form, or None."""
    match = _RAW.fullmatch(raw)
    return (match.group(1), match.group(2)) if match else None


def secret_matches(record: KeyRecord, secret: str) -> bool:
    return hmac.compare_digest(record.secret_sha256, digest(secret))


def is_loopback(bind: str) -> bool:
    """Whether `HOST:PORT` listens on a loopback address only."""
    host = bind.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class Principal:
    """Who a request acts for (`quart.g.principal`).

    `kind`: "channel", "operator" or "open"; `key_id`: the key's public id ("env:<name>" for a
    `GESTOR_API_KEYS` key, "admin" for the bootstrap admin key, "open" without a key); `name`:
    the client (channel keys, open callers) or the operator. Channel scopes: `channels` and
    `calls` it may use (None: any), `msisdn_prefixes` (empty: any msisdn), `read_all` (else
    only its own transactions). Operators: `role`.
    """

    kind: str
    key_id: str
    name: str
    role: str | None = None
    channels: frozenset[str] | None = None
    calls: frozenset[str] | None = None
    msisdn_prefixes: tuple[str, ...] = ()
    read_all: bool = False

    @property
    def actor(self) -> Actor:
        return Actor(self.key_id, self.name)

    def has_role(self, role: str) -> bool:
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[role]

    def missing_call(self, call: str) -> str | None:
        """The scope this principal lacks to make `call`, or None."""
        if self.kind == "operator":
            return None if call in ("list", "status") else f"call:{call}"
        return None if self.calls is None or call in self.calls else f"call:{call}"

    def missing_channel(self, channel: str) -> str | None:
        if self.kind == "operator" or self.channels is None or channel in self.channels:
            return None
        return f"channel:{channel}"

    def missing_msisdn(self, msisdn: str) -> str | None:
        if not self.msisdn_prefixes or msisdn.startswith(self.msisdn_prefixes):
            return None
        return f"msisdn:{msisdn}"

    def reads_all(self) -> bool:
        return self.read_all or self.kind != "channel"

    def default_channel(self) -> str | None:
        """The one channel a channel key is limited to, if exactly one."""
        if self.channels is not None and len(self.channels) == 1:
            return next(iter(self.channels))
        return None


def open_principal(client: str) -> Principal:
    """A caller on loopback while no channel key is configured: may do anything a channel
    may, and watch the alarms."""
    return Principal("open", "open", client, read_all=True)


def bootstrap_channel(name: str) -> Principal:
    """A `GESTOR_API_KEYS` key: every channel, call and msisdn, reads everything."""
    return Principal("channel", f"env:{name}", name, read_all=True)


BOOTSTRAP_ADMIN = Principal("operator", "admin", "admin", role="admin")


@functools.lru_cache(maxsize=4096)  # a record read again is the same principal
def principal_of(record: KeyRecord) -> Principal:
    if record.kind == "operator":
        return Principal("operator", record.id, record.name, role=record.role)
    return Principal("channel", record.id, record.name, channels=_any(record.channels),
                     calls=_any(record.calls), msisdn_prefixes=record.msisdn_prefixes,
                     read_all=record.read_all)


def _any(values: tuple[str, ...]) -> frozenset[str] | None:
    """A stored scope list: `*` is any value; an empty list, none."""
    return None if ANY in values else frozenset(values)


# -- a key asked for ------------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
DEFAULT_CALLS = ("list", "purchase", "status")


class KeyRequestError(ValueError):
    """A key asked for is malformed: `field` says which part (`name`, `channels`...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _among(values: Sequence[str], known: Sequence[str] | frozenset[str], field: str
           ) -> tuple[str, ...]:
    bad = [v for v in values if v != ANY and v not in known]
    if bad:
        raise KeyRequestError(field, f"{field} must be among {', '.join(sorted(known))} (or "
                              f"{ANY}: any), got {bad[0]!r}")
    return tuple(sorted(set(values)))


def key_request(name: str, *, role: str | None = None, channels: Sequence[str] = (),
                calls: Sequence[str] = (), msisdn_prefixes: Sequence[str] = (),
                read: str = "own", expires_at: datetime | None = None
                ) -> tuple[NewKey, str]:
    """A new key as asked (an operator key with `role`, else a channel key), checked; and the
    raw key to hand out once. Raises `KeyRequestError` naming the part at fault."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise KeyRequestError("name", "name must be 1 to 64 letters, digits or ._@- (starting "
                              "with a letter or digit)")
    key_id, raw, hashed = new_key()
    if role is not None:
        if role not in ROLES:
            raise KeyRequestError("role", f"role must be one of {', '.join(ROLES)}")
        if channels or calls or msisdn_prefixes or read != "own":
            raise KeyRequestError("role", "an operator key (role) has no channels, calls, "
                                  "msisdn prefixes or read scope")
        return NewKey(key_id, name, "operator", hashed, role=role, expires_at=expires_at), raw
    if not channels:
        raise KeyRequestError("channels", "a channel key needs the channels it may use (or "
                              f"{ANY}); an operator key needs a role")
    prefixes = tuple(sorted(set(msisdn_prefixes)))
    bad = [p for p in prefixes if not p.isascii() or not p.isdigit() or len(p) > 15]
    if bad:
        raise KeyRequestError("msisdn_prefixes", f"an msisdn prefix is up to 15 digits, got "
                              f"{bad[0]!r}")
    if read not in ("own", "all"):
        raise KeyRequestError("read", "read must be 'own' or 'all'")
    return NewKey(key_id, name, "channel", hashed,
                  channels=_among(channels, CHANNELS, "channels"),
                  calls=_among(calls or DEFAULT_CALLS, CALLS, "calls"),
                  msisdn_prefixes=prefixes, read_all=read == "all",
                  expires_at=expires_at), raw


def replacement(old: KeyRecord) -> tuple[NewKey, str]:
    """A new key with `old`'s name, kind and scopes (for a rotation), and its raw form."""
    key_id, raw, hashed = new_key()
    return NewKey(key_id, old.name, old.kind, hashed, role=old.role, channels=old.channels,
                  calls=old.calls, msisdn_prefixes=old.msisdn_prefixes,
                  read_all=old.read_all), raw


__all__ = [
    "ANY",
    "BOOTSTRAP_ADMIN",
    "CALLS",
    "DEFAULT_CALLS",
    "PREFIX",
    "ROLE_RANK",
    "KeyRequestError",
    "Principal",
    "bootstrap_channel",
    "digest",
    "is_loopback",
    "key_request",
    "new_key",
    "open_principal",
    "parse",
    "principal_of",
    "replacement",
    "secret_matches",
]
