"""Serving HTTP to clients: hypercorn's trio worker with a bounded, self-closing set of client
connections (keep-alive timeout, `Connection: close` honoured, a per-worker cap kept below the
descriptor limit)."""

from gestor.serving._connections import ConnectionStatistics, ConnectionTable
from gestor.serving._descriptors import connection_cap, descriptor_reserve, raise_descriptor_limit
from gestor.serving._hypercorn import REFUSAL, ClientConnection, serve_http

__all__ = [
    "REFUSAL",
    "ClientConnection",
    "ConnectionStatistics",
    "ConnectionTable",
    "connection_cap",
    "descriptor_reserve",
    "raise_descriptor_limit",
    "serve_http",
]
