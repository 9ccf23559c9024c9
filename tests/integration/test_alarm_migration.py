"""Migration 0004 on a database with alarms raised before it: the critical ones become open,
unless their purchase is already final or their platform recovered afterwards."""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Any

import trio

from gestor.store import EmbeddedPostgres, open_bridge
from gestor.store._migrate import _migrate, migration_files

_names = itertools.count()


async def test_alarms_raised_before_0004_get_their_state(postgres: EmbeddedPostgres) -> None:
    name = f"premigration_{os.getpid()}_{next(_names)}"
    postgres.psql(f"CREATE DATABASE {name};")
    files = migration_files()
    before = [f for f in files if f[0] < "0004"]
    through_0004 = [f for f in files if f[0] < "0005"]
    settled, pending = uuid.uuid4(), uuid.uuid4()
    try:
        with trio.fail_after(60):
            async with open_bridge(postgres.dsn_for(name), min_size=1, max_size=1) as bridge:
                await bridge.run(_migrate, before)

                async def old_rows(conn: Any) -> None:
                    for tx, msisdn, state in [(settled, "5491100000001", "refunded"),
                                              (pending, "5491100000002", "charged")]:
                        await conn.execute(
                            "INSERT INTO transactions (id, msisdn, bono_id, channel, client,"
                            " idempotency_key, request_hash, state, created_at, updated_at)"
                            " VALUES ($1, $2, 'B', 'api', 'c', $3, 'h', $4, now(), now())",
                            tx, msisdn, str(tx), state)
                    await conn.executemany(
                        "INSERT INTO alarms (kind, severity, message, transaction_id, details)"
                        " VALUES ($1, 'critical', 'm', $2, $3::jsonb)", [
                            ("refund_failed", settled, "{}"),
                            ("provision_unknown", pending, "{}"),
                            ("platform_down", None, '{"platform": "ocs"}'),
                            ("platform_recovered", None, '{"platform": "ocs"}'),
                            ("platform_down", None, '{"platform": "dwh"}'),
                            ("rules_activated", None, "{}"),
                        ])

                await bridge.run(old_rows)
                assert await bridge.run(_migrate, through_0004) == ["0004_alarms.sql"]

                async def states(conn: Any) -> list[tuple[str, str | None, str]]:
                    rows = await conn.fetch(
                        "SELECT kind, subject, CASE WHEN resolved_at IS NOT NULL THEN 'resolved'"
                        " WHEN subject IS NOT NULL THEN 'open' ELSE 'event' END AS state"
                        " FROM alarms ORDER BY id")
                    return [(r["kind"], r["subject"], r["state"]) for r in rows]

                assert await bridge.run(states, transaction=False) == [
                    ("refund_failed", str(settled), "resolved"),
                    ("provision_unknown", str(pending), "open"),
                    ("platform_down", "ocs", "resolved"),
                    ("platform_recovered", None, "event"),
                    ("platform_down", "dwh", "open"),
                    ("rules_activated", None, "event"),
                ]
    finally:
        postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")
