"""The HTTP and websocket front (Quart-Trio): the three calls, the alarm feed, health checks."""

from gestor.api._app import GestorApp, create_app
from gestor.api._problems import ApiProblem, problem
from gestor.api._ws_transport import (
    FELL_BEHIND,
    bound_websocket_sends,
    is_websocket,
    write_websocket,
)

__all__ = ["FELL_BEHIND", "ApiProblem", "GestorApp", "bound_websocket_sends", "create_app",
           "is_websocket", "problem", "write_websocket"]
