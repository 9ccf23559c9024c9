"""The rate limits' one hook into the request path: `enforce` takes a token for the calling key
and the msisdn a call is about, or refuses the call with `429 RATE_LIMITED` before anything is
done (gestor.ratelimits)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gestor.api._auth import request_client
from gestor.api._problems import ApiProblem
from gestor.settings import Settings

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp


def enforce(app: GestorApp, settings: Settings, kind: str, msisdn: str | None = None) -> None:
    """Admit one `kind` call (purchase, list, status) about `msisdn` (if any) by the calling
    key, or raise the 429 that says which limit and when to come back."""
    limiter = app.limiter
    if not limiter.enabled:
        return
    refusal = limiter.check(kind, request_client(settings), msisdn)
    if refusal is None:
        return
    scope = refusal.limit.partition(":")[0]
    whose = "this API key" if scope == "key" else f"mobile {msisdn}"
    raise ApiProblem(
        429, "RATE_LIMITED",
        f"rate limit {refusal.limit} reached: {whose} may make {refusal.rate:g} {kind} "
        f"calls a second (bursts of {refusal.burst:g}); nothing was done, retry after "
        f"{refusal.retry_after} s", limit=refusal.limit, retry_after=refusal.retry_after,
        headers={"Retry-After": str(refusal.retry_after)},
    )
