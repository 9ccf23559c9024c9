"""The second phase of a closed-loop run: an open loop at half the saturation rate it measured,
on the same server (the latency a request gets when the box is not saturated), and the wait for
the server to go quiet after a phase.

For `many-mobiles` the phase lists bonos for a new msisdn each time, for `--mobiles` msisdns (or
`MANY_MOBILES_PHASE_S` seconds), and samples the server's RSS each second: how memory grows with
the number of distinct mobiles seen (actors passivate after `[actors] idle_timeout`).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

from bench import _report as report
from bench import _storage as storage
from bench._drive import LoadOutcome, Sampler, Second, drive, is_final, make_specs, progress_line
from bench._load import new_histogram
from bench._plan import MILLION, Plan
from bench._procs import ProcessGroup, http_json, progress

HALF_RATE_P99_TARGET_MS = 100.0
#: many-mobiles without --mobiles: this long at half the saturation rate (4x the actors' shipped
#: idle timeout, so that the RSS has reached the level passivation holds it at)
MANY_MOBILES_PHASE_S = 60.0


def wait_quiet(plan: Plan, db: storage.DbThread, sim: str, t0: float, outcome: LoadOutcome,
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


def _completed(db: storage.DbThread, since: datetime) -> int:
    return int(db.fetchval("SELECT count(*) FROM transactions WHERE state = 'completed' "
                           "AND created_at >= $1", since) or 0)


def rss_growth(samples: list[tuple[float, float]], listed: int) -> dict[str, Any]:
    """RSS (MB) sampled against mobiles listed so far: the slope over the second half of the
    phase (kB per 1,000 new mobiles, least squares) and the RSS it projects at a million."""
    if len(samples) < 4:  # too few for a slope: what was seen, and no projection
        return {"samples": len(samples)} if not samples else {
            "samples": len(samples), "rss_start_mb": samples[0][1],
            "rss_end_mb": samples[-1][1], "rss_peak_mb": max(y for _, y in samples)}
    tail = samples[len(samples) // 2:]
    n = len(tail)
    mx = sum(x for x, _ in tail) / n
    my = sum(y for _, y in tail) / n
    sxx = sum((x - mx) ** 2 for x, _ in tail)
    slope = sum((x - mx) * (y - my) for x, y in tail) / sxx if sxx else 0.0  # MB per mobile
    end = samples[-1][1]
    return {
        "samples": len(samples),
        "rss_start_mb": samples[0][1],
        "rss_end_mb": end,
        "rss_peak_mb": max(y for _, y in samples),
        "kb_per_1000_mobiles": slope * 1024 * 1000,
        "projected_mb_at_million": (end + max(0.0, slope) * (MILLION - listed)
                                    if listed < MILLION else end),
    }


def half_rate_phase(plan: Plan, args: argparse.Namespace, port: int, db: storage.DbThread,
                    sim: str, saturation: float, server: ProcessGroup, since: datetime
                    ) -> tuple[dict[str, Any], list[Any], int]:
    """Open loop at half the saturation rate just measured (or `--half-rate`) on the same
    server: the latency a request of `plan.main_kind` gets when the box is not saturated."""
    kind = plan.main_kind
    rate = args.half_rate or plan.half_rate_at or saturation / 2
    duration = args.half_rate_duration
    if plan.scenario == "many-mobiles" and rate >= 1:
        duration = plan.mobiles / rate if plan.mobiles else MANY_MOBILES_PHASE_S
    warmup = min(1.0, duration * 0.1)
    out: dict[str, Any] = {"rate": rate, "saturation_per_s": saturation, "workers": plan.workers,
                           "kind": kind,
                           "rate_basis": "--half-rate" if args.half_rate else
                           "the rate of the empty database's half-rate phase"
                           if plan.half_rate_at else
                           f"half the {kind} answers/s of the closed-loop run",
                           "duration_s": duration, "warmup_s": warmup,
                           "target_p99_ms": HALF_RATE_P99_TARGET_MS}
    if rate < 1:
        out["skipped"] = f"rate {rate:.2f}/s is below 1/s"
        return out, [], 0
    progress(f"[{plan.name}] open loop at {rate:,.1f}/s (saturation {saturation:,.1f}/s) for "
             f"{duration:,.0f} s…", final=True)
    completed0 = _completed(db, since)
    server.sample()
    cpu0 = server.cpu
    t0 = time.time() + 1.0
    specs = make_specs(plan.scenario, "127.0.0.1", port, mode="open",
                       connections=args.connections or 64, rate=rate, duration=duration,
                       warmup=warmup, wait=plan.wait, procs=args.procs, t0=t0,
                       drain=max(15.0, plan.wait + 10), long_msisdn=plan.long_msisdn,
                       keep_answers=kind == "purchase")
    rss: list[tuple[float, float]] = []

    def sampler(second: int) -> dict[str, float]:
        server.sample()
        rss.append((min(second, duration) * rate, server.rss / 2**20))
        return {"server_rss": server.rss}

    outcome = drive(specs, t0, label=f"{plan.name} @ half rate", sampler=sampler,
                    on_second=progress_line)
    pending = wait_quiet(plan, db, sim, t0, outcome, None)
    server.sample()
    cpu = server.cpu - cpu0
    window = duration - warmup
    s = report.summary(outcome.hists.get(kind, new_histogram()))
    errors = report.errors_of(outcome.counts)
    answered = sum(n for k, n in outcome.counts.items() if k.startswith(f"{kind} 2"))
    out.update({
        "n": s.get("n", 0),
        "p50_ms": s.get("p50_ms"), "p90_ms": s.get("p90_ms"), "p99_ms": s.get("p99_ms"),
        "p999_ms": s.get("p999_ms"), "max_ms": s.get("max_ms"),
        "latency": {k: report.summary(h) for k, h in outcome.hists.items()},
        "errors": errors,
        "error_count": sum(errors.values()),
        "outcomes": report.split_counts(outcome.counts).get(kind, {}),
        "lag_max_s": outcome.lag_max_s,
        "unfinished": outcome.unfinished,
        "pending_after": pending,
        "met": s.get("p99_ms") is not None and s["p99_ms"] <= HALF_RATE_P99_TARGET_MS,
    })
    if kind == "purchase":
        completed = _completed(db, since) - completed0
        finals = sum(n for k, n in outcome.counts.items() if is_final(k))
        out["purchases_per_s"] = finals / window
        out["cpu_per_purchase_ms"] = cpu * 1000 / completed if completed else None
    else:
        listed = int(rate * duration)
        out["requests_per_s"] = answered / window
        out["cpu_per_request_ms"] = cpu * 1000 / answered if answered else None
        out["mobiles"] = listed
        out["rss"] = rss_growth(rss, listed)
    progress(f"[{plan.name}] half rate {rate:,.1f}/s: p50 {out['p50_ms']} ms, p99 "
             f"{out['p99_ms']} ms, p99.9 {out['p999_ms']} ms, {out['error_count']} errors",
             final=True)
    return out, outcome.answers, outcome.unfinished
