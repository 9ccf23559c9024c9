"""End to end: `gestor reconcile` as a subprocess beside a running `gestor serve`, on its
database (GESTOR_DATABASE_URL) or attached to an embedded server it must not stop."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio

from gestor.store import open_bridge, start_embedded
from gestor.store._migrate import migrate
from tests.e2e._proc import ROOT, clean_env, free_port

pytestmark = pytest.mark.e2e


async def reconcile(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "gestor", "reconcile", *args], cwd=ROOT, env=env,
        capture_stdout=True, capture_stderr=True, check=False)


def since_now() -> str:
    return (datetime.now(UTC) - timedelta(seconds=1)).isoformat()


async def test_clean_then_a_planted_debit_fails(
    server: str, platforms_url: str, e2e_database: str
) -> None:
    env = clean_env(GESTOR_DATABASE_URL=e2e_database)
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=server, timeout=15) as http:
            r = await http.post("/v1/purchases",
                                json={"msisdn": "5491100000051", "bono_id": "SMS_200_30D"},
                                headers={"Idempotency-Key": "rec-1", "Prefer": "wait=10"})
            assert r.status_code == 200 and r.json()["state"] == "completed", r.text
            price = r.json()["price"]
        done = await reconcile(["--platforms", platforms_url], env)
        assert done.returncode == 0, done.stderr.decode()
        assert "OK: Gestor and the charging system agree" in done.stdout.decode()
        done = await reconcile(["--platforms", platforms_url, "--json"], env)
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)
        assert report["ok"] is True and report["mismatches"] == []
        assert report["totals"]["completed"] == report["totals"]["net"] == price

        stranger = str(uuid.uuid4())
        async with httpx.AsyncClient(base_url=platforms_url) as sim:
            r = await sim.post("/ocs/debits", json={"id": stranger, "msisdn": "5491100000052",
                                                   "amount": 777})
            assert r.status_code == 200, r.text
        done = await reconcile(["--platforms", platforms_url], env)
        assert done.returncode == 1, done.stderr.decode()
        text = done.stdout.decode()
        assert "charged_not_recorded" in text and stranger in text and "NOT OK" in text
        done = await reconcile(["--platforms", platforms_url, "--json", "--strict"], env)
        assert done.returncode == 1
        report = json.loads(done.stdout)
        assert report["ok"] is False and report["strict"] is True
        assert [(m["kind"], m["transaction_id"], m["debited"]) for m in report["mismatches"]] \
            == [("charged_not_recorded", stranger, 777)]
        # A period that ended before all this is clean.
        early = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
        done = await reconcile(["--platforms", platforms_url, "--until", early], env)
        assert done.returncode == 0, done.stdout.decode()
        assert "transactions 0" in done.stdout.decode()


async def test_usage_and_configuration_errors(e2e_database: str, tmp_path: Path) -> None:
    env = clean_env(GESTOR_DATABASE_URL=e2e_database)
    with trio.fail_after(60):
        done = await reconcile([], env)
        assert done.returncode == 2
        assert "--platforms" in done.stderr.decode()
        done = await reconcile(["--platforms", "http://127.0.0.1:1", "--since", "yesterday"], env)
        assert done.returncode == 2 and "ISO 8601" in done.stderr.decode()
        done = await reconcile(["--platforms", "http://127.0.0.1:1", "--since", "2025-02-01",
                                "--until", "2025-01-31"], env)
        assert done.returncode == 2 and "before" in done.stderr.decode()
        done = await reconcile(["--platforms", "http://127.0.0.1:1", "--data-dir",
                                str(tmp_path)], clean_env())
        assert done.returncode == 2 and "no embedded database" in done.stderr.decode()
        # Configured, but the charging system is not there: could not reconcile.
        down = f"http://127.0.0.1:{free_port()}"
        done = await reconcile(["--platforms", down], env)
        assert done.returncode == 3 and "reconciliation failed" in done.stderr.decode()


async def test_attaches_to_the_embedded_server_without_stopping_it(
    platforms_url: str, pg_home: Path
) -> None:
    env = clean_env(GESTOR_PLATFORMS_URL=platforms_url)
    args = ["--data-dir", str(pg_home), "--since", since_now()]
    with trio.fail_after(120):
        # This process plays `gestor serve`: it holds the embedded server in <data dir>/pg.
        embedded = await trio.to_thread.run_sync(start_embedded, pg_home / "pg")
        try:
            async with open_bridge(embedded.dsn) as bridge:
                await migrate(bridge)
            done = await reconcile(args, env)
            assert done.returncode == 0, done.stderr.decode()
            assert "transactions 0" in done.stdout.decode()
            assert "1" in embedded.psql("SELECT 1;")  # still running
        finally:
            await trio.to_thread.run_sync(embedded.stop)
        assert not (pg_home / "pg" / "postmaster.pid").exists()
        # Nobody runs it now: reconcile starts it, and stops it when done.
        done = await reconcile(args, env)
        assert done.returncode == 0, done.stderr.decode()
        assert not (pg_home / "pg" / "postmaster.pid").exists()
