"""`python -m bench reports` with a tiny month: it loads, rebuilds the rollups with `gestor
report rebuild`, times every report through HTTP and prints the met/missed table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("hdrh", reason="the bench needs the `bench` extra (hdrhistogram)")

from bench._reports import CALLS
from tests.bench.test_bench_smoke import _run


@pytest.mark.bench
@pytest.mark.e2e
def test_reports_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "reports.json"
    proc = _run(["reports", "--reports-rows", "20000", "--calls", "5", "--json", str(out)], 300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["scenario"] == "reports"
    assert result["load"]["rows"] == 20000 and result["load"]["reused"] is False
    assert result["load"]["rebuild"] == "rollups rebuilt: 20000 movement(s)"
    assert [r["report"] for r in result["reports"]] == [name for name, _, _ in CALLS]
    for r in result["reports"]:
        assert r["calls"] == 5 and 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["met"] == (r["p99_ms"] < 200)
    assert "## Reports over a month of 20,000 movements" in proc.stdout
    assert "| report | p50 ms | p99 ms | max ms | bytes | p99 < 200 ms |" in proc.stdout
