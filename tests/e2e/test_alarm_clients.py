"""End to end: the alarm feed of a `gestor serve` process (default `[alarms] send_timeout`, 5 s)
with a client that never reads, and a client that replays a large backlog."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from gestor.serving import FELL_BEHIND
from gestor.store import open_bridge
from tests.e2e.conftest import ADMIN_KEY
from tests.integration.test_alarm_websocket import frames

pytestmark = pytest.mark.e2e

SEND_TIMEOUT = 5.0  # config/gestor.toml's default
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def insert_alarms(database_url: str, n: int, size: int) -> list[int]:
    async def insert(conn: Any) -> list[int]:
        rows = await conn.fetch(
            "INSERT INTO alarms (kind, severity, message)"
            " SELECT 'bulk', 'info', repeat('x', $2) || i FROM generate_series(1, $1) i"
            " RETURNING id", n, size)
        return sorted(int(r["id"]) for r in rows)

    async with open_bridge(database_url, min_size=1, max_size=1) as bridge:
        ids: list[int] = await bridge.run(insert)
    return ids


async def subscribers(http: httpx.AsyncClient) -> int:
    r = await http.get("/v1/admin/statistics", headers=ADMIN)
    assert r.status_code == 200
    return int(r.json()["alarms"]["subscribers"])


async def test_a_client_that_never_reads_is_disconnected_within_the_send_timeout(
    server: str, e2e_database: str
) -> None:
    ids = await insert_alarms(e2e_database, 3_000, 4_000)
    host, port = server.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=server, timeout=15) as http:
            before = await subscribers(http)
            client = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await client.connect((host, int(port)))
            await client.send(
                f"GET /v1/alarms?since={ids[0] - 1} HTTP/1.1\r\nHost: {host}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            connected = trio.current_time()
            # Another process: its statistics are the only view of the subscription. The
            # client reads nothing; once a write has waited SEND_TIMEOUT it is cut loose.
            seen_subscribed = False
            while True:
                now = await subscribers(http)
                seen_subscribed = seen_subscribed or now > before
                if seen_subscribed and now == before:
                    break
                await trio.sleep(0.1)
            assert trio.current_time() - connected < SEND_TIMEOUT + 10
            received = bytearray()
            try:
                while chunk := await client.recv(1 << 16):
                    received += chunk
            except ConnectionResetError:
                pass
            client.close()
            # The server still answers everyone else.
            assert (await http.get("/healthz")).status_code == 200
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    texts, close, cut = frames(rest)
    assert len(texts) < len(ids)
    assert [json.loads(t)["id"] for t in texts] == ids[: len(texts)]
    assert close == (1013, FELL_BEHIND) and not cut  # after the last whole frame


async def test_a_replay_of_20000_alarms_over_a_real_websocket_misses_none(
    server: str, e2e_database: str
) -> None:
    ids = await insert_alarms(e2e_database, 20_000, 10)
    ws_url = server.replace("http://", "ws://") + f"/v1/alarms?since={ids[0] - 1}"
    with trio.fail_after(120):
        async with open_websocket_url(ws_url) as ws:
            got = [json.loads(await ws.get_message())["id"] for _ in ids]
    assert got == ids
