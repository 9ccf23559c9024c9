"""Which running server a CLI command talks to, and with which admin key: `--url`, else
GESTOR_URL, else the running `gestor serve` of the data directory (`--data-dir`,
GESTOR_DATA_DIR), else http://127.0.0.1:8080. The data directory's `admin.key` goes only to the
server of that data directory; any other server needs GESTOR_ADMIN_KEY. Shared by every command
that calls the admin API (`rules`, `catalogue`, ...), so they find the same server the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import attrs

from gestor.cli._status import admin_key, local_url, running
from gestor.settings import load_settings

DEFAULT_URL = "http://127.0.0.1:8080"


@attrs.frozen
class Server:
    url: str
    key: str


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """--url, --config and --data-dir, as every admin-API command takes them."""
    p.add_argument("--url", help="the server (default GESTOR_URL, else the running `gestor "
                   "serve` of the data directory, else http://127.0.0.1:8080); the admin key "
                   "comes from GESTOR_ADMIN_KEY, else that server's <data dir>/admin.key")
    p.add_argument("--config", type=Path, help="config directory (GESTOR_CONFIG_DIR)")
    p.add_argument("--data-dir", type=Path, help="the data directory of the `gestor serve` "
                   "to talk to (GESTOR_DATA_DIR)")


def find_server(args: argparse.Namespace, command: str) -> Server | None:
    """The server `args` name and its admin key; None (after one line on stderr) when no key
    can be found for it."""
    data_dir = load_settings(args.config, data_dir=args.data_dir).data_dir
    state = running(data_dir)
    url = args.url or os.environ.get("GESTOR_URL") or (
        local_url(state) if state is not None else DEFAULT_URL)
    ours = state is not None and url.rstrip("/") == local_url(state)
    key = admin_key(data_dir) if ours else os.environ.get("GESTOR_ADMIN_KEY", "")
    if not key:
        print(f"gestor {command}: set GESTOR_ADMIN_KEY to the server's admin key (none in "
              f"{data_dir / 'admin.key'})", file=sys.stderr)
        return None
    return Server(url, key)


def read_source(path: Path, command: str) -> str:
    """A file the command was given, or exit with one line saying why it can't be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"gestor {command}: cannot read {path}: {exc}") from None
