"""`gestor.serving` on real loopback sockets, with raw clients: the hypercorn/Quart-Trio shim
closes connections when HTTP says so, idle ones time out, writes are bounded, and the
connection cap evicts the oldest idle connection or refuses with 503 when none is idle."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from hypercorn.utils import wrap_app
from quart import request
from quart_trio import QuartTrio

from gestor.serving import REFUSAL, ConnectionTable, serve_http

HEAD_CLOSE = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
HEAD = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
# a POST whose body never comes: its connection stays busy (the app waits for the body)
HALF_POST = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 \r\n"
            b"content-type: text/html; charset=utf-8\r\n"
            b"content-length: 2\r\n"
            b"\r\n"
            b"hi")
RESPONSE_CLOSE = (b"HTTP/1.1 200 \r\n"
                  b"content-type: text/html; charset=utf-8\r\n"
                  b"content-length: 2\r\n"
                  b"Connection: close\r\n"
                  b"\r\n"
                  b"hi")


def quart_app() -> QuartTrio:
    app = QuartTrio("serving-test")

    @app.route("/")
    async def index() -> str:
        return "hi"

    @app.route("/echo", methods=["POST"])
    async def echo() -> bytes:
        return await request.get_data()

    return app


@attrs.define
class Served:
    port: int
    table: ConnectionTable
    config: Config

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream("127.0.0.1", self.port)


@attrs.define
class Knobs:
    cap: int = 100
    keep_alive: float = 30.0
    write_timeout: float = 30.0
    app: Any = None
    tls: ssl.SSLContext | None = None


@pytest.fixture
def knobs() -> Knobs:
    return Knobs()


@contextlib.asynccontextmanager
async def open_served(knobs: Knobs) -> AsyncIterator[Served]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    sock.setblocking(False)
    config = Config()
    config.keep_alive_timeout = knobs.keep_alive
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.include_date_header = False
    config.include_server_header = False
    table = ConnectionTable(knobs.cap)
    stop = trio.Event()
    app = wrap_app(knobs.app or quart_app(), config.wsgi_max_body_size, None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_http(app, config, sock, table,
                                              write_timeout=knobs.write_timeout,
                                              tls=knobs.tls, shutdown_trigger=stop.wait))
        yield Served(sock.getsockname()[1], table, config)
        stop.set()


@pytest.fixture
async def served(knobs: Knobs) -> AsyncIterator[Served]:
    async with open_served(knobs) as server:
        yield server


async def read_to_eof(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def read_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, f"EOF after {bytes(data)!r}"
        data += chunk
    return bytes(data)


async def test_connection_close_is_answered_then_closed_at_once(served: Served) -> None:
    with trio.fail_after(10):
        stream = await served.connect()
        await stream.send_all(HEAD_CLOSE)
        with trio.fail_after(1):
            assert await read_to_eof(stream) == RESPONSE_CLOSE
        await trio.testing.wait_all_tasks_blocked()
        assert served.table.statistics().open == 0


async def test_keep_alive_serves_several_requests_on_one_connection(served: Served) -> None:
    with trio.fail_after(10):
        stream = await served.connect()
        for _ in range(3):
            await stream.send_all(HEAD)
            assert await read_exactly(stream, len(RESPONSE)) == RESPONSE
        await stream.send_all(HEAD_CLOSE)
        assert await read_to_eof(stream) == RESPONSE_CLOSE


async def test_http_1_0_is_closed_after_its_response(served: Served) -> None:
    with trio.fail_after(10):
        stream = await served.connect()
        await stream.send_all(b"GET / HTTP/1.0\r\n\r\n")
        with trio.fail_after(1):
            data = await read_to_eof(stream)
        assert data.startswith(b"HTTP/1.1 200 \r\n") and data.endswith(b"\r\n\r\nhi")


@pytest.mark.parametrize("sent", [b"", HEAD, b"GET / HTTP/1.1\r\nHost: t\r\n"],
                         ids=["nothing", "one-request", "half-a-head"])
async def test_idle_connection_is_closed_after_keep_alive_timeout(
        served: Served, sent: bytes) -> None:
    served.config.keep_alive_timeout = 0.3
    with trio.fail_after(10):
        stream = await served.connect()
        start = trio.current_time()
        await stream.send_all(sent)
        data = await read_to_eof(stream)
        waited = trio.current_time() - start
        assert data == (RESPONSE if sent == HEAD else b"")
        assert 0.25 <= waited < 5, waited


async def test_a_busy_connection_is_not_closed_by_the_keep_alive_timeout(
        served: Served) -> None:
    served.config.keep_alive_timeout = 0.2
    with trio.fail_after(10):
        stream = await served.connect()
        await stream.send_all(HALF_POST)
        await trio.sleep(0.6)  # three keep-alive timeouts pass while the request is in progress
        await stream.send_all(b"0123456789")
        head = b"HTTP/1.1 200 \r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: 10"
        data = await read_exactly(stream, len(head))
        assert data == head


async def test_oldest_idle_connection_is_closed_for_a_new_one_at_the_cap(served: Served) -> None:
    served.table.cap = 2
    with trio.fail_after(10):
        oldest, younger = await served.connect(), await served.connect()
        for stream in (oldest, younger):
            await stream.send_all(HEAD)
            assert await read_exactly(stream, len(RESPONSE)) == RESPONSE
            await trio.testing.wait_all_tasks_blocked()
        assert served.table.statistics().idle == 2
        newcomer = await served.connect()
        with trio.fail_after(1):
            await newcomer.send_all(HEAD_CLOSE)
            assert await read_to_eof(newcomer) == RESPONSE_CLOSE
            assert await read_to_eof(oldest) == b""
        await younger.send_all(HEAD_CLOSE)
        assert await read_to_eof(younger) == RESPONSE_CLOSE
        stats = served.table.statistics()
        assert (stats.evicted, stats.refused, stats.accepted) == (1, 0, 3)


async def test_new_connection_is_refused_with_503_when_every_one_is_busy(
        served: Served) -> None:
    served.table.cap = 2
    with trio.fail_after(10):
        busy = [await served.connect() for _ in range(2)]
        for stream in busy:
            await stream.send_all(HALF_POST)
        await trio.testing.wait_all_tasks_blocked()
        assert served.table.statistics().idle == 0
        refused = await served.connect()
        with trio.fail_after(1):
            assert await read_to_eof(refused) == REFUSAL
        assert REFUSAL.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"\r\nretry-after: 1\r\nconnection: close\r\n" in REFUSAL
        # the busy ones are untouched and finish their requests
        for stream in busy:
            await stream.send_all(b"0123456789")
            data = await read_exactly(stream, 15)
            assert data == b"HTTP/1.1 200 \r\n"
        stats = served.table.statistics()
        assert (stats.refused, stats.evicted, stats.open) == (1, 0, 2)


async def test_a_refused_client_that_sent_its_request_reads_the_503_not_a_reset(
        served: Served) -> None:
    """Every real client sends its request before reading: the refusal must not be lost to a
    reset (closing a socket with unread data sends RST, which discards the 503 at the client)."""
    served.table.cap = 1
    with trio.fail_after(10):
        busy = await served.connect()
        await busy.send_all(HALF_POST)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(3):
            refused = await served.connect()
            await refused.send_all(HEAD)
            with trio.fail_after(2):
                assert await read_to_eof(refused) == REFUSAL
            await refused.aclose()
        assert served.table.statistics().refused == 3
        await busy.aclose()


def streaming_app(disconnected: trio.Event) -> Any:
    """An ASGI app answering with an endless body until the client is gone."""

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})  # type: ignore[misc,typeddict-item]
                if kind == "shutdown":
                    return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536,
                            "more_body": True})

    return app


async def test_a_client_that_reads_nothing_is_dropped_after_the_write_timeout(
        knobs: Knobs) -> None:
    disconnected = trio.Event()
    knobs.app = streaming_app(disconnected)
    knobs.write_timeout = 0.5
    async with open_served(knobs) as server:
        await _never_read(server, disconnected)


async def _never_read(server: Served, disconnected: trio.Event) -> None:
    with trio.fail_after(20):
        stream = await server.connect()
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await stream.send_all(HEAD)
        start = trio.current_time()
        await disconnected.wait()
        assert trio.current_time() - start >= 0.4
        await trio.testing.wait_all_tasks_blocked()
        assert server.table.statistics().open == 0
        await stream.aclose()


async def test_stopping_closes_idle_connections_at_once(knobs: Knobs) -> None:
    knobs.keep_alive = 60.0
    with trio.fail_after(10):
        async with open_served(knobs) as server:
            before = await server.connect()
            await before.send_all(HEAD)
            assert await read_exactly(before, len(RESPONSE)) == RESPONSE
            fresh = await server.connect()
            await trio.testing.wait_all_tasks_blocked()
            assert server.table.statistics().idle == 2
            stopping = trio.current_time()
        # open_served has stopped the server and waited for it to end
        assert trio.current_time() - stopping < 1.0
        with trio.fail_after(1):
            assert await read_to_eof(before) == b""
            assert await read_to_eof(fresh) == b""
