"""`gestor serve` (one worker, and two) closes client connections as HTTP and its settings say:
at once after `Connection: close`, after `[server] keep_alive_timeout` when idle; and a flood of
idle connections beyond its open-files limit leaves it answering, platform calls included."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e._proc import ROOT, clean_env, free_port, start, stop

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


LIMIT = 1200  # open files of the server process (soft and hard): room for ~600 clients
FLOOD = 2 * LIMIT


@pytest.fixture
def low_limit_server(platforms_url: str, database_url: str, tmp_path: Path) -> Iterator[int]:
    """`gestor serve` whose hard open-files limit is LIMIT, its stderr kept in a file."""
    port = free_port()
    log = tmp_path / "stderr.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))

    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gestor", "serve", "--bind", f"127.0.0.1:{port}",
             "--platforms", platforms_url, "--data-dir", str(tmp_path / "data")],
            cwd=ROOT, env=clean_env(GESTOR_DATABASE_URL=database_url,
                                    GESTOR_ADMIN_KEY="e2e-admin-key-0123456789"),
            stdout=subprocess.PIPE, stderr=stderr, text=True, preexec_fn=limit,
        )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # ends at EOF if it dies
            if "gestor listening on " in line:
                break
        assert proc.poll() is None, log.read_text()
        yield port
        problems = [line for line in log.read_text().splitlines()
                    if "Too many open files" in line or "Traceback" in line]
        assert problems == []
    finally:
        assert stop(proc) == 0


async def test_a_flood_of_idle_connections_beyond_the_descriptor_limit_stops_nothing(
        low_limit_server: int) -> None:
    port = low_limit_server
    with trio.fail_after(120):
        held: list[trio.SocketStream] = []
        limiter = trio.CapacityLimiter(50)

        async def connect() -> None:
            async with limiter:
                held.append(await trio.open_tcp_stream("127.0.0.1", port))

        async with trio.open_nursery() as nursery:
            for _ in range(FLOOD):
                nursery.start_soon(connect)
        assert len(held) == FLOOD

        admin = {"Authorization": "Bearer e2e-admin-key-0123456789"}
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as first:
            # answered once the server has accepted every connection queued before it
            flooded = (await first.get("/v1/admin/statistics", headers=admin)).json()
        assert flooded["connections"]["accepted"] >= FLOOD
        async with httpx.AsyncClient(base_url=base, timeout=15) as client:
            begun = trio.current_time()
            ready = await client.get("/readyz")
            assert trio.current_time() - begun < 1.0
            assert ready.status_code == 200, ready.text
            bought = await client.post(
                "/v1/purchases", json={"msisdn": "5491100000003", "bono_id": "DATA_2GB_7D"},
                headers={"Idempotency-Key": "flood-1", "Prefer": "wait=10"})
            assert bought.status_code == 200, bought.text
            assert bought.json()["state"] == "completed"  # every platform call went through
            stats = (await client.get("/v1/admin/statistics", headers=admin)).json()
        connections = stats["connections"]
        assert connections["cap"] < LIMIT
        assert connections["open"] <= connections["cap"]
        assert connections["evicted"] >= FLOOD - connections["cap"]
        assert connections["refused"] == 0
        for stream in held:
            await stream.aclose()
