"""Serving the simulator over HTTP with the lean h11 server of :mod:`._server`."""

from __future__ import annotations

from functools import partial

import attrs
import trio

from ._config import SimulatorConfig
from ._notifier import NotifySettings, TopupNotifier
from ._router import SimulatorRouter
from ._server import serve_http
from ._simulator import Simulator, open_simulator

__all__ = ["SimulatorHandle", "run_simulator", "serve_simulator"]


@attrs.frozen
class SimulatorHandle:
    """What :func:`serve_simulator` hands to ``task_status.started``."""

    url: str
    simulator: Simulator


async def serve_simulator(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[SimulatorHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``port=0`` picks a free port.

    Once listening, ``task_status.started(SimulatorHandle(url, simulator))``. With
    ``config.topup_notify_url`` set, top-up notifications are delivered meanwhile (see
    :mod:`._notifier`). When cancelled, the requests in flight get up to a second to finish
    (see :mod:`._server`), then the simulator (its journal) is closed.
    """
    async with open_simulator(config) as simulator, trio.open_nursery() as nursery:
        notify = NotifySettings.from_config(config)
        if notify is not None:
            await nursery.start(TopupNotifier(simulator, notify).run)
        router = SimulatorRouter(simulator)
        server = partial(serve_http, router.answer, host=host, port=port)
        url: str = await nursery.start(server)
        task_status.started(SimulatorHandle(url=url, simulator=simulator))


async def run_simulator(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8081) -> None:
    """Serve until cancelled, announcing ``simulator listening on URL`` on stdout."""
    async with trio.open_nursery() as nursery:
        handle: SimulatorHandle = await nursery.start(
            partial(serve_simulator, config, host=host, port=port)
        )
        print(f"simulator listening on {handle.url}", flush=True)
