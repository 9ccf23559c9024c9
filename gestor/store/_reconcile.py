"""Reads for reconciliation (`gestor.reconcile`): transactions by creation time or by id, and
attaching to the embedded server of a running `gestor serve` without ever stopping it."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gestor.model import Transaction
from gestor.store._embedded import EmbeddedPostgres, start_embedded
from gestor.store._rows import transaction_from_row

_BETWEEN = """
SELECT * FROM transactions WHERE created_at >= $1 AND created_at < $2
ORDER BY created_at, id
"""


async def transactions_between(conn: Any, since: datetime, until: datetime) -> list[Transaction]:
    """Every transaction created in `[since, until)`, oldest first."""
    rows = await conn.fetch(_BETWEEN, since, until)
    return [transaction_from_row(r) for r in rows]


async def transactions_by_id(conn: Any, ids: Sequence[uuid.UUID]) -> list[Transaction]:
    """The transactions with these ids that exist (in no particular order)."""
    rows = await conn.fetch("SELECT * FROM transactions WHERE id = ANY($1::uuid[])", list(ids))
    return [transaction_from_row(r) for r in rows]


class NoEmbeddedDatabase(Exception):
    """The data directory holds no embedded database (has `gestor serve` run with it?)."""


def attach_embedded(data_dir: Path) -> EmbeddedPostgres:
    """The embedded server in `data_dir`, for a short-lived tool (blocking).

    If a server is already running there (a `gestor serve`), attach with pgserver's
    `cleanup_mode=None`: `stop()` only drops this process's handle, never the server. Otherwise
    start it like `start_embedded`; `stop()` then stops it unless another process attached
    meanwhile (pgserver counts the processes holding a handle). Raises NoEmbeddedDatabase if
    `data_dir` was never initialised, rather than creating an empty cluster.
    """
    if not (data_dir / "PG_VERSION").is_file():
        raise NoEmbeddedDatabase(f"no embedded database in {data_dir}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver
        from pgserver.utils import PostmasterInfo

        try:
            info = PostmasterInfo.read_from_pgdata(data_dir.resolve())
        except (AssertionError, ValueError, OSError):  # postmaster.pid half written
            info = None
        if info is not None and info.is_running():
            server = pgserver.get_server(data_dir, cleanup_mode=None)  # type: ignore[attr-defined]
            return EmbeddedPostgres(data_dir, server)
    return start_embedded(data_dir)
