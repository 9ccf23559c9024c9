"""A small client of a Gestor server's own admin API, for the `gestor rules` and
`gestor catalogue` commands."""

from __future__ import annotations

from typing import Any

import httpx


class AdminApiError(Exception):
    """The server refused or could not be reached; `problem` is its problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or f"HTTP {status}")
        self.status = status
        self.problem = problem


class GestorAdmin:
    def __init__(self, url: str, key: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {key}"})

    def __enter__(self) -> GestorAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise AdminApiError(0, {"code": "UNREACHABLE", "detail": str(exc)}) from exc
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {"detail": response.text[:500]}
        if response.status_code >= 400:
            raise AdminApiError(response.status_code, body)
        return body

    def create(self, source: str, description: str = "", kind: str = "rules"
               ) -> dict[str, Any]:
        """Store `source` as a draft version of `kind` (`rules` or `catalogue`)."""
        return self._call("POST", f"/v1/admin/{kind}",
                          json={"source": source, "description": description})

    def activate(self, version: int, kind: str = "rules") -> dict[str, Any]:
        return self._call("POST", f"/v1/admin/{kind}/{version}/activate")

    def dry_run(self, source: str, msisdns: list[str], channel: str | None,
                bono_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"source": source, "msisdns": msisdns}
        if channel:
            body["channel"] = channel
        if bono_id:
            body["bono_id"] = bono_id
        return self._call("POST", "/v1/admin/rules/dry-run", json=body)
