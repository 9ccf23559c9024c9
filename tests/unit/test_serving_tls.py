"""`gestor.serving` over TLS on real loopback sockets (a throw-away certificate from `trustme`):
requests are served with the `https` scheme over HTTP/1.1, `Connection: close`, the keep-alive
timeout, the cap and the write bound hold as over TCP, a client that never completes its
handshake is dropped after the keep-alive timeout (and evicted first at the cap), and a
plain-HTTP request to the TLS port gets `400` in plain text and a closed connection."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from quart import request
from quart_trio import QuartTrio

from gestor.serving import PLAIN_HTTP_REFUSAL, REFUSAL, server_context
from tests.tlscerts import Certificates, make_certificates
from tests.unit.test_serving import (
    HALF_POST,
    HEAD,
    HEAD_CLOSE,
    RESPONSE,
    RESPONSE_CLOSE,
    Knobs,
    Served,
    open_served,
    read_exactly,
    streaming_app,
)

Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


def tls_app() -> QuartTrio:
    app = QuartTrio("serving-tls-test")

    @app.route("/")
    async def index() -> str:
        return "hi"

    @app.route("/echo", methods=["POST"])
    async def echo() -> bytes:
        return await request.get_data()

    @app.route("/scheme")
    async def scheme() -> str:
        return request.scheme

    return app


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def knobs(certificates: Certificates) -> Knobs:
    return Knobs(app=tls_app(), tls=server_context(certificates.certfile, certificates.keyfile))


@pytest.fixture
async def served(knobs: Knobs) -> AsyncIterator[Served]:
    async with open_served(knobs) as server:
        yield server


async def connect_tls(served: Served, certificates: Certificates
                      ) -> trio.SSLStream[trio.SocketStream]:
    stream = await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", served.port, ssl_context=certificates.client_context())
    await stream.do_handshake()
    return stream


async def read_to_eof(stream: Stream) -> bytes:
    """What the server sends until it closes: over TLS, a close_notify ends it cleanly (a
    connection cut without one raises BrokenResourceError)."""
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def test_a_request_is_served_over_tls_1_2_or_later_as_https(
        served: Served, certificates: Certificates) -> None:
    context = certificates.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])  # offered h2, it picks HTTP/1.1
    with trio.fail_after(10):
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", served.port,
                                                     ssl_context=context)
        await stream.do_handshake()
        assert stream.selected_alpn_protocol() == "http/1.1"
        assert stream.version() in ("TLSv1.2", "TLSv1.3")
        for _ in range(2):  # keep-alive holds over TLS too
            await stream.send_all(HEAD)
            assert await read_exactly(stream, len(RESPONSE)) == RESPONSE  # type: ignore[arg-type]
        await stream.send_all(b"GET /scheme HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        with trio.fail_after(1):
            assert (await read_to_eof(stream)).endswith(b"\r\n\r\nhttps")
        await trio.testing.wait_all_tasks_blocked()
        assert served.table.statistics().open == 0


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
async def test_tls_1_2_is_served_and_tls_1_1_refused(
        served: Served, certificates: Certificates) -> None:
    old = certificates.client_context()
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets this client offer TLS 1.1
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with trio.fail_after(10):
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", served.port, ssl_context=old)
        with pytest.raises(trio.BrokenResourceError):
            await stream.do_handshake()
        await trio.testing.wait_all_tasks_blocked()
        assert served.table.statistics().open == 0  # the server ended it
        await trio.aclose_forcefully(stream)

        tls12 = certificates.client_context()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", served.port,
                                                     ssl_context=tls12)
        await stream.send_all(HEAD_CLOSE)
        assert await read_to_eof(stream) == RESPONSE_CLOSE
        assert stream.version() == "TLSv1.2"


async def test_connection_close_over_tls_is_answered_then_closed_at_once(
        served: Served, certificates: Certificates) -> None:
    with trio.fail_after(10):
        stream = await connect_tls(served, certificates)
        await stream.send_all(HEAD_CLOSE)
        with trio.fail_after(1):
            assert await read_to_eof(stream) == RESPONSE_CLOSE
        await trio.testing.wait_all_tasks_blocked()
        assert served.table.statistics().open == 0


@pytest.mark.parametrize("sent", [b"", HEAD], ids=["nothing", "one-request"])
async def test_idle_tls_connection_is_closed_after_keep_alive_timeout(
        served: Served, certificates: Certificates, sent: bytes) -> None:
    served.config.keep_alive_timeout = 0.3
    with trio.fail_after(10):
        stream = await connect_tls(served, certificates)
        start = trio.current_time()
        await stream.send_all(sent)
        data = await read_to_eof(stream)
        waited = trio.current_time() - start
        assert data == (RESPONSE if sent else b"")
        assert 0.25 <= waited < 5, waited


# the first bytes of a ClientHello's record: a handshake record of 512 bytes that never come
HALF_HELLO = b"\x16\x03\x01\x02\x00\x01"


@pytest.mark.parametrize("sent", [b"", HALF_HELLO], ids=["nothing", "half-a-hello"])
async def test_a_client_that_never_completes_the_handshake_is_dropped_after_the_timeout(
        served: Served, sent: bytes) -> None:
    served.config.keep_alive_timeout = 0.3
    with trio.fail_after(10):
        stream = await served.connect()
        start = trio.current_time()
        await stream.send_all(sent)
        await trio.testing.wait_all_tasks_blocked()
        stats = served.table.statistics()
        assert (stats.open, stats.idle) == (1, 1)  # counted, and idle while it handshakes
        assert await read_to_eof(stream) == b""
        waited = trio.current_time() - start
        assert 0.25 <= waited < 5, waited
        await trio.testing.wait_all_tasks_blocked()
        assert served.table.statistics().open == 0


async def test_at_the_cap_a_client_still_handshaking_is_evicted_first(
        served: Served, certificates: Certificates) -> None:
    served.table.cap = 2
    with trio.fail_after(10):
        silent = [await served.connect() for _ in range(2)]  # never start a handshake
        await trio.testing.wait_all_tasks_blocked()
        assert served.table.statistics().idle == 2
        newcomer = await connect_tls(served, certificates)
        await newcomer.send_all(HEAD_CLOSE)
        with trio.fail_after(1):
            assert await read_to_eof(newcomer) == RESPONSE_CLOSE
            assert await read_to_eof(silent[0]) == b""  # the oldest made room
        stats = served.table.statistics()
        assert (stats.evicted, stats.refused, stats.accepted) == (1, 0, 3)


async def test_at_the_cap_with_every_connection_busy_a_tls_client_gets_503(
        served: Served, certificates: Certificates) -> None:
    served.table.cap = 1
    with trio.fail_after(10):
        busy = await connect_tls(served, certificates)
        await busy.send_all(HALF_POST)
        await trio.testing.wait_all_tasks_blocked()
        assert served.table.statistics().idle == 0
        refused = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", served.port, ssl_context=certificates.client_context())
        with trio.fail_after(2):
            assert await read_to_eof(refused) == REFUSAL
        await busy.send_all(b"0123456789")
        assert await read_exactly(busy, 15) == b"HTTP/1.1 200 \r\n"  # type: ignore[arg-type]
        stats = served.table.statistics()
        assert (stats.refused, stats.evicted, stats.open) == (1, 0, 1)


@pytest.mark.parametrize("request_head", [
    HEAD, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 40000\r\n\r\n" + b"x" * 40000,
], ids=["get", "post-with-a-body"])
async def test_plain_http_to_the_tls_port_gets_400_and_the_connection_closes(
        served: Served, request_head: bytes) -> None:
    with trio.fail_after(10):
        stream = await served.connect()
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(request_head)
        data = await read_to_eof(stream)  # the server's FIN, not a reset
        assert data == PLAIN_HTTP_REFUSAL
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"content-type: application/problem+json" in head
        assert b"connection: close" in head
        assert json.loads(body)["code"] == "TLS_REQUIRED"
        await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        stats = served.table.statistics()
        assert stats.open == 0


async def test_a_tls_client_that_reads_nothing_is_dropped_after_the_write_timeout(
        knobs: Knobs, certificates: Certificates) -> None:
    disconnected = trio.Event()
    knobs.app = streaming_app(disconnected)
    knobs.write_timeout = 0.5
    async with open_served(knobs) as server:
        with trio.fail_after(20):
            stream = await connect_tls(server, certificates)
            stream.transport_stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await stream.send_all(HEAD)
            start = trio.current_time()
            await disconnected.wait()
            assert trio.current_time() - start >= 0.4
            await trio.testing.wait_all_tasks_blocked()
            assert server.table.statistics().open == 0
            await trio.aclose_forcefully(stream)


async def test_stopping_drops_connections_still_handshaking_at_once(knobs: Knobs) -> None:
    knobs.keep_alive = 60.0
    with trio.fail_after(10):
        async with open_served(knobs) as server:
            silent = await server.connect()
            await trio.testing.wait_all_tasks_blocked()
            assert server.table.statistics().idle == 1
            stopping = trio.current_time()
        assert trio.current_time() - stopping < 1.0
        with trio.fail_after(1):
            assert await read_to_eof(silent) == b""


def test_the_context_needs_no_passphrase_and_speaks_http_1_1(certificates: Certificates,
                                                             tmp_path: Path) -> None:
    context = server_context(certificates.certfile, certificates.keyfile)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION
    combined = tmp_path / "both.pem"  # a key and its certificate in one file serve too
    combined.write_bytes(certificates.keyfile.read_bytes() + certificates.certfile.read_bytes())
    assert server_context(combined, combined).minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("when", ["at-once", "once-idle"])
@pytest.mark.parametrize("ending", ["tcp-close", "tcp-reset", "tls-close", "tls-close-notify"])
async def test_clients_that_go_after_an_answer_are_closed_at_once_without_error(
        knobs: Knobs, certificates: Certificates, ending: str, when: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # Each client goes once it has its answer: at once, while the app may still be finishing
    # it (h11's end of message), or once its connection is idle; by a FIN, a reset, or over
    # TLS with or without a close_notify. The server must see each as gone at once (not keep
    # it for a next request until the keep-alive timeout) and log nothing.
    tls = ending.startswith("tls")
    if not tls:
        knobs.tls = None
    async with open_served(knobs) as server:
        with trio.fail_after(60):
            for _ in range(50):
                if tls:
                    stream: Stream = await connect_tls(server, certificates)
                else:
                    stream = await server.connect()
                await stream.send_all(HEAD)
                assert await read_exactly(stream, len(RESPONSE)) == RESPONSE  # type: ignore[arg-type]
                if when == "once-idle":
                    await trio.testing.wait_all_tasks_blocked()
                    assert server.table.statistics().idle == 1
                if ending == "tcp-reset":
                    assert isinstance(stream, trio.SocketStream)
                    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
                if ending == "tls-close-notify":
                    await stream.aclose()
                else:
                    await trio.aclose_forcefully(stream)
            await trio.testing.wait_all_tasks_blocked()
            stats = server.table.statistics()
            assert (stats.open, stats.accepted, stats.evicted) == (0, 50, 0)
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []
