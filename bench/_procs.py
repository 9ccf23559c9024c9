"""Child processes of a bench run and what they cost: start/stop, CPU and memory from /proc.

Everything here is synchronous: the orchestrator is a plain loop that sleeps, samples and talks
to its children; only the load generators (bench/_load.py) run an event loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """This environment without GESTOR_* settings (the bench decides them), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GESTOR_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra)
    return env


# -- /proc -----------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    return raw[raw.rindex(b")") + 2:].decode().split()


def cpu_seconds(pid: int, *, children: bool = False) -> float | None:
    """utime + stime of `pid` (plus the reaped children's cutime + cstime if `children`)."""
    fields = _stat(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def rss_bytes(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[21]) * PAGE if fields else 0


def descendants(roots: Iterable[int]) -> set[int]:
    """`roots` and every live process below them."""
    parent_of: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parent_of[int(entry.name)] = int(fields[1])
    found = {r for r in roots if r in parent_of}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent_of.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


class ProcessGroup:
    """CPU and RSS of a set of processes: `roots` and their descendants, found anew at every
    sample. CPU is cumulative per pid, so a process that exits keeps its last sampled value;
    a root's reaped children (e.g. PostgreSQL backends) are counted through cutime/cstime."""

    def __init__(self, name: str, roots: Sequence[int]) -> None:
        self.name = name
        self.roots = list(roots)
        self._cpu: dict[int, float] = {}
        self.pids: set[int] = set()
        self.rss = 0
        self.peak_rss = 0

    def sample(self) -> float:
        """Refresh; return the cumulative CPU seconds of the group."""
        self.pids = descendants(self.roots)
        rss = 0
        for pid in self.pids:
            cpu = cpu_seconds(pid, children=pid in self.roots)
            if cpu is not None:
                self._cpu[pid] = cpu
                rss += rss_bytes(pid)
        self.rss = rss
        self.peak_rss = max(self.peak_rss, rss)
        return self.cpu

    @property
    def cpu(self) -> float:
        return sum(self._cpu.values())


# -- subprocesses ----------------------------------------------------------------------------
class Child:
    """A subprocess whose stdout we read line by line (announcements) and whose stderr goes to
    a log file."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log: Path,
                 cwd: Path = ROOT) -> None:
        self.name = name
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(args), cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
            stderr=self._log, text=True, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_line(self, needle: str, timeout: float) -> str:
        """Wait for a stdout line containing `needle`; return the text after it."""
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.name} exited ({self.proc.wait()}) before it was "
                                       f"ready; see {self.log_path}:\n{self.log_tail()}")
                if needle in line:
                    return line.split(needle, 1)[1].strip()
        finally:
            selector.close()
        raise RuntimeError(f"{self.name} did not print {needle!r} within {timeout} s; "
                           f"see {self.log_path}")

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait, SIGKILL the process group if it does not go."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


# -- tiny HTTP helpers for control endpoints (stdlib: not on any hot path) -------------------
def http_json(method: str, url: str, body: Any = None, timeout: float = 10) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def http_status(url: str, timeout: float = 2) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError):
        return 0


_RUNNING = re.compile(r"(?:\[(\d+)\] \[INFO\] |hypercorn\.error\[(\d+)\][^:\n]*: )Running on "
                      r'|"message":"Running on [^"]*","pid":(\d+)')


def running_workers(log: str) -> set[int]:
    """PIDs of hypercorn workers that logged `Running on` (after their lifespan startup), in
    either log format."""
    return {int(a or b or c) for a, b, c in _RUNNING.findall(log)}


def wait_ready(child: Child, url: str, workers: int, timeout: float = 90) -> None:
    """Every hypercorn worker has started (or the single in-process one), and `url` answers
    200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}); "
                               f"see {child.log_path}:\n{child.log_tail()}")
        if len(running_workers(child.log_text())) >= workers and http_status(url) == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready within {timeout} s; see {child.log_path}:\n"
                       f"{child.log_tail()}")


def progress(text: str, *, final: bool = False) -> None:
    """A progress line on stderr (rewritten in place on a terminal)."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[2K" + text + ("\n" if final else ""))
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()
