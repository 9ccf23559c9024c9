"""Hypercorn's trio worker, with client connections that close when they should.

Measured on hypercorn 0.18 + quart-trio 0.12: after a response with `Connection: close` the
socket was never closed, and a keep-alive connection that had served a request never timed out
(a bare ASGI app on the same hypercorn closes in 4 ms). The cause: hypercorn runs the end of a
response's connection bookkeeping inside the application's own `send` call, i.e. in the ASGI
app's task. The last `http.response.body` message reaches `H11Protocol._maybe_recycle`, which
first delivers `http.disconnect` to the app and then asks `TCPServer.protocol_send` to close the
connection (`Closed`) or to restart its keep-alive timer (`Updated(idle=True)`). Quart-Trio's
`TrioASGIHTTPConnection.handle_messages` answers that `http.disconnect` by cancelling the
request's nursery, so the close (`send_eof`, a checkpoint) and the timer restart (a lock, a
checkpoint) are cancelled before they happen, leaving the socket open for ever.

`ClientConnection` is hypercorn's `TCPServer` with that bookkeeping shielded, as its `RawData`
branch's `send_all` already is. Upstream change (hypercorn, `hypercorn/trio/tcp_server.py`,
`TCPServer.protocol_send`): run the `Closed` and `Updated` branches inside
`trio.CancelScope(shield=True)`, since they run in whichever task called the ASGI `send` and
must happen even if that task is being cancelled (`hypercorn/asyncio/tcp_server.py` has the
same unprotected branches). Quart-Trio could also avoid it (`quart_trio/asgi.py`,
`TrioASGIHTTPConnection.handle_messages`: do not cancel the nursery on `http.disconnect` once
the response has been sent), but any ASGI app may cancel itself on disconnect.

Two more changes of ours, which hypercorn has no setting for:
- a write bound: a client that does not read what is sent to it (a response, a websocket
  message) within `write_timeout` seconds is disconnected (hypercorn shields `send_all`
  without a bound, so a client that never reads a response larger than the socket buffers
  holds its task and socket for ever);
- `ConnectionTable`: connections are admitted under a cap, the oldest idle one is closed for a
  new one at the cap, and a new one is refused with 503 when none is idle (`serve_http`'s own
  accept loop; hypercorn's `worker_serve` uses `trio.serve_listeners`, which has no cap).

A client's going was missed: `TCPServer._read_data` tells the protocol of an orderly EOF only,
and once its loop ends the keep-alive timer still runs, so a client that closed an idle
keep-alive connection (or reset it, or closed TLS without a close_notify) left it open until the
timer ran out (measured: 5 of 5 connections closed by their clients 0.1 s after a response were
still open 0.5 s later). `ClientConnection._read_data` treats a broken connection as closed and
stops the timer when reading ends. Upstream: the same two lines in hypercorn's `_read_data`.

TLS (`gestor.serving._tls`): the accept loop wraps each socket in a `trio.SSLStream`, and
`ClientConnection` completes its handshake as idle time (within `keep_alive_timeout`, first to go
at the cap, ended when the worker stops) before hypercorn's own code runs (whose handshake
timeout, `ssl_handshake_timeout`, is 60 s and not idle time); closing a TLS connection gives its
close_notify a time bound, which hypercorn's shielded close does not.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import repr_socket_addr

from gestor.serving._connections import ConnectionTable
from gestor.serving._tls import ClientStream, close_stream, handshake, peer
from gestor.serving._websocket import is_websocket, write_websocket

logger = logging.getLogger("gestor")

_REFUSAL_BODY = json.dumps({
    "type": "https://gestor.dev/problems/too-many-connections",
    "title": "Service unavailable",
    "status": 503,
    "code": "TOO_MANY_CONNECTIONS",
    "detail": "this server holds as many connections as it may, all busy; retry shortly",
}, separators=(",", ":")).encode()
#: Sent, before reading anything, to a connection refused at the cap; then it is closed (once
#: the client has closed its side, or after 1 s).
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\n"
           b"content-type: application/problem+json\r\n"
           b"retry-after: 1\r\n"
           b"connection: close\r\n"
           b"content-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n"
           b"\r\n" + _REFUSAL_BODY)

_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class ClientConnection(TCPServer):
    """One client connection: hypercorn's `TCPServer`, its bookkeeping shielded from the app's
    cancellation, its writes bounded, its idle time reported to a `ConnectionTable`."""

    def __init__(self, app: AppWrapper, config: Config, context: WorkerContext,
                 state: LifespanState, stream: ClientStream, *, table: ConnectionTable,
                 write_timeout: float, websocket_timeout: float | None = None) -> None:
        super().__init__(app, config, context, state, stream)  # type: ignore[arg-type]
        self.table = table
        self.write_timeout = write_timeout
        #: Bound on each websocket write (`[alarms] send_timeout`): a client that stops
        #: reading gets a 1013 close after its last whole frame (`_websocket`).
        self.websocket_timeout = websocket_timeout

    async def run(self) -> None:
        try:
            if isinstance(self.stream, trio.SSLStream) and not await self._handshake(
                    self.stream):
                return
            await super().run()  # hypercorn's handshake, done already, returns at once
        finally:
            self.table.closed(self)

    async def _handshake(self, stream: trio.SSLStream[trio.SocketStream]) -> bool:
        """The TLS handshake, as idle time: within the keep-alive timeout, evicted first at the
        cap, ended at once when the worker stops. False (the socket closed) if not completed."""
        done = False
        with trio.move_on_after(self.config.keep_alive_timeout) as timer:
            self.table.became_idle(self, timer)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._cancel_when_terminated, timer)
                    done = await handshake(stream)
                    nursery.cancel_scope.cancel()
            finally:
                self.table.became_busy(self, timer)
        if not done:
            if timer.cancelled_caught:
                logger.debug("client %s did not complete a TLS handshake: disconnected",
                             self._peer())
            await trio.aclose_forcefully(stream.transport_stream)
        return done

    async def _cancel_when_terminated(self, scope: trio.CancelScope) -> None:
        await self.context.terminated.wait()
        scope.cancel()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            # a cancelled sender sends nothing (as before: hypercorn's lock raised Cancelled),
            # but bytes once begun are all written, or the connection is dropped
            await trio.lowlevel.checkpoint_if_cancelled()
            with trio.CancelScope(shield=True):
                await self._write(event.data)
        else:
            with trio.CancelScope(shield=True):
                await super().protocol_send(event)

    async def _write(self, data: bytes) -> None:
        if self.websocket_timeout is not None and is_websocket(self):
            await self._write_websocket(data, self.websocket_timeout)
            return
        async with self.send_lock:
            broken = False
            with trio.move_on_after(self.write_timeout) as timer:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError,
                        trio.BusyResourceError):  # hypercorn's `_close` half-closing under it
                    broken = True
            if timer.cancelled_caught:
                logger.info("client %s did not read a response within %.0f s: disconnected",
                            self._peer(), self.write_timeout)
                await close_stream(self.stream)  # ends the read loop, hence the connection
                broken = True
        if broken:
            await self.protocol.handle(Closed())

    async def _write_websocket(self, data: bytes, seconds: float) -> None:
        async with self.send_lock:
            try:
                if await write_websocket(self.stream, data, seconds):
                    return
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await close_stream(self.stream)  # ends the read loop, hence the connection
        await self.protocol.handle(Closed())

    def _peer(self) -> str:
        return peer(self.stream)

    async def _read_data(self) -> None:
        # hypercorn's loop, with two changes. A connection that breaks (its client reset it;
        # over TLS, closed it without a close_notify) ends as one its client closed, so h11
        # knows it is gone. And once reading has ended, nothing more can come: the keep-alive
        # timer is stopped, so an idle connection closes at once (hypercorn left it open until
        # the timer ran out: after a keep-alive response, a client's close went unnoticed).
        while True:
            try:
                with trio.fail_after(self.config.read_timeout or math.inf):
                    data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.TooSlowError):
                break
            except trio.BrokenResourceError:
                data = b""
            await self.protocol.handle(RawData(bytes(data)))
            if not data:
                break
        await self.protocol.handle(Closed())  # a request in progress learns its client is gone
        await self.idle_task.stop()

    async def _close(self) -> None:
        if isinstance(self.stream, trio.SSLStream):
            await close_stream(self.stream)  # hypercorn's close_notify has no time bound
        else:
            await super()._close()

    async def _initiate_server_close(self) -> None:
        await self.protocol.handle(Closed())
        await close_stream(self.stream)

    async def _idle_timeout(self) -> None:
        # idle while this runs: a new request cancels it from outside (then nothing more
        # happens); the keep-alive timeout, an eviction or the worker's end close the connection
        with trio.move_on_after(self.config.keep_alive_timeout) as timer:
            self.table.became_idle(self, timer)
            try:
                await self.context.terminated.wait()
            finally:
                self.table.became_busy(self, timer)
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()


async def _refuse(stream: ClientStream) -> None:
    """Send `REFUSAL`, then read (and drop) what the client sent until it closes, for at most
    1 s in all: closing with its request unread would send a reset, which discards the 503 at
    the client before it reads it. Over TLS (no half-close) the stream is closed after the
    answer; its handshake, done by the first send, is part of that second."""
    with trio.move_on_after(1.0):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(REFUSAL)
            if isinstance(stream, trio.SocketStream):
                await stream.send_eof()
                while await stream.receive_some(65536):
                    pass
            else:
                await stream.aclose()
    await trio.aclose_forcefully(stream)


async def _accept(listener: trio.SocketListener, table: ConnectionTable,
                  connect: Callable[[ClientStream], ClientConnection],
                  handlers: trio.Nursery, tls: ssl.SSLContext | None) -> None:
    warned = False
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in _OUT_OF_DESCRIPTORS:
                raise
            # the reserve was too small: make room as at the cap, and let the kernel breathe
            if not warned:
                logger.warning("accepting a connection failed (%s); closing idle ones",
                               errno.errorcode.get(exc.errno or 0, exc))
                warned = True
            table.evict_oldest_idle()
            await trio.sleep(0.05)
            continue
        client: ClientStream = stream
        if tls is not None:
            client = trio.SSLStream(stream, tls, server_side=True)
        connection = connect(client)
        if table.admit(connection):
            handlers.start_soon(connection.run)
        else:
            handlers.start_soon(_refuse, client)


async def serve_http(app: AppWrapper, config: Config, sock: socket.socket, table: ConnectionTable,
                     *, write_timeout: float, websocket_timeout: float | None = None,
                     tls: ssl.SSLContext | None = None,
                     shutdown_trigger: Callable[[], Awaitable[object]]) -> None:
    """Hypercorn's `worker_serve` for one listening socket, with `ClientConnection`s admitted
    by `table`: lifespan startup, serve until `shutdown_trigger` returns, then let in-flight
    requests finish for `config.graceful_timeout` seconds (idle connections close at once),
    then lifespan shutdown. With `tls` (`server_context`), HTTPS and WSS only: each connection
    first completes a TLS handshake within `config.keep_alive_timeout` seconds."""
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    connect = partial(ClientConnection, app, config, context,
                      ConnectionState(lifespan_state.copy()), table=table,
                      write_timeout=write_timeout, websocket_timeout=websocket_timeout)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as handlers:
            listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            bind = repr_socket_addr(sock.family, sock.getsockname())
            scheme = "http" if tls is None else "https"
            await config.log.info(f"Running on {scheme}://{bind} (CTRL + C to quit)")
            try:
                async with trio.open_nursery() as serving:
                    serving.start_soon(_accept, listener, table, connect, handlers, tls)
                    await shutdown_trigger()
                    serving.cancel_scope.cancel()
            finally:
                await context.terminated.set()
                handlers.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
