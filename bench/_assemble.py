"""Turning a run's measurements (`Measured`) into its result: the dict the report, the goals and
the JSON read."""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench import _report as report
from bench._drive import FINAL_STATES, LoadOutcome, Second, is_2xx, is_final
from bench._load import LONG_EVERY, MOVEMENT_MIX
from bench._plan import Plan, describe_latency
from bench._procs import ProcessGroup


@dataclass(frozen=True)
class Measured:
    """What `run_scenario` measured, for `assemble`."""

    plan: Plan
    procs: int                          # load generator processes
    outcome: LoadOutcome                # the main load's answers, histograms, seconds
    cpu: Mapping[str, float]            # CPU seconds by process group, load + drain
    groups: Sequence[ProcessGroup]      # gestor, postgres, simulator (peak RSS)
    storage_result: Mapping[str, Any]   # the storage baseline ({} without baselines)
    echo: Mapping[str, Any]             # the echo baseline at this worker count
    checks: Mapping[str, Any]           # storage.check_database after the main load
    sim_stats: Mapping[str, Any]        # the simulator's /control/stats then
    sim_peak: int                       # the simulator's peak calls in flight
    commits: int                        # database commits during load + drain
    quiesced: float                     # wall time the server went quiet
    pending_left: int                   # transactions still pending then
    exit_code: int | None               # gestor serve's, on SIGTERM
    log_problems: Mapping[str, int]     # server log warnings/errors by message
    profile: dict[str, Any] | None      # py-spy summary (--profile)
    started: str                        # ISO time of the start
    postgres: Mapping[str, Any]         # server settings
    audit_final: list[float]            # seconds since t0 each transaction became final


def assemble(m: Measured) -> dict[str, Any]:
    """The result of one run (bench/README.md, "Reading the report", lists the keys)."""
    plan, outcome = m.plan, m.outcome
    window = plan.duration - plan.warmup
    counts = outcome.counts
    outcomes = report.split_counts(counts)
    final_answers = sum(n for k, n in counts.items() if is_final(k))
    completed_answers = sum(n for k, n in counts.items() if k == "purchase 200 completed")
    # answered requests (status 0 = transport failure or never answered)
    requests = sum(n for k, n in counts.items()
                   if not k.startswith("connect ") and k.split(" ", 2)[1:2] != ["0"])
    finals_db = [t for t in m.audit_final if plan.warmup <= t < plan.duration]
    checks = m.checks
    if plan.wait > 0:
        purchases_per_s = final_answers / window
        completed_per_s = completed_answers / window
        basis = "final answers from the client, measurement window"
    else:  # 202 answers: count finals server-side from the audit log
        purchases_per_s = len(finals_db) / window
        done = checks["by_state"]
        share = done.get("completed", 0) / max(1, sum(done.get(s, 0) for s in
                                                      ("completed", "rejected", "failed",
                                                       "refunded")))
        completed_per_s = purchases_per_s * share
        basis = "transactions that reached a final state (audit log), measurement window"
    requests_per_s = requests / window
    lat = {k: report.summary(h) for k, h in outcome.hists.items()}
    main_kind = plan.main_kind
    main = lat.get(main_kind, {})
    echo = m.echo
    storage_result = m.storage_result
    headline = purchases_per_s if plan.ratio_basis == "purchases_per_s" else requests_per_s
    echo_rps = echo.get("req_per_s")
    cpu = m.cpu
    quiet_window = m.quiesced - outcome.t0
    server_cpu = cpu.get("gestor", 0.0)
    completed_total = checks["by_state"].get("completed", 0)
    final_total = sum(checks["by_state"].get(s, 0) for s in FINAL_STATES)
    cpu_per_purchase = server_cpu * 1000 / completed_total if completed_total else None
    answered_total = sum(n for sec in outcome.seconds.values() for k, n in sec.counts.items()
                         if k.split(" ", 2)[1:2] != ["0"])
    cpu_per_request = server_cpu * 1000 / answered_total if answered_total else None
    cpu_per_echo = echo.get("cpu_per_request_ms")
    groups = {g.name: g for g in m.groups}
    cpu_table: dict[str, dict[str, float | None]] = {}
    for name, g in groups.items():
        cpu_table[name] = {"cpu_s": cpu.get(name, 0.0),
                           "cpu_share": cpu.get(name, 0.0) / quiet_window,
                           "peak_rss_mb": g.peak_rss / 2**20}
    cpu_table["load generator"] = {"cpu_s": outcome.loadgen_cpu_s,
                                   "cpu_share": outcome.loadgen_cpu_s / quiet_window,
                                   "peak_rss_mb": None}
    box = box_ceiling(cpu_table, completed_total)
    ts = timeseries(outcome, m.audit_final)
    peak_db = max((x for x in ts["db_pending"] if not math.isnan(x)), default=0)
    peak_rss = groups["gestor"].peak_rss / 2**20
    result: dict[str, Any] = {
        "scenario": plan.scenario,
        "label": plan.name,
        "workers": plan.workers,
        "started": m.started,
        "mode": plan.mode,
        "duration_s": plan.duration,
        "warmup_s": plan.warmup,
        "main_kind": main_kind,
        "purchases_per_s": purchases_per_s,
        "purchases_per_s_basis": basis,
        "completed_per_s": completed_per_s,
        "requests_per_s": requests_per_s,
        "echo_req_per_s": echo_rps,
        "ratio_basis": plan.ratio_basis,
        "ratio_to_echo": headline / echo_rps if echo_rps else None,
        "storage_tx_per_s": storage_result.get("tx_per_s"),
        "ratio_to_storage": (purchases_per_s / storage_result["tx_per_s"]
                             if storage_result.get("tx_per_s") else None),
        "p50_ms": main.get("p50_ms"),
        "p90_ms": main.get("p90_ms"),
        "p99_ms": main.get("p99_ms"),
        "p999_ms": main.get("p999_ms"),
        "latency": lat,
        "saga_ms": checks["saga_ms"],
        "cpu_per_purchase_ms": cpu_per_purchase,
        "box": box,
        "cpu_per_final_purchase_ms": server_cpu * 1000 / final_total if final_total else None,
        "cpu_per_echo_ms": cpu_per_echo,
        "cpu_per_request_ms": cpu_per_request,
        "cpu_ratio_request_to_echo": (cpu_per_request / cpu_per_echo
                                      if cpu_per_request and cpu_per_echo else None),
        "cpu_ratio_purchase_to_echo": (cpu_per_purchase / cpu_per_echo
                                       if cpu_per_purchase and cpu_per_echo else None),
        "db_commits": m.commits,
        "pending_left": m.pending_left,
        "db_commits_per_purchase": m.commits / final_total if final_total else None,
        "invariants_ok": None,
        "invariants": None,
        "outcomes": outcomes,
        "errors": report.errors_of(counts),
        "transactions_by_state": checks["by_state"],
        "in_flight": {
            "peak_db_pending": peak_db,
            "peak_client": max((s.outstanding for s in outcome.seconds.values()), default=0),
            "peak_simulator": m.sim_peak,
        },
        "rss_mb_peak": peak_rss,
        "rss_kb_per_in_flight": (peak_rss * 1024 / peak_db) if peak_db else None,
        "cpu": cpu_table,
        "echo": echo,
        "storage": storage_result,
        "simulator_stats": {k: v for k, v in m.sim_stats.items() if k != "per_msisdn"},
        "load": {
            "describe": _describe_load(plan, m.procs),
            "connections": plan.connections, "rate": plan.rate, "wait": plan.wait,
            "procs": m.procs, "unfinished": outcome.unfinished,
            "connects": outcome.connects, "lag_max_s": outcome.lag_max_s,
            "hot_msisdns": list(plan.hot),
        },
        "platform_latency": describe_latency(plan.latency),
        "platform_overrides": dict(plan.platforms),
        "postgres": dict(m.postgres),
        "gestor_exit_code": m.exit_code,
        "log_problems": dict(m.log_problems),
        "profile": m.profile,
        "timeseries": ts,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "loadavg_end": os.getloadavg()},
    }
    return result


def box_ceiling(cpu_table: Mapping[str, Mapping[str, Any]], completed: int) -> dict[str, Any]:
    """Every process of the run shares this box: CPU ms of each group per completed purchase,
    their sum, and the purchases/s the box's cores could give at that cost (the ceiling no
    worker count can pass while the database, the simulator and the load run here too)."""
    if not completed:
        return {}
    per = {name: c["cpu_s"] * 1000 / completed for name, c in cpu_table.items()}
    total = sum(per.values())
    cores = os.cpu_count() or 1
    return {"cpu_ms_per_purchase": per, "total_ms": total, "cores": cores,
            "ceiling_per_s": cores * 1000 / total if total else None}


def _describe_load(plan: Plan, procs: int) -> str:
    what = {"purchase": "purchases on distinct msisdns",
            "mix": "70% list bonos / 20% purchase / 10% status",
            "hot-mobile": f"purchases on {len(plan.hot)} msisdns",
            "slow-platforms": "purchases on distinct msisdns",
            "faults": "purchases on distinct msisdns, platform faults on",
            "in-flight": "purchases on distinct msisdns",
            "many-mobiles": "GET /v1/mobiles/{m}/bonos on distinct msisdns",
            "history": f"purchases on distinct msisdns and, one in {LONG_EVERY} when it is free, "
                       f"on {plan.long_msisdn} (long history), {plan.history_rows:,} movements "
                       "stored before the run",
            "movements": f"movements: {plan.advance_clients} clients each running advance "
                         "cycles (advance, 2 top-ups) on a well-known mobile, the others "
                         + (", ".join(f"{k} {share:.0%}" for k, share in _mix(plan.kinds))
                            or "none")
                         + f" (gifts and transfers to one of {plan.beneficiaries} "
                         "mobiles)"}[plan.scenario]
    how = (f"{plan.connections} closed-loop clients" if plan.mode == "closed" else
           f"open loop at {plan.rate:g}/s (≤ {plan.connections} connections)")
    wait = f"Prefer: wait={plan.wait:g}" if plan.wait else "no Prefer (202 at once)"
    return f"{what}, {how}, {wait}, {procs} load process(es)"


def _mix(kinds: Sequence[str]) -> list[tuple[str, float]]:
    """movements: the other clients' mix, as shares."""
    chosen = [(k, s) for k, s in MOVEMENT_MIX if k in kinds]
    whole = sum(s for _, s in chosen)
    return [(k, s / whole) for k, s in chosen]


def timeseries(outcome: LoadOutcome, audit_final: list[float]) -> dict[str, list[float]]:
    """Per-second series for the PNG: answers, latency, in flight, CPU and RSS."""
    last = max(outcome.seconds, default=0)
    finals_db = Counter(int(t) for t in audit_final if t >= 0)
    ts: dict[str, list[float]] = {k: [] for k in (
        "t", "final_per_s", "final_db_per_s", "requests_per_s", "errors_per_s", "p50_ms",
        "p99_ms", "max_ms", "client_outstanding", "db_pending", "sim_in_flight",
        "server_cpu_pct", "pg_cpu_pct", "sim_cpu_pct", "loadgen_cpu_pct", "server_rss_mb")}
    for s in range(last + 1):
        sec = outcome.seconds.get(s, Second())
        ts["t"].append(s + 1)
        ts["final_per_s"].append(sum(n for k, n in sec.counts.items() if is_final(k)))
        ts["final_db_per_s"].append(finals_db.get(s, 0))
        ts["requests_per_s"].append(sum(sec.counts.values()))
        ts["errors_per_s"].append(sum(n for k, n in sec.counts.items() if not is_2xx(k)))
        h = sec.hists.get("purchase") or (next(iter(sec.hists.values())) if sec.hists else None)
        for key, p in (("p50_ms", 50), ("p99_ms", 99)):
            ts[key].append(h.get_value_at_percentile(p) / 1000 if h else math.nan)
        ts["max_ms"].append(h.get_max_value() / 1000 if h else math.nan)
        ts["client_outstanding"].append(sec.outstanding)
        smp = sec.samples
        ts["db_pending"].append(smp.get("db_pending", math.nan))
        ts["sim_in_flight"].append(smp.get("sim_in_flight", math.nan))
        ts["server_rss_mb"].append(smp.get("server_rss", math.nan) / 2**20)
        for key, name in (("server_cpu_pct", "gestor_cpu"), ("pg_cpu_pct", "postgres_cpu"),
                          ("sim_cpu_pct", "simulator_cpu"),
                          ("loadgen_cpu_pct", "loadgen_cpu")):
            nxt = outcome.seconds.get(s + 1, Second()).samples.get(name)
            cur = smp.get(name)
            ts[key].append((nxt - cur) * 100 if nxt is not None and cur is not None
                           else math.nan)
    return ts


