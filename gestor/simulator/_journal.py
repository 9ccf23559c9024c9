"""Append-only JSON-lines journal that lets the simulator survive its own restart.

Every state change is one line, written with a single unbuffered ``write`` (so it is in the
OS page cache, and survives ``kill -9``, as soon as the call returns; ``fsync=True`` also
survives a power cut). On open the journal is replayed; a torn last line (a write cut short
by a crash) is dropped and cut off the file so later appends start on a clean line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import msgspec

__all__ = ["JOURNAL_NAME", "Journal", "JournalCorrupt"]

JOURNAL_NAME = "simulator.journal"

_log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


class JournalCorrupt(Exception):
    """A line other than the last one is not valid JSON."""


@attrs.define
class Journal:
    path: Path
    fsync: bool
    _file: BinaryIO | None = None
    appended: int = 0

    @classmethod
    def open(cls, state_dir: Path, *, fsync: bool = False) -> tuple[Journal, list[Any]]:
        """Open (creating if needed) the journal in ``state_dir``; return it and its records."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / JOURNAL_NAME
        records: list[Any] = []
        good_end = 0
        if path.exists():
            data = path.read_bytes()
            pos = 0
            while pos < len(data):
                newline = data.find(b"\n", pos)
                end = len(data) if newline < 0 else newline + 1
                line = data[pos:end]
                is_last = end >= len(data)
                try:
                    if newline < 0:
                        raise msgspec.DecodeError("no end of line")
                    records.append(msgspec.json.decode(line))
                except msgspec.DecodeError as exc:
                    if not is_last:
                        raise JournalCorrupt(f"{path}: bad record at byte {pos}: {exc}") from exc
                    _log.warning("journal %s: dropping torn last line (%d bytes)", path, len(line))
                    break
                good_end = end
                pos = end
            if good_end < len(data):
                with path.open("r+b") as f:
                    f.truncate(good_end)
        journal = cls(path, fsync)
        journal._file = path.open("ab", buffering=0)
        return journal, records

    def append(self, record: Any) -> None:
        assert self._file is not None, "journal is closed"
        self._file.write(_encoder.encode(record) + b"\n")
        if self.fsync:
            os.fsync(self._file.fileno())
        self.appended += 1

    def truncate(self) -> None:
        assert self._file is not None, "journal is closed"
        self._file.truncate(0)
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
