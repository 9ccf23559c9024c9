"""`gestor serve` (one worker, and two) closes client connections as HTTP and its settings say:
at once after `Connection: close`, after `[server] keep_alive_timeout` when idle."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.e2e._proc import clean_env, free_port, start, stop

pytestmark = pytest.mark.e2e

KEEP_ALIVE = 0.5


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def serving(request: pytest.FixtureRequest, platforms_url: str, database_url: str,
            config_dir: Path, tmp_path: Path) -> Iterator[int]:
    config = tmp_path / "config"
    shutil.copytree(config_dir, config)
    toml = config / "gestor.toml"
    text = toml.read_text(encoding="utf-8")
    assert "keep_alive_timeout = 20.0" in text
    toml.write_text(text.replace("keep_alive_timeout = 20.0", f"keep_alive_timeout = {KEEP_ALIVE}"),
                    encoding="utf-8")
    port = free_port()
    proc, _ = start(
        ["serve", "--bind", f"127.0.0.1:{port}", "--workers", str(request.param),
         "--platforms", platforms_url, "--data-dir", str(tmp_path / "data")],
        clean_env(GESTOR_DATABASE_URL=database_url, GESTOR_CONFIG_DIR=str(config),
                  GESTOR_ADMIN_KEY="e2e-admin-key-0123456789"),
        "gestor listening on ",
    )
    try:
        yield port
    finally:
        assert stop(proc) == 0


async def read_to_eof(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def test_connection_close_and_idle_connections_are_closed(serving: int) -> None:
    with trio.fail_after(60):
        # several connections, so that both workers (if two) answer some
        for _ in range(8):
            stream = await trio.open_tcp_stream("127.0.0.1", serving)
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            with trio.fail_after(1):
                data = await read_to_eof(stream)
            assert data.startswith(b"HTTP/1.1 200 \r\n")
            assert b"\r\nConnection: close\r\n" in data and data.endswith(b'{"status":"ok"}')
            await stream.aclose()

        for request in (b"", b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"):
            stream = await trio.open_tcp_stream("127.0.0.1", serving)
            await stream.send_all(request)
            begun = trio.current_time()
            data = await read_to_eof(stream)
            waited = trio.current_time() - begun
            assert data.endswith(b'{"status":"ok"}') if request else data == b""
            assert KEEP_ALIVE * 0.9 <= waited < KEEP_ALIVE + 5, waited
            await stream.aclose()
