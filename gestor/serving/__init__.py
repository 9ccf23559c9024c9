"""Serving HTTP to clients: hypercorn's trio worker with a bounded, self-closing set of client
connections (keep-alive timeout, `Connection: close` honoured, a per-worker cap kept below the
descriptor limit; websocket writes bounded by `[alarms] send_timeout`)."""

from gestor.serving._connections import ConnectionStatistics, ConnectionTable
from gestor.serving._descriptors import connection_cap, descriptor_reserve, raise_descriptor_limit
from gestor.serving._hypercorn import REFUSAL, ClientConnection, serve_http
from gestor.serving._websocket import FELL_BEHIND, is_websocket, write_websocket

__all__ = [
    "FELL_BEHIND",
    "REFUSAL",
    "ClientConnection",
    "ConnectionStatistics",
    "ConnectionTable",
    "connection_cap",
    "descriptor_reserve",
    "is_websocket",
    "raise_descriptor_limit",
    "serve_http",
    "write_websocket",
]
