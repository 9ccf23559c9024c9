"""A lean HTTP/1.1 server on trio and ``h11``: what serving the simulator needs, no more.

Why not hypercorn: its per-request machinery (ASGI messages, a task per request, a keep-alive
timer, h11's full state machine both ways) cost about 0.6 ms of CPU per simulator request, so
under load the simulator took a core from Gestor; this costs about 0.1 ms. One task serves one
connection, one request at a time (pipelined requests wait in h11's buffer), straight into a
:data:`Responder`:

* h11 parses each request (see :class:`_Connection`); the answer, always JSON of known
  length, is formatted here.

* Keep-alive as h11 negotiates it (HTTP/1.1 by default; ``connection: close`` and HTTP/1.0
  close after the answer). A connection idle for ``idle_timeout`` is closed.
* Bodies by ``content-length`` (or chunked, which h11 decodes). A request whose body would
  exceed ``max_request`` bytes gets ``413`` and the connection is closed; a request head over
  that size gets ``431``, a malformed request ``400``. Errors are JSON ``{code, message}``.
* The socket is a plain non-blocking one driven by ``trio.lowlevel.wait_readable`` and
  ``wait_writable``: a read or write that can go through at once costs no trip through trio's
  scheduler (each request still passes at least one checkpoint, so a busy connection cannot
  starve the others).
* While an answer is held back (the simulator's hang and late-answer faults), the socket is
  watched: the client closing it ends the wait (:meth:`_Connection.hold`).
* Shutdown (the caller's cancel scope is cancelled): stop accepting, close the idle
  connections, let the requests in flight finish for up to ``grace`` seconds (their answers
  say ``connection: close``), then cancel what is left.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import attrs
import h11
import msgspec
import trio

from ._router import Answer, Hold

__all__ = ["Responder", "serve_http"]

#: ``await responder(method, path, query, body, hold)``: the answer to one request, or None to
#: send none (the client went away while ``hold`` kept it back). ``path`` is the request
#: target before ``?``, undecoded; ``query`` what follows it.
Responder = Callable[[str, str, bytes, bytes, Hold], Awaitable[Answer | None]]

_log = logging.getLogger("gestor.platforms.server")
_RECEIVE_SIZE = 65536
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
#: accept() errors that mean "out of resources, try again later", not "the listener is broken"
_ACCEPT_RETRY = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_AGAIN = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR}


class _Gone(Exception):
    """The client closed or reset the connection."""


def _error_body(code: str, message: str) -> bytes:
    return msgspec.json.encode({"code": code, "message": message})


def _says_close(connection: bytes) -> bool:
    return b"close" in [token.strip().lower() for token in connection.split(b",")]


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


def _head(status: int, length: int, close: bool) -> bytes:
    return b"%scontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n" % (
        _status_line(status),
        length,
        b"connection: close\r\n" if close else b"",
    )


@attrs.define(eq=False)
class _Connection:
    """One accepted connection, served by one task (:meth:`run`).

    h11 parses each request (a fresh ``h11.Connection`` per request, handed the bytes left
    over from the previous one); the answer, always a JSON body of known length, is
    formatted here. That halves h11's cost per exchange (its state machine and header
    validation of our own answer). The keep-alive rules are h11's: HTTP/1.0 or
    ``connection: close`` closes after the answer.
    """

    server: _Server
    sock: socket.socket
    protocol: h11.Connection  # parsing the current request
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    idle_since: float | None = None  # trio time it started waiting for a request; None: busy
    waited: bool = False  # this request cycle passed a checkpoint (blocked on the socket)

    async def run(self) -> None:
        server = self.server
        fresh = True  # just accepted: the first request may be there already
        while True:
            self.waited = False
            self.idle_since = trio.current_time()
            if server.draining:
                return
            # after an answer, the next request cannot be there yet unless it was pipelined
            wait = not fresh and not self.protocol.trailing_data[0]
            event = await self._next_event(wait)
            fresh = False
            self.idle_since = None
            if type(event) is not h11.Request:
                return  # ConnectionClosed: the client is done with this connection
            keep_alive = event.http_version >= b"1.1"
            length = 0
            for name, value in event.headers:
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and _says_close(value):
                    keep_alive = False
            body = await self._read_body(length)
            if body is None:
                return  # answered 413: the rest of the body was not read, so close
            method = event.method
            target = event.target
            cut = target.find(b"?")
            if cut < 0:
                path, query = target.decode("latin-1"), b""
            else:
                path, query = target[:cut].decode("latin-1"), target[cut + 1 :]
            try:
                answer = await server.responder(
                    method.decode("ascii"), path, query, body, self.hold
                )
            except Exception:
                _log.exception("%s %s failed", method.decode(), target.decode("latin-1"))
                answer = 500, _error_body("INTERNAL_ERROR", "the server failed")
            if answer is None:
                return  # the client went away
            status, content = answer
            close = not keep_alive or server.draining
            head = _head(status, len(content), close)
            await self._send(head if method == b"HEAD" else head + content)
            if close:
                return
            leftover, closed = self.protocol.trailing_data
            self.protocol = server.parser()
            if leftover:
                self.protocol.receive_data(leftover)  # pipelined
            if closed:
                self.protocol.receive_data(b"")  # what is left is all there will be
            if not self.waited:
                await trio.lowlevel.checkpoint()

    async def _next_event(self, wait: bool) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        protocol = self.protocol
        while True:
            event = protocol.next_event()
            if event is not h11.NEED_DATA:
                return event
            protocol.receive_data(await self._receive(wait))
            wait = False

    async def _read_body(self, length: int) -> bytes | None:
        """The request's whole body, or None after answering 413 because it is too large."""
        limit = self.server.max_request
        if length > limit:
            await self._reject(413, "REQUEST_TOO_LARGE", f"body over {limit} bytes")
            return None
        if self.protocol.they_are_waiting_for_100_continue:
            await self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(False)
            if type(event) is h11.EndOfMessage:
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]
            if type(event) is h11.Data:
                size += len(event.data)
                if size > limit:
                    await self._reject(413, "REQUEST_TOO_LARGE", f"body over {limit} bytes")
                    return None
                chunks.append(event.data)
            else:  # an early EOF is a RemoteProtocolError from h11 already
                raise _Gone(f"unexpected {type(event).__name__} in a request body")

    async def _reject(self, status: int, code: str, message: str) -> None:
        """Answer an error; the connection is closed after it."""
        content = _error_body(code, message)
        await self._send(_head(status, len(content), True) + content)

    async def reject_malformed(self, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint
        if status == 431:
            await self._reject(status, "REQUEST_TOO_LARGE", f"request head: {exc}")
        else:
            await self._reject(status, "BAD_REQUEST", f"malformed request: {exc}")

    async def hold(self, seconds: float) -> bool:
        """Keep the answer back for ``seconds`` while watching the socket: True as soon as
        the client closes or resets it. Bytes it sends meanwhile (a pipelined request) wait
        in h11's buffer."""
        sock = self.sock
        protocol = self.protocol
        with trio.move_on_after(seconds):
            while True:
                await trio.lowlevel.wait_readable(sock)
                try:
                    data = sock.recv(_RECEIVE_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    return True
                if not data:
                    return True
                if len(protocol.trailing_data[0]) + len(data) > self.server.max_request:
                    return True  # nobody pipelines that much: drop the connection
                protocol.receive_data(data)
        return False

    async def _receive(self, wait: bool) -> bytes:
        """Some bytes from the socket (b"" at EOF); ``wait``: do not try before it is
        readable (saves a failing ``recv`` when nothing can be there yet)."""
        sock = self.sock
        if wait:
            self.waited = True
            await trio.lowlevel.wait_readable(sock)
        while True:
            try:
                return sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                self.waited = True
                await trio.lowlevel.wait_readable(sock)
            except OSError as exc:  # reset by the client
                raise _Gone(str(exc)) from exc

    async def _send(self, data: bytes) -> None:
        sock = self.sock
        with memoryview(data) as view:
            total = 0
            while total < len(view):
                try:
                    total += sock.send(view[total:])
                except BlockingIOError:
                    self.waited = True
                    await trio.lowlevel.wait_writable(sock)
                except OSError as exc:
                    raise _Gone(str(exc)) from exc


@attrs.define(eq=False)
class _Server:
    """The connections of one :func:`serve_http`, and how it stops."""

    responder: Responder
    max_request: int
    idle_timeout: float
    grace: float
    draining: bool = False
    _connections: set[_Connection] = attrs.field(factory=set)
    _stopped: trio.Event = attrs.field(factory=trio.Event)
    _scope: trio.CancelScope = attrs.field(factory=lambda: trio.CancelScope(shield=True))

    async def hold_connections(
        self, *, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Host the connection tasks (shielded: they outlive the accept loop by ``grace``) and
        close connections idle for longer than ``idle_timeout``."""
        with self._scope:
            async with trio.open_nursery() as nursery:
                task_status.started(nursery)
                while not self._stopped.is_set():
                    with trio.move_on_after(max(self.idle_timeout / 4, 0.05)):
                        await self._stopped.wait()
                    self._close_idle(trio.current_time() - self.idle_timeout)

    def _close_idle(self, before: float) -> None:
        for conn in self._connections:
            if conn.idle_since is not None and conn.idle_since <= before:
                conn.scope.cancel()

    def drain(self) -> None:
        """Stop: close the idle connections now and the busy ones after their request, or
        when ``grace`` runs out."""
        self.draining = True
        self._close_idle(math.inf)
        self._scope.deadline = trio.current_time() + self.grace
        self._stopped.set()

    async def accept(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        while True:
            await trio.lowlevel.wait_readable(listener)
            while True:  # take every connection waiting in the backlog
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _ACCEPT_AGAIN:
                        continue
                    if exc.errno not in _ACCEPT_RETRY:
                        raise
                    _log.warning("accept failed (%s); trying again in 0.1 s", exc)
                    await trio.sleep(0.1)
                    break
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                nursery.start_soon(self._serve, sock)

    def parser(self) -> h11.Connection:
        """h11's side of one request (a fresh one per request: see :class:`_Connection`)."""
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_request)

    async def _serve(self, sock: socket.socket) -> None:
        conn = _Connection(self, sock, self.parser())
        self._connections.add(conn)
        try:
            with conn.scope:
                try:
                    await conn.run()
                except h11.RemoteProtocolError as exc:
                    await conn.reject_malformed(exc)
                except _Gone:
                    pass
        except _Gone:
            pass  # the client left while we rejected its request
        finally:
            self._connections.discard(conn)
            sock.close()


async def _listen(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening socket on the first address ``host`` resolves to."""
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve_http(
    responder: Responder,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_request: int = 64 * 1024,
    idle_timeout: float = 120.0,
    grace: float = 1.0,
    backlog: int = 1024,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``responder`` over HTTP/1.1 until cancelled; ``port=0`` picks a free port.

    Once listening, ``task_status.started(url)`` (``http://HOST:PORT``). On cancellation the
    server drains (see the module's docstring) before returning.
    """
    listener = await _listen(host, port, backlog)
    server = _Server(responder, max_request, idle_timeout, grace)
    try:
        async with trio.open_nursery() as nursery:
            connections: trio.Nursery = await nursery.start(server.hold_connections)
            try:
                task_status.started(_url(listener))
                await server.accept(listener, connections)
            finally:
                listener.close()  # nobody waits on it any more: accept() has returned
                server.drain()
    finally:
        listener.close()
