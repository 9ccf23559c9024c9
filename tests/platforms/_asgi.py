"""The simulator as a plain ASGI 3 app, for any ASGI server (tests serve it with hypercorn).

A thin adapter over :class:`~gestor.simulator._router.SimulatorRouter`, which holds the
routes, handlers and fault injection. :func:`serve_simulator` does not use it: it serves the
router with the lean h11 server of :mod:`._server`, which costs a fraction of the CPU.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from gestor.simulator._router import SimulatorRouter
from gestor.simulator._simulator import Simulator, SimulatorConfig

__all__ = ["SimulatorApp", "build_simulator_app"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _hang(receive: Receive, seconds: float) -> bool:
    """Hold the answer for ``seconds``; True if the client went away meanwhile."""
    with trio.move_on_after(seconds):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return True
    return False


@attrs.define
class SimulatorApp:
    """ASGI 3 application serving one :class:`Simulator`."""

    simulator: Simulator
    owns_simulator: bool = False  # close it (its journal) at lifespan shutdown
    _router: SimulatorRouter = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._router = SimulatorRouter(self.simulator)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.owns_simulator:
                        self.simulator.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        raw: bytes | None = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope["path"]
        body = await _read_body(receive) if method in ("POST", "PUT") else b""

        async def hold(seconds: float) -> bool:
            return await _hang(receive, seconds)

        query: bytes = scope.get("query_string", b"")
        answer = await self._router.answer(method, path, query, body, hold)
        if answer is None:
            return  # the client went away while the answer was held back
        status, content = answer
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def build_simulator_app(simulator: Simulator | SimulatorConfig) -> SimulatorApp:
    """The ASGI app for ``simulator`` (serve it with hypercorn, or any ASGI 3 server).

    Given a :class:`SimulatorConfig`, the app builds its own simulator (replaying the journal
    now, blocking) and closes it at lifespan shutdown.
    """
    if isinstance(simulator, SimulatorConfig):
        return SimulatorApp(Simulator.open(simulator), owns_simulator=True)
    return SimulatorApp(simulator)
