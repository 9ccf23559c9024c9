"""Top-ups: ``POST /control/topups`` credits the balance, shows in the ledger as ``topup``, and
is notified at least once to a real local HTTP receiver (a trio + h11 server in the test)."""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import h11
import httpx
import msgspec
import pytest
import trio

from gestor.settings import SettingsError, load_settings
from gestor.simulator import SimulatorConfig, SimulatorHandle, serve_simulator
from gestor.simulator._journal import JOURNAL_NAME
from gestor.simulator._notifier import KEY_ENV
from gestor.simulator._outbound import OutboundError, post_json
from gestor.simulator._topups import TopupRecord

from ..tlscerts import make_certificates
from .support import WELL_KNOWN

BALANCE = 1_681_332  # WELL_KNOWN's starting balance
OTHER = "5491100000003"
KEY = "tk_secret-notify-key-0123456789"


@attrs.frozen
class Received:
    target: str
    headers: dict[str, str]
    body: dict[str, Any]


@attrs.define
class Receiver:
    """A local HTTP server standing for Gestor's ``/v1/topups``: answers each request with the
    next status of ``answers`` (then 200), or never (``"hang"``); reports each request."""

    url: str
    answers: list[int | str]
    received: list[Received] = attrs.field(factory=list)
    _send: trio.MemorySendChannel[Received] | None = None
    _receive: trio.MemoryReceiveChannel[Received] | None = None

    async def next(self) -> Received:
        assert self._receive is not None
        return await self._receive.receive()

    def nothing_more(self) -> bool:
        assert self._receive is not None
        try:
            self._receive.receive_nowait()
        except trio.WouldBlock:
            return True
        return False


async def _serve_receiver(
    answers: list[int | str],
    *,
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[Receiver] = trio.TASK_STATUS_IGNORED,
) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    send, receive = trio.open_memory_channel[Received](math.inf)
    scheme = "http" if ssl_context is None else "https"
    receiver = Receiver(f"{scheme}://localhost:{port}/v1/topups", answers, send=send,
                        receive=receive)

    async def handle(tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        if ssl_context is not None:
            stream = trio.SSLStream(tcp, ssl_context, server_side=True)
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        while type(event := conn.next_event()) is not h11.EndOfMessage:
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
            elif type(event) is h11.Request:
                request = event
            elif type(event) is h11.Data:
                body += event.data
            else:
                await tcp.aclose()
                return
        assert request is not None
        seen = Received(
            request.target.decode(),
            {k.decode(): v.decode() for k, v in request.headers},
            msgspec.json.decode(body),
        )
        receiver.received.append(seen)
        send.send_nowait(seen)
        answer = receiver.answers.pop(0) if receiver.answers else 200
        if answer == "hang":
            await trio.sleep_forever()
        assert isinstance(answer, int)
        content = b'{"status":"recorded"}'
        data = conn.send(h11.Response(status_code=answer, headers=[
            ("content-type", "application/json"), ("content-length", str(len(content)))
        ]))
        await stream.send_all(data + conn.send(h11.Data(data=content))
                              + conn.send(h11.EndOfMessage()))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(receiver)


@asynccontextmanager
async def _simulator(
    config: SimulatorConfig,
) -> AsyncIterator[tuple[SimulatorHandle, httpx.AsyncClient, trio.MemoryReceiveChannel[Any]]]:
    """A served simulator, an HTTP client of it and the top-ups after each notice attempt."""
    notices_in, notices = trio.open_memory_channel[TopupRecord](math.inf)
    async with trio.open_nursery() as nursery:
        handle: SimulatorHandle = await nursery.start(serve_simulator, config)
        handle.simulator.on_notice = notices_in.send_nowait
        async with httpx.AsyncClient(base_url=handle.url, timeout=10) as http:
            yield handle, http, notices
        nursery.cancel_scope.cancel()


def _config(receiver: Receiver | None, **extra: Any) -> SimulatorConfig:
    table: dict[str, Any] = {"seed": 3, "topup_notify_backoff": 0.01,
                             "topup_notify_backoff_max": 0.05, "topup_notify_timeout": 5}
    if receiver is not None:
        table["topup_notify_url"] = receiver.url
    return SimulatorConfig.from_mapping({**table, **extra})


async def _settled(notices: trio.MemoryReceiveChannel[TopupRecord], reference: str) -> TopupRecord:
    """The top-up once its notification is no longer pending."""
    async for topup in notices:
        if topup.reference == reference and topup.notification.status != "pending":
            return topup
    raise AssertionError("the notices ended")


async def _balance(http: httpx.AsyncClient, msisdn: str = WELL_KNOWN) -> int:
    balance: int = (await http.get(f"/ocs/accounts/{msisdn}")).json()["balance"]
    return balance


# -- the contract -------------------------------------------------------------------------------


async def test_topup_credits_the_balance_and_is_in_the_ledger(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        async with _simulator(_config(None)) as (_, http, _notices):
            made = await http.post("/control/topups", json={
                "msisdn": WELL_KNOWN, "amount": 50_000, "reference": "rc-1"
            })
            assert made.status_code == 200
            topup = made.json()
            assert topup["reference"] == "rc-1" and topup["status"] == "topped_up"
            assert topup["balance_after"] == BALANCE + 50_000
            assert topup["notification"]["status"] == "disabled"  # no URL configured
            assert await _balance(http) == BALANCE + 50_000
            assert (await http.get("/control/topups/rc-1")).json() == topup
            unknown = await http.get("/control/topups/rc-none")
            assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"

            # no reference: one is made up
            generated = (await http.post("/control/topups", json={
                "msisdn": OTHER, "amount": 1_000
            })).json()
            assert len(generated["reference"]) == 32
            await http.post("/ocs/credits", json={"id": "cr-1", "msisdn": OTHER, "amount": 7})
            ledger = (await http.get("/control/ledger")).json()
            assert [(e["kind"], e["id"], e["msisdn"], e["amount"]) for e in ledger] == [
                ("topup", "rc-1", WELL_KNOWN, 50_000),
                ("topup", generated["reference"], OTHER, 1_000),
                ("credit", "cr-1", OTHER, 7),
            ]
            stats = (await http.get("/control/stats", params={"msisdn": WELL_KNOWN})).json()
            assert (stats["topups"], stats["topped_up_total"]) == (2, 51_000)
            assert stats["notifications"] == {"disabled": 2}
            assert stats["per_msisdn"]["topups"] == 1
            assert stats["per_msisdn"]["topped_up_total"] == 50_000
            assert stats["credits"] == 1  # a top-up is not a Gestor credit


async def test_topup_bad_requests(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        async with _simulator(_config(None)) as (_, http, _notices):
            body = {"msisdn": WELL_KNOWN, "amount": 100, "reference": "rc-bad"}
            for bad, code, field in (
                ({"amount": 0}, "INVALID_AMOUNT", "amount"),
                ({"msisdn": "12"}, "INVALID_MSISDN", "msisdn"),
                ({"reference": "has space"}, "INVALID_REQUEST", "reference"),
                ({"reference": ""}, "INVALID_REQUEST", "reference"),
                ({"amount": "lots"}, "INVALID_REQUEST", "amount"),
            ):
                answer = await http.post("/control/topups", json={**body, **bad})
                assert answer.status_code == 400, bad
                assert answer.json()["code"] == code and field in answer.json()["message"]
            await http.put(f"/control/accounts/{OTHER}", json={"line_status": "barred"})
            barred = await http.post("/control/topups", json={**body, "msisdn": OTHER})
            assert barred.status_code == 403 and barred.json()["code"] == "LINE_NOT_ACTIVE"
            assert (await http.get("/control/stats")).json()["topups"] == 0
            assert await _balance(http) == BALANCE


# -- notifications ------------------------------------------------------------------------------


async def test_notification_is_retried_after_5xx_until_delivered(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver: Receiver = await nursery.start(_serve_receiver, [503, 500, 200])
    with trio.fail_after(20):
        async with _simulator(_config(receiver, topup_notify_key=KEY)) as (_, http, notices):
            made = await http.post("/control/topups", json={
                "msisdn": WELL_KNOWN, "amount": 30_000, "reference": "rc-5xx"
            })
            assert made.json()["notification"]["status"] == "pending"
            first = await receiver.next()
            assert first.target == "/v1/topups"
            assert first.body == {"msisdn": WELL_KNOWN, "amount": 30_000, "reference": "rc-5xx"}
            assert first.headers["idempotency-key"] == "rc-5xx"
            assert first.headers["authorization"] == f"Bearer {KEY}"
            assert first.headers["content-type"] == "application/json"
            assert [await receiver.next(), await receiver.next()] == [first, first]  # the same
            settled = await _settled(notices, "rc-5xx")
            assert settled.notification.status == "delivered"
            assert (settled.notification.attempts, settled.notification.last_status) == (3, 200)
            looked = (await http.get("/control/topups/rc-5xx")).json()
            assert looked["notification"]["status"] == "delivered"
            assert looked["notification"]["attempts"] == 3
            assert (await http.get("/control/stats")).json()["notifications"] == {"delivered": 1}
            assert await _balance(http) == BALANCE + 30_000  # credited once, whatever happened
        assert receiver.nothing_more()
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert not any(KEY in r.getMessage() or KEY in str(r.args) for r in caplog.records)


async def test_notification_stops_on_a_4xx_but_not_on_429(nursery: trio.Nursery) -> None:
    receiver: Receiver = await nursery.start(_serve_receiver, [422])
    with trio.fail_after(20):
        async with _simulator(_config(receiver)) as (_, http, notices):
            await http.post("/control/topups", json={
                "msisdn": WELL_KNOWN, "amount": 10_000, "reference": "rc-422"
            })
            rejected = await _settled(notices, "rc-422")
            assert rejected.notification.status == "rejected"
            assert (rejected.notification.attempts, rejected.notification.last_status) == (1, 422)
            assert "authorization" not in (await receiver.next()).headers  # no key configured

            receiver.answers.extend([429, 201])
            await http.post("/control/topups", json={
                "msisdn": WELL_KNOWN, "amount": 10_000, "reference": "rc-429"
            })
            delivered = await _settled(notices, "rc-429")
            assert delivered.notification.status == "delivered"
            assert delivered.notification.attempts == 2
            # rc-422 was never tried again
            assert [r.body["reference"] for r in receiver.received] == [
                "rc-422", "rc-429", "rc-429"
            ]
            stats = (await http.get("/control/stats")).json()
            assert stats["notifications"] == {"delivered": 1, "rejected": 1}
            assert stats["topped_up_total"] == 20_000


async def test_a_second_topup_with_the_same_reference_is_the_first(nursery: trio.Nursery) -> None:
    receiver: Receiver = await nursery.start(_serve_receiver, [])
    with trio.fail_after(20):
        async with _simulator(_config(receiver)) as (_, http, notices):
            body = {"msisdn": WELL_KNOWN, "amount": 40_000, "reference": "rc-twice"}
            first = (await http.post("/control/topups", json=body)).json()
            delivered = await _settled(notices, "rc-twice")
            again = await http.post("/control/topups", json=body)
            assert again.status_code == 200
            assert again.json() == {**first, "notification": attrs.asdict(delivered.notification)}
            conflict = await http.post("/control/topups", json={**body, "amount": 40_001})
            assert conflict.status_code == 409
            assert conflict.json()["code"] == "IDEMPOTENCY_MISMATCH"
            other = await http.post("/control/topups", json={**body, "msisdn": OTHER})
            assert other.status_code == 409
            assert await _balance(http) == BALANCE + 40_000  # once
            ledger = (await http.get("/control/ledger")).json()
            assert [(e["kind"], e["id"]) for e in ledger] == [("topup", "rc-twice")]
        assert len(receiver.received) == 1  # notified once


async def test_a_hung_attempt_times_out_and_is_retried(nursery: trio.Nursery) -> None:
    receiver: Receiver = await nursery.start(_serve_receiver, ["hang"])
    with trio.fail_after(20):
        config = _config(receiver, topup_notify_timeout=0.3)
        async with _simulator(config) as (_, http, notices):
            await http.post("/control/topups", json={
                "msisdn": WELL_KNOWN, "amount": 5_000, "reference": "rc-hang"
            })
            first = await notices.receive()
            assert first.notification.status == "pending"
            assert first.notification.last_error == "no answer within 0.3s"
            assert first.notification.last_status is None
            delivered = await _settled(notices, "rc-hang")
            assert delivered.notification.attempts == 2
            assert delivered.notification.last_error is None
        assert [r.headers["idempotency-key"] for r in receiver.received] == ["rc-hang"] * 2


async def test_key_from_the_environment_and_a_receiver_not_up_yet(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a port nobody listens on: connections are refused until the receiver comes up there
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    monkeypatch.setenv(KEY_ENV, KEY)
    config = _config(None, topup_notify_url=f"http://127.0.0.1:{port}/v1/topups")
    assert KEY not in repr(config)
    with trio.fail_after(20):
        async with _simulator(config) as (_, http, notices):
            await http.post("/control/topups", json={
                "msisdn": WELL_KNOWN, "amount": 2_000, "reference": "rc-env"
            })
            refused = await notices.receive()
            assert refused.notification.status == "pending"
            assert refused.notification.last_status is None
            assert refused.notification.last_error is not None
            receiver: Receiver = await nursery.start(partial(_serve_receiver, [], port=port))
            delivered = await _settled(notices, "rc-env")
            assert delivered.notification.attempts >= 2
            assert (await receiver.next()).headers["authorization"] == f"Bearer {KEY}"
            assert receiver.nothing_more()


async def test_pending_notifications_survive_a_restart(nursery: trio.Nursery,
                                                       tmp_path: Path) -> None:
    receiver: Receiver = await nursery.start(_serve_receiver, [503, 503])
    config = _config(receiver, state_dir=str(tmp_path), topup_notify_backoff=30,
                     topup_notify_backoff_max=30)
    with trio.fail_after(30):
        async with _simulator(config) as (_, http, notices):
            await http.post("/control/topups", json={
                "msisdn": WELL_KNOWN, "amount": 8_000, "reference": "rc-restart"
            })
            failed = await notices.receive()
            assert (failed.notification.status, failed.notification.attempts) == ("pending", 1)
            # the next attempt is 15-30 s away: stop the simulator before it
        lines = (tmp_path / JOURNAL_NAME).read_bytes().splitlines()
        assert [msgspec.json.decode(line)["t"] for line in lines] == ["topup", "notice"]

        # the restarted simulator takes the pending notification up again at once
        async with _simulator(config) as (_, http, notices):
            second = await notices.receive()
            assert (second.notification.attempts, second.notification.last_status) == (2, 503)
            assert await _balance(http) == BALANCE + 8_000  # replayed, not topped up again
        async with _simulator(_config(receiver, state_dir=str(tmp_path))) as (_, http, notices):
            delivered = await _settled(notices, "rc-restart")
            assert delivered.notification.attempts == 3
            assert (await http.get("/control/ledger")).json()[0]["id"] == "rc-restart"
        assert [r.body["reference"] for r in receiver.received] == ["rc-restart"] * 3


async def test_the_notifier_client_speaks_https(nursery: trio.Nursery, tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificates.certfile, certificates.keyfile)
    receiver: Receiver = await nursery.start(
        partial(_serve_receiver, [202], ssl_context=server_context)
    )
    assert receiver.url.startswith("https://localhost:")
    with trio.fail_after(20):
        status = await post_json(receiver.url, b'{"reference":"rc-tls","msisdn":"1","amount":1}',
                                 [("idempotency-key", "rc-tls")],
                                 ssl_context=certificates.client_context())
        assert status == 202
        seen = await receiver.next()
        assert seen.body["reference"] == "rc-tls"
        assert seen.headers["host"] == urlsplit(receiver.url).netloc
        with pytest.raises(OutboundError):  # the system trust store does not know the test CA
            await post_json(receiver.url, b"{}")
    with pytest.raises(ValueError):
        await post_json("ftp://localhost/", b"{}")


def test_topup_notify_settings_are_checked(tmp_path: Path) -> None:
    for bad in ({"topup_notify_url": "ftp://x"}, {"topup_notify_timeout": 0},
                {"topup_notify_backoff": "soon"}, {"topup_notify_key": 5}):
        with pytest.raises(ValueError, match="topup_notify"):
            SimulatorConfig.from_mapping(bad)
    config = SimulatorConfig.from_mapping({"topup_notify_url": "https://gestor/v1/topups",
                                           "topup_notify_key": KEY})
    assert config.topup_notify_url == "https://gestor/v1/topups" and KEY not in repr(config)
    (tmp_path / "gestor.toml").write_text(
        '[simulator]\ntopup_notify_url = "http://127.0.0.1:8080/v1/topups"\n'
        'topup_notify_backoff = 0.2\n'
    )
    settings = load_settings(tmp_path, environ={})
    assert settings.simulator["topup_notify_backoff"] == 0.2
    (tmp_path / "gestor.toml").write_text('[simulator]\ntopup_notify_url = "nope"\n')
    with pytest.raises(SettingsError, match="topup_notify_url"):
        load_settings(tmp_path, environ={})

