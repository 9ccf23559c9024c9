"""End-to-end fixtures: a `gestor simulate` process and a `gestor serve` process (on a fresh
database of the session's embedded PostgreSQL) shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gestor.store import EmbeddedPostgres
from tests.e2e._proc import clean_env, free_port, start, stop

ADMIN_KEY = "e2e-admin-key-for-the-module-server"


@pytest.fixture(scope="module")
def platforms_url() -> Iterator[str]:
    proc, url = start(["simulate", "--bind", "127.0.0.1:0"], clean_env(), "listening on ")
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def e2e_database(postgres: EmbeddedPostgres) -> Iterator[str]:
    name = "e2e_" + str(free_port())
    postgres.psql(f"CREATE DATABASE {name} TEMPLATE gestor_template;")
    try:
        yield postgres.dsn_for(name)
    finally:
        postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


@pytest.fixture(scope="module")
def server(platforms_url: str, e2e_database: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running `gestor serve`."""
    port = free_port()
    env = clean_env(GESTOR_DATABASE_URL=e2e_database, GESTOR_ADMIN_KEY=ADMIN_KEY)
    proc, _ = start(
        ["serve", "--bind", f"127.0.0.1:{port}", "--platforms", platforms_url,
         "--data-dir", str(tmp_path_factory.mktemp("serve"))],
        env, "gestor listening on ",
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert stop(proc) == 0
