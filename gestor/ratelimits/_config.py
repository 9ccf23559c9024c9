"""What is rate limited and how much: a token bucket (rate, burst) per call kind, per calling
key and per msisdn, as `[limits]` in `config/gestor.toml` gives them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

#: The call kinds that have buckets, and the routes each covers.
KINDS: Mapping[str, str] = {
    "purchase": "POST /v1/purchases",
    "transfer": "POST /v1/transfers",
    "advance": "POST /v1/advances",
    "topup": "POST /v1/topups",
    "list": "GET /v1/mobiles/{msisdn}/bonos",
    "status": "GET /v1/transactions/{id}, GET /v1/mobiles/{msisdn}/transactions",
}

#: Whose buckets: the calling key (its name), and the mobile a call is about.
SCOPES = ("key", "msisdn")


@attrs.frozen
class Limit:
    """A token bucket: `burst` requests at once, refilled at `rate` per second. A rate of 0
    means no limit."""

    rate: float
    burst: float

    @property
    def off(self) -> bool:
        return self.rate <= 0

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "burst": self.burst}


#: The shipped defaults: generous per key (a channel's whole traffic; tune to each channel's
#: contract), tighter per msisdn (a subscriber buys a few bonos a day: a channel retrying in a
#: loop must not hammer the platforms for one mobile).
DEFAULT_LIMITS: Mapping[str, Mapping[str, Limit]] = {
    "key": {
        "purchase": Limit(1000.0, 2000.0),
        "transfer": Limit(1000.0, 2000.0),
        "advance": Limit(1000.0, 2000.0),
        "topup": Limit(1000.0, 2000.0),
        "list": Limit(5000.0, 10000.0),
        "status": Limit(5000.0, 10000.0),
    },
    "msisdn": {
        "purchase": Limit(0.2, 5.0),
        "transfer": Limit(0.2, 5.0),
        "advance": Limit(0.2, 5.0),
        "topup": Limit(1.0, 20.0),  # money coming in: the recharge platform retries too
        "list": Limit(1.0, 20.0),
        "status": Limit(2.0, 40.0),
    },
}


@attrs.frozen
class LimitSettings:
    """`[limits]`: whether limits apply at all, how often each worker exchanges what it used
    with the others (through PostgreSQL), and the buckets by scope and kind."""

    enabled: bool = True
    sync_interval: float = 0.1
    buckets: Mapping[str, Mapping[str, Limit]] = attrs.field(
        factory=lambda: {scope: dict(kinds) for scope, kinds in DEFAULT_LIMITS.items()}
    )

    def limit(self, scope: str, kind: str) -> Limit | None:
        """The bucket of `scope` (key, msisdn) for `kind`, or None when that is not limited."""
        if not self.enabled:
            return None
        found = self.buckets.get(scope, {}).get(kind)
        return None if found is None or found.off else found

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "sync_interval": self.sync_interval,
            **{scope: {kind: limit.as_dict() for kind, limit in kinds.items()}
               for scope, kinds in self.buckets.items()},
        }
