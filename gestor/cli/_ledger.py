"""`gestor ledger trial-balance|entries|close`: the double-entry ledger, read (and a day closed)
straight in the database (GESTOR_DATABASE_URL, or the embedded server of the data dir, attached
without ever stopping a running `gestor serve`).

    gestor ledger trial-balance [--from F] [--to T] [--csv|--json]
    gestor ledger entries [--from F] [--to T] [--account A] [--transaction ID] [--csv|--json]
    gestor ledger close DAY [--verify] [--json]

`--from`/`--to`: an ISO 8601 time, or a date (its start in `[purchase] timezone`); `to` defaults
to now, `from` to seven days before. `close DAY` freezes the day's per-account totals (audited,
as `cli:<user>`); a day already closed is checked instead. `close DAY --verify` only checks.
Exit status: 0 fine, 1 a closed day's totals no longer match its entries (or it was never
closed, with --verify), 2 usage or configuration (a day not over yet), 3 the database could not
be read.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import logging
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import trio

from gestor.cli._database import attached_database
from gestor.model import Actor
from gestor.settings import Settings, load_settings
from gestor.startup import StartupError, sole_error

logger = logging.getLogger("gestor")
T = TypeVar("T")
PAGE = 1000
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ACCOUNT_COLUMNS = ("account", "debits", "credits", "balance")
ENTRY_COLUMNS = ("id", "at", "transaction_id", "movement", "account", "debit", "credit", "memo")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ledger = sub.add_parser(
        "ledger", help="the double-entry ledger: trial balance, entries, daily close",
        description="The ledger Gestor's database posts with every money movement. Reads the "
        "database: GESTOR_DATABASE_URL, or the embedded server in the data dir (works while "
        "`gestor serve` runs). Exit status: 0 fine, 1 a closed day no longer matches its "
        "entries, 2 usage or configuration, 3 the database could not be read.")
    commands = ledger.add_subparsers(dest="ledger_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="config directory (default: ./config or "
                       "GESTOR_CONFIG_DIR)")
        p.add_argument("--data-dir", type=Path, help="data dir of the embedded PostgreSQL "
                       "(GESTOR_DATABASE_URL takes precedence)")
        p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING")
        p.add_argument("--json", action="store_true", help="print JSON, as the admin API")

    def period(p: argparse.ArgumentParser) -> None:
        p.add_argument("--from", dest="since", help="start, inclusive: ISO 8601 time or a "
                       "date (its start in [purchase] timezone); default --to minus 7 days")
        p.add_argument("--to", dest="until", help="end, exclusive, the same way; default now")
        p.add_argument("--csv", action="store_true", help="print CSV (a header row first)")

    tb = commands.add_parser("trial-balance", help="per account: debits, credits, balance")
    common(tb)
    period(tb)
    entries = commands.add_parser("entries", help="the entries of a period, oldest first")
    common(entries)
    period(entries)
    entries.add_argument("--account", help="one account (subscriber:<msisdn>, revenue:fees...)")
    entries.add_argument("--transaction", help="one movement's entries (its id)")
    close = commands.add_parser("close", help="freeze a day's per-account totals, or check "
                                "a closed day")
    common(close)
    close.add_argument("day", help="the day, YYYY-MM-DD, in [purchase] timezone")
    close.add_argument("--verify", action="store_true", help="only check the day's frozen "
                       "totals against its entries (exit 1 when they differ)")


def _usage(message: str) -> StartupError:
    return StartupError(message, "command line", 2)


def _bound(raw: str | None, flag: str, timezone: str) -> datetime | None:
    if raw is None:
        return None
    try:
        if _DATE.fullmatch(raw):
            return datetime.combine(date.fromisoformat(raw), time(), ZoneInfo(timezone))
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _usage(f"{flag} is not an ISO 8601 time or a date: {raw!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def period(args: argparse.Namespace, settings: Settings, now: datetime
           ) -> tuple[datetime, datetime]:
    """(from, to) of the command line, as the admin API reads them."""
    until = _bound(args.until, "--to", settings.timezone) or now
    since = _bound(args.since, "--from", settings.timezone) or until - timedelta(days=7)
    if since > until:
        raise _usage("--from must not be after --to")
    if until - since > timedelta(days=settings.ledger_max_period_days):
        raise _usage(f"--from..--to must span at most {settings.ledger_max_period_days} days "
                     "([ledger] max_period_days)")
    return since, until


def _on_store(dsn: str, where: str, work: Callable[[Any], Awaitable[T]]) -> T:
    from gestor.store import DayNotOver, open_store

    async def main() -> T:
        async with open_store(dsn, pool_size=1, apply_migrations=False) as store:
            return await work(store)

    try:
        return trio.run(main)
    except Exception as exc:
        cause = sole_error(exc)
        if isinstance(cause, DayNotOver):
            raise _usage(str(cause)) from None
        logger.debug("the ledger could not be read", exc_info=True)
        raise StartupError(f"cannot read the ledger: {cause}", where, 3) from None


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, data_dir=args.data_dir)
    command = args.ledger_command
    if command == "close":
        if not _DATE.fullmatch(args.day):
            raise _usage(f"DAY must be a date YYYY-MM-DD, got {args.day!r}")
        try:
            day = date.fromisoformat(args.day)
        except ValueError:
            raise _usage(f"DAY must be a date YYYY-MM-DD, got {args.day!r}") from None
        if not 1970 <= day.year < 9999:
            raise _usage(f"DAY must lie between 1970 and 9998, got {args.day!r}")
        return _close(args, settings, day)
    since, until = period(args, settings, datetime.now(UTC))
    tx_id = None
    if command == "entries":
        from gestor.store import ACCOUNT

        if args.account is not None and not ACCOUNT.fullmatch(args.account):
            raise _usage(f"--account is not a ledger account: {args.account!r}")
        if args.transaction is not None:
            try:
                tx_id = uuid.UUID(args.transaction)
            except ValueError:
                raise _usage(f"--transaction must be a UUID: {args.transaction!r}") from None
    with attached_database(settings) as (dsn, where):
        if command == "trial-balance":
            accounts = _on_store(dsn, where, lambda s: s.trial_balance(since, until))
            rows = [a.as_dict() for a in accounts]
            if args.csv:
                _write_csv(ACCOUNT_COLUMNS, rows)
            elif args.json:
                _write_json({"from": since.isoformat(), "to": until.isoformat(),
                             "accounts": rows,
                             "total_debits": sum(r["debits"] for r in rows),
                             "total_credits": sum(r["credits"] for r in rows)})
            else:
                sys.stdout.write(render_trial_balance(rows, since, until))
            return 0

        async def every(store: Any) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            after = 0
            while True:
                page = await store.ledger_entries(since, until, account=args.account,
                                                  transaction_id=tx_id, after_id=after,
                                                  limit=PAGE)
                out += [e.as_dict() for e in page]
                if len(page) < PAGE:
                    return out
                after = page[-1].id

        rows = _on_store(dsn, where, every)
    if args.csv:
        _write_csv(ENTRY_COLUMNS, rows)
    elif args.json:
        _write_json({"entries": rows, "next": None})
    else:
        sys.stdout.write(render_entries(rows))
    return 0


def _close(args: argparse.Namespace, settings: Settings, day: date) -> int:
    actor = Actor("cli", f"cli:{getpass.getuser()}")
    with attached_database(settings) as (dsn, where):
        if args.verify:
            check = _on_store(dsn, where, lambda s: s.check_ledger_day(day))
            if check is None:
                print(f"gestor: {day} was never closed", file=sys.stderr)
                return 1
        else:
            check = _on_store(dsn, where,
                              lambda s: s.close_ledger_day(day, settings.timezone, actor))
    if args.json:
        _write_json(check.as_dict())
    else:
        sys.stdout.write(render_close(check.as_dict()))
    return 0 if check.matches else 1


# -- output ---------------------------------------------------------------------------------------
def _write_json(body: Any) -> None:
    sys.stdout.write(json.dumps(body, ensure_ascii=False, indent=1) + "\n")


def _write_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(columns)
    out.writerows([row[c] for c in columns] for row in rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in [header, *rows]]


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_trial_balance(rows: Sequence[dict[str, Any]], since: datetime, until: datetime
                         ) -> str:
    """The trial balance as an aligned table with its totals."""
    head = f"trial balance {_when(since)} .. {_when(until)} (UTC, minor units)"
    if not rows:
        return f"{head}\nno entries in this period\n"
    body = [[r["account"], str(r["debits"]), str(r["credits"]), str(r["balance"])]
            for r in rows]
    debits, credits = sum(r["debits"] for r in rows), sum(r["credits"] for r in rows)
    body.append(["TOTAL", str(debits), str(credits), str(debits - credits)])
    lines = [head, *_table(["ACCOUNT", "DEBITS", "CREDITS", "BALANCE"], body, {1, 2, 3})]
    lines.append("balanced" if debits == credits else f"NOT BALANCED: off by {debits - credits}")
    return "\n".join(lines) + "\n"


def render_entries(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "no entries match\n"
    body = [[str(r["id"]), _when(datetime.fromisoformat(r["at"])), r["transaction_id"],
             r["movement"], r["account"], str(r["debit"] or ""), str(r["credit"] or ""),
             r["memo"]] for r in rows]
    lines = _table(["ID", "AT (UTC)", "TRANSACTION", "MOVEMENT", "ACCOUNT", "DEBIT", "CREDIT",
                    "MEMO"], body, {0, 5, 6})
    lines.append(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")
    return "\n".join(lines) + "\n"


def render_close(check: dict[str, Any]) -> str:
    """A close and its check, for a human."""
    what = "closed now" if check["created"] else f"closed at {check['closed_at']}"
    lines = [f"ledger day {check['day']} ({check['timezone']}): {what} by {check['closed_by']}",
             f"  {check['entries']} entries, debits {check['total_debits']} = credits "
             f"{check['total_credits']}"]
    lines += ["  " + line for line in _table(
        ["ACCOUNT", "DEBITS", "CREDITS", "BALANCE"],
        [[a["account"], str(a["debits"]), str(a["credits"]), str(a["balance"])]
         for a in check["accounts"]], {1, 2, 3})]
    if check["matches"]:
        lines.append("OK: the entries still add up to the frozen totals")
    else:
        lines.append(f"MISMATCH: the day now has {check['entries_now']} entries; differences:")
        lines += [f"  {d['account']}: closed {d['closed_debits']}/{d['closed_credits']}, now "
                  f"{d['debits']}/{d['credits']} (debits/credits)" for d in check["differences"]]
    return "\n".join(lines) + "\n"
