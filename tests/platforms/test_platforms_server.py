"""The simulator's lean HTTP/1.1 server (``gestor.simulator._server``), driven over raw
loopback sockets so every byte on the wire is the test's choice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import attrs
import msgspec
import pytest
import trio
import trio.testing

from gestor.simulator import SimulatorConfig, SimulatorHandle, serve_simulator
from gestor.simulator._router import Answer, Hold, SimulatorRouter
from gestor.simulator._server import serve_http
from gestor.simulator._simulator import Simulator

from .support import WELL_KNOWN

ACCOUNT = f"GET /ocs/accounts/{WELL_KNOWN} HTTP/1.1\r\nhost: sim\r\n\r\n".encode()


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]  # names lowercased
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@attrs.define
class Wire:
    """One raw client connection."""

    stream: trio.SocketStream
    buffer: bytearray = attrs.field(factory=bytearray)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    async def reply(self, *, head_only: bool = False) -> Reply:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            await self._fill()
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        total = end + 4 + (0 if head_only else int(headers.get("content-length", "0")))
        while len(self.buffer) < total:
            await self._fill()
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        return Reply(status, headers, body)

    async def closed(self) -> bool:
        """True if the server closed the connection (EOF or reset) with nothing more to say."""
        try:
            await self._fill()
        except (EOFError, trio.BrokenResourceError):
            return not self.buffer
        return False


@asynccontextmanager
async def wire(url: str) -> AsyncIterator[Wire]:
    parts = urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname or "", parts.port or 80)
    async with stream:
        yield Wire(stream)


async def request(url: str, data: bytes) -> Reply:
    async with wire(url) as w:
        await w.send(data)
        return await w.reply()


# -- keep-alive and framing --------------------------------------------------------------------


async def test_keep_alive_serves_many_requests_on_one_connection(
    simulator: SimulatorHandle,
) -> None:
    with trio.fail_after(5):
        async with wire(simulator.url) as w:
            for _ in range(3):
                await w.send(ACCOUNT)
                reply = await w.reply()
                assert reply.status == 200 and reply.headers["content-type"] == "application/json"
                assert reply.json() == (await request(simulator.url, ACCOUNT)).json()
            # pipelined: two requests in one write are answered in order
            debit = b'{"id": "tx-p", "msisdn": "%s", "amount": 7}' % WELL_KNOWN.encode()
            post = b"POST /ocs/debits HTTP/1.1\r\nhost: sim\r\ncontent-length: %d\r\n\r\n%s"
            await w.send(post % (len(debit), debit) + ACCOUNT)
            first, second = await w.reply(), await w.reply()
            assert first.status == 200 and first.json()["amount"] == 7
            assert second.status == 200 and second.json()["balance"] == 1_681_332 - 7
            assert "connection" not in second.headers
    assert simulator.simulator.statistics().requests == 8


async def test_pipelined_requests_before_a_half_close_are_all_answered(
    simulator: SimulatorHandle,
) -> None:
    with trio.fail_after(5):
        async with wire(simulator.url) as w:
            await w.send(ACCOUNT * 3)
            await w.stream.send_eof()
            for _ in range(3):
                assert (await w.reply()).status == 200
            assert await w.closed()


async def test_connection_close_and_http_1_0_close_after_the_answer(
    simulator: SimulatorHandle,
) -> None:
    with trio.fail_after(5):
        for head in (
            ACCOUNT.replace(b"\r\n\r\n", b"\r\nconnection: keep-alive, close\r\n\r\n"),
            ACCOUNT.replace(b"HTTP/1.1", b"HTTP/1.0"),
        ):
            async with wire(simulator.url) as w:
                await w.send(head)
                reply = await w.reply()
                assert reply.status == 200 and reply.headers["connection"] == "close"
                assert await w.closed()


async def test_chunked_bodies_and_expect_continue(simulator: SimulatorHandle) -> None:
    body = b'{"line_status": "suspended"}'
    with trio.fail_after(5):
        async with wire(simulator.url) as w:
            await w.send(
                b"PUT /control/accounts/%s HTTP/1.1\r\nhost: sim\r\n"
                b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                % (WELL_KNOWN.encode(), len(body), body)
            )
            assert (await w.reply()).json()["line_status"] == "suspended"
            await w.send(
                b"PUT /control/accounts/%s HTTP/1.1\r\nhost: sim\r\nexpect: 100-continue\r\n"
                b"content-length: 25\r\n\r\n" % WELL_KNOWN.encode()
            )
            assert (await w.reply()).status == 100  # go on
            await w.send(b'{"line_status": "active"}')
            assert (await w.reply()).json()["line_status"] == "active"


# -- bad requests ---------------------------------------------------------------------------------


async def test_an_oversized_body_is_413_and_the_connection_closed(
    simulator: SimulatorHandle,
) -> None:
    big = 64 * 1024 + 1
    with trio.fail_after(5):
        async with wire(simulator.url) as w:  # announced: refused before it is read
            head = b"POST /ocs/debits HTTP/1.1\r\nhost: sim\r\ncontent-length: %d\r\n\r\n"
            await w.send(head % big)
            reply = await w.reply()
            assert (reply.status, reply.headers["connection"]) == (413, "close")
            assert reply.json()["code"] == "REQUEST_TOO_LARGE"
            assert await w.closed()
        async with wire(simulator.url) as w:  # chunked: refused once it grows too large
            chunk = b"x" * 40_000
            await w.send(b"PUT /control/faults HTTP/1.1\r\nhost: sim\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            await w.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2)
            assert (await w.reply()).status == 413
            assert await w.closed()
        async with wire(simulator.url) as w:  # a body of exactly the limit is taken
            body = b" " * (64 * 1024)
            put = b"PUT /control/faults HTTP/1.1\r\nhost: sim\r\ncontent-length: %d\r\n\r\n%s"
            await w.send(put % (len(body), body))
            assert (await w.reply()).status == 200  # blank: no change
    assert simulator.simulator.statistics().requests == 0


async def test_garbage_is_400_and_an_oversized_head_431(simulator: SimulatorHandle) -> None:
    with trio.fail_after(5):
        for garbage in (b"garbage\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
                        b"GET / HTTP/1.1\r\n\r\n"):  # HTTP/1.1 without a host header
            async with wire(simulator.url) as w:
                await w.send(garbage)
                reply = await w.reply()
                assert (reply.status, reply.headers["connection"]) == (400, "close")
                assert reply.json()["code"] == "BAD_REQUEST"
                assert await w.closed()
        async with wire(simulator.url) as w:
            await w.send(b"GET / HTTP/1.1\r\nhost: sim\r\nx-big: " + b"y" * (64 * 1024))
            assert (await w.reply()).status == 431
        # the server is unharmed
        assert (await request(simulator.url, ACCOUNT)).status == 200


async def test_a_failing_responder_is_a_500_and_the_connection_stays(
    nursery: trio.Nursery,
) -> None:
    async def responder(method: str, path: str, query: bytes, body: bytes, hold: Hold) -> Answer:
        if path == "/boom":
            raise RuntimeError("boom")
        return 200, msgspec.json.encode({"path": path, "query": query.decode()})

    url: str = await nursery.start(partial(serve_http, responder, port=0))
    with trio.fail_after(5):
        async with wire(url) as w:
            await w.send(b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n")
            assert (await w.reply()).status == 500
            await w.send(b"GET /a%2Fb?q=1 HTTP/1.1\r\nhost: x\r\n\r\n")
            assert (await w.reply()).json() == {"path": "/a%2Fb", "query": "q=1"}
            await w.send(b"HEAD /x HTTP/1.1\r\nhost: x\r\n\r\n")
            head = await w.reply(head_only=True)  # the length is announced, but no body
            assert head.status == 200 and int(head.headers["content-length"]) > 0
            await w.send(b"GET /c HTTP/1.1\r\nhost: x\r\n\r\n")
            assert (await w.reply()).json() == {"path": "/c", "query": ""}


# -- faults through this server ------------------------------------------------------------------


async def test_fault_latency_is_applied_and_a_hang_ends_when_the_client_leaves(
    simulator: SimulatorHandle,
) -> None:
    put = b"PUT /control/faults HTTP/1.1\r\nhost: sim\r\ncontent-length: %d\r\n\r\n%s"
    with trio.fail_after(5):
        faults = b'{"ocs": {"latency_ms": 150}}'
        assert (await request(simulator.url, put % (len(faults), faults))).status == 200
        start = trio.current_time()
        assert (await request(simulator.url, ACCOUNT)).status == 200
        assert trio.current_time() - start >= 0.15

        faults = b'{"ocs": {"latency_ms": null, "timeout_rate": 1, "hang_ms": 60000}}'
        assert (await request(simulator.url, put % (len(faults), faults))).status == 200
        sim = simulator.simulator
        async with wire(simulator.url) as w:
            await w.send(ACCOUNT)
            await trio.testing.wait_all_tasks_blocked()
            assert sim.in_flight == 1  # held back
        while sim.in_flight:  # the server sees the client leave and lets go of the request
            await trio.testing.wait_all_tasks_blocked()
            await trio.lowlevel.checkpoint()


# -- idle connections and shutdown ---------------------------------------------------------------


@attrs.define
class Server:
    """A server task the test can stop (cancel) while it goes on talking to it."""

    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    stopped: trio.Event = attrs.field(factory=trio.Event)

    async def run(self, serve: Any, *, task_status: trio.TaskStatus[Any]) -> None:
        try:
            with self.scope:
                await serve(task_status=task_status)
        finally:
            self.stopped.set()


async def test_idle_connections_are_closed(nursery: trio.Nursery) -> None:
    simulator = Simulator.create(SimulatorConfig())
    url: str = await nursery.start(
        partial(serve_http, SimulatorRouter(simulator).answer, idle_timeout=0.2)
    )
    with trio.fail_after(5):
        async with wire(url) as w:
            await w.send(ACCOUNT)
            assert (await w.reply()).status == 200
            start = trio.current_time()
            assert await w.closed()  # nothing more asked: closed once idle for 0.2 s
            assert 0.2 <= trio.current_time() - start < 1.0


async def test_shutdown_finishes_requests_in_flight_and_closes_idle_connections() -> None:
    config = SimulatorConfig.from_mapping({"faults": {"ocs": {"latency_ms": 300}}})
    server = Server()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            handle: SimulatorHandle = await nursery.start(
                server.run, partial(serve_simulator, config)
            )
            async with wire(handle.url) as idle, wire(handle.url) as busy:
                await idle.send(b"GET /healthz HTTP/1.1\r\nhost: sim\r\n\r\n")
                assert (await idle.reply()).status == 200
                await busy.send(ACCOUNT)
                await trio.testing.wait_all_tasks_blocked()
                assert handle.simulator.in_flight == 1
                server.scope.cancel()  # stop the server
                assert await idle.closed()  # at once
                with pytest.raises(OSError):  # no longer listening
                    await request(handle.url, ACCOUNT)
                reply = await busy.reply()  # the request in flight is answered...
                assert reply.status == 200 and reply.headers["connection"] == "close"
                assert await busy.closed()  # ...and its connection closed
                await server.stopped.wait()


async def test_shutdown_cuts_requests_still_running_after_the_grace() -> None:
    config = SimulatorConfig.from_mapping({"faults": {"ocs": {"timeout_rate": 1}}})
    simulator = Simulator.create(config)
    server = Server()
    serve = partial(serve_http, SimulatorRouter(simulator).answer, grace=0.2)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            url: str = await nursery.start(server.run, serve)
            async with wire(url) as hung:
                await hung.send(ACCOUNT)  # held for the 60 s default hang
                await trio.testing.wait_all_tasks_blocked()
                assert simulator.in_flight == 1
                server.scope.cancel()
                start = trio.current_time()
                assert await hung.closed()  # no answer: cut when the grace ran out
                assert 0.2 <= trio.current_time() - start < 1.0
                await server.stopped.wait()
        assert simulator.in_flight == 0
