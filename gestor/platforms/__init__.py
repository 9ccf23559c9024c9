"""Gestor's only door to the outside: clients of the operator's platforms, and their simulator.

* Clients: :func:`open_platforms` gives a :class:`Platforms` talking to the data warehouse
  (dwh), the charging system (ocs) and provisioning (prov) over HTTP.
* Simulator: :func:`serve_simulator` plays the three platforms over the same HTTP contract,
  with deterministic synthetic subscribers, fault knobs and an optional journal.

The HTTP contract is documented in ``README.md`` beside this file.
"""

from ._asgi import SimulatorApp, build_simulator_app
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
from ._faults import OPERATIONS, PLATFORM_NAMES, FaultSettings
from ._gestor_admin import AdminApiError, GestorAdmin
from ._journal import JournalCorrupt
from ._records import Account, CustomerData, DebitReceipt, Profile, Provisioned, RefundReceipt
from ._serve import SimulatorHandle, run_simulator, serve_simulator
from ._settings import EndpointSettings, PlatformSettings
from ._simulator import Simulator, SimulatorConfig, SimulatorStatistics, open_simulator
from ._synthetic import WELL_KNOWN_PREFIX, is_valid_msisdn, is_well_known
from ._webhooks import Webhooks, WebhookStatistics, open_webhooks

__all__ = [
    "LEDGER_TIMEOUT",
    "OPERATIONS",
    "PLATFORM_NAMES",
    "WELL_KNOWN_PREFIX",
    "Account",
    "AdminApiError",
    "CircuitCallback",
    "CircuitOpen",
    "CircuitState",
    "CustomerData",
    "DebitReceipt",
    "EndpointSettings",
    "FaultSettings",
    "GestorAdmin",
    "JournalCorrupt",
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
    "Simulator",
    "SimulatorApp",
    "SimulatorConfig",
    "SimulatorHandle",
    "SimulatorStatistics",
    "WebhookStatistics",
    "Webhooks",
    "build_simulator_app",
    "is_valid_msisdn",
    "is_well_known",
    "open_platforms",
    "open_simulator",
    "open_webhooks",
    "run_simulator",
    "serve_simulator",
]
