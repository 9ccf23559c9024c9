"""The two baselines measured in the same run as Gestor: raw asyncpg on the same database server
(the storage ceiling) and a bare Quart-Trio echo app on the same stack (the server ceiling)."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from typing import Any

from bench import _report as report
from bench import _storage as storage
from bench._drive import Second, drive, make_specs
from bench._env import Env, migrate
from bench._load import new_histogram
from bench._procs import (
    ROOT,
    Child,
    ProcessGroup,
    child_env,
    free_port,
    progress,
    python,
    wait_ready,
)


def storage_baseline(env: Env, args: argparse.Namespace) -> dict[str, Any]:
    """Raw asyncpg insert+update transactions/s, 64 concurrent, once per invocation."""
    if env.storage:
        return env.storage
    database = "bench_storage_baseline"
    storage.arun(storage.create_database(env.admin_dsn, database))
    dsn = env.dsn_for(database)
    migrate(dsn)
    pg = env.pg_group()
    if pg:
        pg.sample()
    cpu0 = pg.cpu if pg else 0.0
    progress(f"[storage] raw asyncpg, 64 concurrent, {args.baseline_duration:g} s…", final=True)
    out = subprocess.run(
        python("-m", "bench._storage", "--dsn", dsn, "--duration", str(args.baseline_duration),
               "--concurrency", "64"),
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"storage baseline failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if pg:
        pg.sample()
        result["pg_cpu_s"] = pg.cpu - cpu0
        result["pg_cpu_per_tx_ms"] = result["pg_cpu_s"] * 1000 / max(1, result["transactions"])
    storage.arun(storage.drop_database(env.admin_dsn, database))
    env.storage = result
    return result


def echo_baseline(env: Env, args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """The bare echo app's requests/s and CPU per request at `workers`, once per invocation."""
    if workers in env.echo:
        return env.echo[workers]
    port = free_port()
    child = Child("echo", python("-m", "bench.echo_app", "--bind", f"127.0.0.1:{port}",
                                 "--workers", str(workers)),
                  child_env(), env.tmp / f"echo-{workers}.log")
    try:
        child.wait_line("echo listening on ", 60)
        wait_ready(child, f"http://127.0.0.1:{port}/healthz", workers)
        group = ProcessGroup("echo", [child.pid])
        duration = args.baseline_duration + 1.0
        t0 = time.time() + 1.5
        specs = make_specs("echo", "127.0.0.1", port, mode="closed",
                           connections=args.connections or 64, rate=0, duration=duration,
                           warmup=1.0, wait=0, procs=args.procs, t0=t0, keep_answers=False)
        cpu_at: dict[int, float] = {}

        def sampler(second: int) -> dict[str, float]:
            cpu_at[second] = group.sample()
            return {"server_cpu": cpu_at[second]}

        def line(s: int, sec: Second) -> str:
            n = sum(sec.counts.values())
            h = sec.hists.get("echo")
            p99 = h.get_value_at_percentile(99) / 1000 if h else math.nan
            return f"echo {workers}w t={s + 1}s {n:,} req/s p99 {p99:.1f} ms"

        outcome = drive(specs, t0, label="echo", sampler=sampler, on_second=line)
        group.sample()
        last = max(cpu_at) if cpu_at else 0
        cpu = group.cpu - cpu_at.get(0, 0.0)
        total = sum(sum(s.counts.values()) for s in outcome.seconds.values())
        window = outcome.hists.get("echo", new_histogram())
        s = report.summary(window)
        result = {
            "workers": workers,
            "req_per_s": window.get_total_count() / (duration - 1.0),
            "requests_total": total,
            "p50_ms": s.get("p50_ms"), "p99_ms": s.get("p99_ms"), "p999_ms": s.get("p999_ms"),
            "server_cpu_s": cpu,
            "cpu_per_request_ms": cpu * 1000 / max(1, total),
            "loadgen_cpu_s": outcome.loadgen_cpu_s,
            "errors": report.errors_of(outcome.counts),
            "connections": args.connections or 64,
            "cpu_window_s": last,
        }
    finally:
        child.stop()
    progress(f"[echo] {workers} worker(s): {result['req_per_s']:,.0f} req/s, "
             f"{result['cpu_per_request_ms']:.3f} ms CPU/request", final=True)
    env.echo[workers] = result
    return result

