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

Cheap per call, because thousands of calls a second go through it: the request head is
formatted here (validated like h11 would: no CR/LF smuggling); an answer that arrives whole
in the first read as a plain keep-alive answer (HTTP/1.1, one Content-Length, no
Transfer-Encoding or Connection header, not a 204/304 announcing a body: what a healthy
platform sends) is parsed by ``_whole_answer`` (0.157 → 0.100 ms CPU per call), which a
differential test holds to h11's reading of the same bytes
(tests/platforms/test_platforms_whole_answer.py); anything else goes to h11 (a fresh
``h11.Connection`` per exchange, which accepts an answer without having been shown the
request, unless the answer starts with an interim ``1xx``: then one that was shown it parses
again); a plain TCP connection is a non-blocking socket driven through
``trio.lowlevel.wait_readable``/``wait_writable``, so writing the request costs no trip
through trio's scheduler and reading the answer waits once before its first ``recv``.
"""

from __future__ import annotations

import re
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
_encoder = msgspec.json.Encoder()
_RECEIVE_SIZE = 65536
_HEAD_LIMIT = 64 * 1024  # largest answer head h11 will buffer
# what h11 would accept in a request head (RFC 9110 token, request-target, field-value)
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"[\x21-\x7e]+")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e](?:[ \t\x21-\x7e]*[\x21-\x7e])?)?")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_INTERIM = re.compile(rb"HTTP/1\.[01] 1\d\d")


def _request_head(
    method: str,
    target: str,
    host: str,
    headers: Iterable[tuple[str, str]],
    json: bool,
    length: int | None,
) -> bytes:
    """The request line and headers, CRLF-terminated; raises ValueError on anything that
    could not be sent as is (a space or control character in a header, a bad method...)."""
    if _TOKEN.fullmatch(method) is None:
        raise ValueError(f"bad HTTP method {method!r}")
    if _TARGET.fullmatch(target) is None:
        raise ValueError(f"bad request target {target!r}")
    if _FIELD_VALUE.fullmatch(host) is None:
        raise ValueError(f"bad host {host!r}")
    head = f"{method} {target} HTTP/1.1\r\nhost: {host}\r\nuser-agent: gestor\r\n"
    for name, value in headers:
        if _TOKEN.fullmatch(name) is None or _FIELD_VALUE.fullmatch(value) is None:
            raise ValueError(f"bad header {name!r}: {value!r}")
        head += f"{name}: {value}\r\n"
    if json:
        head += "content-type: application/json\r\n"
    if length is not None:
        head += f"content-length: {length}\r\n"
    return (head + "\r\n").encode("ascii")


_HEADER_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-5]\d\d)(?: [\t \x21-\x7e\x80-\xff]*)?")
_VALUE = re.compile(rb"[\t \x21-\x7e\x80-\xff]*")
_NO_BODY = frozenset({204, 304})  # statuses whose answers have no body (RFC 9112 6.3)


def _whole_answer(data: bytes, limit: int) -> Response | None:
    """`data` parsed when it is exactly one plain keep-alive answer: HTTP/1.1, a 2xx-5xx
    status, a single Content-Length that the bytes received match, no Transfer-Encoding, no
    `Connection` header, no obsolete line folding, no body announced by a 204 or 304 (which
    has none). That is every answer of a healthy platform
    on loopback, and parsing it here costs a fraction of a fresh h11 parser's cycle. Anything
    else is None: h11 parses it (and rejects what is malformed)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        return None
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or _HEADER_NAME.fullmatch(name) is None:
            return None  # also obsolete folding: a line starting with a space
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name in (b"transfer-encoding", b"connection") or _VALUE.fullmatch(value) is None:
            return None
        headers.append((name, value))
    if length is None or length > limit or len(data) - end - 4 != length:
        return None
    code = int(status.group(1))
    if length and code in _NO_BODY:
        return None  # h11: no body whatever the head announces; the bytes start the next answer
    return Response(code, headers, data[end + 4:])


def _parser() -> h11.Connection:
    """h11's side of one exchange: it parses an answer without being shown the request."""
    return h11.Connection(h11.CLIENT, max_incomplete_event_size=_HEAD_LIMIT)


def _informed_parser(method: str, target: str, host: str) -> h11.Connection:
    """A parser shown the request, which also takes interim (1xx) answers before the final
    one (the slow path: rare, as nothing here asks for them)."""
    parser = _parser()
    parser.send(h11.Request(method=method, target=target, headers=[("host", host)]))
    parser.send(h11.EndOfMessage())
    return parser


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
    sock: socket.socket  # non-blocking; plain TCP is driven through it directly
    tls: trio.SSLStream[trio.SocketStream] | None = None  # https: the TLS stream over sock
    expires: float = 0.0  # while idle: close instead of reusing after this trio time

    def close(self) -> None:
        self.sock.close()  # synchronous, so it is safe in a cancelled task

    async def write(self, data: bytes, progress: Progress) -> None:
        """Send all of ``data``, noting in ``progress`` when the first byte is written. Over
        TCP that is exactly when a ``send`` call succeeds; through TLS it is assumed as soon
        as writing starts."""
        if self.tls is not None:
            progress.sent = True
            await self.tls.send_all(data)
            return
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller sends nothing
        sock = self.sock
        with memoryview(data) as view:
            total = 0
            while total < len(view):
                try:
                    total += sock.send(view[total:])
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                    continue
                except OSError as exc:
                    raise trio.BrokenResourceError(f"send failed: {exc}") from exc
                progress.sent = True

    async def receive(self, first: bool) -> bytes:
        """Some bytes of the answer (b"" at EOF). ``first``: nothing of the answer has been
        asked for yet, so it cannot be there before the socket is readable."""
        if self.tls is not None:
            return bytes(await self.tls.receive_some(_RECEIVE_SIZE))
        sock = self.sock
        if first:
            await trio.lowlevel.wait_readable(sock)
        while True:
            try:
                return sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
            except OSError as exc:
                raise trio.BrokenResourceError(f"receive failed: {exc}") from exc

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
        netloc = parts.netloc.rpartition("@")[2]
        if json is not None:
            content = _encoder.encode(json)
        length = None
        if content is not None or method in _BODY_METHODS:
            length = len(content or b"")
        head = _request_head(method, target, netloc, headers, json is not None, length)
        exchange = _Exchange(
            method,
            target,
            netloc,
            head + content if content else head,
            progress if progress is not None else Progress(),
            self.max_body if max_body is None else max_body,
        )
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = deque()
        conn = self._checkout(pool)
        if conn is not None:
            try:
                return await self._exchange(pool, conn, exchange, True)
            except _Stale as exc:
                if exchange.progress.sent and method != "GET":
                    raise HTTPError(str(exc), sent=True) from exc
        conn = await self._connect(origin, exchange.progress.sent)
        return await self._exchange(pool, conn, exchange, False)

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
        # from here on the socket is ours to drive (trio's wrapper lets go of it)
        sock = socket.socket(fileno=tcp.socket.detach())
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open += 1
        self._created += 1
        conn = _Connection(sock)
        if scheme == "https":
            if self.ssl_context is None:
                self.ssl_context = ssl.create_default_context()
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
            conn.tls = trio.SSLStream(stream, self.ssl_context, server_hostname=host)
            try:
                await conn.tls.do_handshake()
            except BaseException as exc:
                self._discard(conn)
                if isinstance(exc, trio.BrokenResourceError):
                    why = exc.__cause__ or exc  # trio's error wraps the ssl module's
                    text = f"TLS handshake with {host}:{port} failed: {why}"
                    raise ConnectError(text, sent=sent) from exc
                raise
        return conn

    async def _exchange(
        self, pool: deque[_Connection], conn: _Connection, exchange: _Exchange, reused: bool
    ) -> Response:
        """One request/answer on ``conn``; gives it back to ``pool`` or closes it."""
        answered = False  # a byte of the answer arrived: a failure is no longer "stale"
        if exchange.method == "HEAD":  # its answer has no body, whatever it announces
            parser = _informed_parser(exchange.method, exchange.target, exchange.host)
        else:
            parser = _parser()
        early: list[bytes] | None = []  # what came before the answer's head, in case of 1xx
        try:
            await conn.write(exchange.data, exchange.progress)
            if exchange.method != "HEAD":
                first = await conn.receive(True)
                quick = _whole_answer(first, exchange.limit)
                if quick is not None:
                    self._checkin(pool, conn)
                    return quick
                answered = bool(first)
                early = [first]
                parser.receive_data(first)
            head: h11.Response | None = None
            body: list[bytes] = []
            size = 0
            limit = exchange.limit
            while True:
                try:
                    event = parser.next_event()
                except h11.RemoteProtocolError:
                    if early is None or not _INTERIM.match(b"".join(early)):
                        raise
                    # an interim answer came first: parse again with a parser shown the request
                    parser = _informed_parser(exchange.method, exchange.target, exchange.host)
                    parser.receive_data(b"".join(early))
                    early = None
                    continue
                if event is h11.NEED_DATA:
                    chunk = await conn.receive(not answered)
                    answered = answered or bool(chunk)
                    if early is not None:
                        early.append(chunk)
                    parser.receive_data(chunk)
                elif type(event) is h11.Response:
                    head = event
                    early = None
                elif type(event) is h11.Data:
                    size += len(event.data)
                    if size > limit:
                        raise HTTPError(f"answer body over {limit} bytes", sent=True)
                    body.append(event.data)
                elif type(event) is h11.EndOfMessage:
                    break
                elif type(event) is h11.ConnectionClosed:
                    raise h11.RemoteProtocolError("connection closed before the answer ended")
        except (trio.BrokenResourceError, h11.RemoteProtocolError) as exc:
            self._discard(conn)
            message = f"{type(exc).__name__}: {exc}"
            if reused and not answered:
                raise _Stale(message) from exc
            raise HTTPError(message, sent=exchange.progress.sent) from exc
        except BaseException:
            self._discard(conn)
            raise
        assert head is not None
        if parser.their_state is h11.DONE and not parser.trailing_data[0]:
            self._checkin(pool, conn)
        else:  # "connection: close", HTTP/1.0, an answer to EOF, or bytes after the answer
            self._discard(conn)
        content = body[0] if len(body) == 1 else b"".join(body)
        return Response(head.status_code, list(head.headers), content)


@attrs.frozen
class _Exchange:
    """One request, ready to go: what :meth:`HTTPClient._exchange` needs."""

    method: str
    target: str
    host: str
    data: bytes  # head and body
    progress: Progress
    limit: int  # largest answer body
