"""Schema migrations: numbered SQL files in `migrations/`, applied once each, in order, under an
advisory lock so several workers starting together don't race."""

from __future__ import annotations

import importlib.resources
from typing import Any

from gestor.store._bridge import Bridge

_LOCK_ID = 0x6765_7374  # "gest"


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in order."""
    root = importlib.resources.files("gestor.store") / "migrations"
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in root.iterdir()
        if entry.name.endswith(".sql")
    )
    return files


async def _migrate(conn: Any, files: list[tuple[str, str]]) -> list[str]:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
    applied = []
    for name, sql in files:
        if name in done:
            continue
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
        applied.append(name)
    return applied


async def migrate(bridge: Bridge) -> list[str]:
    """Apply pending migrations in one transaction; returns the names applied."""
    return await bridge.run(_migrate, migration_files())
