"""Logging: the one place it is configured, and the ids every line carries.

Every line names its `worker` (the worker's index under `gestor serve --workers N`, else 0)
and, where they apply, the `request_id`, `transaction_id` and `msisdn` it was written for:
context variables set by the request middleware (gestor/api/_access.py) and by the subscriber
actor and its saga, so a line written deep in a purchase carries them without being passed
them. Two formats on stderr: `json` (one object per line, the default when stderr is not a
terminal) and `text` (one line per event; a traceback follows on its own lines).
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from typing import Any

import msgspec

__all__ = [
    "FORMATS",
    "configure_logging",
    "msisdn_var",
    "request_id_var",
    "transaction_id_var",
    "worker_label",
]

FORMATS = ("json", "text")

#: The request a line was written for (its `Request-Id`), the purchase's transaction id, the
#: mobile it concerns. Unset: the line is about none.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gestor_request_id", default=None)
transaction_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gestor_transaction_id", default=None)
msisdn_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gestor_msisdn", default=None)

_worker = "0"
_encode = msgspec.json.Encoder().encode
#: The LogRecord attributes every record has: anything else came in `extra` and is logged.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def worker_label() -> str:
    """This process's worker: its index under `gestor serve --workers N`, else "0"."""
    return _worker


def _ids(record: logging.LogRecord) -> dict[str, Any]:
    ids: dict[str, Any] = {"worker": _worker}
    for name, var in (("request_id", request_id_var), ("transaction_id", transaction_id_var),
                      ("msisdn", msisdn_var)):
        value = getattr(record, name, None) or var.get()
        if value is not None:
            ids[name] = str(value)
    return ids


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, worker, pid,
    the ids that apply, what `extra=` gave, and the traceback as one string field."""

    _second = -1
    _stamp = ""

    def _time(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record.created, record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        line.update(_ids(record))
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return _encode(line).decode()


class TextFormatter(logging.Formatter):
    """`2026-11-26 02:30:01,123 INFO gestor.api[1234] w0: message request_id=... ...`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s[%(process)d] %(context)s: "
                         "%(message)s")

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        ids = _ids(record)
        context = "w" + ids.pop("worker")
        extra = " ".join(f"{k}={v}" for k, v in ids.items())
        record.context = f"{context} {extra}" if extra else context
        return super().format(record)


def default_format() -> str:
    """`text` on a terminal, else `json` (a service manager, a container, a file)."""
    try:
        return "text" if sys.stderr.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure_logging(level: str | None = None, log_format: str | None = None, *,
                      worker: str | None = None) -> None:
    """Log to stderr at `level` (or GESTOR_LOG_LEVEL, else INFO) in `log_format` (`json`,
    `text`, or None/"auto": `default_format()`); `worker` names this process in every line.
    Called again (a worker once it knows its settings), it replaces what it set before."""
    global _worker
    if worker is not None:
        _worker = worker
    level = (level or os.environ.get("GESTOR_LOG_LEVEL") or "INFO").upper()
    chosen = log_format if log_format in FORMATS else default_format()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_gestor", False)]:
        root.removeHandler(old)
    handler._gestor = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # hypercorn's own access log stays off: gestor writes its own (gestor.access).
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    # pgserver narrates every initdb/pg_ctl command at INFO; its warnings still show.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
