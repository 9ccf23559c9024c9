"""Serving HTTP to clients: hypercorn's trio worker with a bounded, self-closing set of client
connections (keep-alive timeout, `Connection: close` honoured, a per-worker cap kept below the
descriptor limit; websocket writes bounded by `[alarms] send_timeout`), over TCP or TLS."""

from gestor.serving._connections import ConnectionStatistics, ConnectionTable
from gestor.serving._descriptors import connection_cap, descriptor_reserve, raise_descriptor_limit
from gestor.serving._hypercorn import REFUSAL, ClientConnection, serve_http
from gestor.serving._sockets import listening_socket
from gestor.serving._tls import PLAIN_HTTP_REFUSAL, TLSConfigError, server_context
from gestor.serving._websocket import FELL_BEHIND, is_websocket, write_websocket

__all__ = [
    "FELL_BEHIND",
    "PLAIN_HTTP_REFUSAL",
    "REFUSAL",
    "ClientConnection",
    "ConnectionStatistics",
    "ConnectionTable",
    "TLSConfigError",
    "connection_cap",
    "descriptor_reserve",
    "is_websocket",
    "listening_socket",
    "raise_descriptor_limit",
    "serve_http",
    "server_context",
    "write_websocket",
]
