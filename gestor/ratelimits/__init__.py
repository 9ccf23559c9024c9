"""Rate limits: token buckets per calling key and per msisdn, by call kind, enforced by each
worker without I/O on the request path and shared by every worker and node through PostgreSQL
(an approximation with a stated bound: docs/rate-limits.md)."""

from gestor.ratelimits._bucket import Bucket
from gestor.ratelimits._config import DEFAULT_LIMITS, KINDS, SCOPES, Limit, LimitSettings
from gestor.ratelimits._limiter import (
    RateLimiter,
    Report,
    open_rate_limiter,
)

__all__ = [
    "DEFAULT_LIMITS",
    "KINDS",
    "SCOPES",
    "Bucket",
    "Limit",
    "LimitSettings",
    "RateLimiter",
    "Report",
    "open_rate_limiter",
]
