"""The alarm feed over TLS (WSS), against the app served as a worker serves it with a throw-away
certificate: a client gets the backlog and live alarms, and a client that never reads is
disconnected after `[alarms] send_timeout` with the 1013 close frame after its last whole
message, its socket and its subscription freed, as over plain TCP."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing
from trio_websocket import open_websocket_url

from gestor.api import GestorApp, create_app
from gestor.model import NewAlarm, Severity
from gestor.serving import FELL_BEHIND, listening_socket
from gestor.settings import Settings, load_settings
from gestor.simulator import SimulatorHandle
from gestor.workers import serve_app
from tests.integration.conftest import ADMIN_KEY
from tests.integration.test_alarm_websocket import _Disconnects, disconnects, frames
from tests.tlscerts import Certificates, make_certificates

__all__ = ["disconnects"]  # a fixture used here

SEND_TIMEOUT = 1.0
BACKLOG = 3_000  # alarms of ~4 KiB: far more than the socket buffers of both ends hold


def tls_settings(config_dir: Path, tmp_path: Path, certificates: Certificates) -> Settings:
    return attrs.evolve(load_settings(config_dir, environ={}, data_dir=tmp_path),
                        admin_key=ADMIN_KEY, alarm_send_timeout=SEND_TIMEOUT,
                        certfile=certificates.certfile, keyfile=certificates.keyfile)


async def serve_tls(nursery: trio.Nursery, app: GestorApp, settings: Settings) -> int:
    """Serve `app` as a worker does, over TLS, until the test's nursery ends; its port."""
    sock = listening_socket("127.0.0.1:0", reuse_port=False)
    ready = trio.Event()
    nursery.start_soon(lambda: serve_app(app, settings, sock, ready.set))
    await ready.wait()
    return int(sock.getsockname()[1])


async def insert_backlog(app: GestorApp) -> list[int]:
    async def insert(conn: Any) -> list[int]:
        rows = await conn.fetch(
            "INSERT INTO alarms (kind, severity, message)"
            " SELECT 'bulk', 'info', repeat('x', 4000) || i FROM generate_series(1, $1) i"
            " RETURNING id", BACKLOG)
        return sorted(int(r["id"]) for r in rows)

    ids: list[int] = await app.runtime.store.bridge.run(insert)
    return ids


async def test_a_wss_client_gets_the_backlog_then_live_alarms(
    database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
    nursery: trio.Nursery,
) -> None:
    certificates = make_certificates(tmp_path / "tls")
    settings = tls_settings(config_dir, tmp_path, certificates)
    app = create_app(settings, database_url, simulator.url)
    with trio.fail_after(60):
        port = await serve_tls(nursery, app, settings)
        ids = (await insert_backlog(app))[:3]

        async with open_websocket_url(f"wss://127.0.0.1:{port}/v1/alarms?since={ids[0] - 1}",
                                      ssl_context=certificates.client_context()) as ws:
            got = [json.loads(await ws.get_message())["id"] for _ in ids]
            assert got == ids
            live = await app.runtime.alarms.raise_alarm(
                NewAlarm("platform_down", Severity.CRITICAL, "ocs unreachable"))
            while (message := json.loads(await ws.get_message()))["id"] != live.id:
                assert message["kind"] == "bulk"  # the rest of the backlog comes first
            assert (message["kind"], message["message"]) == ("platform_down", "ocs unreachable")


async def test_a_wss_client_that_never_reads_is_disconnected_and_its_socket_freed(
    database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
    nursery: trio.Nursery, disconnects: _Disconnects,
) -> None:
    certificates = make_certificates(tmp_path / "tls")
    settings = tls_settings(config_dir, tmp_path, certificates)
    app = create_app(settings, database_url, simulator.url)
    with trio.fail_after(60):
        port = await serve_tls(nursery, app, settings)
        await insert_backlog(app)

        raw = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await raw.connect(("127.0.0.1", port))
        client = trio.SSLStream(trio.SocketStream(raw), certificates.client_context(),
                                server_hostname="127.0.0.1")
        await client.do_handshake()
        await client.send_all(
            b"GET /v1/alarms?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")
        started = trio.current_time()
        # The client reads nothing: the replay fills both socket buffers and a write blocks.
        await disconnects.event.wait()
        assert trio.current_time() - started < SEND_TIMEOUT + 10
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        assert app.runtime.alarms.statistics().subscribers == 0
        assert app.connections is not None and app.connections.statistics().open == 0

        # Now read what the server had queued: it ends, because the server closed the socket.
        received = bytearray()
        with contextlib.suppress(trio.BrokenResourceError):
            while chunk := await client.receive_some(1 << 16):
                received += chunk
        await trio.aclose_forcefully(client)
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    texts, close, cut = frames(rest)
    assert 0 < len(texts) < BACKLOG  # the server stopped writing to it
    ids = [json.loads(t)["id"] for t in texts]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # Whole frames, then the close frame telling the client why and what to do.
    assert close == (1013, FELL_BEHIND) and not cut
