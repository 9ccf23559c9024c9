"""Load loops against the simulator: ``python -m bench.platforms_bench [--client]``.

Server mode (default) measures the simulator's requests/s: it opens ``--connections``
keep-alive HTTP/1.1 connections over raw trio sockets (no HTTP client library, so the client
costs little) and sends ``GET /ocs/accounts/{msisdn}`` back to back on each for
``--duration`` seconds.

Client mode (``--client``) measures Gestor's side instead: the CPU seconds this process
spends per platform call. It makes ``--calls`` ``Platforms.account(msisdn)`` calls from
``--tasks`` concurrent tasks through :func:`open_platforms` (``max_concurrency``
``--max-concurrency``) and reports ``time.process_time()`` per call and calls/s. Then, unless
``--inflight 0``, it sets the charging system's latency to ``--latency-ms`` and keeps
``--inflight`` calls in flight at once (one task each, a limiter that fits them all), to show
the client neither livelocks nor burns CPU while thousands of requests wait.

Without ``--url`` either mode starts a simulator in a child process on a free loopback port
(so server and load loop each get a core) and stops it after. Traffic only ever goes to the
given URL, normally loopback.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

import attrs
import trio

from gestor.platforms import PlatformSettings, open_platforms

__all__ = ["ClientResult", "LoadResult", "run_client_load", "run_inflight", "run_load"]


@attrs.frozen
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _read_response(stream: trio.SocketStream, buffer: bytearray) -> int:
    """Read one response off ``stream``; return its status. Leftover bytes stay in buffer."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1")
    status = int(head.split(" ", 2)[1])
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    total = end + 4 + length
    while len(buffer) < total:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    del buffer[:total]
    return status


async def run_load(url: str, *, connections: int = 32, duration: float = 5.0) -> LoadResult:
    """Hammer ``GET {url}/ocs/accounts/{msisdn}`` and count answers."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    latencies: list[float] = []
    errors = 0
    deadline = trio.current_time() + duration

    async def worker(index: int) -> None:
        nonlocal errors
        stream = await trio.open_tcp_stream(host, port)
        buffer = bytearray()
        n = 0
        async with stream:
            while trio.current_time() < deadline:
                msisdn = f"54911000000{(index + n) % 100:02d}"
                n += 1
                request = f"GET /ocs/accounts/{msisdn} HTTP/1.1\r\nHost: {host}\r\n\r\n"
                start = time.perf_counter()
                await stream.send_all(request.encode())
                status = await _read_response(stream, buffer)
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    errors += 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(connections):
            nursery.start_soon(worker, i)
    seconds = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return math.nan
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return LoadResult(len(latencies), errors, seconds, pct(0.50), pct(0.99))


@attrs.frozen
class ClientResult:
    """What :func:`run_client_load` measured in this (the calling) process."""

    calls: int
    errors: int
    seconds: float  # wall clock
    cpu_seconds: float  # time.process_time() of this process over the run

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu_seconds / self.calls * 1000 if self.calls else math.nan


async def run_client_load(
    url: str,
    *,
    calls: int = 20_000,
    tasks: int = 64,
    max_concurrency: int = 256,
    call_timeout: float = 2.0,
) -> ClientResult:
    """Make ``calls`` ``Platforms.account`` calls from ``tasks`` concurrent tasks."""
    settings = PlatformSettings.from_mapping(
        {"url": url, "max_concurrency": max_concurrency, "timeout": call_timeout}
    )
    errors = 0
    remaining = calls

    async def worker(index: int) -> None:
        nonlocal errors, remaining
        while remaining > 0:
            remaining -= 1
            try:
                await platforms.account(f"54911000000{(index + remaining) % 100:02d}")
            except Exception:
                errors += 1

    async with open_platforms(settings) as platforms:
        await platforms.account("5491100000000")  # connect before the clock starts
        started, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as nursery:
            for i in range(tasks):
                nursery.start_soon(worker, i)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu
    return ClientResult(calls, errors, seconds, cpu_seconds)


async def _control(url: str, method: str, path: str, body: bytes = b"") -> int:
    """One control request (``PUT /control/faults``...) on its own raw connection."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    stream = await trio.open_tcp_stream(host, parts.port or 80)
    async with stream:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        await stream.send_all(head.encode() + body)
        return await _read_response(stream, bytearray())


async def run_inflight(
    url: str, *, inflight: int = 2000, latency_ms: int = 2000
) -> ClientResult:
    """``inflight`` concurrent ``Platforms.account`` calls against a charging system that
    takes ``latency_ms`` to answer each: every call is on the wire at once."""
    status = await _control(
        url, "PUT", "/control/faults", b'{"ocs": {"latency_ms": %d}}' % latency_ms
    )
    if status != 200:
        raise RuntimeError(f"PUT /control/faults answered {status}")
    try:
        patience = 10 * latency_ms / 1000 + 30
        return await run_client_load(
            url, calls=inflight, tasks=inflight, max_concurrency=inflight, call_timeout=patience
        )
    finally:
        with trio.move_on_after(5, shield=True):
            await _control(url, "DELETE", "/control/faults")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux /proc), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_simulator() -> tuple[subprocess.Popen[str], str]:
    """A simulator child process on a free loopback port, and its URL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "gestor.simulator", "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith("simulator listening on "):
        child.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return child, line.rsplit(" ", 1)[1].strip()


def _report_simulator_cpu(used: float | None, seconds: float, requests: int) -> None:
    if used is not None and used > 0:
        print(
            f"simulator CPU: {used:.2f}s over {seconds:.1f}s wall "
            f"({used / seconds:.0%} of a core) = "
            f"{requests / used:.0f} requests per CPU-second"
        )


def _client_mode(args: argparse.Namespace, url: str, sim_pid: int | None) -> None:
    before = None if sim_pid is None else _cpu_seconds(sim_pid)
    result = trio.run(
        lambda: run_client_load(
            url, calls=args.calls, tasks=args.tasks, max_concurrency=args.max_concurrency
        )
    )
    after = None if sim_pid is None else _cpu_seconds(sim_pid)
    print(
        f"Platforms.account: {result.calls} calls, {args.tasks} tasks, "
        f"max_concurrency {args.max_concurrency}: {result.per_second:.0f} calls/s over "
        f"{result.seconds:.2f}s, client CPU {result.cpu_seconds:.2f}s = "
        f"{result.cpu_ms_per_call:.3f} ms per call ({result.errors} errors)"
    )
    used = None if before is None or after is None else after - before
    _report_simulator_cpu(used, result.seconds, result.calls + 1)
    if args.inflight > 0:
        result = trio.run(
            lambda: run_inflight(url, inflight=args.inflight, latency_ms=args.latency_ms)
        )
        print(
            f"{result.calls} calls in flight at once, ocs latency {args.latency_ms} ms: "
            f"done in {result.seconds:.2f}s, client CPU {result.cpu_seconds:.2f}s = "
            f"{result.cpu_ms_per_call:.3f} ms per call ({result.errors} errors)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.platforms_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="simulator base URL; default: start one")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    client = parser.add_argument_group("client mode")
    client.add_argument("--client", action="store_true",
                        help="measure the CPU cost of Platforms calls on this side")
    client.add_argument("--calls", type=int, default=20_000)
    client.add_argument("--tasks", type=int, default=64)
    client.add_argument("--max-concurrency", type=int, default=256)
    client.add_argument("--inflight", type=int, default=2000,
                        help="then this many calls in flight at once (0: skip)")
    client.add_argument("--latency-ms", type=int, default=2000,
                        help="ocs latency for the in-flight run")
    args = parser.parse_args(argv)
    child: subprocess.Popen[str] | None = None
    url = args.url
    if url is None:
        child, url = _start_simulator()
    sim_pid = None if child is None else child.pid
    try:
        if args.client:
            _client_mode(args, url, sim_pid)
            return 0
        cpu_before = None if sim_pid is None else _cpu_seconds(sim_pid)
        result = trio.run(
            lambda: run_load(url, connections=args.connections, duration=args.duration)
        )
        cpu_after = None if sim_pid is None else _cpu_seconds(sim_pid)
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=10)
    print(
        f"GET /ocs/accounts/{{msisdn}}: {result.per_second:.0f} req/s over {result.seconds:.1f}s "
        f"({result.requests} requests, {result.errors} non-200, "
        f"{args.connections} connections, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms)"
    )
    used = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    _report_simulator_cpu(used, result.seconds, result.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
