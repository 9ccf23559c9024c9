"""The HTTP and websocket front (Quart-Trio): the three calls, the alarm feed, health checks."""

from gestor.api._app import create_app
from gestor.api._gestor_app import GestorApp
from gestor.api._problems import ApiProblem

__all__ = ["ApiProblem", "GestorApp", "create_app"]
