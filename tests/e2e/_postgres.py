"""A PostgreSQL server of a test's own, started from the binaries the `pgserver` package ships
(initdb + pg_ctl), listening on a free TCP port of 127.0.0.1.

Not the embedded default of `gestor serve`, and not the session's shared server: a test that
stops, freezes or kills its database (or points several nodes at it over TCP) gets one nobody
else uses. As root (CI), the server runs as pgserver's unprivileged `pgserver` user, as
pgserver itself does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

from tests.e2e._proc import free_port


def _bin(name: str) -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _as_user() -> dict[str, str]:
    """`subprocess` keywords running a command as the unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    from pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return {"user": "pgserver", "group": "pgserver"}


@attrs.frozen
class OwnPostgres:
    """A running server: `dsn` reaches its `postgres` database as the `postgres` superuser."""

    data_dir: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def pids(self) -> list[int]:
        """The postmaster and every one of its children (backends, writer, WAL, ...)."""
        postmaster = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                                  text=True, check=False).stdout.split()
        return [postmaster, *map(int, children)]

    def signal_all(self, sig: int) -> None:
        """Send `sig` to every process of the server (SIGSTOP/SIGCONT freeze and thaw it)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return subprocess.run(
            [_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
             database, "-Atc", sql], capture_output=True, text=True, check=True,
        ).stdout


@contextlib.contextmanager
def own_postgres(max_connections: int = 200) -> Iterator[OwnPostgres]:
    """Initialise and start a server in a fresh directory; stop it and delete it on exit."""
    root = Path(tempfile.mkdtemp(prefix="gestor-own-pg-"))
    data = root / "data"
    user = _as_user()
    if user:
        shutil.chown(root, "pgserver", "pgserver")
        os.chmod(root, 0o755)
    subprocess.run([_bin("initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
                    "--encoding=utf8"], check=True, capture_output=True, **user)
    port = free_port()
    options = (f"-h 127.0.0.1 -p {port} -k {root} -c max_connections={max_connections} "
               "-c fsync=off")
    subprocess.run([_bin("pg_ctl"), "-D", str(data), "-w", "-t", "60", "-o", options, "-l",
                    str(root / "log"), "start"], check=True, capture_output=True, **user)
    server = OwnPostgres(data, port)
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.signal_all(signal.SIGCONT)  # a frozen server can't stop
        subprocess.run([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       check=False, capture_output=True, **user)
        shutil.rmtree(root, ignore_errors=True)
