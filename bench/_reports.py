"""`python -m bench reports`: the reports over a month of 10 million movements.

The movements (all kinds and outcomes, seven bonos, six channels, five profiles, four segments,
five rejection codes; latencies from 20 ms to 3 s) are written by PostgreSQL itself into a
database of their own as a restore would (`_history.bulk_load`: indexes dropped, triggers off),
then `gestor report rebuild` computes the rollups from them. The load is kept in `--pg-data DIR`
and reused next time. Then a `gestor serve` on that database answers each report over the whole
month through HTTP, `--calls` times each (one keep-alive connection, one call at a time, after
a few warm-up calls): p50 and p99 per report, met or missed against p99 < 200 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg

from bench import _storage as storage
from bench._env import Env, migrate
from bench._history import bulk_load
from bench._procs import ROOT, Child, child_env, free_port, progress, python, wait_ready

DATABASE = "bench_reports"
CLIENT = "bench-reports"
MONTH = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 31
TARGET_P99_MS = 200.0
WARMUP_CALLS = 3

#: (name, path and query): every report over the whole month.
CALLS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("series, hourly", "series", {"every": "hour"}),
    ("series, daily", "series", {"every": "day"}),
    ("breakdown by bono", "breakdown", {"by": "bono"}),
    ("breakdown by channel", "breakdown", {"by": "channel"}),
    ("breakdown by profile", "breakdown", {"by": "profile"}),
    ("breakdown by segment", "breakdown", {"by": "segment"}),
    ("breakdown by rule", "breakdown", {"by": "rule"}),
    ("peak hours", "peak-hours", {}),
    ("latency, hourly", "latency", {"every": "hour"}),
    ("latency, daily", "latency", {"every": "day"}),
)

# Rows $1 … $5 of a month starting at $3 ($4 rows in all): purchases 80 %, transfers 8 %,
# advances 6 %, top-ups 6 %; completed 80 %, rejected 10 %, failed and refunded 5 % each.
_GENERATE = """
INSERT INTO transactions (id, msisdn, kind, bono_id, channel, client, idempotency_key,
                          request_hash, state, price, currency, operation, profile_id, reasons,
                          history, created_at, updated_at, accepted_at, amount, fee, owed,
                          collected, reference, segment)
SELECT gen_random_uuid(), '54918' || lpad((g % 1000000)::text, 8, '0'), k,
       CASE WHEN k = 'purchase' THEN (ARRAY['DATA_500MB_1D', 'DATA_2GB_7D', 'DATA_10GB_30D',
           'VOICE_100MIN_7D', 'SMS_200_30D', 'COMBO_5GB_300MIN_30D',
           'ROAMING_1GB_7D'])[1 + g % 7] END,
       (ARRAY['ussd', 'app', 'web', 'ivr', 'retail', 'api'])[1 + (g / 7) % 6],
       $2, 'r' || g, 'h', s,
       CASE WHEN s IN ('completed', 'refunded') THEN
           CASE k WHEN 'purchase' THEN (ARRAY[15000, 60000, 200000, 30000, 10000, 250000,
                                             150000])[1 + g % 7]
                  WHEN 'transfer' THEN 5100 END END,
       'ARS', CASE WHEN s <> 'rejected' THEN k END,
       (ARRAY['PREPAID', 'POSTPAID', 'VIP', 'CORPORATE', 'YOUTH'])[1 + (g / 42) % 5],
       CASE WHEN s = 'rejected' THEN jsonb_build_array(jsonb_build_object(
           'code', (ARRAY['INSUFFICIENT_BALANCE', 'LINE_NOT_ACTIVE', 'DAILY_LIMIT',
                          'RESTRICTED', 'NOT_ELIGIBLE_PROFILE'])[1 + (g / 11) % 5],
           'message', 'bench')) ELSE '[]'::jsonb END,
       '[]', at, at + (20 + (g * 37) % 2980) * interval '1 millisecond', at,
       CASE WHEN k <> 'purchase' THEN 5000 END,
       CASE WHEN s = 'completed' AND k IN ('transfer', 'advance') THEN 100 END,
       CASE WHEN s = 'completed' AND k = 'advance' THEN 5100 END,
       CASE WHEN s = 'completed' AND k = 'topup' THEN 2000 END,
       CASE WHEN k = 'topup' THEN 'bench-' || g END,
       (ARRAY['prepaid', 'postpaid', 'corporate', 'vip'])[1 + (g / 210) % 4]
FROM (SELECT g,
             CASE WHEN g % 50 < 40 THEN 'purchase' WHEN g % 50 < 44 THEN 'transfer'
                  WHEN g % 50 < 47 THEN 'advance' ELSE 'topup' END AS k,
             CASE WHEN (g / 3) % 20 < 2 THEN 'rejected' WHEN (g / 3) % 20 = 2 THEN 'failed'
                  WHEN (g / 3) % 20 = 3 THEN 'refunded' ELSE 'completed' END AS s,
             $3::timestamptz + ((g * 7919) % $4)::float8 / $4 * interval '31 days' AS at
      FROM generate_series($1::bigint, $5::bigint) AS g) AS r
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports-rows", type=int, default=10_000_000,
                   help="reports: movements over the month (default 10,000,000; loaded once "
                        "per --pg-data directory)")
    p.add_argument("--calls", type=int, default=200,
                   help="reports: timed calls of each report (default 200)")


async def _loaded(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_reports_meta') IS NOT NULL"):
            return 0
        return int(await conn.fetchval("SELECT coalesce(max(movements), 0) "
                                       "FROM bench_reports_meta") or 0)
    finally:
        await conn.close()


async def _rolled_up(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT EXISTS (SELECT FROM report_rollups)"))
    finally:
        await conn.close()


async def _exists(admin_dsn: str) -> bool:
    conn = await asyncpg.connect(admin_dsn)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                        DATABASE))
    finally:
        await conn.close()


async def _load(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn, command_timeout=None)
    try:
        async def write(first: int, n: int) -> None:
            await conn.execute(_GENERATE, first + 1, CLIENT, MONTH, rows, first + n)

        await bulk_load(conn, rows, write, "reports")
        await conn.execute("CREATE TABLE bench_reports_meta (movements bigint, "
                           "loaded_at timestamptz DEFAULT now())")
        await conn.execute("INSERT INTO bench_reports_meta VALUES ($1)", rows)
    finally:
        await conn.close()


def prepare(env: Env, rows: int) -> dict[str, Any]:
    """The database loaded with `rows` movements and its rollups rebuilt (both once per
    `--pg-data`): how long each took (0 when reused)."""
    dsn = env.dsn_for(DATABASE)
    out: dict[str, Any] = {"rows": rows, "load_s": 0.0, "rebuild_s": 0.0, "reused": True}
    if storage.arun(_exists(env.admin_dsn)) and storage.arun(_loaded(dsn)) == rows:
        if storage.arun(_rolled_up(dsn)):
            return out
    else:
        out["reused"] = False
        started = time.monotonic()
        progress(f"[reports] loading {rows:,} movements over {DAYS} days…", final=True)
        storage.arun(storage.create_database(env.admin_dsn, DATABASE))
        migrate(dsn)
        storage.arun(_load(dsn, rows))
        out["load_s"] = time.monotonic() - started
        progress(f"[reports] loaded in {out['load_s']:,.0f} s", final=True)
    progress("[reports] gestor report rebuild…", final=True)
    started = time.monotonic()
    proc = subprocess.run(python("-m", "gestor", "report", "rebuild"), cwd=ROOT,
                          env=child_env(GESTOR_DATABASE_URL=dsn), capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"gestor report rebuild failed: {proc.stderr.strip()}")
    out["rebuild_s"] = time.monotonic() - started
    out["rebuild"] = proc.stdout.strip()
    progress(f"[reports] {proc.stdout.strip()} in {out['rebuild_s']:,.0f} s", final=True)
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _time_calls(port: int, key: str, calls: int) -> list[dict[str, Any]]:
    """Each report over the month, `calls` times on one keep-alive connection."""
    month = {"from": MONTH.isoformat(), "to": (MONTH + timedelta(days=DAYS)).isoformat()}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}"}
    results = []
    try:
        for name, path, params in CALLS:
            url = f"/v1/admin/reports/{path}?{urlencode({**month, **params})}"
            took = []
            size = 0
            for i in range(WARMUP_CALLS + calls):
                started = time.perf_counter()
                conn.request("GET", url, headers=headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = (time.perf_counter() - started) * 1000
                if response.status != 200:
                    raise SystemExit(f"{url}: {response.status} {body[:300]!r}")
                if i >= WARMUP_CALLS:
                    took.append(elapsed)
                size = len(body)
            p99 = _percentile(took, 0.99)
            results.append({"report": name, "url": url, "calls": calls, "bytes": size,
                            "p50_ms": round(statistics.median(took), 1),
                            "p99_ms": round(p99, 1), "max_ms": round(max(took), 1),
                            "met": p99 < TARGET_P99_MS})
            progress(f"[reports] {name}: p50 {results[-1]['p50_ms']} ms, p99 "
                     f"{results[-1]['p99_ms']} ms")
    finally:
        conn.close()
    return results


def markdown(result: dict[str, Any]) -> str:
    loaded = result["load"]
    how = ("reused from --pg-data" if loaded["reused"] else
           f"loaded in {loaded['load_s']:,.0f} s")
    if loaded["rebuild_s"]:
        how += f", rollups rebuilt in {loaded['rebuild_s']:,.0f} s"
    else:
        how += ", rollups too"

    lines = [f"## Reports over a month of {loaded['rows']:,} movements ({how})", "",
             f"Each report over {DAYS} days through HTTP, {result['calls']} calls each, one at a "
             f"time; target p99 < {TARGET_P99_MS:g} ms.", "",
             "| report | p50 ms | p99 ms | max ms | bytes | p99 < 200 ms |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in result["reports"]:
        lines.append(f"| {r['report']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | "
                     f"{r['bytes']:,} | {'met' if r['met'] else 'MISSED'} |")
    met = sum(r["met"] for r in result["reports"])
    lines += ["", f"{met} of {len(result['reports'])} reports met the target."]
    return "\n".join(lines) + "\n"


def run(env: Env, args: argparse.Namespace, results_dir: Path) -> int:
    if args.reports_rows < 1 or args.calls < 1:
        raise SystemExit("--reports-rows and --calls must be at least 1")
    loaded = prepare(env, args.reports_rows)
    dsn = env.dsn_for(DATABASE)
    port = free_port()
    key = uuid.uuid4().hex
    cmd = python("-m", "gestor", "serve", "--bind", f"127.0.0.1:{port}", "--platforms",
                 env.sim_url, "--data-dir", str(env.tmp / "gestor-reports"))
    progress("[reports] starting gestor serve…", final=True)
    child = Child("gestor", cmd, child_env(GESTOR_DATABASE_URL=dsn, GESTOR_ADMIN_KEY=key),
                  env.tmp / "gestor-reports.log")
    try:
        child.wait_line("gestor listening on ", 90)
        wait_ready(child, f"http://127.0.0.1:{port}/readyz", 1)
        reports = _time_calls(port, key, args.calls)
    finally:
        child.stop()
    result = {"scenario": "reports", "load": loaded, "calls": args.calls, "reports": reports,
              "target_p99_ms": TARGET_P99_MS, "all_met": all(r["met"] for r in reports)}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.json or results_dir / f"reports-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    sys.stdout.write(markdown(result) + f"\nJSON {path}\n")
    sys.stdout.flush()
    return 0
