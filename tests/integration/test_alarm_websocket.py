"""A websocket client of the alarm feed that never reads, against the app served by hypercorn on
a real socket (as `gestor serve` serves it): it is disconnected once a write has waited
`[alarms] send_timeout`, its socket is closed, and the feed's subscription is released."""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trio_websocket import open_websocket_url

from gestor.api import GestorApp, create_app
from gestor.serving import FELL_BEHIND, listening_socket
from gestor.settings import Settings, load_settings
from gestor.simulator import SimulatorHandle
from gestor.workers import serve_app
from tests.integration.conftest import ADMIN_KEY

SEND_TIMEOUT = 1.0
BACKLOG = 3_000  # alarms of ~4 KiB: far more than the socket buffers of both ends hold


class _Disconnects(logging.Handler):
    """Sets `event` when the transport logs that it disconnected a client that did not read."""

    def __init__(self) -> None:
        super().__init__()
        self.event = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "did not read" in record.getMessage():
            self.event.set()


@pytest.fixture
def disconnects() -> Iterator[_Disconnects]:
    handler = _Disconnects()
    log = logging.getLogger("gestor.api")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def frames(data: bytes) -> tuple[list[bytes], tuple[int, str] | None, bool]:
    """(text payloads, (code, reason) of a close frame, whether the data ends mid-frame) of
    what a server sent (its frames are unmasked)."""
    texts: list[bytes] = []
    at = 0
    while at < len(data):
        if len(data) - at < 2:
            return texts, None, True
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        head = 2
        if length == 126:
            if len(data) - at < 4:
                return texts, None, True
            (length,) = struct.unpack("!H", data[at + 2:at + 4])
            head = 4
        elif length == 127:
            if len(data) - at < 10:
                return texts, None, True
            (length,) = struct.unpack("!Q", data[at + 2:at + 10])
            head = 10
        if len(data) - at < head + length:
            return texts, None, True
        payload = data[at + head:at + head + length]
        at += head + length
        if opcode == 0x8:
            (code,) = struct.unpack("!H", payload[:2])
            return texts, (code, payload[2:].decode()), at != len(data)
        assert opcode == 0x1, opcode
        texts.append(payload)
    return texts, None, False


async def _serve(nursery: trio.Nursery, app: GestorApp, settings: Settings) -> str:
    """Serve `app` as a worker does (`serve_app`: Gestor's connections, websocket writes
    bounded by `[alarms] send_timeout`) until the test's nursery ends; its base URL."""
    sock = listening_socket("127.0.0.1:0", reuse_port=False)
    ready = trio.Event()
    nursery.start_soon(lambda: serve_app(app, settings, sock, ready.set))
    await ready.wait()
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_client_that_never_reads_is_disconnected_and_its_socket_freed(
    database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
    nursery: trio.Nursery, disconnects: _Disconnects,
) -> None:
    settings = attrs.evolve(load_settings(config_dir, environ={}, data_dir=tmp_path),
                            admin_key=ADMIN_KEY, alarm_send_timeout=SEND_TIMEOUT)
    app = create_app(settings, database_url, simulator.url)
    with trio.fail_after(60):
        binds = [await _serve(nursery, app, settings)]
        port = int(binds[0].rsplit(":", 1)[1])

        async def insert(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO alarms (kind, severity, message)"
                " SELECT 'bulk', 'info', repeat('x', 4000) || i FROM generate_series(1, $1) i",
                BACKLOG)

        await app.runtime.store.bridge.run(insert)

        client = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await client.connect(("127.0.0.1", port))
        await client.send(
            b"GET /v1/alarms?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")
        started = trio.current_time()
        # The client reads nothing: the replay fills both socket buffers and a write blocks.
        await disconnects.event.wait()
        assert trio.current_time() - started < SEND_TIMEOUT + 10
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        assert app.runtime.alarms.statistics().subscribers == 0

        # Now read what the server had queued: it ends, because the server closed the socket.
        received = bytearray()
        try:
            while chunk := await client.recv(1 << 16):
                received += chunk
        except ConnectionResetError:
            pass
        client.close()
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    texts, close, cut = frames(rest)
    assert 0 < len(texts) < BACKLOG  # the server stopped writing to it
    ids = [json.loads(t)["id"] for t in texts]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # Whole frames, then the close frame telling the client why and what to do.
    assert close == (1013, FELL_BEHIND) and not cut


async def test_a_client_that_pauses_shorter_than_the_timeout_gets_everything(
    database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
    nursery: trio.Nursery, disconnects: _Disconnects,
) -> None:
    settings = attrs.evolve(load_settings(config_dir, environ={}, data_dir=tmp_path),
                            admin_key=ADMIN_KEY, alarm_send_timeout=SEND_TIMEOUT)
    app = create_app(settings, database_url, simulator.url)
    with trio.fail_after(120):
        binds = [await _serve(nursery, app, settings)]
        url = binds[0].replace("http://", "ws://")

        async def insert(conn: Any) -> list[int]:
            rows = await conn.fetch(
                "INSERT INTO alarms (kind, severity, message)"
                " SELECT 'bulk', 'info', repeat('x', 4000) || i FROM generate_series(1, $1) i"
                " RETURNING id", BACKLOG)
            return sorted(int(r["id"]) for r in rows)

        ids = await app.runtime.store.bridge.run(insert)
        got: list[int] = []
        async with open_websocket_url(f"{url}/v1/alarms?since=0") as ws:
            while len(got) < len(ids):
                for _ in range(min(500, len(ids) - len(got))):
                    got.append(json.loads(await ws.get_message())["id"])
                # A slow client: it stops reading for a while, shorter than the send timeout.
                await trio.sleep(SEND_TIMEOUT * 0.6)
            assert not ws.closed
        assert got == ids
        assert not disconnects.event.is_set()
