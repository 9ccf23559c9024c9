"""Smoke test of the load test: `python -m bench purchase` for ~3 s at a low open-loop rate
with 1 worker must produce a JSON result with the documented keys and pass its invariants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hdrh", reason="the bench needs the `bench` extra (hdrhistogram)")

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "scenario", "workers", "purchases_per_s", "echo_req_per_s", "ratio_to_echo", "p50_ms",
    "p99_ms", "invariants_ok", "storage_tx_per_s", "cpu_per_purchase_ms", "cpu_per_echo_ms",
    "latency", "outcomes", "errors", "invariants", "timeseries",
}


@pytest.mark.bench
@pytest.mark.e2e
def test_purchase_scenario_smoke(tmp_path: Path) -> None:
    out = tmp_path / "purchase.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GESTOR_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "purchase", "--workers", "1", "--duration", "3",
         "--warmup", "0.5", "--rate", "20", "--wait", "5", "--baseline-duration", "1",
         "--no-plot", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=40, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result.keys() >= KEYS, KEYS - result.keys()
    assert result["scenario"] == "purchase" and result["workers"] == 1
    assert result["invariants_ok"] is True, result["invariants"]
    assert result["purchases_per_s"] > 0
    assert result["echo_req_per_s"] > 0 and result["storage_tx_per_s"] > 0
    assert 0 < result["ratio_to_echo"] < 1
    assert "## Gestor bench: `purchase`" in proc.stdout


@pytest.mark.bench
@pytest.mark.e2e
def test_faults_scenario_smoke(tmp_path: Path) -> None:
    """`faults` for ~4 s at 20/s: refunds, late debits and refund failures injected, the
    recoverer settles every inconsistent purchase, the money balances, reconcile agrees."""
    out = tmp_path / "faults.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GESTOR_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "faults", "--duration", "4", "--warmup", "0.5",
         "--rate", "20", "--outage", "1", "--no-baselines", "--no-plot", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["scenario"] == "faults" and result["mode"] == "open"
    assert result["invariants_ok"] is True, result["invariants"]
    f = result["faults"]
    assert f["summary"]["inconsistent_left"] == 0
    assert f["reconcile"]["ok"] is True and f["reconcile"]["exit_code"] == 0
    assert f["outage"]["start_s"] is not None and f["outage"]["end_s"] is not None
    assert result["transactions_by_state"].get("failed", 0) > 0  # the dwh outage
    assert "### Faults and their resolution" in proc.stdout
