"""SQL for API keys: channel keys with scopes, operator keys with roles (migration 0006).

Only a hash of a key's secret is stored. Every change (create, revoke, rotate) is written with
its audit row in one database transaction and NOTIFYs `gestor_keys` (payload: the key's id), so
each worker drops its cached copy at once. The audit rows carry the key's public record, never
its secret nor its hash.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from gestor.model import Actor
from gestor.store import _audit

if TYPE_CHECKING:
    from gestor.store._bridge import Bridge

KEYS_CHANNEL = "gestor_keys"
KINDS = ("channel", "operator")
ROLES = ("viewer", "operator", "admin")
CALLS = ("list", "purchase", "status", "transfers", "advances", "topups")


@attrs.frozen
class NewKey:
    """A key to store: its public id, what it may do, and the hash of its secret."""

    id: str
    name: str
    kind: str
    secret_sha256: bytes = attrs.field(repr=False)
    role: str | None = None
    channels: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    msisdn_prefixes: tuple[str, ...] = ()
    read_all: bool = False
    expires_at: datetime | None = None


@attrs.frozen
class KeyRecord:
    """A stored key. `secret_sha256` stays out of `repr`, equality and `as_dict`."""

    id: str
    name: str
    kind: str
    role: str | None
    channels: tuple[str, ...]
    calls: tuple[str, ...]
    msisdn_prefixes: tuple[str, ...]
    read_all: bool
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    rotated_from: str | None
    secret_sha256: bytes = attrs.field(repr=False, eq=False)

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """The key's public record (what lists and the audit trail show); with `now`, its
        status then."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "kind": self.kind}
        if self.kind == "operator":
            out["role"] = self.role
        else:
            out.update(channels=list(self.channels), calls=list(self.calls),
                       msisdn_prefixes=list(self.msisdn_prefixes),
                       read="all" if self.read_all else "own")
        out.update(
            created_at=self.created_at.isoformat(), created_by=self.created_by,
            expires_at=self.expires_at.isoformat() if self.expires_at else None,
            revoked_at=self.revoked_at.isoformat() if self.revoked_at else None,
            revoked_by=self.revoked_by, rotated_from=self.rotated_from,
        )
        if now is not None:
            out["status"] = self.status(now)
        return out


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        row["id"], row["name"], row["kind"], row["role"], tuple(row["channels"]),
        tuple(row["calls"]), tuple(row["msisdn_prefixes"]), row["read_all"], row["created_at"],
        row["created_by"], row["expires_at"], row["revoked_at"], row["revoked_by"],
        row["rotated_from"], bytes(row["secret_sha256"]),
    )


_INSERT = """
INSERT INTO api_keys (id, name, kind, role, channels, calls, msisdn_prefixes, read_all,
                      secret_sha256, created_by, expires_at, rotated_from)
VALUES ($1, $2, $3, $4, $5::text[], $6::text[], $7::text[], $8, $9, $10, $11, $12)
RETURNING *
"""

_ACTIVE = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"


async def _insert(conn: Any, new: NewKey, actor: Actor, rotated_from: str | None) -> KeyRecord:
    row = await conn.fetchrow(
        _INSERT, new.id, new.name, new.kind, new.role, list(new.channels), list(new.calls),
        list(new.msisdn_prefixes), new.read_all, new.secret_sha256, actor.name,
        new.expires_at, rotated_from,
    )
    record = _record(row)
    await _audit.record(conn, actor, "keys.create", f"keys/{record.id}", None, record.as_dict())
    await conn.execute("SELECT pg_notify($1, $2)", KEYS_CHANNEL, record.id)
    return record


async def create(conn: Any, new: NewKey, actor: Actor) -> KeyRecord:
    return await _insert(conn, new, actor, None)


async def active_named(conn: Any, name: str) -> KeyRecord | None:
    row = await conn.fetchrow(
        f"SELECT * FROM api_keys WHERE name = $1 AND {_ACTIVE} ORDER BY created_at LIMIT 1",
        name)
    return None if row is None else _record(row)


async def get(conn: Any, key_id: str) -> KeyRecord | None:
    row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", key_id)
    return None if row is None else _record(row)


async def listing(conn: Any, include_inactive: bool) -> list[KeyRecord]:
    where = "" if include_inactive else f" WHERE {_ACTIVE}"
    rows = await conn.fetch(f"SELECT * FROM api_keys{where} ORDER BY created_at, id")
    return [_record(r) for r in rows]


async def revoke(conn: Any, key_id: str, actor: Actor) -> tuple[KeyRecord, bool] | None:
    """Revoke a key: (its record, True); (its record, False) if it was already revoked;
    None if there is no such key."""
    row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1 FOR UPDATE", key_id)
    if row is None:
        return None
    before = _record(row)
    if before.revoked_at is not None:
        return before, False
    after = _record(await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = now(), revoked_by = $2 WHERE id = $1 RETURNING *",
        key_id, actor.name))
    await _audit.record(conn, actor, "keys.revoke", f"keys/{key_id}", before.as_dict(),
                        after.as_dict())
    await conn.execute("SELECT pg_notify($1, $2)", KEYS_CHANNEL, key_id)
    return after, True


async def rotate(conn: Any, key_id: str, make: Callable[[KeyRecord], NewKey], grace: timedelta,
                 actor: Actor) -> tuple[KeyRecord, KeyRecord] | KeyRecord | None:
    """Replace an active key by a new one (`make(old)`: same name, kind and scopes) and let the
    old one expire after `grace` (sooner if it already expired sooner): (old, new). The old
    record if it is revoked or expired; None if there is no such key."""
    row = await conn.fetchrow(
        "SELECT *, (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) AS live"
        " FROM api_keys WHERE id = $1 FOR UPDATE", key_id)
    if row is None:
        return None
    before = _record(row)
    if not row["live"]:
        return before
    old = _record(await conn.fetchrow(
        "UPDATE api_keys SET expires_at = LEAST(expires_at, now() + $2::interval)"
        " WHERE id = $1 RETURNING *", key_id, grace))
    new = await _insert(conn, make(old), actor, old.id)
    await _audit.record(conn, actor, "keys.rotate", f"keys/{key_id}", before.as_dict(),
                        {**old.as_dict(), "replaced_by": new.id})
    await conn.execute("SELECT pg_notify($1, $2)", KEYS_CHANNEL, key_id)
    return old, new


async def has_active_channel_keys(conn: Any) -> bool:
    return bool(await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM api_keys WHERE kind = 'channel' AND {_ACTIVE})"))


@attrs.define
class KeyStore:
    """API keys over a bridge (a worker's store's, or a bare one for the CLI)."""

    bridge: Bridge

    async def create(self, new: NewKey, actor: Actor) -> KeyRecord | None:
        """Store `new`, unless an active key of the same name exists (then None)."""
        async def work(conn: Any) -> KeyRecord | None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x6B657973)  # "keys"
            if await active_named(conn, new.name) is not None:
                return None
            return await create(conn, new, actor)

        return await self.bridge.run(work)

    async def get(self, key_id: str) -> KeyRecord | None:
        return await self.bridge.run(get, key_id, transaction=False)

    async def listing(self, include_inactive: bool = False) -> list[KeyRecord]:
        return await self.bridge.run(listing, include_inactive, transaction=False)

    async def revoke(self, key_id: str, actor: Actor) -> tuple[KeyRecord, bool] | None:
        return await self.bridge.run(revoke, key_id, actor)

    async def rotate(self, key_id: str, make: Callable[[KeyRecord], NewKey], grace: timedelta,
                     actor: Actor) -> tuple[KeyRecord, KeyRecord] | KeyRecord | None:
        return await self.bridge.run(rotate, key_id, make, grace, actor)

    async def has_active_channel_keys(self) -> bool:
        return await self.bridge.run(has_active_channel_keys, transaction=False)

    async def listen(self, callback: Callable[[str], None],
                     on_resume: Callable[[], None]) -> None:
        """`callback(key id)` whenever any process changes a key; `on_resume()` when the
        LISTEN was lost and made again (changes may have been missed meanwhile)."""
        await self.bridge.add_listener(KEYS_CHANNEL, callback, on_resume)
