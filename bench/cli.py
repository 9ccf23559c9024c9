"""`python -m bench SCENARIO`: start everything, load Gestor, measure, check, report.

One run: an embedded PostgreSQL (or `--database-url`), the platform simulator, the two
baselines (raw asyncpg on the same database; a bare Quart-Trio echo app on the same hypercorn
stack and worker count), then Gestor under the scenario's load, then the correctness checks,
then the Markdown report (stdout), the JSON and the PNG. See bench/README.md.

`purchase` (closed loop) goes on with an open-loop phase at half the saturation rate it
measured; `faults` injects platform faults and waits for the recoverer (bench/_faults.py);
`goals` and `all` run several scenarios (purchase at 1 and 2 workers) and evaluate issue 6's
goals on them (bench/_goals.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from hdrh.histogram import HdrHistogram

from bench import _faults as faults
from bench import _goals as goals
from bench import _report as report
from bench import _storage as storage
from bench._load import LoadSpec, new_histogram, run_process
from bench._procs import (
    ROOT,
    Child,
    ProcessGroup,
    child_env,
    free_port,
    http_json,
    python,
    running_workers,
    wait_ready,
)

SCENARIOS = ("purchase", "mix", "hot-mobile", "slow-platforms", "faults")
FINAL_STATES = {"completed", "rejected", "failed", "refunded", "inconsistent"}
RESULTS_DIR = ROOT / "bench" / "results"
HALF_RATE_P99_TARGET_MS = 100.0


# -- plans --------------------------------------------------------------------------------------
#: slow-platforms' offered rate without --rate: per worker when run alone; in `goals`/`all`, this
#: share of the purchase saturation rate just measured (a 2 s platform costs more CPU per
#: purchase than a 20 ms one: thousands of connections and live sagas). Purchases in flight =
#: rate x saga time (3 calls of 2 s), so the rate the box sustains sets the peak in flight.
SLOW_RATE_PER_WORKER = 250.0
SLOW_SHARE_OF_SATURATION = 0.6
@dataclass(frozen=True)
class Plan:
    """What one scenario does to Gestor."""

    scenario: str
    mode: str                       # closed | open
    connections: int                # closed: clients; open: connection cap
    rate: float                     # open: arrivals/s (all load processes together)
    wait: float                     # Prefer: wait=N on purchases; 0 → 202 at once
    latency: Mapping[str, Any]      # simulator fault knobs (PUT /control/faults)
    platforms: Mapping[str, Any] = field(default_factory=dict)  # [platforms] overrides
    hot: tuple[str, ...] = ()
    drain: float = 30.0             # max seconds to wait for the server to go quiet
    ratio_basis: str = "purchases_per_s"
    workers: int = 1
    label: str = ""                 # the run's name in `all` and in file names (default scenario)
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # other sections
    outage: tuple[float, float] | None = None  # faults: [start, end) s of the dwh outage
    half_rate: bool = False         # purchase: then an open-loop phase at half the saturation

    @property
    def name(self) -> str:
        return self.label or self.scenario

    def config_overrides(self) -> dict[str, dict[str, Any]]:
        out = {k: dict(v) for k, v in self.config.items()}
        if self.platforms:
            out.setdefault("platforms", {}).update(self.platforms)
        return out


DEFAULT_LATENCY = {"dwh": {"latency_ms": 5}, "ocs": {"latency_ms": 20},
                   "prov": {"latency_ms": 10}}


def parse_latency(text: str) -> dict[str, Any]:
    """`ocs=20,dwh=5,prov=10` → fault knobs; `none` → {}."""
    if text.strip().lower() in ("", "none", "0"):
        return {}
    out: dict[str, Any] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        out[name.strip()] = {"latency_ms": float(value)}
    return out


def describe_latency(latency: Mapping[str, Any]) -> str:
    if not latency:
        return "none"
    return ", ".join(f"{k} {v.get('latency_ms', 0):g} ms" for k, v in latency.items()
                     if isinstance(v, Mapping))


def make_plan(scenario: str, args: argparse.Namespace, *, workers: int | None = None,
              label: str = "", half_rate: bool | None = None) -> Plan:
    latency = parse_latency(args.latency) if args.latency is not None else DEFAULT_LATENCY
    mode = "open" if args.rate else "closed"
    conns = args.connections or 64
    wait = 10.0 if args.wait is None else args.wait
    workers = args.workers if workers is None else workers
    common: dict[str, Any] = {"workers": workers, "label": label}
    if scenario == "purchase":
        # half the saturation rate only makes sense after a closed-loop (saturation) run
        half = (not args.no_half_rate and mode == "closed") if half_rate is None else half_rate
        return Plan(scenario, mode, conns, args.rate or 0, wait, latency,
                    half_rate=half and mode == "closed", **common)
    if scenario == "mix":
        return Plan(scenario, mode, conns, args.rate or 0, wait, latency,
                    ratio_basis="requests_per_s", **common)
    if scenario == "hot-mobile":
        hot = tuple(f"54911000000{i:02d}" for i in range(1, args.hot_msisdns + 1))
        # the per-msisdn purchase limit off: this scenario is about the one-pending guard
        # (409 PURCHASE_PENDING), not about 429 RATE_LIMITED
        return Plan(scenario, mode, conns, args.rate or 0, wait, latency, hot=hot,
                    ratio_basis="requests_per_s",
                    config={"limits": {"msisdn": {"purchase": {"rate": 0.0}}}}, **common)
    if scenario == "slow-platforms":
        latency = parse_latency(args.latency) if args.latency is not None else {
            "dwh": {"latency_ms": 2000}, "ocs": {"latency_ms": 2000},
            "prov": {"latency_ms": 2000}}
        return Plan(
            scenario, "open", args.connections or 2000,
            args.rate or SLOW_RATE_PER_WORKER * (workers or args.workers),
            0.0 if args.wait is None else args.wait, latency,
            platforms={"timeout": 10.0, "max_concurrency": args.platform_concurrency},
            # one client offering more than the per-key purchase limit (1,000/s) may need
            config={"limits": {"key": {"purchase": {"rate": 0.0}}}},
            drain=60.0, **common,
        )
    if scenario == "faults":
        knobs = faults.merge_knobs(faults.DEFAULT_KNOBS, {})
        if args.latency is not None:
            for platform, value in parse_latency(args.latency).items():
                knobs.setdefault(platform, {}).update(value)
        if args.fault_knobs:
            knobs = faults.merge_knobs(knobs, json.loads(args.fault_knobs))
        outage = None
        if args.outage > 0:
            start = max(args.warmup, round(args.duration * 0.4))
            outage = (start, min(args.duration, start + args.outage))
        # open loop by default: in a closed loop the purchases that fail fast (outage, open
        # circuit) come back at once and crowd out everything else
        rate = faults.DEFAULT_RATE if args.rate is None else args.rate
        return Plan(scenario, "open" if rate else "closed", conns, rate, wait, knobs,
                    config=faults.CONFIG, outage=outage, drain=max(60.0, args.duration * 3),
                    **common)
    raise SystemExit(f"unknown scenario {scenario!r}")


# -- the environment shared by the scenarios of one invocation ----------------------------------
@dataclass
class Env:
    tmp: Path
    admin_dsn: str
    pg_pid: int | None
    pg_settings: dict[str, str]
    sim: Child
    sim_url: str
    storage: dict[str, Any] = field(default_factory=dict)
    echo: dict[int, dict[str, Any]] = field(default_factory=dict)

    def dsn_for(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path="/" + database))

    def pg_group(self) -> ProcessGroup | None:
        return None if self.pg_pid is None else ProcessGroup("postgres", [self.pg_pid])


def progress(text: str, *, final: bool = False) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[2K" + text + ("\n" if final else ""))
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


@contextlib.contextmanager
def open_env(args: argparse.Namespace) -> Iterator[Env]:
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="gestor-bench-"))
        if not args.keep:
            stack.callback(shutil.rmtree, tmp, True)
        if args.database_url:
            admin_dsn, pg_pid = args.database_url, None
        else:
            from gestor.store import start_embedded

            progress("starting the embedded PostgreSQL…", final=True)
            pg = start_embedded(tmp / "pg")
            stack.callback(pg.stop)
            admin_dsn = pg.dsn
            pg_pid = int((tmp / "pg" / "postmaster.pid").read_text().split()[0])
        sim = Child("simulator", python("-m", "gestor", "simulate", "--bind", "127.0.0.1:0"),
                    child_env(), tmp / "simulator.log")
        stack.callback(sim.stop)
        sim_url = sim.wait_line("listening on ", 30)
        settings = storage.arun(storage.server_settings(admin_dsn))
        yield Env(tmp, admin_dsn, pg_pid, settings, sim, sim_url)


# -- driving load processes ---------------------------------------------------------------------
@dataclass
class Second:
    counts: Counter[str] = field(default_factory=Counter)
    hists: dict[str, HdrHistogram] = field(default_factory=dict)
    outstanding: int = 0
    connections: int = 0
    samples: dict[str, float] = field(default_factory=dict)


@dataclass
class LoadOutcome:
    hists: dict[str, HdrHistogram]
    counts: Counter[str]
    seconds: dict[int, Second]
    answers: list[Any]
    unfinished: int
    peak_outstanding: int
    connects: int
    lag_max_s: float
    loadgen_cpu_s: float
    errors: list[str]
    t0: float
    ended: float


Sampler = Callable[[int], dict[str, float]]


def drive(specs: list[LoadSpec], t0: float, *, label: str, sampler: Sampler | None,
          on_second: Callable[[int, Second], str] | None) -> LoadOutcome:
    """Run the load processes to completion, merging what they report; call `sampler(second)`
    once a second (orchestrator-side measurements) and print a progress line."""
    ctx = multiprocessing.get_context("spawn")
    pipes: list[Connection[Any, Any]] = []
    procs = []
    for spec in specs:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=run_process, args=(spec, send), daemon=True,
                           name=f"bench-load-{spec.proc_index}")
        proc.start()
        send.close()
        pipes.append(recv)
        procs.append(proc)
    loadgen = ProcessGroup("load generator", [p.pid for p in procs if p.pid])
    loadgen.sample()
    cpu0 = loadgen.cpu
    seconds: dict[int, Second] = {}
    ticks: Counter[int] = Counter()
    hists: dict[str, HdrHistogram] = {}
    counts: Counter[str] = Counter()
    answers: list[Any] = []
    errors: list[str] = []
    unfinished = peak = connects = 0
    lag = 0.0
    open_pipes = list(pipes)
    next_sample = 0
    shown = -1
    try:
        while open_pipes:
            for ready in multiprocessing.connection.wait(open_pipes, timeout=0.1):
                pipe = cast("Connection[Any, Any]", ready)
                try:
                    msg: dict[str, Any] = pipe.recv()
                except EOFError:
                    open_pipes.remove(pipe)
                    continue
                if msg["type"] == "tick":
                    sec = seconds.setdefault(msg["second"], Second())
                    sec.counts.update(msg["counts"])
                    for kind, blob in msg["hists"].items():
                        h = sec.hists.get(kind)
                        if h is None:
                            h = sec.hists[kind] = new_histogram()
                        h.add(HdrHistogram.decode(blob))
                    sec.outstanding += msg["outstanding"]
                    sec.connections += msg["connections"]
                    ticks[msg["second"]] += 1
                elif msg["type"] == "done":
                    for kind, blob in msg["hists"].items():
                        h = hists.get(kind)
                        if h is None:
                            h = hists[kind] = new_histogram()
                        h.add(HdrHistogram.decode(blob))
                    counts.update(msg["counts"])
                    answers.extend(msg["answers"])
                    unfinished += msg["unfinished"]
                    peak += msg["peak_outstanding"]
                    connects += msg["connects"]
                    lag = max(lag, msg["lag_max_s"])
                elif msg["type"] == "error":
                    errors.append(msg["error"])
            now = time.time()
            while sampler is not None and now >= t0 + next_sample:
                loadgen.sample()
                extra = sampler(next_sample)
                extra["loadgen_cpu"] = loadgen.cpu
                seconds.setdefault(next_sample, Second()).samples.update(extra)
                next_sample += 1
            complete = [s for s in sorted(ticks) if ticks[s] == len(specs) and s > shown]
            for s in complete:
                shown = s
                if on_second is not None:
                    progress(f"[{label}] {on_second(s, seconds[s])}")
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    loadgen_cpu = loadgen.cpu - cpu0
    if errors:
        raise RuntimeError("load generator failed: " + "; ".join(errors))
    return LoadOutcome(hists, counts, seconds, answers, unfinished, peak, connects, lag,
                       loadgen_cpu, errors, t0, time.time())


def make_specs(plan_scenario: str, host: str, port: int, *, mode: str, connections: int,
               rate: float, duration: float, warmup: float, wait: float, procs: int,
               t0: float, hot: tuple[str, ...] = (), drain: float = 15.0,
               keep_answers: bool = True) -> list[LoadSpec]:
    run_id = uuid.uuid4().hex[:8]
    specs = []
    for i in range(procs):
        share = connections // procs + (1 if i < connections % procs else 0)
        specs.append(LoadSpec(
            host=host, port=port, scenario=plan_scenario, mode=mode,
            connections=max(1, share), rate=rate / procs if rate else 0.0, t0=t0,
            duration=duration, warmup=warmup, wait=wait, proc_index=i, procs=procs,
            run_id=run_id, hot_msisdns=hot, seed=int(t0) % 100_000 + i,
            msisdn_base=20_000_000 + (int(t0 * 10) % 5_000) * 10_000, drain=drain,
            keep_answers=keep_answers,
        ))
    return specs


# -- baselines ----------------------------------------------------------------------------------
def storage_baseline(env: Env, args: argparse.Namespace) -> dict[str, Any]:
    if env.storage:
        return env.storage
    database = "bench_storage_baseline"
    storage.arun(storage.create_database(env.admin_dsn, database))
    dsn = env.dsn_for(database)
    _migrate(dsn)
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


# -- Gestor -------------------------------------------------------------------------------------
def _migrate(dsn: str) -> None:
    import trio

    from gestor.store import migrate, open_bridge

    async def run() -> None:
        async with open_bridge(dsn, min_size=1, max_size=1) as bridge:
            await migrate(bridge)

    trio.run(run)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml(data: Mapping[str, Any], prefix: str = "") -> str:
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    out = [f"[{prefix}]"] if prefix and scalars else []
    out += [f"{json.dumps(k) if not re.fullmatch(r'[A-Za-z0-9_-]+', k) else k} = "
            f"{_toml_value(v)}" for k, v in scalars]
    for k, v in tables:
        out.append(_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(out) + "\n"


def _deep_update(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _deep_update(dst[key], value)
        else:
            dst[key] = dict(value) if isinstance(value, Mapping) else value


def config_dir_with(tmp: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """A copy of config/ whose gestor.toml has these settings, by section (`{"platforms":
    {"timeout": 10, "ocs": {"retries": 0}}, "recovery": {...}}`, merged into the shipped ones)."""
    src = ROOT / "config"
    dst = tmp / "config"
    shutil.copytree(src, dst, dirs_exist_ok=True)
    data = tomllib.loads((src / "gestor.toml").read_text())
    _deep_update(data, sections)
    (dst / "gestor.toml").write_text(_toml(data))
    return dst


_LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+?)\[\d+\][^:]*: (.*)$")
_HEX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b\d{6,}\b")
_PROBLEMS = ("WARNING", "ERROR", "CRITICAL")


def log_problems(text: str) -> dict[str, int]:
    """Warnings and errors of a gestor log, in either format (gestor/logs.py), by message."""
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


def run_scenario(env: Env, plan: Plan, args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    workers = plan.workers
    storage_result = storage_baseline(env, args) if not args.no_baselines else {}
    echo = echo_baseline(env, args, workers) if not args.no_baselines else {}

    database = f"bench_{plan.name.replace('-', '_')}_{stamp.replace('-', '_')}"
    storage.arun(storage.create_database(env.admin_dsn, database))
    dsn = env.dsn_for(database)
    _migrate(dsn)
    if not args.no_audit:
        storage.arun(storage.install_audit(dsn))
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
                           duration=args.duration, warmup=args.warmup, wait=plan.wait,
                           procs=args.procs, t0=t0, hot=plan.hot,
                           drain=max(15.0, plan.wait + 10))
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
            if args.profile and not spy_started and second >= args.warmup:
                spy_started = True
                spies.extend(_start_py_spy(env.tmp, plan.name, worker_pids,
                                           args.duration - second))
            return out

        def line(s: int, sec: Second) -> str:
            return _progress_line(plan, s, sec)

        try:
            outcome = drive(specs, t0, label=plan.name, sampler=sampler, on_second=line)
        finally:
            set_outage(False)
        # let the server finish what it accepted (sagas after 202s, retries, recovery…)
        pending = _wait_quiet(plan, db, sim, t0, outcome, sampler)
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
        checks = storage.arun(storage.check_database(dsn, outcome.answers))
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
            window = args.duration - args.warmup
            saturation = sum(n for k, n in outcome.counts.items() if _is_final(k)) / window
            half, half_answers, half_unfinished = half_rate_phase(
                plan, args, port, db, sim, saturation, server)
            if half_answers or half_unfinished:
                final_pending = db.pending()
                final_sim_stats = http_json("GET", f"{sim}/control/stats")
                final_checks = storage.arun(storage.check_database(
                    dsn, outcome.answers + half_answers))
                unfinished += half_unfinished
    finally:
        if db is not None:
            db.close()
        exit_code = gestor.stop()
    log = gestor.log_text()
    profile = report.profile_summary(
        env.tmp.glob(f"pyspy-{plan.name}-*.txt")) if args.profile else None
    extra_checks = faults.checks(fault_result) if fault_result is not None else []
    result = assemble(
        plan=plan, args=args, outcome=outcome, cpu=cpu, groups=groups, server=server,
        storage_result=storage_result, echo=echo, checks=checks, sim_stats=sim_stats,
        sim_peak=sim_peak, commits=commits, quiesced=quiesced, pending_left=pending,
        exit_code=exit_code, log=log, profile=profile, started=started, env=env,
        audit_final=audit_final, database=database,
    )
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
    return result


def _wait_quiet(plan: Plan, db: storage.DbThread, sim: str, t0: float, outcome: LoadOutcome,
                sampler: Sampler | None) -> int:
    """Wait (at most `plan.drain` s) until nothing is pending in the database (inconsistent
    purchases included: the recoverer settles them) and nothing is in flight at the simulator;
    return what is still pending."""
    started = time.time()
    deadline = started + plan.drain
    shown = started
    pending = -1
    while time.time() < deadline:
        pending = db.pending()
        stats = http_json("GET", f"{sim}/control/stats", timeout=5)
        if pending == 0 and stats.get("in_flight", 0) == 0:
            break
        now = time.time()
        second = int(now - t0)
        if sampler is not None and (second not in outcome.seconds
                                    or not outcome.seconds[second].samples):
            outcome.seconds.setdefault(second, Second()).samples.update(sampler(second))
        if now - shown >= 2:
            shown = now
            stuck = int(db.fetchval(
                "SELECT count(*) FROM transactions WHERE state = 'inconsistent'") or 0)
            progress(f"[{plan.name}] waiting for the server to go quiet ({now - started:.0f} s):"
                     f" {pending:,} pending ({stuck:,} inconsistent), "
                     f"{stats.get('in_flight', 0):,} in flight at the simulator")
        time.sleep(0.25)
    return pending


def half_rate_phase(plan: Plan, args: argparse.Namespace, port: int, db: storage.DbThread,
                    sim: str, saturation: float, server: ProcessGroup
                    ) -> tuple[dict[str, Any], list[Any], int]:
    """Open loop at half the saturation rate just measured (or `--half-rate`) on the same
    server: the latency a purchase gets when the box is not saturated."""
    rate = args.half_rate or saturation / 2
    duration = args.half_rate_duration
    warmup = min(1.0, duration * 0.1)
    out: dict[str, Any] = {"rate": rate, "saturation_per_s": saturation, "workers": plan.workers,
                           "rate_basis": "--half-rate" if args.half_rate else
                           "half the purchase answers/s (final) of the closed-loop run",
                           "duration_s": duration, "warmup_s": warmup,
                           "target_p99_ms": HALF_RATE_P99_TARGET_MS}
    if rate < 1:
        out["skipped"] = f"rate {rate:.2f}/s is below 1/s"
        return out, [], 0
    progress(f"[{plan.name}] open loop at {rate:,.1f}/s (half of {saturation:,.1f}/s) for "
             f"{duration:g} s…", final=True)
    completed0 = int(db.fetchval(
        "SELECT count(*) FROM transactions WHERE state = 'completed'") or 0)
    server.sample()
    cpu0 = server.cpu
    t0 = time.time() + 1.0
    specs = make_specs("purchase", "127.0.0.1", port, mode="open",
                       connections=args.connections or 64, rate=rate, duration=duration,
                       warmup=warmup, wait=plan.wait, procs=args.procs, t0=t0,
                       drain=max(15.0, plan.wait + 10))
    outcome = drive(specs, t0, label=f"{plan.name} @ half rate", sampler=None,
                    on_second=lambda s, sec: _progress_line(plan, s, sec))
    pending = _wait_quiet(plan, db, sim, t0, outcome, None)
    server.sample()
    cpu = server.cpu - cpu0
    completed = int(db.fetchval(
        "SELECT count(*) FROM transactions WHERE state = 'completed'") or 0) - completed0
    window = duration - warmup
    s = report.summary(outcome.hists.get("purchase", new_histogram()))
    finals = sum(n for k, n in outcome.counts.items() if _is_final(k))
    errors = report.errors_of(outcome.counts)
    out.update({
        "n": s.get("n", 0),
        "purchases_per_s": finals / window,
        "p50_ms": s.get("p50_ms"), "p90_ms": s.get("p90_ms"), "p99_ms": s.get("p99_ms"),
        "p999_ms": s.get("p999_ms"), "max_ms": s.get("max_ms"),
        "latency": {k: report.summary(h) for k, h in outcome.hists.items()},
        "errors": errors,
        "error_count": sum(errors.values()),
        "outcomes": report.split_counts(outcome.counts).get("purchase", {}),
        "lag_max_s": outcome.lag_max_s,
        "unfinished": outcome.unfinished,
        "pending_after": pending,
        "cpu_per_purchase_ms": cpu * 1000 / completed if completed else None,
        "met": s.get("p99_ms") is not None and s["p99_ms"] <= HALF_RATE_P99_TARGET_MS,
    })
    progress(f"[{plan.name}] half rate {rate:,.1f}/s: p50 {out['p50_ms']} ms, p99 "
             f"{out['p99_ms']} ms, p99.9 {out['p999_ms']} ms, {out['error_count']} errors",
             final=True)
    return out, outcome.answers, outcome.unfinished


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


def _progress_line(plan: Plan, s: int, sec: Second) -> str:
    final = sum(n for k, n in sec.counts.items() if _is_final(k))
    total = sum(sec.counts.values())
    errors = sum(n for k, n in sec.counts.items() if not _is_2xx(k))
    h = sec.hists.get("purchase") or (next(iter(sec.hists.values())) if sec.hists else None)
    p50 = h.get_value_at_percentile(50) / 1000 if h else math.nan
    p99 = h.get_value_at_percentile(99) / 1000 if h else math.nan
    cpu = sec.samples
    extra = ""
    if "db_pending" in cpu:
        extra = f" | in flight db {cpu['db_pending']:,.0f}"
    return (f"t={s + 1:>3}s final {final:>5,}/s all {total:>6,}/s err {errors:>4,} "
            f"p50 {p50:7.1f} ms p99 {p99:7.1f} ms | outstanding {sec.outstanding:,}{extra}")


def _is_final(key: str) -> bool:
    """A purchase answered in a final state: 200 and terminal, or 202 `inconsistent` (settled
    as far as the saga goes: the recoverer takes it from there)."""
    kind, status, detail = [*key.split(" ", 2), "", ""][:3]
    return kind == "purchase" and ((status == "200" and detail in FINAL_STATES)
                                   or (status == "202" and detail == "inconsistent"))


def _is_2xx(key: str) -> bool:
    parts = key.split(" ", 2)
    return len(parts) > 1 and parts[1].startswith("2")


# -- assembling the result ----------------------------------------------------------------------
def invariants(checks: Mapping[str, Any], sim_stats: Mapping[str, Any], pending_left: int,
               exit_code: int | None, unfinished: int, *,
               extra: Iterable[tuple[str, bool, str]] = (), scope: str = "") -> dict[str, Any]:
    by_state = checks["by_state"]
    price = checks["price_by_state"]
    net = sim_stats.get("debited_total", 0) - sim_stats.get("refunded_total", 0)
    completed_sum = price.get("completed", 0)
    limbo = price.get("inconsistent", 0)
    out = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append({"name": name, "ok": bool(ok), "detail": detail})

    if checks["audit"]:
        n = checks["overlap_count"]
        add("no mobile had two purchases in flight at once (audit log, commit order)", n == 0,
            f"{checks['audit_events']:,} state changes replayed; {n} overlaps"
            + (f", e.g. {checks['overlaps'][:2]}" if n else ""))
    add("the one-pending-per-mobile unique index is in place and valid",
        checks["pending_index_ok"], "transactions_one_pending_per_msisdn")
    add("no mobile has two pending transactions now", checks["msisdns_with_two_pending_now"] == 0,
        f"{checks['msisdns_with_two_pending_now']} mobiles")
    add("the server went quiet (nothing pending after the drain)", pending_left == 0,
        f"{pending_left} transactions still pending")
    unsettled = "" if pending_left == 0 else \
        f" (not quiet: {pending_left} purchases pending, their money may be in flight)"
    add("money: simulator debits - refunds = sum of prices of completed purchases",
        net == completed_sum + limbo,
        f"simulator {net:,} = {sim_stats.get('debited_total', 0):,} - "
        f"{sim_stats.get('refunded_total', 0):,}; database completed {completed_sum:,}"
        + (f" + inconsistent {limbo:,}" if limbo else "") + unsettled)
    charged = checks["charged_transactions"]
    add("every charged purchase has exactly one debit", sim_stats.get("debits") == charged,
        f"simulator debits {sim_stats.get('debits'):,}, charged transactions {charged:,}"
        + unsettled)
    refunded = by_state.get("refunded", 0)
    add("every refunded purchase has exactly one refund", sim_stats.get("refunds") == refunded,
        f"simulator refunds {sim_stats.get('refunds'):,}, refunded transactions {refunded:,}")
    add("every completed purchase was provisioned once",
        sim_stats.get("provisioned") == by_state.get("completed", 0),
        f"simulator bundles {sim_stats.get('provisioned'):,}, completed "
        f"{by_state.get('completed', 0):,}")
    add("the server's final answers match the database",
        checks["answers_missing_in_db"] == 0 and checks["answers_state_mismatch"] == 0,
        f"{checks['answers_checked']:,} final answers; {checks['answers_missing_in_db']} not in "
        f"the database, {checks['answers_state_mismatch']} with another state"
        + (f" {checks['answers_mismatch_examples']}" if checks["answers_state_mismatch"] else ""))
    for name, ok, detail in extra:
        add(name, ok, detail)
    add("gestor serve stopped cleanly on SIGTERM", exit_code == 0, f"exit code {exit_code}")
    add("a mobile's records never overlap in time (previous updated_at <= next created_at)",
        checks["timestamp_overlaps"] == 0, f"{checks['timestamp_overlaps']} overlaps")
    notes = []
    if scope:
        notes.append(f"checked once the server was quiet after the {scope}")
    if unfinished:
        notes.append(f"{unfinished} requests were still unanswered when the load generator gave"
                     " up (counted as errors)")
    return {"ok": all(c["ok"] for c in out), "checks": out, "notes": notes}


def assemble(**kw: Any) -> dict[str, Any]:
    plan: Plan = kw["plan"]
    args = kw["args"]
    outcome: LoadOutcome = kw["outcome"]
    env: Env = kw["env"]
    window = args.duration - args.warmup
    counts = outcome.counts
    outcomes = report.split_counts(counts)
    final_answers = sum(n for k, n in counts.items() if _is_final(k))
    completed_answers = sum(n for k, n in counts.items() if k == "purchase 200 completed")
    # answered requests (status 0 = transport failure or never answered)
    requests = sum(n for k, n in counts.items()
                   if not k.startswith("connect ") and k.split(" ", 2)[1:2] != ["0"])
    finals_db = [t for t in kw["audit_final"] if args.warmup <= t < args.duration]
    checks = kw["checks"]
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
    main_kind = "purchase"
    main = lat.get(main_kind, {})
    echo = kw["echo"]
    storage_result = kw["storage_result"]
    headline = purchases_per_s if plan.ratio_basis == "purchases_per_s" else requests_per_s
    echo_rps = echo.get("req_per_s")
    cpu = kw["cpu"]
    quiet_window = kw["quiesced"] - outcome.t0
    server_cpu = cpu.get("gestor", 0.0)
    completed_total = checks["by_state"].get("completed", 0)
    final_total = sum(checks["by_state"].get(s, 0) for s in FINAL_STATES)
    cpu_per_purchase = server_cpu * 1000 / completed_total if completed_total else None
    answered_total = sum(n for sec in outcome.seconds.values() for k, n in sec.counts.items()
                         if k.split(" ", 2)[1:2] != ["0"])
    cpu_per_request = server_cpu * 1000 / answered_total if answered_total else None
    cpu_per_echo = echo.get("cpu_per_request_ms")
    groups = {g.name: g for g in kw["groups"]}
    cpu_table = {}
    for name, g in groups.items():
        cpu_table[name] = {"cpu_s": cpu.get(name, 0.0),
                           "cpu_share": cpu.get(name, 0.0) / quiet_window,
                           "peak_rss_mb": g.peak_rss / 2**20}
    cpu_table["load generator"] = {"cpu_s": outcome.loadgen_cpu_s,
                                   "cpu_share": outcome.loadgen_cpu_s / quiet_window,
                                   "peak_rss_mb": None}
    box = box_ceiling(cpu_table, completed_total)
    ts = timeseries(outcome, args, kw["audit_final"])
    peak_db = max((x for x in ts["db_pending"] if not math.isnan(x)), default=0)
    peak_rss = groups["gestor"].peak_rss / 2**20
    result: dict[str, Any] = {
        "scenario": plan.scenario,
        "label": plan.name,
        "workers": plan.workers,
        "started": kw["started"],
        "mode": plan.mode,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
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
        "db_commits": kw["commits"],
        "db_commits_per_purchase": kw["commits"] / final_total if final_total else None,
        "invariants_ok": None,
        "invariants": None,
        "outcomes": outcomes,
        "errors": report.errors_of(counts),
        "transactions_by_state": checks["by_state"],
        "in_flight": {
            "peak_db_pending": peak_db,
            "peak_client": max((s.outstanding for s in outcome.seconds.values()), default=0),
            "peak_simulator": kw["sim_peak"],
        },
        "rss_mb_peak": peak_rss,
        "rss_kb_per_in_flight": (peak_rss * 1024 / peak_db) if peak_db else None,
        "cpu": cpu_table,
        "echo": echo,
        "storage": storage_result,
        "simulator_stats": {k: v for k, v in kw["sim_stats"].items() if k != "per_msisdn"},
        "load": {
            "describe": _describe_load(plan, args),
            "connections": plan.connections, "rate": plan.rate, "wait": plan.wait,
            "procs": args.procs, "unfinished": outcome.unfinished,
            "connects": outcome.connects, "lag_max_s": outcome.lag_max_s,
            "hot_msisdns": list(plan.hot),
        },
        "platform_latency": describe_latency(plan.latency),
        "platform_overrides": dict(plan.platforms),
        "postgres": env.pg_settings | {"embedded": env.pg_pid is not None},
        "gestor_exit_code": kw["exit_code"],
        "log_problems": log_problems(kw["log"]),
        "profile": kw["profile"],
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


def _describe_load(plan: Plan, args: argparse.Namespace) -> str:
    what = {"purchase": "purchases on distinct msisdns",
            "mix": "70% list bonos / 20% purchase / 10% status",
            "hot-mobile": f"purchases on {len(plan.hot)} msisdns",
            "slow-platforms": "purchases on distinct msisdns",
            "faults": "purchases on distinct msisdns, platform faults on"}[plan.scenario]
    how = (f"{plan.connections} closed-loop clients" if plan.mode == "closed" else
           f"open loop at {plan.rate:g}/s (≤ {plan.connections} connections)")
    wait = f"Prefer: wait={plan.wait:g}" if plan.wait else "no Prefer (202 at once)"
    return f"{what}, {how}, {wait}, {args.procs} load process(es)"


def timeseries(outcome: LoadOutcome, args: argparse.Namespace, audit_final: list[float]
               ) -> dict[str, list[float]]:
    last = max(outcome.seconds, default=0)
    finals_db = Counter(int(t) for t in audit_final if t >= 0)
    ts: dict[str, list[float]] = {k: [] for k in (
        "t", "final_per_s", "final_db_per_s", "requests_per_s", "errors_per_s", "p50_ms",
        "p99_ms", "max_ms", "client_outstanding", "db_pending", "sim_in_flight",
        "server_cpu_pct", "pg_cpu_pct", "sim_cpu_pct", "loadgen_cpu_pct", "server_rss_mb")}
    for s in range(last + 1):
        sec = outcome.seconds.get(s, Second())
        ts["t"].append(s + 1)
        ts["final_per_s"].append(sum(n for k, n in sec.counts.items() if _is_final(k)))
        ts["final_db_per_s"].append(finals_db.get(s, 0))
        ts["requests_per_s"].append(sum(sec.counts.values()))
        ts["errors_per_s"].append(sum(n for k, n in sec.counts.items() if not _is_2xx(k)))
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


# -- output -------------------------------------------------------------------------------------
def _json_default(o: Any) -> Any:
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, Path):
        return str(o)
    raise TypeError(repr(o))


def _clean(o: Any) -> Any:
    if isinstance(o, float):
        return None if math.isnan(o) or math.isinf(o) else o
    if isinstance(o, Mapping):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def write_outputs(result: dict[str, Any], path: Path, plot: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    result["json_path"] = str(path)
    if plot and "timeseries" in result:
        png = report.plot(result, path.with_suffix(".png"))
        result["png_path"] = str(png) if png else None
    path.write_text(json.dumps(_clean(result), indent=1, default=_json_default) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=[*SCENARIOS, "goals", "all"],
                   help="goals: purchase at 1 and 2 workers + slow-platforms and the goals "
                        "table; all: every scenario (purchase at 1 and 2 workers) and the "
                        "goals table")
    p.add_argument("--workers", type=int, default=1, help="Gestor (and echo) worker processes")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    p.add_argument("--warmup", type=float, default=None,
                   help="first seconds left out of the figures (default 2, or 10%% of a short "
                        "run)")
    p.add_argument("--rate", type=float, default=None,
                   help="open loop at this many arrivals/s (default: closed loop; "
                        "slow-platforms: 250/s per worker, or in goals/all 60%% of the purchase "
                        "saturation just measured; faults: 100/s, 0 for a closed loop)")
    p.add_argument("--connections", type=int, default=None,
                   help="closed loop: concurrent clients (default 64); open loop: connection "
                        "cap (default 64, slow-platforms 2000)")
    p.add_argument("--procs", type=int, default=1, help="load generator processes (default 1)")
    p.add_argument("--wait", type=float, default=None,
                   help="Prefer: wait=N on purchases (default 10; slow-platforms 0 → 202)")
    p.add_argument("--latency", default=None,
                   help="simulator latency per platform, e.g. 'ocs=20,dwh=5,prov=10' (the "
                        "default; slow-platforms: 2000 each) or 'none'")
    p.add_argument("--hot-msisdns", type=int, default=4, help="hot-mobile: how many (default 4)")
    # ~250/s x 2 s is ~500 calls in flight per platform; a worker keeps 2 descriptors per
    # allowed platform call out of its client connections (gestor/serving/_descriptors.py), so
    # 8000 left it 16 client connections under a 20,000 open-files limit.
    p.add_argument("--platform-concurrency", type=int, default=2000,
                   help="slow-platforms: [platforms] max_concurrency given to Gestor (each "
                        "allowed call keeps 2 descriptors from the worker's client connections)")
    p.add_argument("--baseline-duration", type=float, default=6.0,
                   help="seconds of each baseline (default 6)")
    p.add_argument("--no-baselines", action="store_true", help="skip echo and asyncpg runs")
    p.add_argument("--no-audit", action="store_true",
                   help="no audit trigger (the exact overlap check is skipped)")
    p.add_argument("--no-half-rate", action="store_true",
                   help="purchase: skip the open-loop phase at half the saturation rate")
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
                   help="faults: skip gestor reconcile --strict")
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


def runs_of(scenario: str, args: argparse.Namespace) -> list[Plan]:
    """The plans one invocation runs: one scenario, or the `goals`/`all` sequence (purchase at
    1 worker with its half-rate phase, purchase at 2 workers, then the others at --workers)."""
    if scenario not in ("goals", "all"):
        return [make_plan(scenario, args)]
    plans = [make_plan("purchase", args, workers=1),
             make_plan("purchase", args, workers=2, label="purchase-2w", half_rate=False)]
    others = ("slow-platforms",) if scenario == "goals" else (
        "mix", "hot-mobile", "slow-platforms", "faults")
    return plans + [make_plan(name, args) for name in others]


COMBINED_KEYS = ("workers", "purchases_per_s", "completed_per_s", "echo_req_per_s",
                 "ratio_to_echo", "p50_ms", "p99_ms", "cpu_ratio_purchase_to_echo")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.warmup is None:
        args.warmup = min(2.0, args.duration * 0.1)
    if args.warmup >= args.duration:
        raise SystemExit("--warmup must be shorter than --duration")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    many = args.scenario in ("goals", "all")
    results: dict[str, dict[str, Any]] = {}
    with open_env(args) as env:
        for plan in runs_of(args.scenario, args):
            saturation = results.get("purchase", {}).get("purchases_per_s")
            if plan.scenario == "slow-platforms" and args.rate is None and saturation:
                rate = round(SLOW_SHARE_OF_SATURATION * saturation)
                plan = replace(plan, rate=float(max(rate, 10)))
            result = run_scenario(env, plan, args, stamp)
            if many or args.json is None:
                path = RESULTS_DIR / f"{plan.name}-{stamp}.json"
            else:
                path = args.json
            write_outputs(result, path, not args.no_plot)
            results[plan.name] = result
            sys.stdout.write(report.markdown(result) + "\n")
            sys.stdout.flush()
    if many:
        first = results.get("purchase", {})
        combined: dict[str, Any] = {k: first.get(k) for k in COMBINED_KEYS}
        combined["scenario"] = args.scenario
        combined["half_rate"] = first.get("half_rate")
        combined["goals"] = goals.evaluate(results)
        combined["goals_met"] = sum(1 for g in combined["goals"] if g["met"])
        combined["goals_total"] = len(combined["goals"])
        combined["invariants_ok"] = all(r["invariants_ok"] for r in results.values())
        combined["results"] = {k: {kk: vv for kk, vv in v.items() if kk != "timeseries"}
                               for k, v in results.items()}
        path = args.json or RESULTS_DIR / f"{args.scenario}-{stamp}.json"
        write_outputs(combined, path, plot=False)
        final: dict[str, Any] = combined
        sys.stdout.write(goals.markdown(combined["goals"]) + "\n")
        sys.stdout.write(
            f"{args.scenario}: " + ", ".join(
                f"{k} invariants {'OK' if r['invariants_ok'] else 'FAILED'}"
                for k, r in results.items())
            + f"; JSON {path}\n")
    else:
        final = results[args.scenario]
    if args.compare:
        old = json.loads(args.compare.read_text())
        old.setdefault("json_path", str(args.compare))
        sys.stdout.write("\n" + report.compare(old, final) + "\n")
    return 0 if final["invariants_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
