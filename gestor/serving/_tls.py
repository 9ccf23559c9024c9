"""TLS for client connections: the server's `ssl.SSLContext` (built once per worker from
`[server] certfile/keyfile`, each problem with them one line), the handshake of an accepted
connection, and a plain-HTTP request sent to the TLS port answered `400` in plain text.

Hypercorn's own TLS (`Config.certfile`, `ssl_enabled`) belongs to its `worker_serve`, which
`serve_http` replaces: the accept loop wraps each accepted socket in a `trio.SSLStream` here, so
the handshake is bounded by the keep-alive timeout and counts as idle time under the connection
cap (`ClientConnection.run`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from pathlib import Path
from typing import TypeAlias

import trio

logger = logging.getLogger("gestor")

#: What `ClientConnection` serves: a TCP connection, or TLS over one.
ClientStream: TypeAlias = trio.SocketStream | trio.SSLStream[trio.SocketStream]

#: Seconds a TLS connection being closed gets to take its close_notify; then it is cut.
CLOSE_NOTIFY_TIMEOUT = 1.0
#: After answering a plain-HTTP request: at most this many bytes of it, for at most this many
#: seconds, are read (and dropped) before the socket is closed, so that the close is a FIN the
#: client reads after the answer, not a reset that may discard the answer.
_DRAIN_BYTES = 65536
_DRAIN_FOR = 1.0

_PLAIN_HTTP_BODY = json.dumps({
    "type": "https://gestor.dev/problems/tls-required",
    "title": "Bad Request",
    "status": 400,
    "code": "TLS_REQUIRED",
    "detail": "this port serves HTTPS only: use https:// (wss:// for the alarm feed)",
}, separators=(",", ":")).encode()
#: Answer, in plain text, to a plain-HTTP request on the TLS port; then it is closed.
PLAIN_HTTP_REFUSAL = (b"HTTP/1.1 400 Bad Request\r\n"
                      b"content-type: application/problem+json\r\n"
                      b"connection: close\r\n"
                      b"content-length: " + str(len(_PLAIN_HTTP_BODY)).encode() + b"\r\n"
                      b"\r\n" + _PLAIN_HTTP_BODY)


class TLSConfigError(Exception):
    """The certificate or key cannot serve TLS: `what` is wrong, `where` (a file)."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(what)
        self.what = what
        self.where = where

    def __str__(self) -> str:
        return f"{self.what} ({self.where})"


class _Encrypted(Exception):
    """The key asked for a passphrase (raised by the password callback, so none is prompted)."""


def _ask_no_passphrase() -> bytes:
    raise _Encrypted


def _readable(path: Path, what: str) -> None:
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise TLSConfigError(f"cannot read the TLS {what}: {reason}", str(path)) from None


def server_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """The server side of TLS with `certfile` (PEM: the certificate, then any intermediates)
    and `keyfile` (PEM, unencrypted; may be the same file): TLS 1.2 or later, HTTP/1.1 by
    ALPN, no renegotiation. `TLSConfigError` names the file at fault: missing or unreadable,
    not a certificate, not a key, an encrypted key, a key that is not the certificate's."""
    _readable(certfile, "certificate")
    _readable(keyfile, "key")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_verify_locations(cafile=certfile)
    except ssl.SSLError:
        raise TLSConfigError("the TLS certificate file holds no PEM certificate",
                             str(certfile)) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(certfile, keyfile, password=_ask_no_passphrase)
    except _Encrypted:
        raise TLSConfigError("the TLS key is encrypted: give it unencrypted (readable by "
                             "Gestor's user only)", str(keyfile)) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError("the TLS key does not match the certificate",
                                 f"{keyfile}, certificate {certfile}") from None
        raise TLSConfigError("the TLS key file holds no PEM private key",
                             str(keyfile)) from None
    except OSError as exc:  # changed since it was read above
        raise TLSConfigError(f"cannot read the TLS certificate or key: {exc}",
                             f"{certfile}, {keyfile}") from None
    return context


def raw_socket(stream: ClientStream) -> trio.socket.SocketType:
    """The TCP socket under `stream`."""
    if isinstance(stream, trio.SSLStream):
        return stream.transport_stream.socket
    return stream.socket


def peer(stream: ClientStream) -> str:
    try:
        host, port, *_ = raw_socket(stream).getpeername()
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"


def _is_plain_http(exc: BaseException) -> bool:
    """Whether a failed handshake read an HTTP request head instead of a TLS ClientHello
    (OpenSSL recognises GET, POST, HEAD, PUT and CONNECT)."""
    cause = exc.__cause__
    return isinstance(cause, ssl.SSLError) and cause.reason in ("HTTP_REQUEST",
                                                                "HTTPS_PROXY_REQUEST")


async def _answer_plain_http(transport: trio.SocketStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await transport.send_all(PLAIN_HTTP_REFUSAL)
        await transport.send_eof()
        drained = 0
        with trio.move_on_after(_DRAIN_FOR):
            while drained < _DRAIN_BYTES and (chunk := await transport.receive_some()):
                drained += len(chunk)


async def handshake(stream: trio.SSLStream[trio.SocketStream]) -> bool:
    """Complete the TLS handshake of an accepted connection (the caller bounds it in time).
    False if it failed: a plain-HTTP request has then been answered `400`; the caller closes
    the connection."""
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        if _is_plain_http(exc):
            logger.debug("client %s sent plain HTTP to the TLS port: answered 400", peer(stream))
            await _answer_plain_http(stream.transport_stream)
        else:
            logger.debug("TLS handshake with %s failed: %s", peer(stream), exc.__cause__ or exc)
        return False
    return True


async def close_stream(stream: ClientStream) -> None:
    """Close `stream`; over TLS, its close_notify gets `CLOSE_NOTIFY_TIMEOUT` seconds (a client
    that reads nothing, or never finished its handshake, must not hold it), then the socket is
    closed regardless."""
    if isinstance(stream, trio.SSLStream):
        with trio.move_on_after(CLOSE_NOTIFY_TIMEOUT), \
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.aclose()  # when cut, trio closes the transport
        await trio.aclose_forcefully(stream.transport_stream)
    else:
        await stream.aclose()
