"""`supervise_embedded`: the embedded PostgreSQL killed twice in a row is started again each
time (the watcher follows the new postmaster), on the same socket, with its data; stopping
the supervisor first lets the server be stopped on purpose without a restart."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from gestor.store import EmbeddedSupervisor, start_embedded, supervise_embedded


async def restarted(supervisor: EmbeddedSupervisor, count: int) -> None:
    """Until the supervisor has restarted the server `count` times (it runs in a thread)."""
    for _ in range(1200):
        if supervisor.restarts >= count:
            return
        await trio.sleep(0.05)
    raise AssertionError(f"restarted {supervisor.restarts} times, not {count}")


@pytest.fixture
def data_root() -> Iterator[Path]:
    """Not under pytest's tmp_path: the server runs as another user when we are root, and
    each pytest session starting on the box makes /tmp/pytest-of-<user> private again."""
    root = Path(tempfile.mkdtemp(prefix="gestor-supervisor-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_killed_twice_restarted_twice(data_root: Path) -> None:
    embedded = await trio.to_thread.run_sync(start_embedded, data_root / "pg")
    dsn = embedded.dsn
    try:
        embedded.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7);")
        with trio.fail_after(120), supervise_embedded(embedded) as supervisor:
            pids = [embedded.pid]
            for time in (1, 2):
                os.kill(embedded.pid, signal.SIGKILL)
                await restarted(supervisor, time)
                pids.append(embedded.pid)
                assert embedded.dsn == dsn  # same socket: the workers' DSN holds
                out = await trio.to_thread.run_sync(embedded.psql, "SELECT n FROM kept;")
                assert "7" in out
            assert len(set(pids)) == 3
        # Watching stopped: a stop on purpose is not undone.
        stopped_pid = embedded.pid
        await trio.to_thread.run_sync(embedded.stop)
        assert not (data_root / "pg" / "postmaster.pid").exists()
        assert supervisor.restarts == 2
        assert embedded.pid == stopped_pid
    finally:
        await trio.to_thread.run_sync(embedded.stop)
