"""What every request passes before its route, and the answer of last resort.

* Size and type of a body, from the request's head: over `max_request_bytes` is `413`; a body
  that is not `application/json` (or `application/toml` on the routes that take a rule set) is
  `415`, a missing `Content-Type` included (see `_body`).
* An exception no handler expected is logged once, with its traceback and a request id, and
  answered `500 INTERNAL_ERROR` (problem+json carrying the same id). It should never happen:
  the fuzz test in tests/integration/test_fuzz.py holds every route to that.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from quart import Response, has_request_context, request, websocket
from werkzeug.exceptions import HTTPException

from gestor.api._body import JSON, TOML, check_media_type, has_body
from gestor.api._problems import ApiProblem, problem
from gestor.logs import request_id_var

if TYPE_CHECKING:
    from quart import Quart

logger = logging.getLogger("gestor.api")

#: Routes (by rule) whose body may be TOML (a rule set, a catalogue) as well as JSON.
TOML_ROUTES = frozenset({"/v1/admin/rules", "/v1/admin/rules/validate",
                         "/v1/admin/catalogue", "/v1/admin/catalogue/validate"})
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def install(app: Quart, max_request_bytes: int) -> None:
    """Register the body checks and the catch-all error handler on `app`."""

    @app.before_request
    async def _check_body() -> None:
        if request.method in _NO_BODY_METHODS or request.routing_exception is not None:
            return  # a GET's body is never read; an unknown route is answered 404/405
        length = request.content_length
        if length is not None and length > max_request_bytes:
            raise ApiProblem(413, "REQUEST_TOO_LARGE",
                             f"a request body is at most {max_request_bytes} bytes", field="body")
        if not has_body(request.headers):
            return
        rule = request.url_rule.rule if request.url_rule is not None else ""
        accepted = (JSON, TOML) if rule in TOML_ROUTES else (JSON,)
        check_media_type(request.mimetype or "", request.mimetype_params, accepted)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, ApiProblem):  # pragma: no cover - its own handler answers first
            return exc.response()
        if isinstance(exc, HTTPException):  # pragma: no cover - likewise
            return problem(exc.code or 500, "HTTP_ERROR", exc.description or "error")
        request_id = request_id_var.get() or uuid.uuid4().hex  # the Request-Id header's
        method, path = ((request.method, request.path) if has_request_context()
                        else ("WEBSOCKET", websocket.path))
        logger.error("unexpected error answering %s %s (request %s)", method, path[:200],
                     request_id, exc_info=exc)
        return problem(500, "INTERNAL_ERROR",
                       f"an unexpected error occurred; it was logged as request {request_id}",
                       request_id=request_id, headers={"Gestor-Request-Id": request_id})
