"""Smoke tests of the load test: each scenario for a few seconds at a low rate must produce a
JSON result with the documented keys and pass its invariants."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hdrh", reason="the bench needs the `bench` extra (hdrhistogram)")

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m bench ARGV`; past `timeout`, a SIGINT first (the bench stops its PostgreSQL,
    simulator and server on the way out), then SIGKILL to what is left of its session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GESTOR_")}
    proc = subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
KEYS = {
    "scenario", "workers", "purchases_per_s", "echo_req_per_s", "ratio_to_echo", "p50_ms",
    "p99_ms", "invariants_ok", "storage_tx_per_s", "cpu_per_purchase_ms", "cpu_per_echo_ms",
    "latency", "outcomes", "errors", "invariants", "timeseries",
}


@pytest.mark.bench
@pytest.mark.e2e
def test_purchase_scenario_smoke(tmp_path: Path) -> None:
    out = tmp_path / "purchase.json"
    proc = _run(["purchase", "--workers", "1", "--duration", "3", "--warmup", "0.5", "--rate",
                 "20", "--wait", "5", "--baseline-duration", "1", "--no-plot", "--json",
                 str(out)], 120)
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
    proc = _run(["faults", "--duration", "4", "--warmup", "0.5", "--rate", "20", "--outage", "1",
                 "--no-baselines", "--no-plot", "--json", str(out)], 180)
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


def _bench(args: list[str], out: Path, timeout: float) -> tuple[subprocess.CompletedProcess[str],
                                                                dict[str, Any]]:
    proc = _run([*args, "--no-baselines", "--no-plot", "--json", str(out)], timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


@pytest.mark.bench
@pytest.mark.e2e
def test_in_flight_scenario_smoke(tmp_path: Path) -> None:
    """`in-flight` for 4 s at 30/s with 1 s platforms: every purchase answered 202 at once,
    held in flight by 2 workers, final after the drain, the money balances."""
    _proc, result = _bench(["in-flight", "--duration", "4", "--warmup", "0.5", "--rate", "30",
                           "--latency", "dwh=1000,ocs=1000,prov=1000"],
                          tmp_path / "in-flight.json", 120)
    assert result["scenario"] == "in-flight" and result["workers"] == 2
    answers = result["outcomes"]["purchase"]
    assert answers and all(k.startswith("202") for k in answers), answers
    assert result["errors"] == {} and result["load"]["unfinished"] == 0
    assert result["in_flight"]["peak_db_pending"] > 0
    assert result["pending_left"] == 0
    assert result["invariants_ok"] is True, result["invariants"]
    assert result["platform_overrides"]["timeout"] == 11.0


@pytest.mark.bench
@pytest.mark.e2e
def test_many_mobiles_scenario_smoke(tmp_path: Path) -> None:
    """`many-mobiles`: a closed-loop listing phase, then 300 distinct mobiles listed at half
    its rate with the server's RSS sampled each second."""
    # at 50/s the 300 mobiles take 6 s: enough RSS samples (one a second) for a slope
    proc, result = _bench(["many-mobiles", "--duration", "2", "--warmup", "0.5",
                           "--mobiles", "300", "--half-rate", "50"], tmp_path / "many.json",
                          120)
    assert result["scenario"] == "many-mobiles" and result["main_kind"] == "bonos"
    assert result["requests_per_s"] > 0 and result["errors"] == {}
    half = result["half_rate"]
    assert half["kind"] == "bonos" and half["error_count"] == 0
    assert 250 <= half["n"] <= 300 and half["mobiles"] == 300
    rss = half["rss"]
    assert rss["rss_peak_mb"] > 0 and rss["projected_mb_at_million"] >= rss["rss_end_mb"]
    assert result["invariants_ok"] is True, result["invariants"]
    assert "RSS projected at 1,000,000 mobiles" in proc.stdout


@pytest.mark.bench
@pytest.mark.e2e
def test_history_scenario_smoke(tmp_path: Path) -> None:
    """`history` with 50,000 stored movements: they are loaded, the run buys on the
    long-history mobile too, the checks cover only the run's own purchases."""
    proc, result = _bench(["history", "--history-rows", "50000", "--duration", "3",
                           "--warmup", "0.5", "--half-rate-duration", "3"],
                          tmp_path / "history.json", 180)
    h = result["history"]
    assert h["rows"] == 50_000 and h["long_rows"] == 5_000 and h["reused"] is False
    assert sum(h["long_mobile_purchases"].values()) > 0
    assert 0 < sum(result["transactions_by_state"].values()) < 50_000
    assert result["half_rate"]["n"] > 0
    long = result["latency"]["long-history purchase"]  # the long-history mobile's own
    assert 0 < long["n"] <= sum(h["long_mobile_purchases"].values())
    assert result["invariants_ok"] is True, result["invariants"]
    assert "### History stored before the run" in proc.stdout
