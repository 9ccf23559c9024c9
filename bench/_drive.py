"""Driving the load processes (bench/_load.py): start them, merge what they report each second
and at the end, and read their answer keys (`purchase 200 completed`)."""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

from hdrh.histogram import HdrHistogram

from bench._load import LoadSpec, new_histogram, run_process
from bench._procs import ProcessGroup, progress

FINAL_STATES = {"completed", "rejected", "failed", "refunded", "inconsistent"}


@dataclass
class Second:
    """What the load processes reported for one second, and the orchestrator's samples."""

    counts: Counter[str] = field(default_factory=Counter)
    hists: dict[str, HdrHistogram] = field(default_factory=dict)
    outstanding: int = 0
    connections: int = 0
    samples: dict[str, float] = field(default_factory=dict)


@dataclass
class LoadOutcome:
    """The merged result of the load processes of one phase."""

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
               keep_answers: bool = True, long_msisdn: str = "", sim_port: int = 0,
               advance_clients: int = 0, beneficiaries: int = 200,
               kinds: tuple[str, ...] = ()) -> list[LoadSpec]:
    """The specs of `procs` load processes sharing the connections and the rate."""
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
            keep_answers=keep_answers, long_msisdn=long_msisdn, sim_port=sim_port,
            advance_clients=advance_clients, beneficiaries=beneficiaries,
            kinds=kinds,
        ))
    return specs

def progress_line(s: int, sec: Second) -> str:
    """The progress line of one second of load."""
    final = sum(n for k, n in sec.counts.items() if is_final(k))
    total = sum(sec.counts.values())
    errors = sum(n for k, n in sec.counts.items() if not is_2xx(k))
    h = sec.hists.get("purchase") or (next(iter(sec.hists.values())) if sec.hists else None)
    p50 = h.get_value_at_percentile(50) / 1000 if h else math.nan
    p99 = h.get_value_at_percentile(99) / 1000 if h else math.nan
    cpu = sec.samples
    extra = ""
    if "db_pending" in cpu:
        extra = f" | in flight db {cpu['db_pending']:,.0f}"
    return (f"t={s + 1:>3}s final {final:>5,}/s all {total:>6,}/s err {errors:>4,} "
            f"p50 {p50:7.1f} ms p99 {p99:7.1f} ms | outstanding {sec.outstanding:,}{extra}")


def is_final(key: str) -> bool:
    """A purchase answered in a final state: 200 and terminal, or 202 `inconsistent` (settled
    as far as the saga goes: the recoverer takes it from there)."""
    kind, status, detail = [*key.split(" ", 2), "", ""][:3]
    return kind == "purchase" and ((status == "200" and detail in FINAL_STATES)
                                   or (status == "202" and detail == "inconsistent"))


def is_2xx(key: str) -> bool:
    parts = key.split(" ", 2)
    return len(parts) > 1 and parts[1].startswith("2")

