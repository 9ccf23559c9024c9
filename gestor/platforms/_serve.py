"""Serving the simulator over HTTP with hypercorn's trio worker."""

from __future__ import annotations

import logging
from functools import partial

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ._asgi import build_simulator_app
from ._simulator import Simulator, SimulatorConfig, open_simulator

__all__ = ["SimulatorHandle", "run_simulator", "serve_simulator"]


@attrs.frozen
class SimulatorHandle:
    """What :func:`serve_simulator` hands to ``task_status.started``."""

    url: str
    simulator: Simulator


def _hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    config.keep_alive_timeout = 120.0  # longer than any client's keep-alive expiry
    config.backlog = 1024
    config.keep_alive_max_requests = 2**62  # never recycle keep-alive connections
    config.graceful_timeout = 1.0
    config.include_date_header = False  # per-response work nobody here reads
    config.include_server_header = False
    return config


async def serve_simulator(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[SimulatorHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``port=0`` picks a free port.

    Once listening, ``task_status.started(SimulatorHandle(url, simulator))``.
    """
    async with open_simulator(config) as simulator, trio.open_nursery() as nursery:
        app = build_simulator_app(simulator)
        server = partial(serve, app, _hypercorn_config(host, port), mode="asgi")  # type: ignore[arg-type]
        binds: list[str] = await nursery.start(server)
        task_status.started(SimulatorHandle(url=binds[0], simulator=simulator))


async def run_simulator(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8081) -> None:
    """Serve until cancelled, announcing ``simulator listening on URL`` on stdout."""
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    async with trio.open_nursery() as nursery:
        handle: SimulatorHandle = await nursery.start(
            partial(serve_simulator, config, host=host, port=port)
        )
        print(f"simulator listening on {handle.url}", flush=True)
