"""Benchmark of the `actors` runtime: ask throughput, memory per actor, churn.

Run from the repository root:  python bench/actors_bench.py [--quick]

Prints
  * ask round trips per second: 1 key with 1 asker, 1 key with 100 concurrent
    askers (more than the mailbox holds, so senders block), 10,000 keys with one
    concurrent asker each;
  * RSS per live idle actor: VmRSS delta / N after activating N actors;
  * churn: 1,000,000 distinct keys each told one message with a short
    idle_timeout: peak live actors, passivations, RSS at start / peak / end.

Each memory measurement runs in a fresh interpreter (a subprocess of this
script) so that memory freed by an earlier section does not hide the cost.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio

from actors import ActorBase, ActorContext, open_actor_system


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


class Counter(ActorBase[Any, int]):
    """A typical small actor: one int of state."""

    __slots__ = ("count",)

    def __init__(self, key: Hashable) -> None:
        self.count = 0

    async def handle(self, ctx: ActorContext, message: Any) -> int:
        self.count += 1
        return self.count


async def bench_ask_one_key(n: int, askers: int) -> float:
    async with open_actor_system(Counter) as system:
        await system.ask("k", 0)
        per = n // askers

        async def asker() -> None:
            for _ in range(per):
                await system.ask("k", 1)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(askers):
                nursery.start_soon(asker)
        return per * askers / (time.perf_counter() - t0)


async def bench_ask_many_keys(keys: int, per_key: int) -> float:
    async with open_actor_system(Counter) as system:
        for key in range(keys):
            await system.ask(key, 0)

        async def asker(key: int) -> None:
            for _ in range(per_key):
                await system.ask(key, 1)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for key in range(keys):
                nursery.start_soon(asker, key)
        return keys * per_key / (time.perf_counter() - t0)


async def bench_rss_per_actor(n: int) -> dict[str, float]:
    async with open_actor_system(Counter, idle_timeout=3600) as system:
        await system.ask(-1, 0)  # warm up: scheduler, first allocations
        gc.collect()
        before = rss_bytes()
        t0 = time.perf_counter()
        for key in range(n):
            await system.tell(key, 1)
        await system.ask(n - 1, 0)  # the last one has handled its message
        elapsed = time.perf_counter() - t0
        gc.collect()
        assert system.statistics().live_actors == n + 1
        after = rss_bytes()
        return {"per_actor": (after - before) / n, "rate": n / elapsed, "rss": after}


async def bench_churn(n: int, idle_timeout: float) -> dict[str, float]:
    gc.collect()
    result: dict[str, float] = {"rss_start": rss_bytes()}
    async with open_actor_system(Counter, idle_timeout=idle_timeout) as system:
        peak_live = peak_rss = 0
        t0 = time.perf_counter()
        for key in range(n):
            await system.tell(key, 1)
            if key % 1000 == 0:
                peak_live = max(peak_live, system.statistics().live_actors)
                if key % 50_000 == 0:
                    peak_rss = max(peak_rss, rss_bytes())
        sent = time.perf_counter()
        while system.statistics().live_actors:
            peak_live = max(peak_live, system.statistics().live_actors)
            await trio.sleep(idle_timeout / 4)
        drained = time.perf_counter()
        stats = system.statistics()
        gc.collect()
        result.update(
            rss_end=rss_bytes(),
            rss_peak=max(peak_rss, rss_bytes()),
            peak_live=peak_live,
            activations=stats.activations,
            passivations=stats.passivations,
            live_end=stats.live_actors,
            send_rate=n / (sent - t0),
            total_s=drained - t0,
            scheduler_entries=len(system._scheduler),
        )
    return result


def run_section(section: str, n: int) -> dict[str, float]:
    """Run one memory section in a fresh interpreter; return its JSON result."""
    out = subprocess.run(
        [sys.executable, __file__, "--section", section, "--n", str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


async def section_main(section: str, n: int) -> None:
    if section == "rss":
        print(json.dumps(await bench_rss_per_actor(n)))
    elif section == "churn":
        print(json.dumps(await bench_churn(n, idle_timeout=0.1)))
    else:
        raise SystemExit(f"unknown section {section!r}")


async def main(quick: bool) -> None:
    scale = 10 if quick else 1
    print(f"actors benchmark (python {sys.version.split()[0]}, trio {trio.__version__})")

    rate = await bench_ask_one_key(100_000 // scale, askers=1)
    print(f"ask, 1 key, 1 asker:               {rate:>9,.0f} msg/s")
    rate = await bench_ask_one_key(200_000 // scale, askers=100)
    print(f"ask, 1 key, 100 askers:            {rate:>9,.0f} msg/s  (mailbox 64: senders block)")
    rate = await bench_ask_many_keys(10_000, per_key=20 // (4 if quick else 1))
    print(f"ask, 10,000 keys, 10,000 askers:   {rate:>9,.0f} msg/s")

    n = 100_000 // scale
    r = run_section("rss", n)
    print(
        f"RSS per live idle actor:           {r['per_actor']:>9,.0f} bytes"
        f"  ({n:,} actors, activated at {r['rate']:,.0f}/s; RSS {mib(r['rss'])})"
    )

    n = 1_000_000 // scale
    r = run_section("churn", n)
    print(
        f"churn, {n:,} keys x 1 tell, idle_timeout=0.1s: "
        f"{r['send_rate']:,.0f} keys/s, {r['total_s']:.1f}s until all passivated"
    )
    print(
        f"  peak live actors {r['peak_live']:,.0f}; activations {r['activations']:,.0f}, "
        f"passivations {r['passivations']:,.0f}, live at end {r['live_end']:,.0f}"
    )
    print(
        f"  RSS start {mib(r['rss_start'])}, peak {mib(r['rss_peak'])}, "
        f"end {mib(r['rss_end'])}; scheduler entries left {r['scheduler_entries']:,.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 10x smaller run")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.section:
        trio.run(section_main, args.section, args.n)
    else:
        trio.run(main, args.quick)
