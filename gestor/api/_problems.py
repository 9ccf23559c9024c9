"""RFC 9457 problem details: every error the API returns, with a stable `code`."""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Response

from gestor.logs import request_id_var

PROBLEM_TYPE = "https://gestor.dev/problems/"
_encode = msgspec.json.Encoder().encode


class ApiProblem(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(self, status: int, code: str, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> Response:
        return problem(self.status, self.code, self.detail, field=self.field,
                       headers=self.headers, **self.extra)


_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Request too large",
    415: "Unsupported media type", 422: "Unprocessable request", 429: "Too many requests",
    500: "Internal error", 503: "Service unavailable", 504: "Gateway timeout",
}


def problem(status: int, code: str, detail: str, *, field: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code.lower().replace("_", "-"),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    body.update(extra)
    if "request_id" not in body:
        request_id = request_id_var.get()
        if request_id is not None:  # the request's Request-Id (gestor/api/_access.py)
            body["request_id"] = request_id
    return Response(_encode(body), status=status, headers=headers,
                    content_type="application/problem+json")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(body), status=status, headers=headers,
                    content_type="application/json")
