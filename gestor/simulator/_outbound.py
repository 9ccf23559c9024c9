"""The simulator's one outbound HTTP call: ``POST`` a JSON body, read the answer's status.

Written here rather than borrowed: the simulator imports nothing of the rest of Gestor, and
Gestor's client (``gestor.platforms._http``) is built for thousands of calls a second (a pool
of raw keep-alive sockets, answers parsed without h11). A top-up notification is one request
now and then, so this is the plainest correct thing: a fresh connection per request
(``connection: close``), h11 both ways, TLS for ``https`` URLs with the system's trust store.
The answer's body is not read. No timeouts of its own: the caller bounds the call.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import h11
import trio

__all__ = ["OutboundError", "post_json"]

_RECEIVE_SIZE = 65536
_MAX_HEAD = 65536


class OutboundError(Exception):
    """No answer: the connection failed, broke, or the answer was not HTTP."""


async def post_json(
    url: str,
    body: bytes,
    headers: Sequence[tuple[str, str]] = (),
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """``POST`` ``body`` (JSON) to ``url`` with ``headers``; the HTTP status of the answer.

    Raises :class:`OutboundError` when no answer comes (the caller cannot tell whether the
    request was acted on) and ``ValueError`` for a URL that is not http(s).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL must be http:// or https:// with a host")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    protocol = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
    request = h11.Request(
        method="POST",
        target=target,
        headers=[
            ("host", host),
            ("user-agent", "gestor-simulator"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
            *headers,
        ],
    )
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
        if secure:
            context = ssl_context or ssl.create_default_context()
            stream = trio.SSLStream(stream, context, server_hostname=parts.hostname)
        async with stream:
            await stream.send_all(
                protocol.send(request)
                + protocol.send(h11.Data(data=body))
                + protocol.send(h11.EndOfMessage())
            )
            while True:
                event = protocol.next_event()
                if event is h11.NEED_DATA:
                    protocol.receive_data(bytes(await stream.receive_some(_RECEIVE_SIZE)))
                elif type(event) is h11.Response:
                    return event.status_code
                elif type(event) is not h11.InformationalResponse:
                    raise OutboundError(f"no answer ({type(event).__name__})")
    except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
        raise OutboundError(f"{type(exc).__name__}: {exc}") from exc
