"""A time bound on each write to a websocket client: a hypercorn shim.

Hypercorn's trio `TCPServer.protocol_send` writes under a shielded cancel scope with no
timeout, so once a websocket client stops reading and the socket buffers are full, the write
(and the application task sending, and the socket) wait for ever: an alarm-feed client that
never reads held its connection for good. `WebsocketSendTimeoutServer` bounds each write on a
websocket connection by `config.websocket_send_timeout` seconds. A write that cannot finish in
time ends the connection: if it had not begun (the stream is at a frame boundary), a close frame
1013 "fell behind; reconnect with ?since=<last id>" is offered to the socket without waiting for
it; then the socket is closed, which frees it and tells the application its client went away.
Plain HTTP connections are left as hypercorn writes them.

Upstream, the change would be a `websocket_send_timeout` (or a general write timeout) in
hypercorn's `Config`, honoured by `protocol_send` in its trio and asyncio TCP servers.
"""

from __future__ import annotations

import logging
import struct

import hypercorn.trio.run
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.trio.tcp_server import TCPServer

logger = logging.getLogger("gestor.api")

FELL_BEHIND = "fell behind; reconnect with ?since=<last id>"
_TRY_CLOSE_FOR = 0.05


def _close_frame(code: int, reason: str) -> bytes:
    payload = struct.pack("!H", code) + reason.encode("utf-8")
    assert len(payload) <= 125  # a control frame's payload fits its first length byte
    return bytes([0x88, len(payload)]) + payload  # FIN + close; a server's frames are unmasked


_FELL_BEHIND_FRAME = _close_frame(1013, FELL_BEHIND)


def _peer(sock: trio.socket.SocketType) -> str:
    try:
        host, port, *_ = sock.getpeername()
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"


class WebsocketSendTimeoutServer(TCPServer):
    """Hypercorn's trio TCP server, with each websocket write bounded in time (see module)."""

    def _websocket_send_timeout(self) -> float | None:
        timeout = getattr(self.config, "websocket_send_timeout", None)
        if timeout is None or not hasattr(self.stream, "socket"):  # TLS: as hypercorn does
            return None
        inner = getattr(getattr(self, "protocol", None), "protocol", None)
        return timeout if isinstance(getattr(inner, "stream", None), WSStream) else None

    async def protocol_send(self, event: Event) -> None:
        timeout = self._websocket_send_timeout() if isinstance(event, RawData) else None
        if timeout is None:
            await super().protocol_send(event)
            return
        assert isinstance(event, RawData)
        sock = self.stream.socket
        data = memoryview(event.data)
        sent = 0
        async with self.send_lock:
            try:
                with trio.CancelScope(shield=True), trio.move_on_after(timeout) as timer:
                    while sent < len(data):
                        sent += await sock.send(data[sent:])
                if not timer.cancelled_caught:
                    return
                logger.warning("websocket client %s did not read for %.1f s: disconnected",
                               _peer(sock), timeout)
                if sent == 0:
                    with trio.CancelScope(shield=True), trio.move_on_after(_TRY_CLOSE_FOR):
                        await sock.send(_FELL_BEHIND_FRAME)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await self.stream.aclose()
        await self.protocol.handle(Closed())


def bound_websocket_sends(config: Config, timeout: float) -> None:
    """Have hypercorn's trio worker serve with `WebsocketSendTimeoutServer`, bounding each
    websocket write to `timeout` seconds. Call before `hypercorn.trio.serve`/`worker_serve`."""
    config.websocket_send_timeout = timeout  # type: ignore[attr-defined]
    setattr(hypercorn.trio.run, "TCPServer", WebsocketSendTimeoutServer)  # noqa: B010
