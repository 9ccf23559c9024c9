"""`Versions`: one kind of versioned admin data (rule sets, the catalogue) as the application
sees it, over the bridge (the SQL is in `_versions`)."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from gestor.model import Actor
from gestor.store import _versions
from gestor.store._bridge import Bridge
from gestor.store._versions import AuditEntry, PartnerMoved, VersionKind, VersionRecord


@attrs.frozen
class Versions:
    bridge: Bridge
    kind: VersionKind

    async def seed(self, source: str, description: str) -> VersionRecord:
        """The active version; with none yet, `source` becomes version 1, active."""
        return await self.bridge.run(_versions.seed, self.kind, source, description)

    async def create(self, source: str, description: str, actor: Actor,
                     based_on: int | None) -> VersionRecord:
        """Store a draft (audited: `<kind>.create`)."""
        return await self.bridge.run(_versions.create, self.kind, source, description, actor,
                                     based_on)

    async def get(self, version: int) -> VersionRecord | None:
        return await self.bridge.run(_versions.get, self.kind, version, transaction=False)

    async def active(self) -> VersionRecord | None:
        return await self.bridge.run(_versions.active, self.kind, transaction=False)

    async def listing(self) -> list[VersionRecord]:
        return await self.bridge.run(_versions.listing, self.kind, transaction=False)

    async def activate(self, version: int, actor: Actor, partner: int | None = None
                       ) -> VersionRecord | PartnerMoved | None:
        """Activate `version` (audited: `<kind>.activate`) and NOTIFY every worker; see
        `_versions.activate` for `partner`."""
        return await self.bridge.run(_versions.activate, self.kind, version, actor, partner)

    async def audit(self, version: int | None = None) -> list[AuditEntry]:
        return await self.bridge.run(_versions.audit, self.kind, version, transaction=False)

    async def listen(self, callback: Callable[[int], None]) -> None:
        """`callback(version)` whenever any worker activates a version; `callback(0)` when the
        LISTEN was lost and made again (an activation may have been missed meanwhile)."""
        await self.bridge.add_listener(self.kind.channel, lambda p: callback(int(p)),
                                       lambda: callback(0))
