"""The two log formats (gestor/logs.py): every line names its worker and, where set, the
request, transaction and mobile it was written for, taken from context variables; JSON is one
object per line (a traceback is one field of it); text keeps a one-line message on one line;
the format is chosen from the settings, else json off a terminal."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys

import pytest

from gestor import logs
from gestor.logs import (
    JsonFormatter,
    TextFormatter,
    msisdn_var,
    request_id_var,
    transaction_id_var,
)


def record(message: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("deep\ninside")
        except ValueError:
            info = sys.exc_info()
    made = logging.LogRecord("gestor.purchase", logging.WARNING, __file__, 1, message, args,
                             info)
    made.created, made.msecs = 1_764_124_466.091, 91.0  # 2025-11-26T02:34:26.091Z
    made.process = 4242
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_json_lines_carry_the_worker_and_the_ids_in_context() -> None:
    def inside() -> str:
        request_id_var.set("req-1")
        transaction_id_var.set("98dd9da6-81d3-4218-a606-9cb7da8a7c09")
        msisdn_var.set("5491100000001")
        return JsonFormatter().format(record("provisioning failed for %s; refunding", "tx",
                                             alarm_id=7))

    line = contextvars.copy_context().run(inside)
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2025-11-26T02:34:26.091Z", "level": "WARNING", "logger": "gestor.purchase",
        "message": "provisioning failed for tx; refunding", "pid": 4242, "worker": "0",
        "request_id": "req-1", "transaction_id": "98dd9da6-81d3-4218-a606-9cb7da8a7c09",
        "msisdn": "5491100000001", "alarm_id": 7,
    }
    # outside that context: no ids
    assert set(json.loads(JsonFormatter().format(record("x")))) == {
        "time", "level", "logger", "message", "pid", "worker"}


def test_a_traceback_is_one_field_of_one_json_line() -> None:
    line = JsonFormatter().format(record("failed", exc=True))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed"
    assert parsed["exception"].startswith("Traceback") and "ValueError: deep\ninside" in \
        parsed["exception"]


def test_text_keeps_a_one_line_message_on_one_line() -> None:
    def inside() -> str:
        transaction_id_var.set("tx-9")
        return TextFormatter().format(record("database unreachable: connection refused"))

    line = contextvars.copy_context().run(inside)
    assert "\n" not in line
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,091 WARNING gestor.purchase\[4242\] "
                        r"w0 transaction_id=tx-9: database unreachable: connection refused",
                        line), line


def test_the_format_follows_the_settings_else_the_terminal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level

    def ours() -> logging.Formatter | None:
        found = [h for h in root.handlers if getattr(h, "_gestor", False)]
        assert len(found) == 1  # configured again, it replaces its own handler
        return found[0].formatter

    try:
        logs.configure_logging("INFO", "text", worker="3")
        assert isinstance(ours(), TextFormatter) and logs.worker_label() == "3"
        logs.configure_logging("INFO", "json")
        assert isinstance(ours(), JsonFormatter)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
        logs.configure_logging("INFO", None)
        assert isinstance(ours(), TextFormatter)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
        logs.configure_logging("INFO", None, worker="0")
        assert isinstance(ours(), JsonFormatter)
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_gestor", False)]:
            root.removeHandler(handler)
        for handler in before[0]:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(before[1])
        logs._worker = "0"
