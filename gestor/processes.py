"""Whether a process is alive, asked of the kernel: the embedded PostgreSQL's supervisor, the
metrics files of stopped workers and `gestor status` all ask it."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """`pid` names a live process (one this user may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
