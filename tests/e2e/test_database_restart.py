"""The embedded PostgreSQL dies (`kill -9` of its postmaster) under `gestor serve`, with one
worker and with two: it is restarted; meanwhile `/readyz` says why in words, purchases get 503
with Retry-After at once and write nothing, a `database_down` / `database_recovered` pair
reaches the websocket and the webhooks at once and is stored once (replay shows it); the log
has one line per change of state and no traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.e2e._proc import ROOT, clean_env, free_port, start, stop

pytestmark = pytest.mark.e2e

BONO = "SMS_200_30D"
DOWN_REASON = re.compile(r"^database unreachable since \d\d:\d\d:\d\d UTC: [a-z]")


async def webhook_receiver(nursery: trio.Nursery) -> tuple[str, list[dict[str, Any]],
                                                            trio.MemoryReceiveChannel[str]]:
    """A real HTTP endpoint recording each alarm POSTed to it (and its kind, on a channel)."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    received: list[dict[str, Any]] = []
    send, kinds = trio.open_memory_channel[str](100)

    async def asgi(scope: Any, receive: Any, respond: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[1]
                await respond({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        alarm = json.loads(body)
        received.append(alarm)
        send.send_nowait(alarm["kind"])
        await respond({"type": "http.response.start", "status": 204, "headers": []})
        await respond({"type": "http.response.body", "body": b""})

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds = await nursery.start(serve, asgi, config)
    return binds[0], received, kinds


async def next_alarm(ws: WebSocketConnection, kind: str) -> dict[str, Any]:
    """The next alarm of `kind` on the feed (others, such as platform alarms, are skipped)."""
    while True:
        alarm: dict[str, Any] = json.loads(await ws.get_message())
        if alarm["kind"] == kind:
            return alarm


async def database_alarms_replayed(ws_url: str) -> list[dict[str, Any]]:
    """The database alarms a client replaying from the start gets (once both are stored)."""
    while True:
        found: list[dict[str, Any]] = []
        async with open_websocket_url(f"{ws_url}?since=0") as ws:
            with trio.move_on_after(1.0):  # replay comes at once; then only live ones
                while True:
                    alarm = json.loads(await ws.get_message())
                    if alarm["kind"].startswith("database_"):
                        found.append(alarm)
        if any(a["kind"] == "database_recovered" for a in found):
            return found


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Not under pytest's tmp_path: the server runs as another user when we are root, and
    each pytest session starting on the box makes /tmp/pytest-of-<user> private again."""
    root = Path(tempfile.mkdtemp(prefix="gestor-e2e-restart-"))
    try:
        yield root / "data"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("workers", [1, 2])
async def test_killed_embedded_database_is_restarted_and_reported(
    workers: int, platforms_url: str, tmp_path: Path, data_dir: Path, nursery: trio.Nursery
) -> None:
    hook_url, hooks, hook_kinds = await webhook_receiver(nursery)
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "gestor.toml").write_text(f'[alarms]\nwebhooks = ["http://{hook_url[7:]}"]\n')
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ws_url = f"ws://127.0.0.1:{port}/v1/alarms"
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc, _ = start(
            ["serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "--platforms", platforms_url, "--config", str(config),
             "--data-dir", str(data_dir)],
            clean_env(GESTOR_ADMIN_KEY="e2e-admin"), "gestor listening on ", stderr=log)
    try:
        with trio.fail_after(150):
            async with httpx.AsyncClient(base_url=base, timeout=15) as http, \
                    open_websocket_url(ws_url) as ws:
                r = await http.post("/v1/purchases", json={"msisdn": "5491100000071",
                                                           "bono_id": BONO},
                                    headers={"Idempotency-Key": "before", "Prefer": "wait=10"})
                assert r.status_code == 200 and r.json()["state"] == "completed", r.text

                postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
                os.kill(postmaster, signal.SIGKILL)

                down = await next_alarm(ws, "database_down")
                assert down["id"] is None  # announced before it could be stored
                assert down["severity"] == "critical"
                assert DOWN_REASON.match(down["message"]), down

                # The worker behind `http` (maybe not the websocket's) knows within a probe.
                for _ in range(50):
                    ready = await http.get("/readyz")
                    reason = ready.json()["checks"].get("database_error", "")
                    if DOWN_REASON.match(reason):
                        break
                    await trio.sleep(0.1)
                assert ready.status_code == 503
                assert DOWN_REASON.match(reason) and "Errno" not in reason, reason

                msisdn = "5491100000072"
                began = time.monotonic()
                r = await http.post("/v1/purchases", json={"msisdn": msisdn, "bono_id": BONO},
                                    headers={"Idempotency-Key": "during"})
                elapsed = time.monotonic() - began
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert int(r.headers["Retry-After"]) >= 1
                assert r.json()["code"] == "DATABASE_UNAVAILABLE"
                assert elapsed < 1.0, elapsed  # refused before the database is tried

                # A client replaying the feed can't be served from the database: told why.
                async with open_websocket_url(f"{ws_url}?since=0") as replay:
                    with pytest.raises(ConnectionClosed) as closed:
                        await replay.get_message()
                assert closed.value.reason.code == 1013
                assert "database unreachable since" in (closed.value.reason.reason or "")

                with trio.fail_after(5):
                    assert await hook_kinds.receive() == "database_down"

                recovered = await next_alarm(ws, "database_recovered")
                assert recovered["severity"] == "info"
                assert recovered["details"]["resolves"]["kind"] == "database_down"
                assert recovered["details"]["incident"] == down["details"]["incident"]
                with trio.fail_after(5):
                    assert await hook_kinds.receive() == "database_recovered"

                # Every worker reconnects by itself: ready, and purchases complete again.
                # (The worker that answered has announced it; another may probe 0.5 s later.)
                for _ in range(100):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                    await trio.sleep(0.1)
                assert (await http.get("/readyz")).status_code == 200
                listing = await http.get(f"/v1/mobiles/{msisdn}/transactions")
                assert listing.status_code == 200
                assert listing.json()["transactions"] == []  # the 503 wrote nothing
                r = await http.post("/v1/purchases", json={"msisdn": msisdn, "bono_id": BONO},
                                    headers={"Idempotency-Key": "during", "Prefer": "wait=10"})
                assert r.status_code == 200 and r.json()["state"] == "completed", r.text
                assert "Idempotent-Replayed" not in r.headers  # a first acceptance

                stored = await database_alarms_replayed(ws_url)
                assert [a["kind"] for a in stored] == ["database_down", "database_recovered"]
                assert all(isinstance(a["id"], int) for a in stored)
                assert stored[1]["details"]["resolves"]["id"] == stored[0]["id"]
                # One copy per change reached the webhooks, whatever the number of workers:
                # the announcer's, the one stored. (The websocket's copy came from the worker
                # it is connected to, whose incident key is its own.)
                # ... and the `resolved` that closes the stored database_down (the alarm
                # lifecycle: no critical alarm stays open once its cause is settled).
                assert await hook_kinds.receive() == "resolved"
                assert [h["kind"] for h in hooks] == [
                    "database_down", "database_recovered", "resolved"]
                assert hooks[2]["details"]["resolves"] == [stored[0]["id"]]
                assert {h["details"]["incident"] for h in hooks} == {
                    a["details"]["incident"] for a in stored}
                if workers == 1:
                    assert stored[0]["details"]["incident"] == down["details"]["incident"]
                # Live clients got each alarm once: the stored copies aren't repeated.
                with trio.move_on_after(1.0):
                    extra = await next_alarm(ws, "database_down")
                    pytest.fail(f"database_down delivered twice: {extra}")
    finally:
        assert stop(proc) == 0
    lines = log_path.read_text().splitlines()
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    died = [line for line in lines if "embedded PostgreSQL (pid" in line and "died" in line]
    restarted = [line for line in lines if "embedded PostgreSQL restarted" in line]
    unreachable = [line for line in lines if "database unreachable since" in line]
    back = [line for line in lines if "database reachable again" in line]
    assert len(died) == 1 and len(restarted) == 1, "\n".join(lines)
    # One line per change of state and per worker (each worker sees the database go and come).
    assert len(unreachable) == workers and len(back) == workers, "\n".join(lines)
    assert not [line for line in lines if "answering 503" in line or "crashed" in line]
