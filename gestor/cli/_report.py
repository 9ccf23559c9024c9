"""`gestor report series|breakdown|peak-hours|latency [--from --to --kind --every --by]
[--csv|--json]`: a report of the running server's admin API (`--url`, key in GESTOR_ADMIN_KEY
or the local server's data dir), printed as a readable table; `--csv` the same rows as CSV,
`--json` the API's answer whole. `gestor report rebuild [--from --to]` recomputes the rollups
from the movements, in the database itself (GESTOR_DATABASE_URL, or the embedded server of the
data dir): after a bulk load, or to check the rollups.

Exit status: 0 fine (also for an empty report), 2 usage or configuration (a 422 from the
server: the field is named), 1 the server or database could not answer.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import trio

from gestor.cli._admin_client import AdminApiError, open_admin
from gestor.cli._database import attached_database
from gestor.reports import csv_text, table_text
from gestor.settings import load_settings
from gestor.startup import StartupError, sole_error

logger = logging.getLogger("gestor")

REPORTS = ("series", "breakdown", "peak-hours", "latency")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report", help="reports: series, breakdown, peak hours, latency; rebuild the rollups",
        description="Reports over every worker and node, from the server's admin API (a "
        "table; --csv, --json). `rebuild` recomputes the hourly rollups from the movements in "
        "the database. Exit status: 0 fine, 2 usage or configuration, 1 no answer.")
    which = report.add_subparsers(dest="report_command", required=True)
    for name in (*REPORTS, "rebuild"):
        p = which.add_parser(name)
        p.add_argument("--from", dest="start", help="RFC 3339 time or YYYY-MM-DD (default: "
                       "--to minus 7 days; rebuild: all time)")
        p.add_argument("--to", dest="end", help="RFC 3339 time or YYYY-MM-DD, exclusive "
                       "(default now; rebuild: all time)")
        p.add_argument("--config", type=Path, help="config directory (GESTOR_CONFIG_DIR)")
        p.add_argument("--data-dir", type=Path, help="the data directory of the `gestor "
                       "serve` (its URL and admin key; rebuild: its embedded database)")
        p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING")
        if name == "rebuild":
            continue
        p.add_argument("--url", help="the server (default GESTOR_URL, else the running "
                       "`gestor serve` of the data dir, else http://127.0.0.1:8080; see "
                       "gestor/cli/_server.py)")
        if name != "latency":
            p.add_argument("--kind", help="purchase, transfer, advance or topup")
        if name in ("series", "latency"):
            p.add_argument("--every", default="hour", help="hour (default) or day")
        if name == "breakdown":
            p.add_argument("--by", help="bono (default), channel, profile, segment or rule")
        out = p.add_mutually_exclusive_group()
        out.add_argument("--csv", action="store_true", help="the rows as CSV")
        out.add_argument("--json", action="store_true", help="the API's JSON answer")


def run(args: argparse.Namespace) -> int:
    if args.report_command == "rebuild":
        return _rebuild(args)
    from gestor.cli._server import find_server

    server = find_server(args, "report")
    if server is None:
        return 2
    params = {k: v for k, v in (("from", args.start), ("to", args.end),
                                ("kind", getattr(args, "kind", None)),
                                ("every", getattr(args, "every", None)),
                                ("by", getattr(args, "by", None))) if v}
    try:
        answer = trio.run(_ask, server.url, server.key, args.report_command, params)
    except AdminApiError as exc:
        field = exc.problem.get("field")
        print(f"gestor report: {exc}" + (f" ({field})" if field else "")
              + f" ({exc.status or 'no answer'})", file=sys.stderr)
        return 2 if exc.status in (400, 422) else 1
    rows = answer["cells"] if args.report_command == "peak-hours" else answer["rows"]
    if args.json:
        sys.stdout.write(json.dumps(answer, ensure_ascii=False, indent=1) + "\n")
    elif args.csv:
        sys.stdout.write(csv_text(args.report_command, rows))
    else:
        sys.stdout.write(_title(args.report_command, answer) + table_text(args.report_command,
                                                                           rows))
    return 0


async def _ask(url: str, key: str, name: str, params: dict[str, str]) -> dict[str, Any]:
    async with open_admin(url, key) as admin:
        return await admin.report(name, params)


def _title(name: str, answer: dict[str, Any]) -> str:
    lines = []
    if "from" in answer:
        zone = answer.get("timezone")
        lines.append(f"{name} from {answer['from']} to {answer['to']}"
                     + (f" ({zone})" if zone else ""))
    if name == "series":
        lines.append(f"advances outstanding at the end: {answer['advances_outstanding']}")
    return "".join(f"{line}\n" for line in lines)


def _moment(raw: str | None, flag: str, tz: ZoneInfo) -> datetime | None:
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), tzinfo=tz)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise StartupError(f"{flag} is not an RFC 3339 time or a date: {raw!r}",
                           "command line", 2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rebuild(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, data_dir=args.data_dir)
    tz = ZoneInfo(settings.timezone)
    start, end = _moment(args.start, "--from", tz), _moment(args.end, "--to", tz)
    if start is not None and end is not None and start > end:
        raise StartupError("--from is after --to", "command line", 2)
    with attached_database(settings) as (dsn, where):
        try:
            movements = trio.run(rebuild, dsn, start, end)
        except Exception as exc:
            logger.debug("the rebuild failed", exc_info=True)
            why = sole_error(exc) or type(exc).__name__  # a timeout says nothing else
            raise StartupError(f"cannot rebuild the reports: {why}", where) from None
    print(f"rollups rebuilt: {movements} movement(s)")
    return 0


async def rebuild(dsn: str, start: datetime | None, end: datetime | None) -> int:
    """Recompute the rollups of [start, end) from the movements (audited as the CLI user)."""
    from gestor.model import Actor
    from gestor.store import open_store

    async with open_store(dsn, pool_size=1, apply_migrations=False) as store:
        actor = Actor("cli", f"cli:{getpass.getuser()}")
        return await store.reports.rebuild(start, end, actor)
