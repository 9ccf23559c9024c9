"""Gestor's door to the operator's platforms: :func:`open_platforms` gives a :class:`Platforms`
talking to the data warehouse (dwh), the charging system (ocs) and provisioning (prov) over HTTP,
through a lean keep-alive HTTP/1.1 client (``_http``) with timeouts, bounded concurrency, retries
where idempotent and circuit breakers.

The HTTP contract is documented in ``gestor/simulator/README.md``; the simulator plays it.
"""

from ._breaker import CircuitState
from ._client import (
    LEDGER_TIMEOUT,
    CircuitCallback,
    LedgerEntry,
    Platforms,
    PlatformsStatistics,
    PlatformStatistics,
    open_platforms,
)
from ._errors import (
    CircuitOpen,
    OutcomeUnknown,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
)
from ._records import (
    Account,
    CreditReceipt,
    CustomerData,
    DebitReceipt,
    Profile,
    Provisioned,
    RefundReceipt,
)
from ._settings import EndpointSettings, PlatformSettings

__all__ = [
    "LEDGER_TIMEOUT",
    "Account",
    "CircuitCallback",
    "CircuitOpen",
    "CircuitState",
    "CreditReceipt",
    "CustomerData",
    "DebitReceipt",
    "EndpointSettings",
    "LedgerEntry",
    "OutcomeUnknown",
    "PlatformError",
    "PlatformRejected",
    "PlatformSettings",
    "PlatformStatistics",
    "PlatformUnavailable",
    "Platforms",
    "PlatformsStatistics",
    "Profile",
    "Provisioned",
    "RefundReceipt",
    "open_platforms",
]
