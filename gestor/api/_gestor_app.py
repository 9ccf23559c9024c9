"""`GestorApp`: the Quart-Trio application class and what a worker hangs on it. Its own module so
that the route modules can name it without importing `_app`, which imports them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart_trio import QuartTrio

if TYPE_CHECKING:
    from gestor.keyring import KeyRing
    from gestor.ratelimits import RateLimiter
    from gestor.runtime import Runtime
    from gestor.serving import ConnectionTable


class GestorApp(QuartTrio):
    runtime: Runtime
    #: Set when shutdown begins: responses then carry `Connection: close`, telling clients to
    #: reconnect (to another worker or node) for their next request.
    draining: bool = False
    #: The worker's client connections, when served by `gestor.workers.serve_app`.
    connections: ConnectionTable | None = None
    #: The stored API keys as this worker sees them (gestor/keyring.py).
    keyring: KeyRing
    #: Rate limits per calling key and per msisdn (gestor.api._limits enforces them).
    limiter: RateLimiter
