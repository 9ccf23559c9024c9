"""One scenario against a `gestor serve` of its own: start it on a fresh (or the loaded history)
database, load it, let it go quiet, check it, and hand the measurements to `_assemble`."""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import _faults as faults
from bench import _history as history
from bench import _report as report
from bench import _storage as storage
from bench._assemble import Measured, assemble
from bench._baselines import echo_baseline, storage_baseline
from bench._drive import drive, is_final, make_specs, progress_line
from bench._env import Env, config_dir_with, migrate
from bench._half_rate import half_rate_phase, wait_quiet
from bench._invariants import invariants
from bench._plan import Plan
from bench._procs import (
    ROOT,
    Child,
    ProcessGroup,
    child_env,
    free_port,
    http_json,
    progress,
    python,
    running_workers,
    wait_ready,
)

_LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+?)\[\d+\]: (.*)$")
_HEX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b\d{6,}\b")


def log_problems(text: str) -> dict[str, int]:
    """The server log's warnings and errors, counted by message (ids and numbers elided)."""
    out: Counter[str] = Counter()
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if m:
            out[f"{m[1]} {m[2]}: " + _HEX.sub("…", m[3])[:200]] += 1
        elif line.startswith("Traceback"):
            out["Traceback"] += 1
    return dict(out.most_common(20))


def _database(env: Env, plan: Plan, args: argparse.Namespace, stamp: str
              ) -> tuple[str, dict[str, Any] | None]:
    """The scenario's database: a fresh one, or the loaded history (`history`)."""
    if plan.history_rows:
        database, loaded = history.prepare(env, plan.history_rows)
        if not args.no_audit:
            storage.arun(storage.install_audit(env.dsn_for(database)))
        return database, loaded
    database = f"bench_{plan.name.replace('-', '_')}_{stamp.replace('-', '_')}"
    storage.arun(storage.create_database(env.admin_dsn, database))
    dsn = env.dsn_for(database)
    migrate(dsn)
    if not args.no_audit:
        storage.arun(storage.install_audit(dsn))
    return database, None


def run_scenario(env: Env, plan: Plan, args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    """Run `plan` and return its result (see bench/README.md for the keys)."""
    workers = plan.workers
    storage_result = storage_baseline(env, args) if not args.no_baselines else {}
    echo = echo_baseline(env, args, workers) if not args.no_baselines else {}

    database, loaded = _database(env, plan, args, stamp)
    dsn = env.dsn_for(database)
    since = storage.arun(history.database_now(dsn))
    sim = env.sim_url
    http_json("POST", f"{sim}/control/reset")
    http_json("DELETE", f"{sim}/control/faults")
    if plan.latency:
        http_json("PUT", f"{sim}/control/faults", plan.latency)

    data_dir = env.tmp / "gestor-data"
    cmd = python("-m", "gestor", "serve", "--bind", f"127.0.0.1:{(port := free_port())}",
                 "--workers", str(workers), "--platforms", sim, "--data-dir", str(data_dir))
    config_dir = ROOT / "config"
    if plan.config_overrides():
        config_dir = config_dir_with(env.tmp / plan.name, plan.config_overrides())
        cmd += ["--config", str(config_dir)]
    base = f"http://127.0.0.1:{port}"
    admin_key = uuid.uuid4().hex
    progress(f"[{plan.name}] starting gestor serve --workers {workers}…", final=True)
    gestor = Child("gestor", cmd, child_env(GESTOR_DATABASE_URL=dsn, GESTOR_ADMIN_KEY=admin_key),
                   env.tmp / f"gestor-{plan.name}.log")
    db: storage.DbThread | None = None
    spies: list[subprocess.Popen[bytes]] = []
    exit_code: int | None = None
    half: dict[str, Any] | None = None
    fault_result: dict[str, Any] | None = None
    outage_at: dict[str, float] = {}
    try:
        gestor.wait_line("gestor listening on ", 90)
        wait_ready(gestor, f"{base}/readyz", workers)
        worker_pids = sorted(running_workers(gestor.log_text()))
        db = storage.DbThread(dsn)
        server = ProcessGroup("gestor", [gestor.pid])
        pg = env.pg_group()
        simg = ProcessGroup("simulator", [env.sim.pid])
        groups = [g for g in (server, pg, simg) if g is not None]
        commits0 = _commits(db, database)
        t0 = time.time() + 1.5
        specs = make_specs(plan.scenario, "127.0.0.1", port, mode=plan.mode,
                           connections=plan.connections, rate=plan.rate,
                           duration=plan.duration, warmup=plan.warmup, wait=plan.wait,
                           procs=args.procs, t0=t0, hot=plan.hot,
                           drain=max(15.0, plan.wait + 10), long_msisdn=plan.long_msisdn,
                           keep_answers=plan.main_kind == "purchase")
        for g in groups:
            g.sample()
        cpu0 = {g.name: g.cpu for g in groups}
        started = datetime.now(UTC).isoformat(timespec="seconds")
        sim_peak = 0
        spy_started = False

        def set_outage(on: bool) -> None:
            key = "start" if on else "end"
            if plan.outage is None or key in outage_at or (not on and "start" not in outage_at):
                return
            http_json("PUT", f"{sim}/control/faults",
                      {faults.OUTAGE_SCOPE: {"outage": True if on else None}})
            outage_at[key] = time.time() - t0

        def sampler(second: int) -> dict[str, float]:
            nonlocal sim_peak, spy_started
            if plan.outage is not None and second >= plan.outage[0]:
                set_outage(second < plan.outage[1])
            out = {f"{g.name}_cpu": g.sample() for g in groups}
            out["server_rss"] = server.rss
            try:
                out["db_pending"] = db.pending() if db else 0
            except Exception:
                out["db_pending"] = math.nan
            try:
                stats = http_json("GET", f"{sim}/control/stats", timeout=2)
                out["sim_in_flight"] = stats.get("in_flight", 0)
                sim_peak = max(sim_peak, stats.get("peak_in_flight", 0))
            except OSError:
                out["sim_in_flight"] = math.nan
            if args.profile and not spy_started and second >= plan.warmup:
                spy_started = True
                spies.extend(_start_py_spy(env.tmp, plan.name, worker_pids,
                                           plan.duration - second))
            return out

        try:
            outcome = drive(specs, t0, label=plan.name, sampler=sampler,
                            on_second=progress_line)
        finally:
            set_outage(False)
        # let the server finish what it accepted (sagas after 202s, retries, recovery…)
        pending = wait_quiet(plan, db, sim, t0, outcome, sampler)
        quiesced = time.time()
        for g in groups:
            g.sample()
        cpu = {g.name: g.cpu - cpu0[g.name] for g in groups}
        commits = _commits(db, database) - commits0
        for spy in spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        sim_stats = http_json("GET", f"{sim}/control/stats")
        checks = storage.arun(storage.check_database(dsn, outcome.answers, since))
        audit_final = _final_times(dsn, t0) if not args.no_audit else []
        final_checks, final_sim_stats, final_pending = checks, sim_stats, pending
        unfinished = outcome.unfinished
        if plan.scenario == "faults":
            fault_result = {
                "knobs": dict(plan.latency),
                "describe": faults.describe(plan.latency),
                "config": {k: dict(v) for k, v in plan.config.items()},
                "outage": ({"scope": faults.OUTAGE_SCOPE,
                            "start_s": outage_at.get("start"), "end_s": outage_at.get("end")}
                           if plan.outage else None),
                "summary": storage.arun(faults.summary(dsn, t0)),
                "admin_statistics": faults.admin_statistics(base, admin_key, workers),
                "simulator_requests_by_op": sim_stats.get("requests_by_op", {}),
                "drain_s": quiesced - outcome.ended,
            }
            if not args.no_reconcile:
                progress(f"[{plan.name}] gestor reconcile --strict…", final=True)
                fault_result["reconcile"] = faults.reconcile(dsn, sim, config_dir, data_dir)
        if plan.half_rate:
            window = plan.duration - plan.warmup
            if plan.main_kind == "purchase":
                saturation = sum(n for k, n in outcome.counts.items() if is_final(k)) / window
            else:
                saturation = sum(n for k, n in outcome.counts.items()
                                 if k.startswith(f"{plan.main_kind} 2")) / window
            half, half_answers, half_unfinished = half_rate_phase(
                plan, args, port, db, sim, saturation, server, since)
            if half_answers or half_unfinished or plan.main_kind != "purchase":
                final_pending = db.pending()
                final_sim_stats = http_json("GET", f"{sim}/control/stats")
                final_checks = storage.arun(storage.check_database(
                    dsn, outcome.answers + half_answers, since))
                unfinished += half_unfinished
        if loaded is not None and plan.long_msisdn:
            loaded["long_mobile_purchases"] = storage.arun(
                history.long_purchases(dsn, plan.long_msisdn, since))
    finally:
        if db is not None:
            db.close()
        exit_code = gestor.stop()
        if plan.history_rows:
            progress(f"[{plan.name}] deleting the run's own rows from the history…", final=True)
            history.reset(env)
    log = gestor.log_text()
    profile = report.profile_summary(
        env.tmp.glob(f"pyspy-{plan.name}-*.txt")) if args.profile else None
    extra_checks = faults.checks(fault_result) if fault_result is not None else []
    result = assemble(Measured(
        plan=plan, procs=args.procs, outcome=outcome, cpu=cpu, groups=groups,
        storage_result=storage_result, echo=echo, checks=checks, sim_stats=sim_stats,
        sim_peak=sim_peak, commits=commits, quiesced=quiesced, pending_left=pending,
        exit_code=exit_code, log_problems=log_problems(log), profile=profile, started=started,
        postgres=env.pg_settings | {"embedded": env.pg_pid is not None},
        audit_final=audit_final,
    ))
    inv = invariants(final_checks, final_sim_stats, final_pending, exit_code, unfinished,
                     extra=extra_checks,
                     scope=("main load and the half-rate phase" if half and half.get("n")
                            else ""))
    result["invariants"] = inv
    result["invariants_ok"] = inv["ok"]
    if half is not None:
        result["half_rate"] = half
    if fault_result is not None:
        result["faults"] = fault_result
    if loaded is not None:
        result["history"] = loaded
    return result


def _commits(db: storage.DbThread, database: str) -> int:
    return int(db.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database) or 0)


def _final_times(dsn: str, t0: float) -> list[float]:
    """Seconds since t0 at which each transaction reached a terminal state (audit log)."""
    import asyncpg

    async def fetch() -> list[float]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT extract(epoch FROM at) AS at FROM bench_audit "
                "WHERE state IN ('completed', 'rejected', 'failed', 'refunded')")
        finally:
            await conn.close()
        return [float(r["at"]) - t0 for r in rows]

    return storage.arun(fetch())


def _start_py_spy(tmp: Path, scenario: str, pids: list[int], seconds: float
                  ) -> list[subprocess.Popen[bytes]]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        progress("py-spy not found: pip install py-spy (no profile)", final=True)
        return []
    spies = []
    for pid in pids:
        out = tmp / f"pyspy-{scenario}-{pid}.txt"
        spies.append(subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
             "--rate", "100", "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies
