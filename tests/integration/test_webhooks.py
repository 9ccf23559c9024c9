"""Alarm webhooks on Gestor's own HTTP client (``gestor.platforms.HTTPClient``): delivery over
https to a receiver whose certificate the given trust store holds, and the failures a receiver
can cause (no answer within the attempt's timeout, nothing listening), each retried and then
counted and logged once. (The retry after a 5xx, end to end: ``test_faults.py``.)"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import trio

from gestor.alarms import open_webhooks
from tests.tlscerts import make_certificates


async def hypercorn_receiver(
    nursery: trio.Nursery, certfile: Path, keyfile: Path
) -> tuple[str, list[tuple[dict[str, Any], dict[str, str]]], trio.Event]:
    """An https endpoint (hypercorn) that records each POST (body, headers) and answers 204."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    received: list[tuple[dict[str, Any], dict[str, str]]] = []
    arrived = trio.Event()

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        received.append((json.loads(body), headers))
        arrived.set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.certfile, config.keyfile = str(certfile), str(keyfile)
    binds = await nursery.start(serve, asgi, config)
    return binds[0], received, arrived


async def test_an_alarm_is_posted_over_https(nursery: trio.Nursery, tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path / "tls")
    with trio.fail_after(30):
        url, received, arrived = await hypercorn_receiver(
            nursery, certificates.certfile, certificates.keyfile
        )
        assert url.startswith("https://")
        async with open_webhooks(
            [url + "/hook"], ssl_context=certificates.client_context()
        ) as hooks:
            await hooks._deliver(url + "/hook", b'{"id": 7, "kind": "refund_failed"}')
            assert arrived.is_set()
            assert received == [({"id": 7, "kind": "refund_failed"}, received[0][1])]
            assert received[0][1]["content-type"] == "application/json"
            stats = hooks.statistics()
            assert (stats.delivered, stats.failed, stats.dropped) == (1, 0, 0)


async def test_a_certificate_the_trust_store_lacks_is_not_delivered_to(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certificates = make_certificates(tmp_path / "tls")
    stranger = make_certificates(tmp_path / "other")  # trusts another authority
    with trio.fail_after(30):
        url, received, _ = await hypercorn_receiver(
            nursery, certificates.certfile, certificates.keyfile
        )
        async with open_webhooks(
            [url], attempts=2, backoff=0.01, ssl_context=stranger.client_context()
        ) as hooks:
            with caplog.at_level(logging.ERROR, "gestor.webhooks"):
                await hooks._deliver(url, b'{"id": 1}')
    assert received == []
    assert (hooks.statistics().delivered, hooks.statistics().failed) == (0, 1)
    assert [r.getMessage() for r in caplog.records if r.name == "gestor.webhooks"] == [
        f"webhook {url} failed after 2 attempts (ConnectError)"
    ]


async def test_a_receiver_that_never_answers_fails_each_attempt_at_its_timeout(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    requests = 0

    async def silent(stream: trio.SocketStream) -> None:
        nonlocal requests
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        requests += 1
        await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, silent, listeners)
    url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/hook"
    with trio.fail_after(30):
        async with open_webhooks([url], request_timeout=0.3, attempts=3, backoff=0.01) as hooks:
            with caplog.at_level(logging.ERROR, "gestor.webhooks"):
                started = trio.current_time()
                await hooks._deliver(url, b'{"id": 2}')
                assert trio.current_time() - started >= 3 * 0.3
    assert requests == 3  # each attempt on a fresh connection: a timed-out one is closed
    assert (hooks.statistics().delivered, hooks.statistics().failed) == (0, 1)
    assert [r.getMessage() for r in caplog.records if r.name == "gestor.webhooks"] == [
        f"webhook {url} failed after 3 attempts (no answer within 0.3 s)"
    ]


async def test_nothing_listening_fails_after_the_attempts(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    with trio.fail_after(30):
        async with open_webhooks([url], attempts=2, backoff=0.01) as hooks:
            with caplog.at_level(logging.ERROR, "gestor.webhooks"):
                await hooks._deliver(url, b'{"id": 3}')
    assert (hooks.statistics().delivered, hooks.statistics().failed) == (0, 1)
    assert [r.getMessage() for r in caplog.records if r.name == "gestor.webhooks"] == [
        f"webhook {url} failed after 2 attempts (ConnectError)"
    ]
