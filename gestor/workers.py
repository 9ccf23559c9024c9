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
import sys
import time
from collections.abc import Callable, Mapping
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import SimpleQueue
from typing import TYPE_CHECKING, Any

import trio

from gestor.serving import listening_socket
from gestor.settings import Settings, SettingsError
from gestor.startup import StartupError, sole_error, tls_context

if TYPE_CHECKING:
    from gestor.api import GestorApp
    from gestor.serving import ConnectionTable

logger = logging.getLogger("gestor")

_READY_TIMEOUT = 120.0


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
    raised here to its hard limit, allows); HTTPS and WSS only if `server.certfile/keyfile` are
    set (their TLS context built here, once per worker)."""
    from hypercorn.config import Config
    from hypercorn.utils import wrap_app

    from gestor.serving import ConnectionTable, connection_cap, raise_descriptor_limit, serve_http

    tls = tls_context(settings)
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
                         websocket_timeout=settings.alarm_send_timeout, tls=tls,
                         shutdown_trigger=stopped)
        nursery.cancel_scope.cancel()


def _describe(exc: BaseException) -> str:
    """One line for an exception (the only one of a group, if so)."""
    exc = sole_error(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, SettingsError | OSError | StartupError):
        return text
    return f"{type(exc).__name__}: {text}"


async def _exit_with_parent() -> None:
    """Drain and stop if the supervisor dies (its sentinel becomes readable): a worker never
    outlives it, holding the port."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    await trio.lowlevel.wait_readable(parent.sentinel)
    logger.warning("the supervisor is gone; finishing in-flight requests")
    os.kill(os.getpid(), signal.SIGTERM)


async def _serve_worker(app: GestorApp, settings: Settings, sock: socket.socket,
                        on_ready: Callable[[], object]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_exit_with_parent)
        await serve_app(app, settings, sock, on_ready)
        nursery.cancel_scope.cancel()


def _worker_main(env: Mapping[str, str], ready: SimpleQueue[int | str]) -> None:
    """Body of one worker process (started with the spawn method). It puts its pid on `ready`
    once serving, or one line saying why it could not start (and exits with status 1)."""
    os.environ.update(env)
    from gestor.api import create_app
    from gestor.logs import configure_logging
    from gestor.settings import load_settings

    configure_logging()
    started = False

    def on_ready() -> None:
        nonlocal started
        started = True
        ready.put(os.getpid())

    try:
        settings = load_settings()
        app = create_app(settings, env["GESTOR_DATABASE_URL"], env["GESTOR_PLATFORMS_URL"])
        sock = listening_socket(settings.bind, reuse_port=True)
        trio.run(_serve_worker, app, settings, sock, on_ready)
    except KeyboardInterrupt:
        if started:
            raise
        sys.exit(1)  # stopped while starting: the supervisor is stopping too
    except Exception as exc:
        if started:
            raise
        ready.put(_describe(exc))
        sys.exit(1)


def supervise(settings: Settings, env: Mapping[str, str], note: str = "") -> int:
    """Run `settings.workers` worker processes until SIGINT/SIGTERM (announcing them, `note`
    appended, once all are ready); returns an exit code, or
    raises `StartupError` (once every worker has stopped) when one could not start.

    A Ctrl-C in a terminal reaches the workers too (they are in our process group); a signal
    to this process alone is passed on. Either way each worker drains, then exits; a worker
    whose supervisor dies drains and exits by itself."""
    ctx = multiprocessing.get_context("spawn")
    ready: SimpleQueue[int | str] = ctx.SimpleQueue()
    stopping = False
    failure = ""

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
            if multiprocessing.connection.wait([ready._reader], timeout=0.2):  # type: ignore[attr-defined]
                message = ready.get()
                if isinstance(message, str):
                    failure = message
                    on_signal(signal.SIGTERM, None)
                    break
                started += 1
            elif any(not p.is_alive() for p in workers):
                failure = "a worker exited while starting"
                on_signal(signal.SIGTERM, None)
                break
            elif time.monotonic() > deadline:
                failure = f"the workers were not ready within {_READY_TIMEOUT:.0f} s"
                on_signal(signal.SIGTERM, None)
                break
        if started == settings.workers:
            print(f"gestor listening on {settings.scheme}://{settings.bind} "
                  f"({settings.workers} workers){note}", flush=True)
        while not stopping:
            multiprocessing.connection.wait([p.sentinel for p in workers], timeout=1.0)
            for i, process in enumerate(workers):
                if not process.is_alive() and not stopping:
                    logger.error("worker %s exited with %s; starting another", process.pid,
                                 process.exitcode)
                    workers[i] = start_one()
        for process in workers:
            process.join()
        if failure:
            raise StartupError(failure, f"{settings.workers} workers on {settings.bind}")
        return 0 if all(p.exitcode == 0 for p in workers) else 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
