"""End to end: `gestor audit` attached to the embedded server of a data dir (as beside a running
`gestor serve`), which it must not stop; and starting it, then stopping it, when nobody runs it.
(Reading through GESTOR_DATABASE_URL is in tests/integration/test_audit_trail.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from gestor.model import Actor
from gestor.store import open_bridge, start_embedded
from gestor.store._audit import record
from gestor.store._migrate import migrate
from tests.e2e._proc import ROOT, clean_env

pytestmark = pytest.mark.e2e


async def gestor_audit(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "gestor", "audit", *args], cwd=ROOT, env=clean_env(),
        capture_stdout=True, capture_stderr=True, check=False)


async def test_attaches_to_the_embedded_server_without_stopping_it(tmp_path: Path) -> None:
    with trio.fail_after(120):
        # This process plays `gestor serve`: it holds the embedded server in <data dir>/pg.
        embedded = await trio.to_thread.run_sync(start_embedded, tmp_path / "pg")
        try:
            async with open_bridge(embedded.dsn) as bridge:
                await migrate(bridge)
                await bridge.run(record, Actor("key_1", "alice"), "restriction.delete",
                                 "mobiles/5491100000001/restrictions/X",
                                 {"code": "X", "reason": "r"}, None)
            done = await gestor_audit("--data-dir", str(tmp_path), "--json")
            assert done.returncode == 0, done.stderr.decode()
            [entry] = json.loads(done.stdout)
            assert (entry["actor_id"], entry["actor"], entry["action"], entry["before"],
                    entry["after"]) == ("key_1", "alice", "restriction.delete",
                                        {"code": "X", "reason": "r"}, None)
            assert "1" in embedded.psql("SELECT 1;")  # still running
        finally:
            await trio.to_thread.run_sync(embedded.stop)
        assert not (tmp_path / "pg" / "postmaster.pid").exists()
        # Nobody runs it now: `gestor audit` starts it, and stops it when done.
        done = await gestor_audit("--data-dir", str(tmp_path), "--actor", "alice")
        assert done.returncode == 0, done.stderr.decode()
        lines = done.stdout.decode().splitlines()
        assert "deleted: reason=r" in lines[1] and lines[-1] == "1 entry"
        assert not (tmp_path / "pg" / "postmaster.pid").exists()
        # A data dir without a database: one line, exit 2.
        done = await gestor_audit("--data-dir", str(tmp_path / "elsewhere"))
        assert done.returncode == 2
        assert done.stderr.decode() == (
            "gestor: no embedded database here; set GESTOR_DATABASE_URL or --data-dir "
            f"({tmp_path / 'elsewhere' / 'pg'})\n")
