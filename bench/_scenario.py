"""One scenario against a `gestor serve` of its own: start it on a fresh (or the loaded history)
database, load it, let it go quiet, check it, and hand the measurements to `_assemble`."""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import _faults as faults
from bench import _history as history
from bench import _movements as movements
from bench import _report as report
from bench import _storage as storage
from bench._assemble import Measured, assemble
from bench._baselines import echo_baseline, storage_baseline
from bench._drive import LoadOutcome, drive, is_final, make_specs, progress_line
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
from bench._sampling import RunSampler

_LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+?)\[\d+\][^:]*: (.*)$")
_HEX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b\d{6,}\b")
_PROBLEMS = ("WARNING", "ERROR", "CRITICAL")


def log_problems(text: str) -> dict[str, int]:
    """The server log's warnings and errors, in either format (gestor/logs.py), counted by
    message (ids and numbers elided)."""
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("level") in _PROBLEMS:
                message = _HEX.sub("…", str(record.get("message", "")))[:200]
                out[f"{record['level']} {record.get('logger')}: {message}"] += 1
            if "exception" in record:
                out["Traceback"] += 1
            continue
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


@dataclass(frozen=True)
class _Server:
    """A `gestor serve` of the scenario's own, and what talks to it."""

    child: Child
    port: int
    admin_key: str
    config_dir: Path
    data_dir: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _start_server(env: Env, plan: Plan, dsn: str) -> _Server:
    """Reset the simulator to the plan's latency and start `gestor serve` (not yet ready)."""
    sim = env.sim_url
    http_json("POST", f"{sim}/control/reset")
    http_json("DELETE", f"{sim}/control/faults")
    if plan.latency:
        http_json("PUT", f"{sim}/control/faults", plan.latency)
    data_dir = env.tmp / "gestor-data"
    port = free_port()
    cmd = python("-m", "gestor", "serve", "--bind", f"127.0.0.1:{port}",
                 "--workers", str(plan.workers), "--platforms", sim, "--data-dir", str(data_dir))
    config_dir = ROOT / "config"
    if plan.config_overrides():
        config_dir = config_dir_with(env.tmp / plan.name, plan.config_overrides())
        cmd += ["--config", str(config_dir)]
    admin_key = uuid.uuid4().hex
    progress(f"[{plan.name}] starting gestor serve --workers {plan.workers}…", final=True)
    child = Child("gestor", cmd, child_env(GESTOR_DATABASE_URL=dsn, GESTOR_ADMIN_KEY=admin_key),
                  env.tmp / f"gestor-{plan.name}.log")
    return _Server(child, port, admin_key, config_dir, data_dir)


def _saturation(plan: Plan, outcome: LoadOutcome) -> float:
    """The closed loop's rate of `plan.main_kind` answers (final purchases, 2xx listings)."""
    window = plan.duration - plan.warmup
    if plan.main_kind == "purchase":
        return sum(n for k, n in outcome.counts.items() if is_final(k)) / window
    return sum(n for k, n in outcome.counts.items()
               if k.startswith(f"{plan.main_kind} 2")) / window


def _fault_result(plan: Plan, args: argparse.Namespace, env: Env, served: _Server, dsn: str,
                  sampling: RunSampler, sim_stats: Mapping[str, Any], drain_s: float
                  ) -> dict[str, Any]:
    """What `faults` reads back once the server is quiet (bench/_faults.py)."""
    out: dict[str, Any] = {
        "knobs": dict(plan.latency),
        "describe": faults.describe(plan.latency),
        "config": {k: dict(v) for k, v in plan.config.items()},
        "outage": ({"scope": faults.OUTAGE_SCOPE, "start_s": sampling.outage_at.get("start"),
                    "end_s": sampling.outage_at.get("end")} if plan.outage else None),
        "summary": storage.arun(faults.summary(dsn, sampling.t0)),
        "admin_statistics": faults.admin_statistics(served.base, served.admin_key,
                                                    plan.workers),
        "simulator_requests_by_op": sim_stats.get("requests_by_op", {}),
        "drain_s": drain_s,
    }
    if not args.no_reconcile:
        progress(f"[{plan.name}] gestor reconcile --strict…", final=True)
        out["reconcile"] = faults.reconcile(dsn, env.sim_url, served.config_dir,
                                            served.data_dir)
    return out


def run_scenario(env: Env, plan: Plan, args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    """Run `plan` and return its result (see bench/README.md for the keys)."""
    storage_result = storage_baseline(env, args) if not args.no_baselines else {}
    echo = echo_baseline(env, args, plan.workers) if not args.no_baselines else {}
    database, loaded = _database(env, plan, args, stamp)
    dsn = env.dsn_for(database)
    since = storage.arun(history.database_now(dsn))
    sim = env.sim_url
    served = _start_server(env, plan, dsn)
    db: storage.DbThread | None = None
    half: dict[str, Any] | None = None
    fault_result: dict[str, Any] | None = None
    movement_result: dict[str, Any] | None = None
    try:
        served.child.wait_line("gestor listening on ", 90)
        wait_ready(served.child, f"{served.base}/readyz", plan.workers)
        db = storage.DbThread(dsn)
        server = ProcessGroup("gestor", [served.child.pid])
        groups = [g for g in (server, env.pg_group(), ProcessGroup("simulator", [env.sim.pid]))
                  if g is not None]
        commits0 = _commits(db, database)
        t0 = time.time() + 1.5
        specs = make_specs(plan.scenario, "127.0.0.1", served.port, mode=plan.mode,
                           connections=plan.connections, rate=plan.rate,
                           duration=plan.duration, warmup=plan.warmup, wait=plan.wait,
                           procs=args.procs, t0=t0, hot=plan.hot,
                           drain=max(15.0, plan.wait + 10), long_msisdn=plan.long_msisdn,
                           keep_answers=plan.main_kind in ("purchase", "movement"),
                           sim_port=int(sim.rsplit(":", 1)[1].split("/")[0]),
                           advance_clients=plan.advance_clients, kinds=plan.kinds,
                           beneficiaries=plan.beneficiaries or 200)
        sampling = RunSampler(plan, server, groups, db, sim, t0,
                              profile_to=env.tmp if args.profile else None,
                              worker_pids=sorted(running_workers(served.child.log_text())))
        for g in groups:
            g.sample()
        cpu0 = {g.name: g.cpu for g in groups}
        started = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            outcome = drive(specs, t0, label=plan.name, sampler=sampling,
                            on_second=progress_line)
        finally:
            sampling.set_outage(False)
        # let the server finish what it accepted (sagas after 202s, retries, recovery…)
        pending = wait_quiet(plan, db, sim, t0, outcome, sampling)
        quiesced = time.time()
        for g in groups:
            g.sample()
        cpu = {g.name: g.cpu - cpu0[g.name] for g in groups}
        commits = _commits(db, database) - commits0
        sampling.wait_spies()
        sim_stats = http_json("GET", f"{sim}/control/stats")
        checks = storage.arun(storage.check_database(dsn, outcome.answers, since))
        audit_final = _final_times(dsn, t0) if not args.no_audit else []
        final_checks, final_sim_stats, final_pending = checks, sim_stats, pending
        unfinished = outcome.unfinished
        if plan.scenario == "faults":
            fault_result = _fault_result(plan, args, env, served, dsn, sampling, sim_stats,
                                         quiesced - outcome.ended)
        if plan.scenario == "movements":
            movement_result = movements.read_back(
                dsn, sim, since, None if args.no_reconcile else
                (lambda: faults.reconcile(dsn, env.sim_url, served.config_dir,
                                          served.data_dir)))
        if plan.half_rate:
            half, half_answers, half_unfinished = half_rate_phase(
                plan, args, served.port, db, sim, _saturation(plan, outcome), server, since)
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
        exit_code = served.child.stop()
        if plan.history_rows:
            progress(f"[{plan.name}] deleting the run's own rows from the history…", final=True)
            history.reset(env)
    profile = report.profile_summary(
        env.tmp.glob(f"pyspy-{plan.name}-*.txt")) if args.profile else None
    result = assemble(Measured(
        plan=plan, procs=args.procs, outcome=outcome, cpu=cpu, groups=groups,
        storage_result=storage_result, echo=echo, checks=checks, sim_stats=sim_stats,
        sim_peak=sampling.sim_peak, commits=commits, quiesced=quiesced, pending_left=pending,
        exit_code=exit_code, log_problems=log_problems(served.child.log_text()),
        profile=profile, started=started,
        postgres=env.pg_settings | {"embedded": env.pg_pid is not None},
        audit_final=audit_final,
    ))
    if movement_result is not None:
        inv = movements.invariants(final_checks, movement_result, final_sim_stats,
                                   final_pending, exit_code, unfinished)
        result["movements"] = movements.figures(movement_result, result)
        result["movements"]["kinds"] = [*plan.kinds, *(["advance"] if plan.advance_clients
                                                       else [])]
    else:
        inv = invariants(final_checks, final_sim_stats, final_pending, exit_code, unfinished,
                         extra=faults.checks(fault_result) if fault_result is not None else [],
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
