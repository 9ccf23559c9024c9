"""Load loop measuring the simulator's requests/s: ``python -m gestor.platforms.bench``.

Opens ``--connections`` keep-alive HTTP/1.1 connections over raw trio sockets (no HTTP
client library, so the client costs little) and sends ``GET /ocs/accounts/{msisdn}`` back to
back on each for ``--duration`` seconds. Without ``--url`` it starts a simulator in a child
process on a free loopback port (so server and load loop each get a core) and stops it after.
Traffic only ever goes to the given URL, normally loopback.
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

__all__ = ["LoadResult", "run_load"]


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


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux /proc), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gestor.platforms.bench", description=__doc__)
    parser.add_argument("--url", help="simulator base URL; default: start one")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    child: subprocess.Popen[str] | None = None
    url = args.url
    if url is None:
        child = subprocess.Popen(
            [sys.executable, "-m", "gestor.platforms", "--bind", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("simulator listening on "):
            child.kill()
            raise SystemExit(f"simulator did not start: {line!r}")
        url = line.rsplit(" ", 1)[1].strip()
    cpu_before = None if child is None else _cpu_seconds(child.pid)
    try:
        result = trio.run(
            lambda: run_load(url, connections=args.connections, duration=args.duration)
        )
        cpu_after = None if child is None else _cpu_seconds(child.pid)
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
    if cpu_before is not None and cpu_after is not None and cpu_after > cpu_before:
        used = cpu_after - cpu_before
        print(
            f"simulator CPU: {used:.2f}s over {result.seconds:.1f}s wall "
            f"({used / result.seconds:.0%} of a core) = "
            f"{result.requests / used:.0f} requests per CPU-second"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
