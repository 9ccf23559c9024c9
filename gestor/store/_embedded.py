"""The embedded PostgreSQL (DESIGN D2): a real server in a data directory, via `pgserver`,
for `gestor serve` with no database configured, for the tests and for the bench."""

from __future__ import annotations

import json
import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

import attrs

from gestor.processes import process_alive

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

    @property
    def pid(self) -> int:
        """The postmaster's process id (as of the last start or restart)."""
        return int(self._server.get_pid())

    def restart(self, timeout: float = 30.0) -> int:
        """Start the server again after it died, with the same socket directory (so `dsn`
        holds); returns the new postmaster's pid. Raises `RestartFailed` with the reason the
        server gave (for example, while processes of the dead one still hold its shared
        memory: they exit once they notice, so trying again shortly is right)."""
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.utils import PostmasterInfo

        old = self._server.get_postmaster_info()
        pgdata = Path(self._server.pgdata)
        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-t",
                   str(int(timeout)), "-o", '-h ""', "-o", f"-k {old.socket_dir}",
                   "-l", str(pgdata / "log"), "start"]
        user = self._server.system_user
        extra: dict[str, Any] = {"user": user, "group": user} if user else {}
        log = pgdata / "log"
        try:
            written = log.stat().st_size  # what the dead server and earlier attempts said
        except OSError:
            written = 0
        try:
            subprocess.run(command, check=True, capture_output=True, text=True,
                           timeout=timeout + 5, **extra)
        except subprocess.CalledProcessError as exc:
            raise RestartFailed(_last_words(log, exc.stderr, since=written)) from None
        except subprocess.TimeoutExpired:
            raise RestartFailed(f"not ready within {timeout:g} s") from None
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or not info.is_running():
            raise RestartFailed("pg_ctl reported success but no server is running")
        self._server._postmaster_info = info  # what pgserver's cleanup stops at exit
        return int(info.pid)

    def stop(self) -> None:
        """Stop the server (if this process is its last user); the data directory is kept."""
        self._server.cleanup()


class RestartFailed(Exception):
    """The embedded server could not be started again (the message says why)."""


def _last_words(log: Path, stderr: str | None, since: int = 0) -> str:
    """The server's reason for not starting, from what it logged after byte `since` (not the
    dead server's last words, such as its backends' "terminating connection due to unexpected
    postmaster exit"): its last FATAL line, else its last line, else pg_ctl's."""
    try:
        with log.open("rb") as f:
            f.seek(since)
            lines = f.read().decode(errors="replace").strip().splitlines()[-20:]
    except OSError:
        lines = []
    fatal = [line for line in lines if "FATAL:" in line]
    if fatal:
        return fatal[-1].split("FATAL:", 1)[1].strip()
    if lines:
        return lines[-1].strip()
    err = (stderr or "").strip().splitlines()
    return err[-1] if err else "pg_ctl failed"


class EmbeddedStartError(Exception):
    """The embedded server could not be started; the message says why in one line and
    names the log to read."""


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server whose data lives in `data_dir` (blocking).

    `pg_ctl` starts the server in a session of its own, so a Ctrl-C (SIGINT to the terminal's
    foreground process group) or a SIGTERM to Gestor's group never reaches it: it keeps
    serving while the workers drain, and stops when `stop()` is called. Raises
    `EmbeddedStartError` when it cannot start."""
    pg_logger = logging.getLogger("pgserver")
    level = pg_logger.level
    pg_logger.setLevel(logging.CRITICAL)  # it logs the whole server log on failure; we name it
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _forget_dead_users(data_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver

            server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    except subprocess.CalledProcessError as exc:
        raise EmbeddedStartError(_why(data_dir, exc)) from exc
    except (OSError, subprocess.SubprocessError, AssertionError) as exc:
        raise EmbeddedStartError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        pg_logger.setLevel(level)
    logger.debug("embedded PostgreSQL running in %s", data_dir)
    return EmbeddedPostgres(data_dir, server)


def _forget_dead_users(data_dir: Path) -> None:
    """Drop the processes that died without letting go from pgserver's list of the server's
    users (`.handle_pids.json`): the server stops when its last user does, so one stale entry
    (a `gestor serve` killed outright) would otherwise keep every later server running."""
    path = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and process_alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _why(data_dir: Path, exc: subprocess.CalledProcessError) -> str:
    """The last FATAL/ERROR line of the server's log, or the failed command's name."""
    log = data_dir / "log"
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if "FATAL:" in line or "ERROR:" in line:
            reason = line.split("FATAL:" if "FATAL:" in line else "ERROR:", 1)[1].strip()
            return f"{reason}; see {log}"
    command = Path(str(exc.cmd[0] if isinstance(exc.cmd, list | tuple) else exc.cmd)).name
    return f"{command} failed with exit status {exc.returncode}; see {log}"
