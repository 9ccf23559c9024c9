"""`python -m bench SCENARIO`: start everything, load Gestor, measure, check, report.

One run: an embedded PostgreSQL (or `--database-url`), the platform simulator, the two
baselines (raw asyncpg on the same database; a bare Quart-Trio echo app on the same hypercorn
stack and worker count), then Gestor under the scenario's load, then the correctness checks,
then the Markdown report (stdout), the JSON and the PNG. See bench/README.md.

`purchase` (closed loop) goes on with an open-loop phase at half the saturation rate it
measured; `faults` injects platform faults and waits for the recoverer (bench/_faults.py);
`goals` and `all` run several scenarios (purchase at 1 and 2 workers) and evaluate issue 15's
goals on them (bench/_goals.py), `--runs N` times with the medians.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import _goals as goals
from bench import _movements as movements
from bench import _report as report
from bench import _reports as reports
from bench._env import Env, open_env
from bench._half_rate import MANY_MOBILES_PHASE_S
from bench._output import write_outputs
from bench._plan import MILLION, SCENARIOS, SLOW_SHARE_OF_SATURATION, Plan, runs_of
from bench._procs import ROOT, progress
from bench._scenario import run_scenario

RESULTS_DIR = ROOT / "bench" / "results"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=[*SCENARIOS, "goals", "all", "reports"],
                   help="goals: purchase at 1 and 2 workers, in-flight, many-mobiles, history "
                        "and the goals table; all: every scenario (purchase at 1 and 2 workers) "
                        "and the goals table; reports: each report over a month of 10 million "
                        "movements (bench/_reports.py)")
    p.add_argument("--runs", type=int, default=1,
                   help="goals/all: run the sequence this many times (one PostgreSQL, the "
                        "history loaded once) and print each run's goals and the medians")
    p.add_argument("--workers", type=int, default=None,
                   help="Gestor (and echo) worker processes (default 1; in-flight 2)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of load (default 20; in-flight 70; many-mobiles 8, its "
                        "closed-loop saturation phase)")
    p.add_argument("--warmup", type=float, default=None,
                   help="first seconds left out of the figures (default 2, or 10%% of a short "
                        "run)")
    p.add_argument("--rate", type=float, default=None,
                   help="open loop at this many arrivals/s (default: closed loop; "
                        "slow-platforms: 250/s per worker, or in goals/all 60%% of the purchase "
                        "saturation just measured; faults: 100/s, 0 for a closed loop; "
                        "in-flight: 180/s)")
    p.add_argument("--connections", type=int, default=None,
                   help="closed loop: concurrent clients (default 64); open loop: connection "
                        "cap (default 64, slow-platforms and in-flight 2000)")
    p.add_argument("--procs", type=int, default=1, help="load generator processes (default 1)")
    p.add_argument("--wait", type=float, default=None,
                   help="Prefer: wait=N on purchases (default 10; slow-platforms and "
                        "in-flight 0 → 202)")
    p.add_argument("--latency", default=None,
                   help="simulator latency per platform, e.g. 'ocs=20,dwh=5,prov=10' (the "
                        "default; slow-platforms: 2000 each; in-flight: 20000 each) or 'none'")
    p.add_argument("--hot-msisdns", type=int, default=4, help="hot-mobile: how many (default 4)")
    # ~250/s x 2 s is ~500 calls in flight per platform; a worker keeps 2 descriptors per
    # allowed platform call out of its client connections (gestor/serving/_descriptors.py), so
    # 8000 left it 16 client connections under a 20,000 open-files limit. in-flight: 180/s x 20 s
    # = 3,600 calls per platform, 2 workers x 2000.
    p.add_argument("--platform-concurrency", type=int, default=2000,
                   help="slow-platforms, in-flight: [platforms] max_concurrency given to each "
                        "Gestor worker (each allowed call keeps 2 descriptors from the worker's "
                        "client connections)")
    p.add_argument("--mobiles", type=int, default=0,
                   help="many-mobiles: distinct msisdns listed in the half-rate phase (default: "
                        f"{MANY_MOBILES_PHASE_S:g} s of it; {MILLION:,} for the whole million, "
                        "about an hour on a 2-core box)")
    p.add_argument("--history-rows", type=int, default=10_000_000,
                   help="history: movements stored before the run (default 10,000,000; loaded "
                        "once per invocation, or once per --pg-data directory)")
    reports.add_arguments(p)
    p.add_argument("--pg-data", type=Path, default=None,
                   help="data directory of the embedded PostgreSQL, kept afterwards (default: a "
                        "temporary one): the history database loaded there is reused next time")
    p.add_argument("--baseline-duration", type=float, default=6.0,
                   help="seconds of each baseline (default 6)")
    p.add_argument("--no-baselines", action="store_true", help="skip echo and asyncpg runs")
    p.add_argument("--no-audit", action="store_true",
                   help="no audit trigger (the exact overlap check is skipped)")
    p.add_argument("--no-half-rate", action="store_true",
                   help="purchase, history, many-mobiles: skip the open-loop phase at half the "
                        "saturation rate")
    p.add_argument("--half-rate", type=float, default=None,
                   help="purchase: the second phase's arrival rate (default: half the purchase "
                        "answers/s just measured)")
    p.add_argument("--half-rate-duration", type=float, default=12.0,
                   help="purchase: seconds of the half-rate phase (default 12, first second "
                        "left out)")
    p.add_argument("--fault-knobs", default=None,
                   help="faults: JSON merged into the scenario's simulator fault knobs, e.g. "
                        "'{\"ocs\": {\"refund\": {\"error_rate\": 0.5}}}'")
    p.add_argument("--outage", type=float, default=2.0,
                   help="faults: seconds of dwh outage, starting at 40%% of the load (default "
                        "2; 0: none)")
    p.add_argument("--no-reconcile", action="store_true",
                   help="faults, movements: skip gestor reconcile --strict")
    p.add_argument("--advance-clients", type=int, default=16,
                   help="movements: closed-loop clients running advance cycles (advance, two "
                        "top-ups) on a well-known mobile each (default 16, at most 100)")
    p.add_argument("--beneficiaries", type=int, default=200,
                   help="movements: msisdns the gifts and transfers go to (default 200: "
                        "movements meet on them, so the guard across roles is exercised)")
    p.add_argument("--kinds", default="purchase,gift,transfer,advance",
                   help="movements: what the load makes (default all: purchase, gift, "
                        "transfer, advance = advance cycles with their top-ups); one kind "
                        "alone gives its own CPU per movement")
    p.add_argument("--no-purchase-baseline", action="store_true",
                   help="movements: skip the purchase run before it (CPU per purchase)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the Gestor worker(s) after the warm-up; top frames in the report")
    p.add_argument("--json", type=Path, default=None,
                   help="result file (default bench/results/<scenario>-<timestamp>.json)")
    p.add_argument("--compare", type=Path, default=None, help="an older result JSON")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--database-url", default=None,
                   help="PostgreSQL server to use instead of the embedded one (needs CREATE "
                        "DATABASE: each scenario gets a fresh database there)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    return p


COMBINED_KEYS = ("workers", "purchases_per_s", "completed_per_s", "echo_req_per_s",
                 "ratio_to_echo", "p50_ms", "p99_ms", "cpu_ratio_purchase_to_echo")


def _run_plans(env: Env, plans: list[Plan], args: argparse.Namespace, stamp: str,
               many: bool) -> dict[str, dict[str, Any]]:
    """Run the plans of one sequence, print and save each result; keyed by label."""
    results: dict[str, dict[str, Any]] = {}
    for plan in plans:
        saturation = results.get("purchase", {}).get("purchases_per_s")
        if plan.scenario == "slow-platforms" and args.rate is None and saturation:
            rate = round(SLOW_SHARE_OF_SATURATION * saturation)
            plan = replace(plan, rate=float(max(rate, 10)))
        empty_half = (results.get("purchase", {}).get("half_rate") or {}).get("rate")
        if plan.scenario == "history" and args.half_rate is None and empty_half:
            # the p99s compared at the same offered rate: the box's saturation moves between
            # runs more than a long history could
            plan = replace(plan, half_rate_at=float(empty_half))
        result = run_scenario(env, plan, args, stamp)
        if plan.scenario == "movements" and "purchase" in results:
            movements.beside_purchase(result, results["purchase"])
        # `movements` runs `purchase` first: --json names the last run's file, the other
        # goes next to it
        one_file = not many and args.json is not None
        path = (args.json if one_file and plan is plans[-1] else
                args.json.with_name(f"{plan.name}-{stamp}.json") if one_file and args.json
                else RESULTS_DIR / f"{plan.name}-{stamp}.json")
        write_outputs(result, path, not args.no_plot)
        results[plan.name] = result
        sys.stdout.write(report.markdown(result) + "\n")
        sys.stdout.flush()
    return results


def _combined(scenario: str, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    first = results.get("purchase", {})
    combined: dict[str, Any] = {k: first.get(k) for k in COMBINED_KEYS}
    combined["scenario"] = scenario
    combined["half_rate"] = first.get("half_rate")
    rows = goals.evaluate(results)
    combined["goals"] = [g.as_dict() for g in rows]
    combined["goals_met"] = sum(1 for g in rows if g.met)
    combined["goals_total"] = sum(1 for g in rows if g.op != "info")
    combined["invariants_ok"] = all(r["invariants_ok"] for r in results.values())
    combined["results"] = {k: {kk: vv for kk, vv in v.items() if kk != "timeseries"}
                           for k, v in results.items()}
    return combined


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.scenario == "reports":
        with open_env(args) as env:
            return reports.run(env, args, RESULTS_DIR)
    many = args.scenario in ("goals", "all")
    if args.runs < 1 or (args.runs > 1 and not many):
        raise SystemExit("--runs N (N ≥ 1) is for goals and all")
    plans = runs_of(args.scenario, args)  # checks the options before anything starts
    final: dict[str, Any]
    with open_env(args) as env:
        runs: list[dict[str, Any]] = []
        for run in range(args.runs):
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            if args.runs > 1:
                progress(f"== run {run + 1} of {args.runs} ==", final=True)
            results = _run_plans(env, plans, args, stamp, many)
            if not many:  # one scenario (`movements`: after its purchase baseline)
                final = dict(results[plans[-1].name])
                final["invariants_ok"] = all(r["invariants_ok"] for r in results.values())
                break
            combined = _combined(args.scenario, results)
            path = (args.json if args.json and args.runs == 1
                    else RESULTS_DIR / f"{args.scenario}-{stamp}.json")
            write_outputs(combined, path, plot=False)
            runs.append(combined)
            title = "## Goals (issue 15)" + (f", run {run + 1} of {args.runs}"
                                            if args.runs > 1 else "")
            sys.stdout.write(goals.markdown(goals.evaluate(results), title) + "\n")
            sys.stdout.write(
                f"{args.scenario}: " + ", ".join(
                    f"{k} invariants {'OK' if r['invariants_ok'] else 'FAILED'}"
                    for k, r in results.items())
                + f"; JSON {path}\n")
            sys.stdout.flush()
    if many:
        final = runs[-1]
        if args.runs > 1:
            rows = goals.aggregate([[goals.Goal(**{k: v for k, v in g.items()
                                                   if k not in ("met", "target")})
                                     for g in r["goals"]] for r in runs])
            final = {"scenario": args.scenario, "runs": args.runs,
                     "goals": [g.as_dict() for g in rows],
                     "goals_met": sum(1 for g in rows if g.met),
                     "goals_total": sum(1 for g in rows if g.op != "info"),
                     "invariants_ok": all(r["invariants_ok"] for r in runs),
                     "run_files": [r.get("json_path") for r in runs]}
            path = args.json or RESULTS_DIR / f"{args.scenario}-runs{args.runs}-{stamp}.json"
            write_outputs(final, path, plot=False)
            sys.stdout.write(goals.markdown(rows, f"## Goals (issue 15): {args.runs} runs")
                             + f"\nJSON {path}\n")
    if args.compare:
        old = json.loads(args.compare.read_text())
        old.setdefault("json_path", str(args.compare))
        sys.stdout.write("\n" + report.compare(old, final) + "\n")
    return 0 if final["invariants_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
