"""Starting `gestor` subprocesses for end-to-end tests and reading their announcements."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any GESTOR_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GESTOR_")}
    env.update(extra)
    return env


def start(args: Sequence[str], env: Mapping[str, str], announce: str,
          timeout: float = 90, stderr: IO[str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Run `python -m gestor ARGS`; wait for a stdout line containing `announce`; return the
    process and the rest of that line after `announce`. `stderr` (the log) is inherited
    unless given a file to write to."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gestor", *args], cwd=ROOT, env=dict(env),
        stdout=subprocess.PIPE, stderr=stderr, text=True,
    )
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"gestor {args[0]} exited with {proc.wait()} before it was "
                                   "ready")
            if announce in line:
                return proc, line.split(announce, 1)[1].strip()
    finally:
        selector.close()
    stop(proc)
    raise RuntimeError(f"gestor {args[0]} did not announce {announce!r} within {timeout} s")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode
