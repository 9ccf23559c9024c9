"""`GET /metrics`: the Prometheus text of every worker of this server, added up.

Who may scrape: an operator key of role `viewer` or above (`Authorization: Bearer <key>`, as
Prometheus's `authorization` setting sends it), or anyone while the server is open (loopback,
no channel keys) like the rest of the API (gestor/api/_auth.py, `ROUTE_ROLES`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio
from quart import Response

from gestor.api._metrics_reading import read_statistics
from gestor.api._registry import Answer, documented
from gestor.metrics import CONTENT_TYPE, Publisher, read_snapshots, render, snapshot

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp
    from gestor.settings import Settings

__all__ = ["Gather", "register"]

Snapshot = dict[str, Any]
#: Every worker's snapshot now, with whether it is live: this worker's `mine` and the others'
#: published files (it reads files: call it off trio's thread).
Gather = Callable[[Snapshot], list[tuple[Snapshot, bool]]]


def register(app: GestorApp, settings: Settings) -> tuple[Callable[[], Snapshot], Gather]:
    """The route, and (when `settings.metrics_dir` is set) this worker's publisher; returns
    what reads this worker's snapshot, and what adds the other workers' to it (for the
    console's live rates, gestor/api/_admin_live.py)."""
    publisher: list[Publisher] = []

    def collect() -> dict[str, Any]:
        runtime = getattr(app, "runtime", None)
        limiter = getattr(app, "limiter", None)
        return snapshot(read_statistics(runtime, limiter, app.connections))

    if settings.metrics_dir is not None:
        directory = settings.metrics_dir

        @app.before_serving
        async def _publish() -> None:
            publisher.append(Publisher(directory, collect))
            await app.nursery.start(publisher[0].run)

    def gather(mine: Snapshot) -> list[tuple[Snapshot, bool]]:
        others = (read_snapshots(publisher[0].directory, skip=publisher[0].path)
                  if publisher else [])
        return [(mine, True), *others]

    def render_all(mine: Snapshot) -> bytes:
        return render(gather(mine))

    @app.get("/metrics")
    @documented("Prometheus metrics of every worker of this server, added up", "Operations",
                Answer(200, None, "the Prometheus text exposition format",
                       media=(CONTENT_TYPE,)))
    async def metrics() -> Response:
        mine = collect()  # here: it reads this worker's state
        # Reading the other workers' files and rendering (a few ms) off trio's thread: the
        # requests this worker is serving meanwhile are not held up for the whole of it.
        body = await trio.to_thread.run_sync(render_all, mine)
        return Response(body, status=200, content_type=CONTENT_TYPE)

    return collect, gather
