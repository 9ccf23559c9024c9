"""The environment the scenarios of one invocation share (PostgreSQL, the simulator, the baselines
measured once), and what a Gestor server needs from it: a migrated database, a config/ copy."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import _storage as storage
from bench._procs import ROOT, Child, ProcessGroup, child_env, progress, python


@dataclass
class Env:
    """What the scenarios of one invocation share."""

    tmp: Path
    admin_dsn: str
    pg_pid: int | None
    pg_settings: dict[str, str]
    sim: Child
    sim_url: str
    storage: dict[str, Any] = field(default_factory=dict)
    echo: dict[int, dict[str, Any]] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)  # the loaded history database

    def dsn_for(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path="/" + database))

    def pg_group(self) -> ProcessGroup | None:
        return None if self.pg_pid is None else ProcessGroup("postgres", [self.pg_pid])


@contextlib.contextmanager
def open_env(args: argparse.Namespace) -> Iterator[Env]:
    """PostgreSQL (embedded in a temporary directory, or `--pg-data`, or `--database-url`) and
    the simulator, for the length of the `with`."""
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="gestor-bench-"))
        if not args.keep:
            stack.callback(shutil.rmtree, tmp, True)
        if args.database_url:
            admin_dsn, pg_pid = args.database_url, None
        else:
            from gestor.store import start_embedded

            progress("starting the embedded PostgreSQL…", final=True)
            pg_dir = args.pg_data or tmp / "pg"
            pg = start_embedded(pg_dir)
            stack.callback(pg.stop)
            admin_dsn = pg.dsn
            pg_pid = int((pg_dir / "postmaster.pid").read_text().split()[0])
        sim = Child("simulator", python("-m", "gestor", "simulate", "--bind", "127.0.0.1:0"),
                    child_env(), tmp / "simulator.log")
        stack.callback(sim.stop)
        sim_url = sim.wait_line("listening on ", 30)
        settings = storage.arun(storage.server_settings(admin_dsn))
        yield Env(tmp, admin_dsn, pg_pid, settings, sim, sim_url)

def migrate(dsn: str) -> None:
    import trio

    from gestor.store import migrate, open_bridge

    async def run() -> None:
        async with open_bridge(dsn, min_size=1, max_size=1) as bridge:
            await migrate(bridge)

    trio.run(run)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml(data: Mapping[str, Any], prefix: str = "") -> str:
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    out = [f"[{prefix}]"] if prefix and scalars else []
    out += [f"{json.dumps(k) if not re.fullmatch(r'[A-Za-z0-9_-]+', k) else k} = "
            f"{_toml_value(v)}" for k, v in scalars]
    for k, v in tables:
        out.append(_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(out) + "\n"


def _deep_update(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _deep_update(dst[key], value)
        else:
            dst[key] = dict(value) if isinstance(value, Mapping) else value


def config_dir_with(tmp: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """A copy of config/ whose gestor.toml has these settings, by section (`{"platforms":
    {"timeout": 10, "ocs": {"retries": 0}}, "recovery": {...}}`, merged into the shipped ones)."""
    src = ROOT / "config"
    dst = tmp / "config"
    shutil.copytree(src, dst, dirs_exist_ok=True)
    data = tomllib.loads((src / "gestor.toml").read_text())
    _deep_update(data, sections)
    (dst / "gestor.toml").write_text(_toml(data))
    return dst

