"""A minimal HTTP/1.1 keep-alive client over a trio socket: just enough for the load generator.

No HTTP library on purpose: the load generator shares the box's two cores with the server, so
every microsecond it spends parsing is one the server does not get. Requests are pre-built
bytes; responses are parsed for the status, the body (Content-Length or chunked) and whether
it is a problem document or asks to close the connection.
"""

from __future__ import annotations

import trio

_CRLF2 = b"\r\n\r\n"


class ConnectionLost(Exception):
    """The server closed the connection (or sent garbage) in the middle of an exchange."""


class HttpConnection:
    __slots__ = ("_buf", "closed", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        stream = await trio.open_tcp_stream(host, port)
        return cls(stream)

    async def aclose(self) -> None:
        self.closed = True
        await self.stream.aclose()

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ConnectionLost("connection closed by the server")
        self._buf += chunk

    async def roundtrip(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send `request`, read one response: (status, body, is_problem_json)."""
        await self.stream.send_all(request)
        buf = self._buf
        while (end := buf.find(_CRLF2)) < 0:
            await self._fill()
        head = bytes(buf[:end]).lower()
        try:
            status = int(head[9:12])
        except ValueError as exc:
            raise ConnectionLost(f"bad status line {head[:40]!r}") from exc
        start = end + 4
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            total = start + int(head[i + 17:j if j >= 0 else len(head)])
            while len(buf) < total:
                await self._fill()
            body = bytes(buf[start:total])
            del buf[:total]
        elif b"\r\ntransfer-encoding: chunked" in head:
            del buf[:start]
            body = await self._chunked()
        else:
            del buf[:start]
            body = b""
        if b"\r\nconnection: close" in head:
            self.closed = True
        return status, body, b"problem+json" in head

    async def _chunked(self) -> bytes:
        buf = self._buf
        parts: list[bytes] = []
        while True:
            while (eol := buf.find(b"\r\n")) < 0:
                await self._fill()
            size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
            del buf[:eol + 2]
            if size == 0:
                while (eol := buf.find(b"\r\n")) != 0:  # trailers, then the blank line
                    if eol < 0:
                        await self._fill()
                    else:
                        del buf[:eol + 2]
                del buf[:2]
                return b"".join(parts)
            while len(buf) < size + 2:
                await self._fill()
            parts.append(bytes(buf[:size]))
            del buf[:size + 2]
