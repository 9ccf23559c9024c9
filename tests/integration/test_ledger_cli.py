"""`gestor ledger trial-balance|entries|close` against a real database (GESTOR_DATABASE_URL),
as an operator runs them: tables, CSV, JSON, the close and its check, exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import trio

from gestor.store import open_bridge
from tests.e2e._proc import ROOT, clean_env
from tests.integration.test_ledger_store import P, insert


async def gestor_ledger(dsn: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "gestor", "ledger", *args], cwd=ROOT,
        env=clean_env(GESTOR_DATABASE_URL=dsn), capture_stdout=True, capture_stderr=True,
        check=False)


async def test_the_ledger_commands(database_url: str) -> None:
    day = (datetime.now(UTC) - timedelta(days=3)).date()
    noon = datetime(day.year, day.month, day.day, 15, tzinfo=UTC)  # noon in Buenos Aires
    period = ("--from", day.isoformat(), "--to", (day + timedelta(days=1)).isoformat())
    with trio.fail_after(180):
        async with open_bridge(database_url) as bridge:
            async def seed(conn: Any) -> None:
                await insert(conn, kind="topup", bono=None, amount=900, at=noon,
                             state="completed")
                await insert(conn, price=700, steps=["debit:refund", "provision"], step=2,
                             state="completed", at=noon)

            await bridge.run(seed)
            done = await gestor_ledger(database_url, "trial-balance", *period)
            assert done.returncode == 0, done.stderr.decode()
            lines = done.stdout.decode().splitlines()
            assert lines[1].split() == ["ACCOUNT", "DEBITS", "CREDITS", "BALANCE"]
            assert f"subscriber:{P}" in done.stdout.decode()
            assert lines[-2].split() == ["TOTAL", "2300", "2300", "0"]
            assert lines[-1] == "balanced"

            done = await gestor_ledger(database_url, "trial-balance", *period, "--csv")
            assert done.stdout.decode().splitlines()[0] == "account,debits,credits,balance"
            assert "recharges:platform,900,0,900" in done.stdout.decode().splitlines()

            done = await gestor_ledger(database_url, "entries", *period, "--account",
                                       f"subscriber:{P}", "--json")
            assert done.returncode == 0, done.stderr.decode()
            found = json.loads(done.stdout)["entries"]
            assert sorted((e["movement"], e["debit"], e["credit"]) for e in found) == [
                ("debit", 700, 0), ("topup", 0, 900)]
            done = await gestor_ledger(database_url, "entries", *period)
            assert done.stdout.decode().splitlines()[-1] == "6 entries"

            done = await gestor_ledger(database_url, "close", day.isoformat())
            assert done.returncode == 0, done.stderr.decode()
            assert "closed now by cli:" in done.stdout.decode()
            done = await gestor_ledger(database_url, "close", day.isoformat(), "--verify")
            assert done.returncode == 0
            assert done.stdout.decode().splitlines()[-1].startswith("OK")

            async def late(conn: Any) -> None:
                await conn.execute(
                    "INSERT INTO ledger_entries (at, transaction_id, movement, account, debit)"
                    " VALUES ($1, $2, 'correction', 'revenue:fees', 10)", noon, uuid.uuid4())

            await bridge.run(late)
            done = await gestor_ledger(database_url, "close", day.isoformat(), "--json")
            assert done.returncode == 1
            check = json.loads(done.stdout)
            assert (check["created"], check["matches"], check["entries_now"]) == (False, False,
                                                                                  7)
            assert "MISMATCH" in (await gestor_ledger(database_url, "close", day.isoformat(),
                                                      "--verify")).stdout.decode()
            done = await gestor_ledger(database_url, "close", "2001-01-01", "--verify")
            assert done.returncode == 1
            assert done.stderr.decode() == "gestor: 2001-01-01 was never closed\n"

        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        for args in (("close", tomorrow), ("close", "31/01/2026"),
                     ("entries", "--account", "bank:1"), ("trial-balance", "--from", "x"),
                     ("trial-balance", "--from", "2026-02-01", "--to", "2026-01-01")):
            done = await gestor_ledger(database_url, *args)
            assert done.returncode == 2, (args, done.stderr.decode())
            assert done.stderr.decode().startswith("gestor: ")
