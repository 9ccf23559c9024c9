"""The audit trail's table: rows in order with their actor, action, subject and states; filters;
and append-only, whatever SQL tries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import trio

from gestor.model import Actor
from gestor.store import open_store
from gestor.store._audit import record

ALICE = Actor("key_alice", "alice")
BOB = Actor("key_bob", "bob")


async def test_rows_are_listed_in_order_and_filtered(database_url: str) -> None:
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            async def write(conn: Any) -> None:
                await record(conn, ALICE, "rules.create", "rules/2", None, {"version": 2})
                await record(conn, BOB, "restriction.delete", "mobiles/5491100000001/X",
                             {"code": "X", "reason": "r"}, None)
                await record(conn, ALICE, "rules.activate", "rules/2", {"active": 1},
                             {"active": 2})

            await store.bridge.run(write)
            rows = await store.audit_trail()
            assert [(r.actor, r.action) for r in rows] == [
                ("alice", "rules.create"), ("bob", "restriction.delete"),
                ("alice", "rules.activate")]
            assert rows[1].before == {"code": "X", "reason": "r"} and rows[1].after is None
            assert [r.action for r in await store.audit_trail(actor="bob")] == [
                "restriction.delete"]
            assert [r.action for r in await store.audit_trail(actor="key_alice")] == [
                "rules.create", "rules.activate"]
            assert [r.action for r in await store.audit_trail(action="rules.")] == [
                "rules.create", "rules.activate"]
            assert [r.action for r in await store.audit_trail(action="rules.activate")] == [
                "rules.activate"]
            assert [r.id for r in await store.audit_trail(after_id=rows[0].id, limit=1)] == [
                rows[1].id]
            future = datetime.now(UTC) + timedelta(hours=1)
            assert await store.audit_trail(since=future) == []


@pytest.mark.parametrize("sql", [
    "UPDATE audit SET actor = 'mallory'",
    "DELETE FROM audit",
    "TRUNCATE audit",
])
async def test_the_trail_is_append_only(database_url: str, sql: str) -> None:
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            await store.bridge.run(record, ALICE, "keys.create", "keys/k1", None, {"id": "k1"})

            async def tamper(conn: Any) -> None:
                await conn.execute(sql)

            with pytest.raises(asyncpg.exceptions.RaiseError, match="append-only"):
                await store.bridge.run(tamper)
            assert [r.actor for r in await store.audit_trail()] == ["alice"]
