"""Gestor's door to the operator's platforms: :func:`open_platforms` gives a :class:`Platforms`
talking to the data warehouse (dwh), the charging system (ocs) and provisioning (prov) over HTTP,
through a lean keep-alive HTTP/1.1 client (``_http``) with timeouts, bounded concurrency, retries
where idempotent and circuit breakers. The lean client itself, :class:`HTTPClient`, is Gestor's
one stack for outbound HTTP: the alarm webhooks and the CLI's admin client use it too.
:func:`open_sms_gateway` gives a :class:`SmsGateway`, the operator's SMS gateway (``_sms``).

The HTTP contract is documented in ``gestor/simulator/README.md``; the simulator plays it.
"""

from ._client import (
    LedgerEntry,
    Platforms,
    open_platforms,
)
from ._errors import (
    CircuitOpen,
    OutcomeUnknown,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
)
from ._http import HTTPClient, HTTPError
from ._records import Account, CreditReceipt, CustomerData, DebitReceipt, Profile
from ._settings import EndpointSettings, PlatformSettings
from ._sms import SmsGateway, SmsRefused, SmsUnavailable, open_sms_gateway

__all__ = [
    "Account",
    "CircuitOpen",
    "CreditReceipt",
    "CustomerData",
    "DebitReceipt",
    "EndpointSettings",
    "HTTPClient",
    "HTTPError",
    "LedgerEntry",
    "OutcomeUnknown",
    "PlatformError",
    "PlatformRejected",
    "PlatformSettings",
    "PlatformUnavailable",
    "Platforms",
    "Profile",
    "SmsGateway",
    "SmsRefused",
    "SmsUnavailable",
    "open_platforms",
    "open_sms_gateway",
]
