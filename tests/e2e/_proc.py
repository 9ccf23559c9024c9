"""Starting `gestor` subprocesses for end-to-end tests and reading their announcements."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_without_rate_limits(where: Path) -> Path:
    """A copy of config/ in `where` with rate limits off: for tests of many requests on one
    mobile (the one-pending guard, the rules' daily limit, a listing asked until each worker has
    answered), which would otherwise get `429 RATE_LIMITED` (README, "Rate limits"; limits have
    tests of their own)."""
    import shutil

    config = where / "config"
    shutil.copytree(ROOT / "config", config, dirs_exist_ok=True)
    text = (config / "gestor.toml").read_text()
    text, found = re.subn(r"(?m)^enabled = true\b", "enabled = false", text)
    assert found == 1, "the shipped [limits] enabled line moved"
    (config / "gestor.toml").write_text(text)
    return config


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any GESTOR_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GESTOR_")}
    env.update(extra)
    return env


def start(args: Sequence[str], env: Mapping[str, str], announce: str,
          timeout: float = 90, **popen: Any) -> tuple[subprocess.Popen[str], str]:
    """Run `python -m gestor ARGS`; wait for a stdout line containing `announce`; return the
    process and the rest of that line after `announce`. `popen` goes to `subprocess.Popen`
    (`start_new_session=True`, `stderr=...`)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gestor", *args], cwd=ROOT, env=dict(env),
        stdout=subprocess.PIPE, text=True, **popen,
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
