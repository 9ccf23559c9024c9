"""Keeping the embedded PostgreSQL alive: `gestor serve` restarts it when it dies.

A thread of the serving process (the one that started the server, whether it serves requests
itself or supervises worker processes) waits on the postmaster's exit (a pidfd on Linux, else
polling). When the postmaster dies (`kill -9`, the OOM killer...), it starts the server again
in the same data directory and socket directory, so every worker's connection string still
holds and their pools reconnect by themselves. A start that fails (the dead server's processes
may still hold its shared memory for a moment) is tried again with a growing pause. One log
line when it dies, one when it is back (and one per minute while it still won't start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Iterator

import attrs

from gestor.processes import process_alive
from gestor.store._embedded import EmbeddedPostgres, RestartFailed

logger = logging.getLogger("gestor.store")


@attrs.define
class EmbeddedSupervisor:
    embedded: EmbeddedPostgres
    #: Pause after a failed restart: doubles from `first_pause` up to `max_pause` seconds.
    first_pause: float = 0.2
    max_pause: float = 5.0
    #: How often the watcher looks up from its wait (to notice `stop()`), seconds.
    tick: float = 0.5
    restarts: int = 0
    _stopping: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="gestor-pg-supervisor",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the server itself is stopped on purpose)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            pid = self.embedded.pid
            if not self._wait_exit(pid):
                return
            died = time.monotonic()
            logger.error("embedded PostgreSQL (pid %d) died; restarting it", pid)
            self._wait_gone(pid)
            new_pid = self._restart()
            if new_pid is None:
                return
            self.restarts += 1
            logger.info("embedded PostgreSQL restarted (pid %d), %.1f s after it died",
                        new_pid, time.monotonic() - died)

    def _wait_exit(self, pid: int) -> bool:
        """True once `pid` has exited; False if asked to stop first."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True
        except (AttributeError, OSError):  # no pidfd here: poll
            while not self._stopping.wait(self.tick):
                if not process_alive(pid):
                    return True
            return False
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select([fd], [], [], self.tick)
                if readable:
                    return True
            return False
        finally:
            os.close(fd)

    def _wait_gone(self, pid: int, patience: float = 10.0) -> None:
        """Until the dead postmaster's pid is gone. Until its parent (init, since `pg_ctl`
        detached it) reaps it, it is a zombie, and a new server refuses to start while the
        pid in `postmaster.pid` exists: trying before is only failures in its log."""
        deadline = time.monotonic() + patience
        while process_alive(pid) and time.monotonic() < deadline:
            if self._stopping.wait(0.05):
                return

    def _restart(self) -> int | None:
        pause = self.first_pause
        last_said = time.monotonic() - 55  # a first failure or two is normal: say so after 5 s
        while not self._stopping.is_set():
            try:
                return self.embedded.restart()
            except RestartFailed as exc:
                now = time.monotonic()
                if now - last_said >= 60:
                    logger.warning("embedded PostgreSQL not started yet (%s); trying again",
                                   exc)
                    last_said = now
            if self._stopping.wait(pause):
                break
            pause = min(pause * 2, self.max_pause)
        return None


@contextlib.contextmanager
def supervise_embedded(embedded: EmbeddedPostgres) -> Iterator[EmbeddedSupervisor]:
    """Restart `embedded` whenever it dies, until the block exits."""
    supervisor = EmbeddedSupervisor(embedded)
    supervisor.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
