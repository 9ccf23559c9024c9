"""`gestor audit [--since ISO] [--actor NAME] [--action A] [--json]`: the audit trail, read
straight from the database (GESTOR_DATABASE_URL, or the embedded server of the data dir, which
it attaches to without ever stopping a running `gestor serve`).

A table, one entry a line with a summary of the change (cut to the terminal's width, whole when
piped); `--json` prints every entry whole (before and after), as `GET /v1/admin/audit` does.
Exit status: 0 (also when nothing matches), 2 usage or configuration, 1 the trail could not be
read.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from gestor.cli._database import attached_database
from gestor.settings import load_settings
from gestor.startup import StartupError, sole_error

logger = logging.getLogger("gestor")

PAGE = 500
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser(
        "audit", help="show the audit trail of admin and key actions",
        description="Show the audit trail (who did what, when, with the state before and "
        "after), oldest first. Reads the database: GESTOR_DATABASE_URL, or the embedded server "
        "in the data dir (works while `gestor serve` runs). Exit status: 0 fine (also when "
        "nothing matches), 2 usage or configuration error, 1 the trail could not be read.")
    audit.add_argument("--config", type=Path, help="config directory (default: ./config or "
                       "GESTOR_CONFIG_DIR)")
    audit.add_argument("--data-dir", type=Path, help="data dir of the embedded PostgreSQL "
                       "(GESTOR_DATABASE_URL takes precedence)")
    audit.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING")
    audit.add_argument("--since", help="entries at or after this time (ISO 8601; no zone means "
                       "UTC)")
    audit.add_argument("--actor", help="entries of this key (its name or id)")
    audit.add_argument("--action", help="entries of this action (restriction.delete) or family "
                       "(restriction.)")
    audit.add_argument("--json", action="store_true", help="print the entries as a JSON array, "
                       "before and after whole")


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise StartupError(f"--since is not an ISO 8601 time: {raw!r}", "command line",
                           2) from None
    if not _EARLIEST <= moment < _LATEST:
        raise StartupError(f"--since must lie between 1970 and 9999, got {raw!r}",
                           "command line", 2)
    return moment


def _filters(args: argparse.Namespace) -> tuple[datetime | None, str | None, str | None]:
    from gestor.store import ACTION_FILTER, ACTOR_FILTER

    if args.actor is not None and not ACTOR_FILTER.fullmatch(args.actor):
        raise StartupError("--actor must be a key's name or id: 1 to 128 characters, no "
                           "control characters", "command line", 2)
    if args.action is not None and not ACTION_FILTER.fullmatch(args.action):
        raise StartupError(f"--action must be an action such as restriction.delete or a family "
                           f"such as rules., got {args.action!r}", "command line", 2)
    return _since(args.since), args.actor, args.action


def run(args: argparse.Namespace) -> int:
    """Print the matching entries; errors are `StartupError`s (one line, `gestor: ...`)."""
    since, actor, action = _filters(args)
    settings = load_settings(args.config, data_dir=args.data_dir)
    with attached_database(settings) as (dsn, where):
        try:
            entries = trio.run(_read, dsn, since, actor, action)
        except Exception as exc:
            logger.debug("reading the audit trail failed", exc_info=True)
            raise StartupError(f"cannot read the audit trail: {sole_error(exc)}", where) from None
    if args.json:
        sys.stdout.write(json.dumps(entries, ensure_ascii=False, indent=1) + "\n")
    else:
        columns = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        sys.stdout.write(render_table(entries, columns))
    return 0


async def _read(dsn: str, since: datetime | None, actor: str | None, action: str | None
                ) -> list[dict[str, Any]]:
    """Every matching entry, a page at a time."""
    from gestor.store import open_store

    entries: list[dict[str, Any]] = []
    async with open_store(dsn, pool_size=1, apply_migrations=False) as store:
        after = 0
        while True:
            page = await store.audit_trail(after_id=after, since=since, actor=actor,
                                           action=action, limit=PAGE)
            entries += [e.as_dict() for e in page]
            if len(page) < PAGE:
                return entries
            after = page[-1].id


# -- the table ----------------------------------------------------------------------------------
def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _fields(state: dict[str, Any], known: set[str]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in state.items()
                     if v is not None and _value(v) not in known)


def describe_change(before: Any, after: Any, subject: str = "") -> str:
    """One line saying what changed: `created: ...`, `deleted: ...` or `key: old → new; ...`
    (values the subject already names, such as its msisdn and code, left out)."""
    known = set(subject.split("/"))
    if before is None and after is None:
        return ""
    if before is None:
        return "created: " + (_fields(after, known) if isinstance(after, dict)
                              else _value(after))
    if after is None:
        return "deleted: " + (_fields(before, known) if isinstance(before, dict)
                              else _value(before))
    if isinstance(before, dict) and isinstance(after, dict):
        keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
        if not keys:
            return "no change"
        return "; ".join(f"{k}: {_value(before.get(k))} → {_value(after.get(k))}"
                         for k in keys)
    return f"{_value(before)} → {_value(after)}"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line, whatever the values hold
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def render_table(entries: Sequence[dict[str, Any]], columns: int | None = None) -> str:
    """The entries as an aligned table, one a line; the change cut to fit `columns` (a
    terminal's width), whole when None (piped into a file or `grep`)."""
    if not entries:
        return "no audit entries match\n"
    rows = []
    for e in entries:
        at = datetime.fromisoformat(e["at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        who = e["actor"] if e["actor"] == e["actor_id"] else f"{e['actor']} ({e['actor_id']})"
        rows.append([str(e["id"]), at, _cut(who, 40), e["action"], _cut(e["subject"], 60),
                     describe_change(e["before"], e["after"], e["subject"])])
    header = ["ID", "AT (UTC)", "ACTOR", "ACTION", "SUBJECT", "CHANGE"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    room = None if columns is None else max(columns - sum(widths) - 2 * 5, 30)
    lines = []
    for row in [header, *rows]:
        change = " ".join(row[5].split()) if room is None else _cut(row[5], room)
        cells = [row[i].ljust(widths[i]) for i in range(5)] + [change]
        lines.append("  ".join(cells).rstrip())
    lines.append(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")
    return "\n".join(lines) + "\n"
