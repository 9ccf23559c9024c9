"""Shared fixtures: one embedded PostgreSQL per test session (a sync fixture: pytest-trio has no
session-scoped async fixtures), a template database migrated once, and a fresh database per
test cloned from it."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from gestor.store import EmbeddedPostgres, open_bridge, start_embedded
from gestor.store._migrate import migrate

TEMPLATE = "gestor_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's tmp_path: pytest prunes old base temp dirs when a session starts, so a
    # second session (another checkout, an editor's runner) would delete a running server's data.
    root = Path(tempfile.mkdtemp(prefix="gestor-test-pg-"))
    server = start_embedded(root / "data")
    server.psql(f"DROP DATABASE IF EXISTS {TEMPLATE};")
    server.psql(f"CREATE DATABASE {TEMPLATE};")

    async def _migrate() -> None:
        async with open_bridge(server.dsn_for(TEMPLATE)) as bridge:
            await migrate(bridge)

    trio.run(_migrate)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"test_{os.getpid()}_{next(_counter)}"
    postgres.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE};")
    try:
        yield postgres.dsn_for(name)
    finally:
        postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


@pytest.fixture
def config_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "config"


@pytest.fixture
def pg_home() -> Iterator[Path]:
    """A fresh directory for a test that runs an embedded PostgreSQL of its own (its data dir).
    Not under pytest's tmp_path: as root the server runs as pgserver's unprivileged user, and
    each pytest session starting on the box makes /tmp/pytest-of-<user> private again."""
    root = Path(tempfile.mkdtemp(prefix="gestor-test-home-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
