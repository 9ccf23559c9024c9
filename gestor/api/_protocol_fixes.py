"""Local fixes to hypercorn's HTTP/1.1 layer (hypercorn 0.18) for requests too broken for the
app to see, applied once by `create_app` (so `gestor serve` and the tests get them alike).

1. A request whose framing h11 cannot parse is answered with h11's status hint, which is
   `501` for a `Transfer-Encoding` other than `chunked`: a 5xx for the client's bad input.
   Gestor answers every unparseable request `400` (`431` for oversized heads stays).
   Upstream: `H11Protocol._handle_events` could cap `error.error_status_hint` to 4xx (or make
   the mapping configurable).
2. When a client pipelines garbage behind a request, hypercorn closes the connection while the
   app may still be sending its answer: `TCPServer._close` half-closes the socket (`send_eof`)
   without the send lock, so the app's concurrent `send_all` fails with `BusyResourceError`,
   logged as "Error in ASGI Framework" with a traceback. That send is treated like one to a
   peer that has gone (`BrokenResourceError`), which is what it is.
   Upstream: `TCPServer._close` should take `send_lock` around `send_eof` (or `protocol_send`
   should catch `BusyResourceError` with the other two).
3. Bytes after a request with `Connection: close` made h11 raise, and hypercorn answered `400`
   in place of the app's answer while the app still ran the request: a purchase or a change
   could be made while its client was told "bad request". RFC 9112 §9.6: after a request with
   `close` the server processes nothing further on the connection; so those bytes are ignored,
   the app's answer is sent and the connection closed.
   Upstream: `H11Protocol._handle_events` should stop reading once h11's `their_state` is
   `MUST_CLOSE`.
4. A websocket handshake refused by hypercorn itself (no `Sec-WebSocket-Key`, a wrong
   `Sec-WebSocket-Version`, data before the accept) got a `400` saying `connection: close`, and
   then the connection was never closed, nor counted idle: `WSStream` sent the response but
   never `StreamClosed`, so `H11Protocol` waited for ever for the stream to end. One such
   request held a socket (and a place under the connection cap) for as long as its client
   liked. The stream now ends after such a refusal, and the connection closes.
   Upstream: `WSStream.handle` should `send(StreamClosed(...))` after each
   `_send_error_response` it makes without an app to finish the stream.
"""

from __future__ import annotations

from typing import Any

import h11
import trio
from hypercorn.events import Closed
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.trio.tcp_server import TCPServer

_APPLIED = False


class _ServerConnection(h11.Connection):
    """h11's server side, reading nothing after a request that asked to close."""

    def next_event(self) -> Any:
        if self.their_state is h11.MUST_CLOSE:
            return h11.NEED_DATA  # the end of the stream is seen by hypercorn's reader
        return super().next_event()


def apply() -> None:
    """Patch hypercorn's classes (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    send_error_response = H11Protocol._send_error_response
    protocol_send = TCPServer.protocol_send
    init = H11Protocol.__init__

    def __init__(self: H11Protocol, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self.connection) is h11.Connection:
            self.connection.__class__ = _ServerConnection

    async def _send_error_response(self: H11Protocol, status_code: int) -> None:
        await send_error_response(self, 400 if status_code >= 500 else status_code)

    async def _protocol_send(self: TCPServer, event: Any) -> None:
        try:
            await protocol_send(self, event)
        except trio.BusyResourceError:  # the connection is being closed under this send
            await self.protocol.handle(Closed())

    ws_handle = WSStream.handle

    async def _ws_handle(self: WSStream, event: Any) -> None:
        was_closed = self.closed
        await ws_handle(self, event)
        if self.closed and not was_closed and not isinstance(event, StreamClosed):
            # refused during the handshake (fix 4): end the stream, so the connection closes
            await self.send(StreamClosed(stream_id=self.stream_id))

    H11Protocol.__init__ = __init__  # type: ignore[method-assign]
    WSStream.handle = _ws_handle  # type: ignore[method-assign]
    H11Protocol._send_error_response = _send_error_response  # type: ignore[method-assign]
    TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]
