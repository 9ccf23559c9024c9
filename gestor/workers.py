"""Several worker processes on one port (`gestor serve --workers N`, DESIGN D9).

Each worker binds its own listening socket with SO_REUSEPORT, so the kernel spreads new
connections across workers (hypercorn's own multi-worker mode shares one socket, which leaves
the balance to whichever process accepts first). The supervisor announces the server when
every worker is ready, restarts a worker that dies, and on SIGINT/SIGTERM asks every worker to
finish its in-flight requests and stop.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import SimpleQueue
from typing import TYPE_CHECKING, Any

import trio

from gestor.settings import Settings, parse_bind

if TYPE_CHECKING:
    from gestor.api import GestorApp
    from gestor.serving import ConnectionTable

logger = logging.getLogger("gestor")

_READY_TIMEOUT = 120.0


def listening_socket(bind: str, *, reuse_port: bool, backlog: int = 2048) -> socket.socket:
    host, port = parse_bind(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _settle_gc() -> None:
    """Once started, move everything alive (modules, compiled rules, pools: hundreds of
    thousands of objects that live as long as the process) out of the collector's sight, and
    collect the young generation less often. Without it a full collection walks them all:
    measured here, 50-100 ms stalls every second or so under load, the whole of the p99."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 3, 10)


async def serve_app(app: GestorApp, settings: Settings, sock: socket.socket | None,
                    on_ready: Callable[[], object] | None = None, *,
                    stop: trio.Event | None = None,
                    connections: ConnectionTable | None = None) -> None:
    """Serve `app` with hypercorn's trio worker (`gestor.serving`) until SIGINT/SIGTERM (or
    `stop`), then drain. Client connections: `server.keep_alive_timeout`, and at most
    `connections.cap` open (default: `server.max_connections`, or what the descriptor limit,
    raised here to its hard limit, allows)."""
    from hypercorn.config import Config
    from hypercorn.utils import wrap_app

    from gestor.serving import ConnectionTable, connection_cap, raise_descriptor_limit, serve_http

    if connections is None:
        connections = ConnectionTable(connection_cap(settings, raise_descriptor_limit()))
    app.connections = connections
    if sock is None:
        sock = listening_socket(settings.bind, reuse_port=False)
    config = Config()
    config.bind = [settings.bind]
    config.graceful_timeout = settings.shutdown_grace
    config.accesslog = None
    config.errorlog = "-"
    config.keep_alive_timeout = settings.keep_alive_timeout
    stop = stop if stop is not None else trio.Event()

    @app.before_serving
    async def _ready() -> None:
        _settle_gc()
        if on_ready is not None:
            on_ready()

    async def watch_signals() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not stop.is_set():
                    logger.info("%s received: finishing in-flight requests",
                                signal.Signals(signum).name)
                    stop.set()

    async def stopped() -> None:
        await stop.wait()
        app.draining = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals)
        await serve_http(wrap_app(app, config.wsgi_max_body_size, None), config, sock,
                         connections, write_timeout=settings.keep_alive_timeout,
                         shutdown_trigger=stopped)
        nursery.cancel_scope.cancel()


def _worker_main(env: Mapping[str, str], ready: SimpleQueue[int]) -> None:
    """Body of one worker process (started with the spawn method)."""
    os.environ.update(env)
    from gestor.api import create_app
    from gestor.logs import configure_logging
    from gestor.settings import load_settings

    configure_logging()
    settings = load_settings()
    app = create_app(settings, env["GESTOR_DATABASE_URL"], env["GESTOR_PLATFORMS_URL"])
    sock = listening_socket(settings.bind, reuse_port=True)
    trio.run(serve_app, app, settings, sock, lambda: ready.put(os.getpid()))


def supervise(settings: Settings, env: Mapping[str, str]) -> int:
    """Run `settings.workers` worker processes until SIGINT/SIGTERM; returns an exit code."""
    ctx = multiprocessing.get_context("spawn")
    ready: SimpleQueue[int] = ctx.SimpleQueue()
    stopping = False

    def start_one() -> SpawnProcess:
        process = ctx.Process(target=_worker_main, args=(dict(env), ready), daemon=False)
        process.start()
        return process

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            for process in workers:
                if process.is_alive() and process.pid:
                    os.kill(process.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    workers = [start_one() for _ in range(settings.workers)]
    try:
        deadline = time.monotonic() + _READY_TIMEOUT
        started = 0
        while started < settings.workers and not stopping:
            if any(not p.is_alive() for p in workers):
                logger.error("a worker exited while starting; stopping")
                on_signal(signal.SIGTERM, None)
                break
            if time.monotonic() > deadline:
                logger.error("workers not ready within %.0f s; stopping", _READY_TIMEOUT)
                on_signal(signal.SIGTERM, None)
                break
            if multiprocessing.connection.wait([ready._reader], timeout=0.2):  # type: ignore[attr-defined]
                ready.get()
                started += 1
        if started == settings.workers:
            print(f"gestor listening on http://{settings.bind} ({settings.workers} workers)",
                  flush=True)
        while not stopping:
            multiprocessing.connection.wait([p.sentinel for p in workers], timeout=1.0)
            for i, process in enumerate(workers):
                if not process.is_alive() and not stopping:
                    logger.error("worker %s exited with %s; starting another", process.pid,
                                 process.exitcode)
                    workers[i] = start_one()
        for process in workers:
            process.join()
        return 0 if all(p.exitcode == 0 for p in workers) else 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
