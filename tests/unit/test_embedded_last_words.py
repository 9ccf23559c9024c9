"""The reason a restart of the embedded PostgreSQL failed is what the new attempt logged, not
the dead server's last words."""

from __future__ import annotations

from pathlib import Path

from gestor.store._embedded import _last_words

DEAD = ("2026-11-26 00:45:31 UTC [27300] FATAL:  terminating connection due to unexpected "
        "postmaster exit\n")


def test_the_new_attempts_words_not_the_dead_servers(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text(DEAD)
    since = log.stat().st_size
    with log.open("a") as f:
        f.write('postgres: could not access the server configuration file "/d/pg/postgresql.conf"'
                ": No such file or directory\n")
    assert _last_words(log, "pg_ctl: could not start server", since=since) == (
        'postgres: could not access the server configuration file "/d/pg/postgresql.conf": '
        "No such file or directory")


def test_a_fatal_line_of_the_new_attempt_is_its_reason(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text(DEAD)
    since = log.stat().st_size
    with log.open("a") as f:
        f.write("2026-11-26 00:45:40 UTC [27310] LOG:  starting PostgreSQL\n"
                "2026-11-26 00:45:40 UTC [27310] FATAL:  lock file \"postmaster.pid\" already "
                "exists\n2026-11-26 00:45:40 UTC [27310] LOG:  database system is shut down\n")
    assert _last_words(log, None, since=since) == 'lock file "postmaster.pid" already exists'


def test_nothing_new_in_the_log_gives_pg_ctls_words(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text(DEAD)
    assert _last_words(log, "pg_ctl: could not start server\n", since=log.stat().st_size) == (
        "pg_ctl: could not start server")
    assert _last_words(tmp_path / "missing", None) == "pg_ctl failed"
