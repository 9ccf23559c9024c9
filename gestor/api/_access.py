"""What every request gets on its way in and out: a request id, the access log, its metrics.

* `Request-Id`: the client's `X-Request-Id` or `Request-Id` when sane (1-128 characters of
  `A-Za-z0-9._~:/+=@-`), else a new one; set as the log context (`gestor.logs.request_id_var`)
  before anything else runs, so every line logged for the request carries it, echoed in the
  `Request-Id` response header and in problem+json bodies (`request_id`).
* The access log: one line per request on the `gestor.access` logger (method, path, status,
  duration, request id, the caller's key id and client name; never a key), unless
  `[logging] access_log = false`.
* `gestor_http_requests_total` and `gestor_http_request_duration_seconds`, by route template.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

from quart import Response, g, request, websocket

from gestor.logs import request_id_var
from gestor.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

if TYPE_CHECKING:
    from quart import Quart

    from gestor.settings import Settings

__all__ = ["install"]

access_logger = logging.getLogger("gestor.access")
_SANE = re.compile(r"[A-Za-z0-9._~:/+=@-]{1,128}")
_UNMATCHED = "unmatched"
#: A new request id: 32 hex digits, 16 random per process then a counter (unique across
#: workers and nodes without drawing 16 random bytes per request).
_PREFIX = os.urandom(8).hex()
_serial = itertools.count(1)
_started: contextvars.ContextVar[float] = contextvars.ContextVar("gestor_request_started")


def _request_id(headers: object) -> str:
    for name in ("X-Request-Id", "Request-Id"):
        given = headers.get(name)  # type: ignore[attr-defined]
        if given and _SANE.fullmatch(given):
            return str(given)
    return f"{_PREFIX}{next(_serial):016x}"


def install(app: Quart, settings: Settings) -> None:
    """Register the request-id, access-log and metrics hooks; call before any other hook is
    registered (they run first on the way in, last on the way out)."""
    log_access = settings.access_log
    perf_counter = time.perf_counter

    @app.before_request
    async def _begin() -> None:
        _started.set(perf_counter())
        request_id_var.set(_request_id(request.headers))

    @app.after_request
    async def _end(response: Response) -> Response:
        now = perf_counter()
        took = now - _started.get(now)
        request_id = request_id_var.get() or ""
        response.headers["Request-Id"] = request_id
        method = request.method
        rule = request.url_rule
        route = rule.rule if rule is not None else _UNMATCHED
        status = response.status_code
        HTTP_REQUESTS.inc((method, route, str(status)))
        HTTP_REQUEST_SECONDS.observe((method, route), took)
        if log_access and access_logger.isEnabledFor(logging.INFO):
            _log(method, request.path, status, took, request_id)
        return response

    @app.before_websocket
    async def _begin_ws() -> None:
        _started.set(perf_counter())
        request_id_var.set(_request_id(websocket.headers))

    @app.after_websocket
    async def _end_ws(response: Any) -> Any:
        now = perf_counter()
        took = now - _started.get(now)
        status = response.status_code if response is not None else 101
        rule = websocket.url_rule
        route = rule.rule if rule is not None else _UNMATCHED
        HTTP_REQUESTS.inc(("WEBSOCKET", route, str(status)))
        if log_access and access_logger.isEnabledFor(logging.INFO):
            _log("WEBSOCKET", websocket.path, status, took, request_id_var.get() or "")
        return response


def _log(method: str, path: str, status: int, took: float, request_id: str) -> None:
    principal = g.get("principal")
    key_id = principal.key_id if principal is not None else None
    client = principal.name if principal is not None else None
    duration_ms = round(took * 1000, 3)
    who = f" key={key_id} client={client}" if principal is not None else ""
    access_logger.info("%s %s %d %.1fms%s", method, path, status, duration_ms, who, extra={
        "method": method, "path": path, "status": status, "duration_ms": duration_ms,
        "key_id": key_id, "client": client})
