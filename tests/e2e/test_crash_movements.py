"""`kill -9` in the middle of a load of mixed movements (purchases, bonos for another mobile,
transfers, advances, top-ups), restart, recover: every movement ends final, nothing is moved
twice, `gestor reconcile --strict` finds Gestor and the charging system in agreement, and the
ledger lost no entry and doubled none."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e._ledger import check_ledger
from tests.e2e._proc import ROOT, clean_env, free_port, start, stop
from tests.e2e.test_crash import crash_config, serve, settled  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

BONO = "SMS_200_30D"
LENDERS = [f"54911000000{n:02d}" for n in range(60, 100)]  # low balance: advances, top-ups


def movements() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for n in range(1, 41):
        me, other = f"54911000000{n:02d}", f"54911000000{n + 20:02d}"
        out += [
            ("/v1/purchases", {"msisdn": me, "bono_id": BONO}),
            ("/v1/purchases", {"msisdn": me, "bono_id": BONO, "beneficiary": other}),
            ("/v1/transfers", {"msisdn": me, "beneficiary": other, "amount": 1_000 + n}),
        ]
    for n, me in enumerate(LENDERS):
        out += [
            ("/v1/advances", {"msisdn": me, "amount": 50_000}),
            ("topup", {"msisdn": me, "amount": 20_000 + n, "reference": f"crash-r1-{me}"}),
            ("topup", {"msisdn": me, "amount": 60_000, "reference": f"crash-r2-{me}"}),
        ]
    # Interleave so that a mobile's movements come in order but mixed with everyone else's.
    return sorted(out, key=lambda m: out.index(m) % 3)


async def load_then_kill(base: str, sim: httpx.AsyncClient, proc: subprocess.Popen[str]
                         ) -> Counter[str]:
    queue = list(enumerate(movements()))
    total = len(queue)
    outcomes: Counter[str] = Counter()
    killed = trio.Event()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            while queue and not killed.is_set():
                i, (path, body) = queue.pop(0)
                if path == "topup":  # the recharge platform credits it, then tells Gestor
                    assert (await sim.post("/control/topups", json=body)).status_code == 200
                    path = "/v1/topups"
                try:
                    r = await http.post(path, json=body, headers={
                        "Idempotency-Key": body.get("reference", f"mix-{i}"),
                        "Prefer": "wait=3"})
                    outcomes[str(r.status_code)] += 1
                except httpx.TransportError:
                    outcomes["connection lost"] += 1
                if sum(outcomes.values()) >= total // 2 and not killed.is_set():
                    killed.set()
                    proc.kill()  # kill -9 mid-flight

    async with trio.open_nursery() as nursery:
        for _ in range(32):
            nursery.start_soon(client)
    proc.wait()
    return outcomes


async def test_kill_9_mid_load_of_mixed_movements_then_recover(
    database_url: str, crash_config: Path, tmp_path: Path  # noqa: F811
) -> None:
    sim_proc, platforms_url = start(["simulate", "--bind", "127.0.0.1:0"], clean_env(),
                                    "listening on ")
    port = free_port()
    server: subprocess.Popen[str] | None = None
    try:
        with trio.fail_after(200):
            async with httpx.AsyncClient(base_url=platforms_url) as sim:
                slow = {"ocs.debit": {"latency_ms": 30}, "ocs.credit": {"latency_ms": 30}}
                assert (await sim.put("/control/faults", json=slow)).status_code == 200
                for me in LENDERS:
                    r = await sim.put(f"/control/accounts/{me}", json={"balance": 1_000})
                    assert r.status_code == 200
                server = serve(port, platforms_url, database_url, crash_config, tmp_path)
                outcomes = await load_then_kill(f"http://127.0.0.1:{port}", sim, server)
                assert outcomes["connection lost"] > 0, outcomes
                server = serve(port, platforms_url, database_url, crash_config, tmp_path)
                rows = await settled(database_url)
                ledger = (await sim.get("/control/ledger")).json()
            entries = ledger["entries"] if isinstance(ledger, dict) else ledger
            states = Counter(r["state"] for r in rows)
            assert states["completed"] > 0, states
            # Nothing moved twice: one ledger entry per (kind, id), whatever was retried.
            keys = Counter((e["kind"], e["id"]) for e in entries)
            assert max(keys.values()) == 1
            # The operator's tool agrees with every kind: no mismatch, nothing unsettled.
            report = await trio.to_thread.run_sync(lambda: subprocess.run(
                [sys.executable, "-m", "gestor", "reconcile", "--platforms", platforms_url,
                 "--strict", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                env=clean_env(GESTOR_DATABASE_URL=database_url)))
            assert report.returncode == 0, report.stdout + report.stderr
            found = json.loads(report.stdout)
            assert found["mismatches"] == [] and found["unsettled"] == []
            assert found["totals"]["credits"] > 0
            assert found["ledger"]["ok"] and found["ledger"]["differences"] == []
            await check_ledger(database_url, platforms_url)  # no entry lost, none doubled
    finally:
        if server is not None:
            stop(server)
        stop(sim_proc)
