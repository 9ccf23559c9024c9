"""Gestor's app served on a real loopback socket in this process as `gestor serve` serves it
(`serve_app`: hypercorn under `gestor.serving`'s client connections), and a raw HTTP/1.1
exchange over a trio socket for bytes no HTTP client library would send."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import h11
import pytest
import trio

from gestor.api import GestorApp, create_app
from gestor.serving import listening_socket
from gestor.settings import load_settings
from gestor.simulator import SimulatorHandle
from gestor.store import table_counts
from gestor.workers import serve_app
from tests.integration.conftest import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PROBLEM = "application/problem+json"


@attrs.frozen
class Served:
    app: GestorApp
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def counts(self) -> dict[str, int]:
        """Rows in every table a request can write to."""
        return await table_counts(self.app.runtime.store.bridge)


@pytest.fixture
async def served(database_url: str, simulator: SimulatorHandle, config_dir: Path,
                 tmp_path: Path) -> AsyncIterator[Served]:
    # The shipped platform timeouts: a purchase accepted earlier must not time out into an
    # alarm on a loaded box while a later, refused request's "nothing written" is checked.
    settings = attrs.evolve(load_settings(config_dir, environ={}, data_dir=tmp_path),
                            admin_key=ADMIN_KEY, bind="127.0.0.1:0", shutdown_grace=2.0,
                            # no background fold of report facts between a refused
                            # request's row counts (tests/integration/test_fuzz.py)
                            report_fold_interval=3600.0)
    app = create_app(settings, database_url, simulator.url)
    sock = listening_socket(settings.bind, reuse_port=False)
    host, port = sock.getsockname()[:2]
    ready, stop = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(serve_app, app, settings, sock, ready.set,
                                             stop=stop))
        with trio.fail_after(60):
            await ready.wait()
        yield Served(app, host, int(port))
        stop.set()


@attrs.frozen
class RawAnswer:
    """What came back for a raw request: None for a status when the server closed the
    connection without answering."""

    status: int | None
    headers: dict[str, str]
    body: bytes


async def raw_exchange(host: str, port: int, request: bytes, *, head: bool = False,
                       upgrade: bool = False) -> RawAnswer:
    """Send `request` as is and read one HTTP/1.1 response (or the connection's end). `head`:
    the request was a HEAD (its response has no body); `upgrade`: it asked for a websocket."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        # The server may answer and close before reading it all.
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(request)
        # h11 parses the response as the answer to a request like the one sent.
        conn = h11.Connection(h11.CLIENT)
        extra = [("Connection", "Upgrade"), ("Upgrade", "websocket")] if upgrade else []
        conn.send(h11.Request(method="HEAD" if head else "GET", target="/",
                              headers=[("Host", "x"), *extra]))
        conn.send(h11.EndOfMessage())
        status: int | None = None
        headers: dict[str, str] = {}
        body = b""
        while True:
            try:
                event: Any = conn.next_event()
            except h11.RemoteProtocolError:  # closed mid-answer or before any
                return RawAnswer(status, headers, body)
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response | h11.InformationalResponse):
                status = event.status_code
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
                if isinstance(event, h11.InformationalResponse):
                    return RawAnswer(status, headers, b"")  # 101: the upgrade was accepted
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return RawAnswer(status, headers, body)
