"""The lean HTTP/1.1 client (``gestor.platforms._http``) against real loopback servers: the
simulator, and a small h11 server whose misbehaviour each test picks."""

from __future__ import annotations

import itertools
import shutil
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import h11
import msgspec
import pytest
import trio
import trio.testing

from gestor.platforms import (
    Account,
    DebitReceipt,
    OutcomeUnknown,
    PlatformUnavailable,
    open_platforms,
)
from gestor.platforms._http import (
    ConnectError,
    HTTPClient,
    HTTPError,
    HTTPStatistics,
    Progress,
    _Connection,
    _whole_answer,
)
from gestor.simulator import SimulatorHandle

from .support import WELL_KNOWN, fast_settings


@attrs.frozen
class Seen:
    """One request as the test server read it."""

    connection: int  # index of the connection it came on (0, 1, ...)
    number: int  # index of the request on that connection
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@attrs.frozen
class Answer:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    close: bool = False  # close the connection right after answering (no "connection: close")
    reset: bool = False  # ... and with a TCP RST


#: What the server does with a request: an Answer, or "close" (close without answering),
#: "reset" (abort with a TCP RST before answering) or "hang" (never answer).
Action = Answer | str
Behaviour = Callable[[Seen], Awaitable[Action]]


async def echo(seen: Seen) -> Action:
    body = msgspec.json.encode(
        {"method": seen.method, "target": seen.target, "headers": seen.headers,
         "body": seen.body.decode(), "connection": seen.connection, "number": seen.number}
    )
    return Answer(200, (("content-type", "application/json"),), body)


@attrs.define
class FakeServer:
    url: str
    seen: list[Seen]
    closed: trio.Event  # set whenever the server closes a connection on purpose


async def serve_h11(
    behaviour: Behaviour,
    ssl_context: ssl.SSLContext | None = None,
    *,
    task_status: trio.TaskStatus[FakeServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP/1.1 on a loopback port, each request handled as ``behaviour`` says."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    scheme = "http" if ssl_context is None else "https"
    server = FakeServer(f"{scheme}://localhost:{port}", [], trio.Event())
    connections = itertools.count()

    async def handle(tcp: trio.SocketStream) -> None:
        index = next(connections)
        stream: trio.abc.Stream = tcp
        if ssl_context is not None:
            stream = trio.SSLStream(tcp, ssl_context, server_side=True)
        conn = h11.Connection(h11.SERVER)
        for number in itertools.count():
            request: h11.Request | None = None
            body = b""
            while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(bytes(await stream.receive_some(65536)))
                    except trio.BrokenResourceError:
                        return
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                else:  # the client closed the connection
                    await tcp.aclose()
                    return
            assert request is not None
            headers = {k.decode(): v.decode() for k, v in request.headers}
            seen = Seen(index, number, request.method.decode(), request.target.decode(),
                        headers, body)
            server.seen.append(seen)
            action = await behaviour(seen)
            if action == "hang":
                await trio.sleep_forever()
            if action == "reset":  # SO_LINGER 0: close() sends a RST
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if isinstance(action, str):
                tcp.socket.close()
                server.closed.set()
                return
            framing = [("content-length", str(len(action.body)))]
            data = conn.send(h11.Response(status_code=action.status,
                                          headers=[*framing, *action.headers]))
            data = (data or b"") + (conn.send(h11.Data(data=action.body)) or b"")
            await stream.send_all(data + (conn.send(h11.EndOfMessage()) or b""))
            if action.reset:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if action.close or action.reset or conn.our_state is not h11.DONE:
                tcp.socket.close()
                server.closed.set()
                return
            conn.start_next_cycle()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(server)


async def start(
    nursery: trio.Nursery, behaviour: Behaviour = echo, ssl_context: ssl.SSLContext | None = None
) -> FakeServer:
    server: FakeServer = await nursery.start(serve_h11, behaviour, ssl_context)
    return server


def stats(open: int, idle: int, created: int, reused: int) -> HTTPStatistics:
    return HTTPStatistics(open, idle, open - idle, created, reused)


# -- keep-alive and the pool --------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(simulator: SimulatorHandle) -> None:
    url = f"{simulator.url}/ocs/accounts/{WELL_KNOWN}"
    with trio.fail_after(5):
        async with HTTPClient() as client:
            for n in range(5):
                response = await client.request("GET", url)
                assert response.status == 200
                assert response.json(Account).balance == 1_681_332
                assert client.statistics() == stats(open=1, idle=1, created=1, reused=n)
            missing = await client.request("GET", f"{simulator.url}/ocs/accounts/123")
            assert missing.status == 404 and missing.json()["code"] == "NOT_FOUND"
        assert client.statistics() == stats(open=0, idle=0, created=1, reused=5)
        with pytest.raises(trio.ClosedResourceError):
            await client.request("GET", url)


async def test_parallel_requests_open_at_most_one_connection_each(
    simulator: SimulatorHandle,
) -> None:
    n = 12
    url = f"{simulator.url}/ocs/accounts/{WELL_KNOWN}"
    with trio.fail_after(5):
        async with HTTPClient() as client:
            faults = await client.request("PUT", f"{simulator.url}/control/faults",
                                          json={"ocs": {"latency_ms": 100}})
            assert faults.status == 200
            for _ in range(3):
                async with trio.open_nursery() as nursery:
                    for _ in range(n):
                        nursery.start_soon(client.request, "GET", url)
                    await trio.testing.wait_all_tasks_blocked()  # all wait for answers
                    assert client.statistics().in_use == n
                after = client.statistics()
                assert after.in_use == 0 and after.open == after.idle == after.created <= n
            assert after.reused >= 2 * n + 1  # later rounds found their connections idle
        assert simulator.simulator.statistics().peak_in_flight == n


async def test_idle_connections_are_capped_and_expire(simulator: SimulatorHandle) -> None:
    url = f"{simulator.url}/ocs/accounts/{WELL_KNOWN}"
    with trio.fail_after(5):
        async with HTTPClient(max_idle=2, keepalive_expiry=0.3) as client:
            await client.request("PUT", f"{simulator.url}/control/faults",
                                 json={"ocs": {"latency_ms": 50}})
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(client.request, "GET", url)
            assert client.statistics() == stats(open=2, idle=2, created=5, reused=1)
            await trio.sleep(0.3)
            await client.request("GET", url)  # both idle ones expired: a new connection
            assert client.statistics() == stats(open=1, idle=1, created=6, reused=1)


async def test_connection_close_answers_are_not_kept(nursery: trio.Nursery) -> None:
    async def closing(seen: Seen) -> Action:
        return Answer(200, (("connection", "close"),), b"bye")

    server = await start(nursery, closing)
    with trio.fail_after(5):
        async with HTTPClient() as client:
            for _ in range(2):
                assert (await client.request("GET", server.url)).content == b"bye"
            assert client.statistics() == stats(open=0, idle=0, created=2, reused=0)


# -- a server closing kept-alive connections ---------------------------------------------------


async def test_an_idle_connection_the_server_closed_is_not_reused(nursery: trio.Nursery) -> None:
    async def answer_then_close(seen: Seen) -> Action:
        answer = await echo(seen)
        assert isinstance(answer, Answer)
        return attrs.evolve(answer, close=True)  # like an idle timeout striking at once

    server = await start(nursery, answer_then_close)
    with trio.fail_after(5):
        async with HTTPClient() as client:
            await client.request("GET", f"{server.url}/a")
            await server.closed.wait()
            response = await client.request("POST", f"{server.url}/b", json={"n": 1})
            assert response.json()["connection"] == 1  # a fresh one; the old one unwritten
            assert [s.target for s in server.seen] == ["/a", "/b"]
            assert client.statistics() == stats(open=1, idle=1, created=2, reused=0)


async def test_a_stale_connection_is_retried_once_fresh_for_get_only(
    nursery: trio.Nursery,
) -> None:
    async def close_second_request(seen: Seen) -> Action:
        # reads the next request, then closes without a word: the race where an idle
        # timeout strikes just as the request goes out
        return "close" if seen.number == 1 else await echo(seen)

    server = await start(nursery, close_second_request)
    with trio.fail_after(5):
        async with HTTPClient() as client:
            assert (await client.request("GET", f"{server.url}/a")).json()["connection"] == 0
            retried = await client.request("GET", f"{server.url}/b")
            assert retried.json()["connection"] == 1
            assert [s.target for s in server.seen] == ["/a", "/b", "/b"]
            assert client.statistics() == stats(open=1, idle=1, created=2, reused=1)
            # a POST that went out on a stale connection may have been performed: no retry
            progress = Progress()
            with pytest.raises(HTTPError) as info:
                await client.request("POST", f"{server.url}/c", content=b"x", progress=progress)
            assert info.value.sent and progress.sent
            assert not isinstance(info.value, ConnectError)
            assert [s.target for s in server.seen][3:] == ["/c"]
            assert client.statistics() == stats(open=0, idle=0, created=2, reused=2)


async def test_a_stale_connection_nothing_was_written_to_is_retried_for_any_method(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def answer_then_reset(seen: Seen) -> Action:
        answer = await echo(seen)
        assert isinstance(answer, Answer)
        return attrs.evolve(answer, reset=True)

    # skip the check for closed idle connections, as if the reset came just after it
    monkeypatch.setattr(_Connection, "looks_closed", lambda self: False)
    server = await start(nursery, answer_then_reset)
    with trio.fail_after(5):
        async with HTTPClient() as client:
            await client.request("GET", f"{server.url}/a")
            await server.closed.wait()
            progress = Progress()
            response = await client.request("POST", f"{server.url}/b", content=b"{}",
                                            progress=progress)
            # writing to the reset connection failed outright: nothing sent, so even a POST
            # went again, on a fresh connection (whose own reset comes after its answer)
            assert response.json()["connection"] == 1 and progress.sent
            assert [s.target for s in server.seen] == ["/a", "/b"]
            assert client.statistics() == stats(open=1, idle=1, created=2, reused=1)


# -- "was any byte of the request sent?" ------------------------------------------------------


async def test_reset_mid_request_reports_sent(nursery: trio.Nursery) -> None:
    async def reset(seen: Seen) -> Action:
        return "reset"

    server = await start(nursery, reset)
    with trio.fail_after(5):
        async with HTTPClient() as client:
            progress = Progress()
            with pytest.raises(HTTPError) as info:
                await client.request("POST", f"{server.url}/x", content=b"{}", progress=progress)
            assert info.value.sent and progress.sent
            # fresh connection: not taken for a stale one, so not retried even for a GET
            with pytest.raises(HTTPError) as info:
                await client.request("GET", f"{server.url}/y")
            assert info.value.sent
            assert len(server.seen) == 2
            assert client.statistics() == stats(open=0, idle=0, created=2, reused=0)


async def test_reset_while_the_request_is_going_out_reports_sent(
    nursery: trio.Nursery,
) -> None:
    async def read_a_little_then_reset(stream: trio.SocketStream) -> None:
        await stream.receive_some(100)
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(trio.serve_listeners, read_a_little_then_reset, listeners)
    with trio.fail_after(5):
        async with HTTPClient() as client:
            progress = Progress()
            with pytest.raises(HTTPError) as info:  # 8 MiB cannot all be buffered at once
                await client.request("POST", f"http://127.0.0.1:{port}/",
                                     content=bytes(8 << 20), progress=progress)
            assert info.value.sent and progress.sent
            assert client.statistics() == stats(open=0, idle=0, created=1, reused=0)


async def test_refused_connection_reports_not_sent() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with trio.fail_after(5):
        async with HTTPClient() as client:
            progress = Progress()
            with pytest.raises(ConnectError) as info:
                await client.request("POST", f"http://127.0.0.1:{port}/x", content=b"{}",
                                     progress=progress)
            assert not info.value.sent and not progress.sent
            assert client.statistics() == stats(open=0, idle=0, created=0, reused=0)


async def test_cancelled_request_leaves_progress_and_drops_the_connection(
    nursery: trio.Nursery,
) -> None:
    async def hang_on_second(seen: Seen) -> Action:
        return "hang" if seen.number == 1 else await echo(seen)

    server = await start(nursery, hang_on_second)
    with trio.fail_after(5):
        async with HTTPClient() as client:
            await client.request("GET", server.url)
            progress = Progress()
            with trio.move_on_after(0.2) as scope:
                await client.request("POST", server.url, content=b"{}", progress=progress)
            assert scope.cancelled_caught and progress.sent
            assert client.statistics() == stats(open=0, idle=0, created=1, reused=1)


# -- bodies and headers -------------------------------------------------------------------------


async def test_bodies_and_headers(nursery: trio.Nursery) -> None:
    async def answer(seen: Seen) -> Action:
        if seen.target == "/big":
            return Answer(200, (), b"x" * 1000)
        if seen.target == "/teapot":
            return Answer(418, (("X-Kind", "Teapot"),), b"short and stout")
        return await echo(seen)

    server = await start(nursery, answer)
    port = int(server.url.rsplit(":", 1)[1])
    with trio.fail_after(5):
        async with HTTPClient(max_body=999) as client:
            sent = await client.request(
                "POST", f"{server.url}/p/a%2Fb?q=1&r=%3A", json={"id": "tx-1", "amount": 5},
                headers=[("x-trace", "abc")],
            )
            seen = sent.json()
            assert (seen["method"], seen["target"]) == ("POST", "/p/a%2Fb?q=1&r=%3A")
            assert msgspec.json.decode(seen["body"]) == {"id": "tx-1", "amount": 5}
            assert seen["headers"] == {
                "host": f"localhost:{port}", "user-agent": "gestor", "x-trace": "abc",
                "content-type": "application/json",
                "content-length": str(len(seen["body"])),
            }
            assert ("content-type", "application/json") in {
                (k.decode(), v.decode()) for k, v in sent.headers
            }
            seen = (await client.request("PUT", f"{server.url}/empty")).json()
            assert (seen["body"], seen["headers"]["content-length"]) == ("", "0")
            seen = (await client.request("GET", f"{server.url}/")).json()
            assert "content-length" not in seen["headers"]

            teapot = await client.request("DELETE", f"{server.url}/teapot")
            assert (teapot.status, teapot.text) == (418, "short and stout")
            assert (b"x-kind", b"Teapot") in teapot.headers  # names lowercased
            assert client.statistics() == stats(open=1, idle=1, created=1, reused=3)

            with pytest.raises(HTTPError, match="over 999 bytes") as info:
                await client.request("GET", f"{server.url}/big")
            assert info.value.sent
            assert client.statistics().open == 0  # the rest of that answer is abandoned
            big = await client.request("GET", f"{server.url}/big", max_body=1000)
            assert big.content == b"x" * 1000

            with pytest.raises(ValueError):
                await client.request("GET", "ftp://example.org/")


async def test_https(nursery: trio.Nursery, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    await trio.run_process(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        capture_stdout=True, capture_stderr=True,
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = await start(nursery, echo, server_context)
    with trio.fail_after(5):
        async with HTTPClient(ssl_context=ssl.create_default_context(cafile=str(cert))) as client:
            for n in range(3):
                seen = (await client.request("POST", f"{server.url}/s", json=[n])).json()
                assert (seen["body"], seen["connection"]) == (f"[{n}]", 0)
            assert client.statistics() == stats(open=1, idle=1, created=1, reused=2)
        async with HTTPClient() as untrusting:  # the system trust store does not know it
            with pytest.raises(ConnectError) as info:
                await untrusting.request("GET", server.url)
            assert not info.value.sent and "TLS" in str(info.value)
            assert untrusting.statistics().open == 0


# -- seen through Platforms ---------------------------------------------------------------------


async def test_platforms_sort_transport_failures_by_what_was_sent(
    nursery: trio.Nursery,
) -> None:
    async def gateway(seen: Seen) -> Action:
        if seen.target.startswith("/ocs/refunds"):
            return "reset"
        return Answer(504, (("content-type", "application/json"),), b'{"code":"GATEWAY"}')

    server = await start(nursery, gateway)
    with trio.fail_after(5):
        async with open_platforms(fast_settings(server.url, retries=0)) as platforms:
            with pytest.raises(OutcomeUnknown, match="504 GATEWAY"):
                await platforms.debit("tx-1", WELL_KNOWN, 100)  # a gateway gave up on it
            with pytest.raises(PlatformUnavailable) as info:
                await platforms.account(WELL_KNOWN)  # a read: nothing was performed
            assert not isinstance(info.value, OutcomeUnknown) and info.value.status == 504
            with pytest.raises(OutcomeUnknown, match="ocs: HTTPError"):
                await platforms.refund("rf-1", "tx-1", WELL_KNOWN, 100)  # sent, then reset
            assert platforms.statistics().ocs.errors == 3


async def test_platforms_ledger(simulator: SimulatorHandle) -> None:
    with trio.fail_after(5):
        async with open_platforms(fast_settings(simulator.url)) as platforms:
            debit = await platforms.debit("tx-l", WELL_KNOWN, 100)
            assert isinstance(debit, DebitReceipt)
            await platforms.refund("rf-l", "tx-l", WELL_KNOWN, 40)
            entries = await platforms.ledger()
            assert [(e.kind, e.id, e.amount, e.transaction_id) for e in entries] == [
                ("debit", "tx-l", 100, "tx-l"), ("refund", "rf-l", 40, "tx-l"),
            ]
            before = datetime.fromtimestamp(entries[0].ts, UTC) - timedelta(seconds=1)
            later = before + timedelta(days=1)
            assert await platforms.ledger(since=later) == []
            assert await platforms.ledger(since=before, until=later) == entries
            assert await platforms.ledger(until=before) == []
            with pytest.raises(ValueError):
                await platforms.ledger(since=datetime.now())  # naive
            assert platforms.statistics().ocs.requests == 2  # outside the limiter


# -- the request head, and interim answers ------------------------------------------------------


async def test_request_heads_that_could_smuggle_are_refused(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    with trio.fail_after(5):
        async with HTTPClient() as client:
            for method, url, headers in [
                ("GET", f"{server.url}/a", [("x-evil", "1\r\nx-injected: 2")]),
                ("GET", f"{server.url}/a", [("x evil", "1")]),
                ("GET", f"{server.url}/a b", []),
                ("GET", f"{server.url}/ñ", []),
                ("GET /x HTTP/1.1\r\n", f"{server.url}/a", []),
            ]:
                with pytest.raises(ValueError):
                    await client.request(method, url, headers=headers)
            assert server.seen == [] and client.statistics().created == 0


async def test_an_answer_to_head_has_no_body(simulator: SimulatorHandle) -> None:
    url = f"{simulator.url}/ocs/accounts/{WELL_KNOWN}"
    with trio.fail_after(5):
        async with HTTPClient() as client:
            head = await client.request("HEAD", url)  # announces a length, sends no body
            assert (head.status, head.content) == (405, b"")
            assert int(dict(head.headers)[b"content-length"]) > 0
            assert (await client.request("GET", url)).json()["msisdn"] == WELL_KNOWN
            assert client.statistics() == stats(open=1, idle=1, created=1, reused=1)


async def raw_server(nursery: trio.Nursery, answers: list[bytes]) -> str:
    """A server that reads one request head per connection and writes ``answers``, one
    write each, then closes."""

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        for answer in answers:
            await stream.send_all(answer)
            await trio.sleep(0.01)  # pacing, so that the split answer mostly arrives split
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


@pytest.mark.parametrize("split", [False, True])
async def test_interim_answers_are_skipped(nursery: trio.Nursery, split: bool) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
    final = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    url = await raw_server(nursery, [interim, final] if split else [interim + final])
    with trio.fail_after(5):
        async with HTTPClient() as client:
            response = await client.request("POST", f"{url}/x", json={"n": 1})
            assert (response.status, response.content) == (201, b"ok")
            assert client.statistics() == stats(open=0, idle=0, created=1, reused=0)


async def test_a_204_announcing_a_body_has_none(nursery: trio.Nursery) -> None:
    """Found by the differential test (test_platforms_whole_answer.py): the quick parser took
    the bytes after a 204 head as its body and pooled the connection; as h11 reads it, the
    answer has no body and those bytes are garbage before a next answer: not reused."""
    url = await raw_server(nursery, [b"HTTP/1.1 204 No Content\r\ncontent-length: 2\r\n\r\nok"])
    with trio.fail_after(5):
        async with HTTPClient() as client:
            response = await client.request("DELETE", f"{url}/x")
            assert (response.status, response.content) == (204, b"")
            assert client.statistics() == stats(open=0, idle=0, created=1, reused=0)


_PLAIN = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n"
          b'{"ok":true}')


def test_a_plain_whole_answer_is_parsed_without_h11() -> None:
    answer = _whole_answer(_PLAIN, limit=1024)
    assert answer is not None
    assert answer.status == 200 and answer.content == b'{"ok":true}'
    assert answer.headers == [(b"content-type", b"application/json"),
                              (b"content-length", b"11")]
    odd_case = _whole_answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}", 1024)
    assert odd_case is not None and odd_case.status == 404
    assert odd_case.headers == [(b"content-length", b"2")]


@pytest.mark.parametrize("data", [
    _PLAIN[:-1],  # the body is not all there yet
    _PLAIN + b"HTTP/1.1",  # bytes after the answer
    _PLAIN.replace(b"1.1 200", b"1.0 200"),  # HTTP/1.0: not kept alive
    _PLAIN.replace(b"200 OK", b"100 Continue"),  # interim answer
    _PLAIN.replace(b"200 OK", b"2x0 OK"),
    _PLAIN.replace(b"content-length: 11", b"transfer-encoding: chunked"),
    _PLAIN.replace(b"content-type:", b"connection: close\r\ncontent-type:"),
    _PLAIN.replace(b"content-length: 11", b"content-length: 11\r\ncontent-length: 11"),
    _PLAIN.replace(b"content-length: 11", b"content-length: +11"),
    _PLAIN.replace(b"content-type: application/json", b"content-type: a\r\n b"),  # folding
    _PLAIN.replace(b"application/json", b"application/\x01json"),
    _PLAIN.replace(b"content-type", b"content type"),
    _PLAIN.replace(b"\r\n\r\n", b"\r\n"),  # no end of head
    b"",
])
def test_anything_but_a_plain_whole_answer_is_left_to_h11(data: bytes) -> None:
    assert _whole_answer(data, limit=1024) is None


def test_an_answer_over_the_body_limit_is_left_to_h11() -> None:
    assert _whole_answer(_PLAIN, limit=10) is None
