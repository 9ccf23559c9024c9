"""Sharing the workers' metrics through files: how one scrape of one port shows them all.

`gestor serve --workers N` gives its workers one directory (`<data dir>/metrics`, emptied at
each start). Each worker process writes its whole snapshot there, `<pid>-<n>.json` (written
aside and renamed: a reader never sees half a file), about once a second; the worker a scrape
reaches adds its own snapshot of the moment to the others' files. A stopped worker's file
stays, marked `.retired` (by the worker as it stops, by the supervisor when one dies): its
counters still count, once, and its gauges no longer show; the worker started in its place has
a new pid, hence a file of its own that starts from zero. A worker killed outright loses at
most its last second of counts.

Why not prometheus-client's multiprocess mode: it writes every increment to a memory-mapped
file under a lock; here a request touches only plain dicts in trio's thread.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

from gestor.processes import process_alive

__all__ = ["Publisher", "prepare_directory", "read_snapshots", "retire_process"]

Snapshot = dict[str, Any]
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_RETIRED = ".retired"
_serial = itertools.count()


def prepare_directory(directory: Path) -> Path:
    """Empty (or make) the metrics directory of a `gestor serve` that starts now."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def retire_process(directory: Path, pid: int) -> None:
    """Mark the files of a process that has stopped: counted, but no longer live."""
    for path in directory.glob(f"{pid}-*.json"):
        with contextlib.suppress(OSError):
            path.rename(path.with_name(path.name + _RETIRED))


def read_snapshots(directory: Path, skip: Path | None = None) -> list[tuple[Snapshot, bool]]:
    """Every snapshot in `directory` but `skip`, with whether its process is live."""
    found: list[tuple[Snapshot, bool]] = []
    for path in directory.iterdir():
        name = path.name
        if path == skip or name.startswith("."):
            continue
        retired = name.endswith(_RETIRED)
        if not retired and not name.endswith(".json"):
            continue
        try:
            snapshot = _decode(path.read_bytes())
        except (OSError, msgspec.DecodeError):
            continue  # removed or renamed meanwhile
        live = not retired and process_alive(int(snapshot.get("pid", 0)))
        found.append((snapshot, live))
    return found


class Publisher:
    """Writes this process's snapshot (`collect()`) to its file in `directory` every
    `interval` seconds while `run` runs, once more as it stops, then retires the file."""

    def __init__(self, directory: Path, collect: Callable[[], Snapshot],
                 interval: float = 1.0) -> None:
        self.directory = directory
        self.collect = collect
        self.interval = interval
        self.path = directory / f"{os.getpid()}-{next(_serial)}.json"

    def write(self) -> None:
        data = _encode(self.collect())
        aside = self.directory / f".{self.path.name}.tmp"
        aside.write_bytes(data)
        os.replace(aside, self.path)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self.write()
        task_status.started()
        try:
            while True:
                await trio.sleep(self.interval)
                self.write()
        finally:
            with contextlib.suppress(OSError):
                self.write()
                self.path.rename(self.path.with_name(self.path.name + _RETIRED))
