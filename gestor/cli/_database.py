"""The database a command that reads or writes it directly uses (`gestor audit`, `ledger`,
`report rebuild`): GESTOR_DATABASE_URL, else the embedded server of the data directory,
attached without ever stopping a running `gestor serve`'s (a server this command started is
stopped when it is done)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from gestor.settings import Settings
from gestor.startup import StartupError


@contextlib.contextmanager
def attached_database(settings: Settings) -> Iterator[tuple[str, str]]:
    """(dsn, where) of the database, `where` for messages; errors are `StartupError`s (one
    line): exit status 2 when there is no database here."""
    from gestor.startup import describe_dsn
    from gestor.store import NoEmbeddedDatabase, attach_embedded

    if settings.database_url:
        yield settings.database_url, describe_dsn(settings.database_url)
        return
    where = str(settings.data_dir / "pg")
    try:  # attaches to a running `gestor serve`'s server without ever stopping it
        embedded = attach_embedded(settings.data_dir / "pg")
    except NoEmbeddedDatabase:
        raise StartupError("no embedded database here; set GESTOR_DATABASE_URL or --data-dir",
                           where, 2) from None
    except Exception as exc:
        raise StartupError(f"the embedded PostgreSQL did not start: {exc}", where) from None
    try:
        yield embedded.dsn, where
    finally:
        embedded.stop()
