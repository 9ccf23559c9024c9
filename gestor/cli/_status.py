"""What a running `gestor serve` is, told through its data directory: `gestor status`, and how
the other commands (`reconcile`, `rules push|dry-run`) find the simulator, the server and the
admin key of a `gestor serve` run with the defaults.

`gestor serve` writes `<data dir>/serve.json` once it knows what it runs (and removes it as it
stops): its pid, version, URL, workers, database URL without its password, the platforms' URL
(its simulator's when it started one), where the admin key is. Nothing secret is in it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio

from gestor.processes import process_alive
from gestor.settings import Settings

logger = logging.getLogger("gestor")

__all__ = ["add_parser", "admin_key", "forget_serve", "local_url", "record_serve", "run",
           "running", "server_and_key", "without_password"]

STATE_FILE = "serve.json"


def without_password(dsn: str) -> str:
    """`dsn` with any password removed (the user, host, port, database and options kept)."""
    parts = urlsplit(dsn)
    if not parts.scheme:
        return "an unparsable database URL"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}@" if parts.username else ""
    netloc += host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def record_serve(settings: Settings, *, dsn: str, database: str, platforms_url: str,
                 simulator: bool) -> None:
    """Write `<data dir>/serve.json` for this `gestor serve` (a warning if it can't: the
    server runs all the same, only `gestor status` won't see it)."""
    from gestor.metrics import gestor_version

    admin_key = ("GESTOR_ADMIN_KEY (environment)" if os.environ.get("GESTOR_ADMIN_KEY")
                 else str(settings.data_dir / "admin.key"))
    state = {
        "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": gestor_version(),
        "url": f"{settings.scheme}://{settings.bind}",
        "workers": settings.workers,
        "database": without_password(dsn),
        "database_kind": database,
        "platforms_url": platforms_url,
        "simulator": simulator,
        "admin_key": admin_key,
        "config_dir": str(settings.config_dir),
        "data_dir": str(settings.data_dir),
    }
    path = settings.data_dir / STATE_FILE
    aside = path.with_name(f".{STATE_FILE}.tmp")
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        aside.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(aside, path)
    except OSError as exc:
        logger.warning("cannot write %s (gestor status will not see this server): %s", path,
                       exc.strerror or exc)


def forget_serve(settings: Settings) -> None:
    """Remove `serve.json` if it is this process's."""
    path = settings.data_dir / STATE_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def running(data_dir: Path) -> dict[str, Any] | None:
    """What the `gestor serve` of `data_dir` runs, if one runs."""
    try:
        state: dict[str, Any] = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not process_alive(int(state.get("pid", 0))):
        return None
    return state


def local_url(state: dict[str, Any]) -> str:
    """The running server's URL as a client on this machine reaches it (a server bound to
    every address is asked on loopback)."""
    parts = urlsplit(str(state.get("url", "")))
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


def admin_key(data_dir: Path) -> str:
    """GESTOR_ADMIN_KEY, else the running server's `<data dir>/admin.key`, else ""."""
    key = os.environ.get("GESTOR_ADMIN_KEY", "")
    if key:
        return key
    with contextlib.suppress(OSError):
        return (data_dir / "admin.key").read_text().strip()
    return ""


def server_and_key(url: str | None, data_dir: Path) -> tuple[str, str]:
    """The server a command talks to and the admin key it uses: `url`, else GESTOR_URL, else
    the running `gestor serve` of `data_dir`, else http://127.0.0.1:8080; the data
    directory's admin key goes only to that data directory's server (any other gets only
    GESTOR_ADMIN_KEY). The key is "" when there is none."""
    state = running(data_dir)
    url = url or os.environ.get("GESTOR_URL") or (
        local_url(state) if state is not None else "http://127.0.0.1:8080")
    ours = state is not None and url.rstrip("/") == local_url(state)
    return url, admin_key(data_dir) if ours else os.environ.get("GESTOR_ADMIN_KEY", "")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status", help="what the gestor serve of this data directory runs",
        description="What the `gestor serve` of the data directory (--data-dir, "
        "GESTOR_DATA_DIR or the default) runs: its URL, workers, database, platforms, admin "
        "key, and, asked of the server itself, the active rule set and catalogue versions. "
        "Exit status: 0 running, 1 not running.")
    status.add_argument("--config", type=Path, help="config directory (default: ./config or "
                        "GESTOR_CONFIG_DIR)")
    status.add_argument("--data-dir", type=Path, help="the data directory (GESTOR_DATA_DIR)")
    status.add_argument("--json", action="store_true", help="print it as JSON")


def _versions(state: dict[str, Any], key: str) -> dict[str, Any]:
    """The active rule set's and catalogue's versions, asked of the server; or why not."""
    from gestor.cli._admin_client import AdminApiError, open_admin

    if not key:
        return {"error": "no admin key to ask the server with"}

    async def ask() -> dict[str, Any]:
        async with open_admin(local_url(state), key, call_timeout=5.0) as admin:
            return await admin.statistics()

    try:
        stats = trio.run(ask)
    except AdminApiError as exc:
        if exc.status:
            return {"error": f"the server answered {exc.status}"}
        return {"error": f"the server did not answer: {exc.problem.get('detail', exc)}"}
    rules = stats.get("rules") or {}
    found: dict[str, Any] = {}
    for name, field in (("rules_version", "active_version"),
                        ("catalogue_version", "catalogue_version")):
        if rules.get(field) is not None:
            found[name] = rules[field]
    return found


def run(settings: Settings, as_json: bool) -> int:
    state = running(settings.data_dir)
    if state is None:
        print(f"gestor: no gestor serve is running with data directory {settings.data_dir}",
              file=sys.stderr)
        return 1
    state.update(_versions(state, admin_key(settings.data_dir)))
    if as_json:
        print(json.dumps(state, indent=2))
        return 0
    simulator = " (its built-in simulator)" if state.get("simulator") else ""
    lines = [
        f"gestor {state.get('version')} running (pid {state.get('pid')}, since "
        f"{state.get('started_at')})",
        f"listening:   {state.get('url')}",
        f"workers:     {state.get('workers')}",
        f"database:    {state.get('database')} ({state.get('database_kind')})",
        f"platforms:   {state.get('platforms_url')}{simulator}",
        f"admin key:   {state.get('admin_key')}",
        f"data dir:    {state.get('data_dir')}",
        f"config dir:  {state.get('config_dir')}",
    ]
    if "rules_version" in state:
        lines.append(f"rules:       version {state['rules_version']} active")
    if "catalogue_version" in state:
        lines.append(f"catalogue:   version {state['catalogue_version']} active")
    if "error" in state:
        lines.append(f"versions:    unknown ({state['error']})")
    print("\n".join(lines))
    return 0
