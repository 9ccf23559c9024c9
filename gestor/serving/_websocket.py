"""A time bound on each write to a websocket client (used by `ClientConnection`).

Hypercorn's trio `TCPServer.protocol_send` writes under a shielded cancel scope with no
timeout, so once a websocket client stops reading and the socket buffers are full, the write
(and the application task sending, and the socket) wait for ever: an alarm-feed client that
never reads held its connection for good. `ClientConnection` bounds each write on a websocket
connection by `[alarms] send_timeout` seconds with `write_websocket`.

A write first waits while the kernel holds more than a few KiB it could not send (the client's
receive window is closed: it is not reading), so frames are handed to the kernel whole and there
is always room left for one more small frame. A write that cannot start in time ends the
connection: a close frame 1013 "fell behind; reconnect with ?since=<last id>" follows the last
whole frame, then the socket is closed, which frees it and tells the application its client went
away. The client reads its backlog, then the close frame. (Where the kernel can't report unsent
bytes, the write itself is bounded; cut mid-frame, the connection is closed without the frame.)
Over TLS the same holds: the unsent bytes are the encrypted records', the frames go through the
TLS stream, and a write cut by the bound breaks it, so no close frame follows a cut write.
Plain HTTP connections are left as hypercorn writes them.

Upstream, the change would be a `websocket_send_timeout` (or a general write timeout) in
hypercorn's `Config`, honoured by `protocol_send` in its trio and asyncio TCP servers.
"""

from __future__ import annotations

import fcntl
import logging
import struct

import trio
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.trio.tcp_server import TCPServer

from gestor.serving._tls import ClientStream, peer, raw_socket

logger = logging.getLogger("gestor.api")

FELL_BEHIND = "fell behind; reconnect with ?since=<last id>"
_TRY_CLOSE_FOR = 0.05
_SIOCOUTQNSD = 0x894B
#: Unsent bytes a websocket connection may hold before a write waits for its client to read:
#: below what the kernel takes before a write blocks (about 16 KiB on a closed window here).
_UNSENT_LIMIT = 8192
#: How often a waiting write looks again (doubling from the first to the last pause, seconds).
_FIRST_PAUSE = 0.001
_LAST_PAUSE = 0.05
#: TLS records carry at most this much data, and add at most this much to it (header, explicit
#: nonce, CBC padding and MAC or AEAD tag, TLS 1.3's content type).
_TLS_RECORD = 16384
_TLS_RECORD_OVERHEAD = 64


def _close_frame(code: int, reason: str) -> bytes:
    payload = struct.pack("!H", code) + reason.encode("utf-8")
    assert len(payload) <= 125  # a control frame's payload fits its first length byte
    return bytes([0x88, len(payload)]) + payload  # FIN + close; a server's frames are unmasked


_FELL_BEHIND_FRAME = _close_frame(1013, FELL_BEHIND)


def _unsent(sock: trio.socket.SocketType) -> int | None:
    """Bytes written to the socket that the kernel has not sent yet (Linux's SIOCOUTQNSD): they
    pile up only while the peer's receive window is closed. None where the kernel can't tell."""
    try:
        raw = fcntl.ioctl(sock.fileno(), _SIOCOUTQNSD, b"\0\0\0\0")
    except OSError:
        return None
    return int(struct.unpack("i", raw)[0])


async def _room_for(sock: trio.socket.SocketType, size: int, deadline: float) -> bool:
    """Wait until `size` more bytes fit under `_UNSENT_LIMIT` unsent bytes (or none are
    unsent), or the deadline passes (False). Writes of a reading client never wait here; one
    that stops reading is caught while the kernel still takes whole frames, so the frame in
    hand is never cut and a close frame still fits. Where unsent bytes can't be measured, True
    at once: the write itself then waits, and may be cut by the deadline."""
    pause = _FIRST_PAUSE
    while True:
        unsent = _unsent(sock)
        if unsent is None or unsent == 0 or unsent + size <= _UNSENT_LIMIT:
            return True
        if trio.current_time() >= deadline:
            return False
        await trio.sleep(min(pause, max(deadline - trio.current_time(), 0.0)))
        pause = min(pause * 2, _LAST_PAUSE)


def _on_the_wire(size: int, tls: bool) -> int:
    """Bytes `size` bytes of frames take on the socket (over TLS, with each record's header,
    padding and tag: at most `_TLS_RECORD_OVERHEAD` per `_TLS_RECORD` bytes)."""
    if not tls:
        return size
    return size + _TLS_RECORD_OVERHEAD * max(1, -(-size // _TLS_RECORD))


async def write_websocket(stream: ClientStream, data: bytes, seconds: float) -> bool:
    """Write `data` (whole websocket frames) to `stream` (TCP, or TLS over TCP) within
    `seconds`, shielded from cancellation (as hypercorn writes). False when the client did not
    read in time: then the 1013 "fell behind" close frame has been offered after the last whole
    frame, and the caller must close the connection. A broken connection raises OSError or
    trio's resource errors."""
    tls = isinstance(stream, trio.SSLStream)
    sock = raw_socket(stream)
    view = memoryview(data)
    sent = 0  # over TLS: all or nothing known (a cut TLS write breaks the stream)
    deadline = trio.current_time() + seconds
    with trio.CancelScope(shield=True):
        if await _room_for(sock, _on_the_wire(len(view), tls), deadline):
            with trio.move_on_after(deadline - trio.current_time()) as timer:
                if isinstance(stream, trio.SSLStream):
                    await stream.send_all(view)
                    sent = len(view)
                else:
                    while sent < len(view):
                        sent += await sock.send(view[sent:])
            if tls and timer.cancelled_caught:
                sent = -1  # cut somewhere in the frames: no close frame can follow
        if sent == len(view):
            return True
        logger.warning("websocket client %s did not read for %.1f s: disconnected",
                       peer(stream), seconds)
        if sent == 0:  # at a frame boundary: the close frame can follow
            with trio.move_on_after(_TRY_CLOSE_FOR):
                if isinstance(stream, trio.SSLStream):
                    await stream.send_all(_FELL_BEHIND_FRAME)
                else:
                    await sock.send(_FELL_BEHIND_FRAME)
    return False


def is_websocket(server: TCPServer) -> bool:
    """Whether hypercorn's connection `server` carries a websocket (an HTTP/1.1 upgrade, over
    TCP or TLS)."""
    inner = getattr(getattr(server, "protocol", None), "protocol", None)
    return isinstance(getattr(inner, "stream", None), WSStream)
