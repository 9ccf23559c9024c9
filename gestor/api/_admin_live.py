"""Admin routes the console reads: `GET /v1/admin/rates`, the live figures of every worker of
this server and their total (what its rates and latency chart are drawn from), and
`GET /v1/admin/me`, who the operator key in use is (the console shows or enables the actions
the key's role may take).

`/metrics` says the same for Prometheus; this is JSON a browser reads without a parser, per
worker (live ones: `worker`, `pid`) and in total (stopped workers' counts included).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio
from quart import Response

from gestor.api import _resources as res
from gestor.api._auth import principal
from gestor.api._metrics import Gather
from gestor.api._problems import json_response
from gestor.api._registry import Answer, documented
from gestor.metrics import live_rates

if TYPE_CHECKING:
    from collections.abc import Callable

    from gestor.api._gestor_app import GestorApp

__all__ = ["register"]


def register(app: GestorApp, collect: Callable[[], dict[str, Any]], gather: Gather) -> None:
    @app.get("/v1/admin/rates")
    @documented("Live figures of every worker and in total, for the console", "Operations",
                Answer(200, res.Rates, "cumulative figures: diff two readings for rates"))
    async def rates() -> Response:
        """Purchases by outcome, in flight, purchase latency and platform calls (latency,
        circuit state) of each live worker and of the whole server, as `/metrics` adds them
        up (the other workers' figures are at most a second old)."""
        mine = collect()
        snapshots = await trio.to_thread.run_sync(gather, mine)
        return json_response({"at": datetime.now(UTC).isoformat(), **live_rates(snapshots)})

    @app.get("/v1/admin/me")
    @documented("The operator key in use", "Operations",
                Answer(200, res.Operator, "its id, name and role"))
    async def me() -> Response:
        """Who the key is, and its role (what the console lets it do)."""
        caller = principal()
        return json_response({"key_id": caller.key_id, "name": caller.name,
                              "role": caller.role})
