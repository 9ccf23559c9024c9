"""The embedded PostgreSQL (DESIGN D2): a real server in a data directory, via `pgserver`,
for `gestor serve` with no database configured, for the tests and for the bench."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import attrs

logger = logging.getLogger("gestor.store")


@attrs.define
class EmbeddedPostgres:
    """A running embedded server. `dsn` connects to its `postgres` database over a unix socket."""

    data_dir: Path
    _server: Any

    @property
    def dsn(self) -> str:
        return str(self._server.get_uri())

    def dsn_for(self, database: str) -> str:
        return str(self._server.get_uri(database))

    def psql(self, command: str) -> str:
        return str(self._server.psql(command))

    def stop(self) -> None:
        """Stop the server (if this process is its last user); the data directory is kept."""
        self._server.cleanup()


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server whose data lives in `data_dir` (blocking)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver

        server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    logger.info("embedded PostgreSQL running in %s", data_dir)
    return EmbeddedPostgres(data_dir, server)
