"""Client connections of a real worker (`serve_app` on a loopback socket, Gestor's app on a
fresh database, the simulator over HTTP), driven by raw sockets: thousands of idle connections
do not stop a normal client, `Connection: close` and idle keep-alive connections are closed by
the server, and at the connection cap the oldest idle connection makes room for a new one."""

from __future__ import annotations

import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

from gestor.api import create_app
from gestor.serving import ConnectionTable, connection_cap, listening_socket, raise_descriptor_limit
from gestor.settings import load_settings
from gestor.simulator import SimulatorHandle
from gestor.workers import serve_app
from tests.integration.conftest import ADMIN_KEY

HELD = 5000
MSISDN = "5491100000002"


@attrs.define
class Worker:
    port: int
    connections: ConnectionTable

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream("127.0.0.1", self.port)


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """Per-test overrides of the [server] settings."""
    return {}


@pytest.fixture
async def worker(database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
                 server_settings: dict[str, Any]) -> AsyncIterator[Worker]:
    base = load_settings(config_dir, environ={}, data_dir=tmp_path)
    settings = attrs.evolve(base, bind="127.0.0.1:0", admin_key=ADMIN_KEY,
                            platforms={**base.platforms, "timeout": 2.0}, **server_settings)
    table = ConnectionTable(connection_cap(settings, raise_descriptor_limit()))
    sock = listening_socket(settings.bind, reuse_port=False)
    app = create_app(settings, database_url, simulator.url)
    ready, stop = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_app(app, settings, sock, ready.set, stop=stop,
                                             connections=table))
        with trio.fail_after(60):
            await ready.wait()
        yield Worker(sock.getsockname()[1], table)
        stop.set()


async def read_to_eof(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def read_head(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, f"EOF after {bytes(data)!r}"
        data += chunk
    return bytes(data)


async def hold(worker: Worker, count: int) -> list[trio.SocketStream]:
    held: list[trio.SocketStream] = []
    limiter = trio.CapacityLimiter(100)

    async def one() -> None:
        async with limiter:
            held.append(await worker.connect())

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return held


async def answered_within(seconds: float, client: httpx.AsyncClient, method: str, path: str,
                          **kwargs: Any) -> httpx.Response:
    start = trio.current_time()
    response = await client.request(method, path, **kwargs)
    took = trio.current_time() - start
    assert took < seconds, f"{method} {path} took {took:.2f} s"
    return response


@pytest.fixture
def many_descriptors() -> None:
    limit = raise_descriptor_limit()
    if limit < 2 * HELD + 2000:
        pytest.skip(f"open-files hard limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]} "
                    f"is too low for {HELD} connections at both ends in one process")


@pytest.mark.parametrize("server_settings", [{"keep_alive_timeout": 120.0}])
async def test_5000_idle_connections_do_not_stop_a_normal_client(
        many_descriptors: None, worker: Worker) -> None:
    with trio.fail_after(180):
        held = await hold(worker, HELD)
        # a tenth of them served a request first (idle on keep-alive), the rest sent nothing
        for stream in held[:HELD // 10]:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        for stream in held[:HELD // 10]:
            assert (await read_head(stream)).startswith(b"HTTP/1.1 200 \r\n")
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        stats = worker.connections.statistics()
        assert stats.open == stats.idle == HELD, stats
        assert stats.cap > HELD

        closing = await worker.connect()
        await closing.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        with trio.fail_after(1):
            data = await read_to_eof(closing)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 "
        assert b"Connection: close" in lines and b"content-type: application/json" in lines
        assert body == b'{"status":"ok"}'

        async with httpx.AsyncClient(base_url=worker.url, timeout=5) as client:
            ready = await answered_within(1.0, client, "GET", "/readyz")
            assert ready.status_code == 200, ready.text
            bought = await answered_within(
                1.0, client, "POST", "/v1/purchases",
                json={"msisdn": MSISDN, "bono_id": "DATA_2GB_7D"},
                headers={"Idempotency-Key": "conn-5000"})
            assert bought.status_code in (200, 202), bought.text
            assert bought.json()["msisdn"] == MSISDN

            shown = await client.get("/v1/admin/statistics",
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert shown.status_code == 200, shown.text
            connections = shown.json()["connections"]
            assert connections["open"] >= HELD and connections["cap"] == stats.cap
            assert (connections["evicted"], connections["refused"]) == (0, 0)
        # the held ones are still open: each still gets an answer
        for stream in held[-3:]:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert (await read_to_eof(stream)).endswith(b'{"status":"ok"}')
        for stream in held:
            await stream.aclose()


@pytest.mark.parametrize("server_settings", [{"keep_alive_timeout": 0.5}])
async def test_idle_keep_alive_connection_is_closed_after_the_configured_timeout(
        worker: Worker) -> None:
    with trio.fail_after(30):
        stream = await worker.connect()
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        start = trio.current_time()
        data = await read_to_eof(stream)
        waited = trio.current_time() - start
        assert data.startswith(b"HTTP/1.1 200 \r\n") and data.endswith(b'{"status":"ok"}')
        assert b"Connection: close" not in data
        assert 0.45 <= waited < 5, waited


@pytest.mark.parametrize("handshake", [
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",  # no key
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
], ids=["no-key", "old-version"])
async def test_a_websocket_handshake_refused_by_the_http_layer_closes_its_connection(
        worker: Worker, handshake: bytes) -> None:
    """hypercorn answers a handshake it cannot take with `400` and `connection: close`: the
    connection is then closed at once (it used to stay open, busy, for ever)."""
    with trio.fail_after(30):
        stream = await worker.connect()
        await stream.send_all(b"GET /v1/alarms?since=0 HTTP/1.1\r\nHost: t\r\n" + handshake
                              + b"\r\n")
        with trio.fail_after(2):
            data = await read_to_eof(stream)
        assert data.startswith(b"HTTP/1.1 400 \r\n"), data
        await stream.aclose()


@pytest.mark.parametrize("server_settings", [{"keep_alive_timeout": 0.5}])
async def test_a_body_that_does_not_arrive_within_the_timeout_is_answered_408(
        worker: Worker) -> None:
    """A client that trickles a body holds a busy connection (never evicted at the cap): the
    keep-alive timeout bounds the body as it bounds the head."""
    with trio.fail_after(30):
        stream = await worker.connect()
        await stream.send_all(b"POST /v1/purchases HTTP/1.1\r\nHost: t\r\n"
                              b"Content-Type: application/json\r\nIdempotency-Key: slow-body\r\n"
                              b"Content-Length: 100\r\n\r\n{\"msisdn\"")
        start = trio.current_time()
        head = await read_head(stream)
        waited = trio.current_time() - start
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert b"application/problem+json" in head
        assert 0.45 <= waited < 5, waited
        await stream.aclose()


@pytest.mark.parametrize("server_settings", [{"max_connections": 3, "keep_alive_timeout": 60.0}])
async def test_at_the_cap_the_oldest_idle_connection_makes_room(worker: Worker) -> None:
    assert worker.connections.cap == 3
    with trio.fail_after(60):
        held = [await worker.connect() for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert worker.connections.statistics().idle == 3
        async with httpx.AsyncClient(base_url=worker.url, timeout=5) as client:
            ready = await answered_within(1.0, client, "GET", "/readyz")
            assert ready.status_code == 200, ready.text
        with trio.fail_after(1):
            assert await read_to_eof(held[0]) == b""
        for stream in held[1:]:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert (await read_to_eof(stream)).endswith(b'{"status":"ok"}')
        stats = worker.connections.statistics()
        assert (stats.evicted, stats.refused, stats.accepted) == (1, 0, 4)
