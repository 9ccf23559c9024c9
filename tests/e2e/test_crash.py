"""`kill -9` in the middle of a load of purchases, restart, recover: every purchase ends in a
correct, explained state; the charging system's net debits equal exactly the completed
purchases; nobody is charged twice; the ledger lost no entry and doubled none. Then the same
with platform faults injected."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gestor.model import TxState
from gestor.store import open_store
from tests.e2e._ledger import check_ledger
from tests.e2e._proc import ROOT, clean_env, free_port, start, stop

pytestmark = pytest.mark.e2e

PURCHASES = 520
MSISDNS = [f"549110{n:07d}" for n in range(1, 261)]  # 260 subscribers, 2 purchases each
BONO = "SMS_200_30D"

FAST_RECOVERY = """
[recovery]
interval = 0.5
stale_after = 2.0

[platforms]
timeout = 1.0
retries = 1
"""


@pytest.fixture
def crash_config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "gestor.toml").write_text(FAST_RECOVERY)
    return config


def serve(port: int, platforms_url: str, database_url: str, config: Path, data: Path
          ) -> subprocess.Popen[str]:
    proc, _ = start(
        ["serve", "--bind", f"127.0.0.1:{port}", "--platforms", platforms_url,
         "--config", str(config), "--data-dir", str(data)],
        clean_env(GESTOR_DATABASE_URL=database_url), "gestor listening on ",
    )
    return proc


async def load_then_kill(base: str, proc: subprocess.Popen[str]) -> Counter[str]:
    """Send the purchases from 64 concurrent clients; SIGKILL the server half way."""
    outcomes: Counter[str] = Counter()
    queue = [(MSISDNS[i % len(MSISDNS)], i) for i in range(PURCHASES)]
    queue.sort(key=lambda item: item[1] // len(MSISDNS))  # first round of msisdns, then second
    killed = trio.Event()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            while queue and not killed.is_set():
                msisdn, i = queue.pop(0)
                try:
                    r = await http.post(
                        "/v1/purchases", json={"msisdn": msisdn, "bono_id": BONO},
                        headers={"Idempotency-Key": f"crash-{i}", "Prefer": "wait=3"})
                    outcomes[str(r.status_code)] += 1
                except httpx.TransportError:
                    outcomes["connection lost"] += 1
                if sum(outcomes.values()) >= PURCHASES // 2 and not killed.is_set():
                    killed.set()
                    proc.kill()  # kill -9: no shutdown, no cleanup, sagas cut mid-flight

    async with trio.open_nursery() as nursery:
        for _ in range(64):
            nursery.start_soon(client)
    proc.wait()
    return outcomes


async def _all_rows(conn: Any) -> list[Any]:
    return list(await conn.fetch("SELECT id, msisdn, state, price, history FROM transactions"))


async def unsettled(database_url: str) -> int:
    async with open_store(database_url, apply_migrations=False) as store:
        rows = await store.bridge.run(_all_rows, transaction=False)
    return sum(not TxState(r["state"]).terminal for r in rows)


async def settled(database_url: str) -> list[Any]:
    """Every transaction once none is left non-terminal (the recoverer's work)."""
    async with open_store(database_url, apply_migrations=False) as store:
        while True:
            rows = await store.bridge.run(_all_rows, transaction=False)
            if all(TxState(r["state"]).terminal for r in rows):
                return rows
            await trio.sleep(0.25)


async def check_invariants(rows: list[Any], platforms_url: str) -> None:
    async with httpx.AsyncClient(base_url=platforms_url) as sim:
        ledger = (await sim.get("/control/ledger")).json()
        stats = (await sim.get("/control/stats")).json()
    entries = ledger["entries"] if isinstance(ledger, dict) else ledger
    states = Counter(r["state"] for r in rows)
    completed = [r for r in rows if r["state"] == "completed"]
    # Every debit belongs to a transaction; every refunded or failed one has no net debit.
    by_id = {str(r["id"]): r for r in rows}
    debits = [e for e in entries if e["kind"] == "debit"]
    refunded = {e["debit_id"] for e in entries if e["kind"] == "refund"}
    for d in debits:
        tx = by_id[d["id"]]
        assert (tx["state"] == "completed") == (d["id"] not in refunded), \
            f"{tx['state']} {tx['history']} {d} refunded={d['id'] in refunded}"
    debited_ids = {d["id"] for d in debits}
    for tx in completed:
        assert str(tx["id"]) in debited_ids, dict(tx)
    # Net money taken equals exactly the completed purchases.
    assert stats["debited_total"] - stats["refunded_total"] == sum(r["price"] for r in completed)
    # Nobody is charged twice: net debits per msisdn == completed purchases per msisdn.
    net = Counter(d["msisdn"] for d in debits if d["id"] not in refunded)
    assert net == Counter(r["msisdn"] for r in completed)
    assert states["completed"] > 0, states


@pytest.mark.parametrize("faults", [
    {},
    {"prov": {"error_rate": 0.15}, "ocs.debit": {"late_rate": 0.1, "hang_ms": 1500},
     "ocs.refund": {"error_rate": 0.3}},
], ids=["clean", "with-faults"])
async def test_kill_9_mid_load_then_recover(
    faults: dict[str, Any], database_url: str, crash_config: Path, tmp_path: Path
) -> None:
    sim_proc, platforms_url = start(["simulate", "--bind", "127.0.0.1:0"], clean_env(),
                                    "listening on ")
    port = free_port()
    server: subprocess.Popen[str] | None = None
    try:
        with trio.fail_after(150):
            async with httpx.AsyncClient(base_url=platforms_url) as sim:
                # Debits slow enough that the kill always finds sagas mid-way (at 30 ms, on a
                # loaded box, every purchase sent had sometimes already ended).
                slow = {"ocs.debit": {"latency_ms": 250}, **faults}
                assert (await sim.put("/control/faults", json=slow)).status_code == 200
            server = serve(port, platforms_url, database_url, crash_config, tmp_path)
            outcomes = await load_then_kill(f"http://127.0.0.1:{port}", server)
            assert outcomes["connection lost"] > 0, outcomes
            assert await unsettled(database_url) > 0  # the crash left purchases mid-way
            # Restart on the same database: the recoverer settles what the crash left.
            server = serve(port, platforms_url, database_url, crash_config, tmp_path)
            rows = await settled(database_url)
            assert len(rows) >= PURCHASES // 2
            await check_invariants(rows, platforms_url)
            await check_ledger(database_url, platforms_url)  # no entry lost, none doubled
            # And the operator's own tool agrees: zero mismatches, exit 0.
            report = await trio.to_thread.run_sync(lambda: subprocess.run(
                [sys.executable, "-m", "gestor", "reconcile", "--platforms", platforms_url,
                 "--strict", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                env=clean_env(GESTOR_DATABASE_URL=database_url)))
            assert report.returncode == 0, report.stdout + report.stderr
            assert json.loads(report.stdout)["mismatches"] == []
    finally:
        if server is not None:
            stop(server)
        stop(sim_proc)
