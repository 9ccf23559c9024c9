"""A small client of a Gestor server's own admin API, for the `gestor rules`, `gestor
catalogue` and `gestor mobile` commands, on the HTTP/1.1 client of `gestor.platforms` (http, or
https checked against the system's trust store, which `SSL_CERT_FILE` can replace). Each call is
bounded by `call_timeout` seconds."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import attrs
import msgspec
import trio

from gestor.platforms import HTTPClient, HTTPError


class AdminApiError(Exception):
    """The server refused or could not be reached; `problem` is its problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or f"HTTP {status}")
        self.status = status
        self.problem = problem


def _unreachable(detail: str) -> AdminApiError:
    return AdminApiError(0, {"code": "UNREACHABLE", "detail": detail})


@attrs.define
class GestorAdmin:
    """Calls of the admin API at `url` (a base URL: its path prefixes every call's)."""

    url: str
    key: str
    _http: HTTPClient
    call_timeout: float = 30.0  # seconds, per call

    async def _call(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        headers = [("authorization", f"Bearer {self.key}"), ("accept", "application/json")]
        with trio.move_on_after(self.call_timeout):
            try:
                response = await self._http.request(
                    method, self.url + path, headers=headers, json=body
                )
            except (HTTPError, ValueError) as exc:  # ValueError: a URL it cannot use
                raise _unreachable(str(exc)) from exc
            try:
                answer = response.json()
            except msgspec.DecodeError:
                answer = None
            problem: dict[str, Any] = (
                answer if isinstance(answer, dict) else {"detail": response.text[:500]}
            )
            if response.status >= 400:
                raise AdminApiError(response.status, problem)
            return problem
        raise _unreachable(f"no answer from {self.url} within {self.call_timeout:g} s")

    async def create(self, source: str, description: str = "", kind: str = "rules"
                     ) -> dict[str, Any]:
        """Store `source` as a draft version of `kind` (`rules` or `catalogue`)."""
        return await self._call(
            "POST", f"/v1/admin/{kind}", {"source": source, "description": description}
        )

    async def report(self, name: str, params: dict[str, str]) -> dict[str, Any]:
        """`GET /v1/admin/reports/<name>?<params>` (JSON)."""
        return await self._call("GET", f"/v1/admin/reports/{name}?{urlencode(params)}")

    async def statistics(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/admin/statistics")

    async def mobile(self, msisdn: str, channel: str | None = None) -> dict[str, Any]:
        """A subscriber through the profiler (`GET /v1/admin/mobiles/{msisdn}`)."""
        query = f"?{urlencode({'channel': channel})}" if channel else ""
        return await self._call("GET", f"/v1/admin/mobiles/{quote(msisdn, safe='')}{query}")

    async def activate(self, version: int, kind: str = "rules") -> dict[str, Any]:
        return await self._call("POST", f"/v1/admin/{kind}/{version}/activate")

    async def dry_run(
        self, source: str, msisdns: list[str], channel: str | None, bono_id: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"source": source, "msisdns": msisdns}
        if channel:
            body["channel"] = channel
        if bono_id:
            body["bono_id"] = bono_id
        return await self._call("POST", "/v1/admin/rules/dry-run", body)


@contextlib.asynccontextmanager
async def open_admin(
    url: str, key: str, *, call_timeout: float = 30.0
) -> AsyncIterator[GestorAdmin]:
    """A client of the admin API at `url`, its connection closed on exit."""
    if not key.isascii() or not key.isprintable() or key != key.strip():
        # said here, so that no error message ever quotes the header that would carry it
        raise AdminApiError(0, {"code": "BAD_KEY", "detail": "the admin key holds characters "
                                "an HTTP header cannot carry"})
    async with HTTPClient() as http:
        yield GestorAdmin(url.rstrip("/"), key, http, call_timeout)
