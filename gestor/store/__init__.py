"""PostgreSQL access: the only package that talks SQL and the only one that sees asyncio.

`open_store(dsn)` gives a `Store` whose hot paths are micro-batched over a bridge to asyncpg on
an asyncio loop in a thread of its own (DESIGN D1; `_bridge` says why not trio-asyncio).
`start_embedded(dir)` runs the embedded server (D2).
"""

from gestor.store._audit import ACTION_FILTER, ACTOR_FILTER
from gestor.store._batch import Batcher, Withdrawn
from gestor.store._bridge import open_bridge
from gestor.store._counts import table_counts
from gestor.store._embedded import (
    EmbeddedPostgres,
    EmbeddedStartError,
    start_embedded,
)
from gestor.store._health import (
    DatabaseDown,
    DatabaseHealth,
    HealthChange,
    StoreUnavailable,
    describe_failure,
)
from gestor.store._keys import CALLS, ROLES, KeyRecord, KeyStore, NewKey
from gestor.store._ledger import ACCOUNT, DayCheck, DayNotOver, subscriber_nets
from gestor.store._migrate import migrate
from gestor.store._notifications import Delivery, RouteRow
from gestor.store._reconcile import (
    NoEmbeddedDatabase,
    attach_embedded,
    transactions_between,
    transactions_by_id,
)
from gestor.store._reports import Period, Reports
from gestor.store._restrictions import Restriction
from gestor.store._store import Store, Unsettled, open_store
from gestor.store._supervisor import EmbeddedSupervisor, supervise_embedded
from gestor.store._transactions import (
    Accepted,
    AcceptOutcome,
    Expired,
    KeyReused,
    PendingExists,
    Replayed,
    SnapshotRequest,
)
from gestor.store._versioned import Versions
from gestor.store._versions import (
    CATALOGUE,
    PartnerMoved,
    RuleSetRecord,
    VersionRecord,
    has_active_rules,
)

__all__ = [
    "ACCOUNT",
    "ACTION_FILTER",
    "ACTOR_FILTER",
    "CALLS",
    "CATALOGUE",
    "ROLES",
    "AcceptOutcome",
    "Accepted",
    "Batcher",
    "DatabaseDown",
    "DatabaseHealth",
    "DayCheck",
    "DayNotOver",
    "Delivery",
    "EmbeddedPostgres",
    "EmbeddedStartError",
    "EmbeddedSupervisor",
    "Expired",
    "HealthChange",
    "KeyRecord",
    "KeyReused",
    "KeyStore",
    "NewKey",
    "NoEmbeddedDatabase",
    "PartnerMoved",
    "PendingExists",
    "Period",
    "Replayed",
    "Reports",
    "Restriction",
    "RouteRow",
    "RuleSetRecord",
    "SnapshotRequest",
    "Store",
    "StoreUnavailable",
    "Unsettled",
    "VersionRecord",
    "Versions",
    "Withdrawn",
    "attach_embedded",
    "describe_failure",
    "has_active_rules",
    "migrate",
    "open_bridge",
    "open_store",
    "start_embedded",
    "subscriber_nets",
    "supervise_embedded",
    "table_counts",
    "transactions_between",
    "transactions_by_id",
]
