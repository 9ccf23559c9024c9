"""Logging setup for the command-line entry points: one line per event on stderr."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str | None = None) -> None:
    level = (level or os.environ.get("GESTOR_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    # Per-request access logs would cost more CPU than a purchase; hypercorn's stay off.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    # pgserver narrates every initdb/pg_ctl command at INFO; its warnings still show.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
