"""A lean HTTP/1.1 client for trio, built on ``h11``: what the platform clients need, no more.

Why not httpx: httpcore's pool scans every connection, several times, for every request, so
its CPU cost per call grows with the number of connections and livelocks with thousands of
calls in flight. Here each ``(scheme, host, port)`` keeps a deque of idle keep-alive
connections: taking one and giving it back are O(1), reuse is LIFO (the most recently used,
least likely closed by the server), at most ``max_idle`` stay idle per origin and idle ones
older than ``keepalive_expiry`` are closed lazily. There is no cap on open connections: the
callers bound their concurrency (``Platforms`` has a limiter per platform).

No timeouts either: the caller's cancel scope bounds a whole request. A request that is
cancelled or fails closes its connection, so a connection in the pool is always between two
clean exchanges.

What the caller must know after a failure is whether the server may have seen the request:
:attr:`HTTPError.sent` (and :attr:`Progress.sent`, which a cancelled caller can read) is True
once any byte of it may have been written. A reused connection that turns out to have been
closed by the server (EOF or reset before any answer) is retried once on a fresh connection
if nothing had been written or the request is a ``GET``.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

import attrs
import h11
import msgspec
import trio

__all__ = ["ConnectError", "HTTPClient", "HTTPError", "HTTPStatistics", "Progress", "Response"]

_T = TypeVar("_T")
_Origin = tuple[str, str, int]  # scheme, host, port
_USER_AGENT = ("user-agent", "gestor")
_JSON_TYPE = ("content-type", "application/json")
_encoder = msgspec.json.Encoder()


class HTTPError(Exception):
    """No answer: the connection could not be made, broke, or the answer was unusable.

    ``sent`` is True if any byte of the request may have reached the server.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class ConnectError(HTTPError):
    """The connection (TCP or TLS) could not be made. ``sent`` is False, unless the request
    had been written to a kept-alive connection found closed before this retry."""


class _Stale(Exception):
    """A reused connection was found closed before any byte of the answer came back."""


@attrs.define
class Progress:
    """Filled in by :meth:`HTTPClient.request`; readable even if the request was cancelled."""

    sent: bool = False  # some byte of the request may have been written to a socket


@attrs.frozen
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]  # names lowercased
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    @overload
    def json(self) -> Any: ...
    @overload
    def json(self, type: type[_T]) -> _T: ...
    def json(self, type: Any = Any) -> Any:
        """The body decoded by msgspec (into ``type`` if given); raises ``msgspec`` errors."""
        return msgspec.json.decode(self.content, type=type)


@attrs.frozen
class HTTPStatistics:
    open: int  # connections open now (idle + in use)
    idle: int  # kept alive in the pools
    in_use: int  # carrying a request
    created: int  # connections made since the client started
    reused: int  # requests sent on a connection that had served one before


@attrs.define(eq=False)
class _Connection:
    stream: trio.abc.Stream
    sock: trio.socket.SocketType
    protocol: h11.Connection
    expires: float = 0.0  # while idle: close instead of reusing after this trio time

    def close(self) -> None:
        self.sock.close()  # synchronous, so it is safe in a cancelled task

    async def write(self, data: bytes, progress: Progress) -> None:
        """``send_all``, noting in ``progress`` when the first byte is written. Over TCP that
        is exactly when a ``send`` call succeeds (trio returns every byte it sent, even when
        cancelled); through TLS it is assumed as soon as writing starts."""
        if isinstance(self.stream, trio.SSLStream):
            progress.sent = True
            await self.stream.send_all(data)
            return
        with memoryview(data) as view:
            total = 0
            while total < len(view):
                try:
                    total += await self.sock.send(view[total:])
                except OSError as exc:
                    raise trio.BrokenResourceError(f"send failed: {exc}") from exc
                progress.sent = True

    def looks_closed(self) -> bool:
        """An idle HTTP/1.1 connection has nothing to read unless the server closed it."""
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))


@attrs.define(eq=False)
class HTTPClient:
    """Keep-alive HTTP/1.1 client; use ``async with`` or call :meth:`aclose`."""

    keepalive_expiry: float = 30.0  # seconds an idle connection may be reused
    max_idle: int = 512  # idle connections kept per origin
    max_body: int = 4 << 20  # default cap on an answer's body, in bytes
    ssl_context: ssl.SSLContext | None = None  # for https; default: system trust store
    _pools: dict[_Origin, deque[_Connection]] = attrs.field(init=False, factory=dict)
    _open: int = attrs.field(init=False, default=0)
    _created: int = attrs.field(init=False, default=0)
    _reused: int = attrs.field(init=False, default=0)
    _closed: bool = attrs.field(init=False, default=False)

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle connections now; the busy ones are closed when their request ends."""
        self._closed = True
        for pool in self._pools.values():
            while pool:
                self._discard(pool.pop())
        await trio.lowlevel.checkpoint()

    def statistics(self) -> HTTPStatistics:
        idle = sum(len(pool) for pool in self._pools.values())
        return HTTPStatistics(self._open, idle, self._open - idle, self._created, self._reused)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        content: bytes | None = None,
        json: object = None,
        progress: Progress | None = None,
        max_body: int | None = None,
    ) -> Response:
        """Send one request and read its whole answer, whatever the status.

        The body is ``content``, or ``json`` (unless None) encoded by msgspec. ``progress.sent``
        turns True once a byte of the request may have been written. The answer's body may
        not exceed ``max_body`` bytes (default: the client's). Raises :class:`HTTPError`, or
        ``trio.ClosedResourceError`` after :meth:`aclose`.
        """
        if self._closed:
            raise trio.ClosedResourceError("the HTTP client is closed")
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        if scheme not in ("http", "https") or not host:
            raise ValueError(f"not an http(s) URL: {url!r}")
        origin = (scheme, host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        all_headers = [("host", parts.netloc.rpartition("@")[2]), _USER_AGENT]
        all_headers.extend(headers)
        if json is not None:
            content = _encoder.encode(json)
            all_headers.append(_JSON_TYPE)
        if content is not None or method in ("POST", "PUT", "PATCH"):
            all_headers.append(("content-length", str(len(content or b""))))
        request = h11.Request(method=method, target=target, headers=all_headers)
        progress = progress if progress is not None else Progress()
        limit = self.max_body if max_body is None else max_body
        pool = self._pools.setdefault(origin, deque())
        conn = self._checkout(pool)
        if conn is not None:
            try:
                return await self._exchange(pool, conn, request, content, progress, limit, True)
            except _Stale as exc:
                if progress.sent and method != "GET":
                    raise HTTPError(str(exc), sent=True) from exc
        conn = await self._connect(origin, progress.sent)
        return await self._exchange(pool, conn, request, content, progress, limit, False)

    def _checkout(self, pool: deque[_Connection]) -> _Connection | None:
        now = trio.current_time()
        while pool:
            conn = pool.pop()
            if conn.expires > now and not conn.looks_closed():
                self._reused += 1
                return conn
            self._discard(conn)  # the older ones behind it are expired too, or soon
        return None

    def _checkin(self, pool: deque[_Connection], conn: _Connection) -> None:
        now = trio.current_time()
        while pool and (len(pool) >= self.max_idle or pool[0].expires <= now):
            self._discard(pool.popleft())
        if self._closed:
            self._discard(conn)
            return
        conn.protocol.start_next_cycle()
        conn.expires = now + self.keepalive_expiry
        pool.append(conn)

    def _discard(self, conn: _Connection) -> None:
        self._open -= 1
        conn.close()

    async def _connect(self, origin: _Origin, sent: bool) -> _Connection:
        scheme, host, port = origin
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {host}:{port}: {exc}", sent=sent) from exc
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream: trio.abc.Stream = tcp
        self._open += 1
        self._created += 1
        conn = _Connection(stream, tcp.socket, h11.Connection(h11.CLIENT))
        if scheme == "https":
            if self.ssl_context is None:
                self.ssl_context = ssl.create_default_context()
            conn.stream = trio.SSLStream(tcp, self.ssl_context, server_hostname=host)
            try:
                await conn.stream.do_handshake()
            except BaseException as exc:
                self._discard(conn)
                if isinstance(exc, trio.BrokenResourceError):
                    text = f"TLS handshake with {host}:{port} failed: {exc}"
                    raise ConnectError(text, sent=sent) from exc
                raise
        return conn

    async def _exchange(
        self,
        pool: deque[_Connection],
        conn: _Connection,
        request: h11.Request,
        content: bytes | None,
        progress: Progress,
        limit: int,
        reused: bool,
    ) -> Response:
        """One request/answer on ``conn``; gives it back to ``pool`` or closes it."""
        answered = False  # a byte of the answer arrived: a failure is no longer "stale"
        try:
            data = conn.protocol.send(request) or b""
            if content:
                data += conn.protocol.send(h11.Data(data=content)) or b""
            data += conn.protocol.send(h11.EndOfMessage()) or b""
            await conn.write(data, progress)
            head: h11.Response | None = None
            body: list[bytes] = []
            size = 0
            while True:
                event = conn.protocol.next_event()
                if event is h11.NEED_DATA:
                    chunk = await conn.stream.receive_some(65536)
                    answered = answered or bool(chunk)
                    conn.protocol.receive_data(bytes(chunk))
                elif isinstance(event, h11.Response):
                    head = event
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > limit:
                        raise HTTPError(f"answer body over {limit} bytes", sent=True)
                    body.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise h11.RemoteProtocolError("connection closed before the answer ended")
        except (trio.BrokenResourceError, h11.RemoteProtocolError) as exc:
            self._discard(conn)
            message = f"{type(exc).__name__}: {exc}"
            if reused and not answered:
                raise _Stale(message) from exc
            raise HTTPError(message, sent=progress.sent) from exc
        except BaseException:
            self._discard(conn)
            raise
        assert head is not None
        state = conn.protocol.our_state, conn.protocol.their_state
        if state == (h11.DONE, h11.DONE) and not conn.protocol.trailing_data[0]:
            self._checkin(pool, conn)
        else:  # "connection: close", an early answer, or bytes after the answer
            self._discard(conn)
        return Response(head.status_code, list(head.headers), b"".join(body))
