"""The HTTP and websocket front (Quart-Trio): the three calls, the alarm feed, health checks."""

from gestor.api._app import GestorApp, create_app
from gestor.api._problems import ApiProblem, problem

__all__ = ["ApiProblem", "GestorApp", "create_app", "problem"]
