"""`gestor mobile MSISDN [--channel C] [--json]`: a subscriber through the profiler, as the
running server sees it (`GET /v1/admin/mobiles/{msisdn}`; the server and key found as
`gestor/cli/_server.py` says).

Printed for a terminal: the profile and its sources, the counters the rules read, the
restrictions in force, what advances owe, the movement in flight, the recent movements and a
weekday-by-hour grid of the peak hours; `--json` prints the server's answer whole.
Exit status: 0 fine, 1 the server could not be reached or refused, 2 usage (a malformed msisdn,
no admin key).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import trio

from gestor.cli._admin_client import AdminApiError, open_admin
from gestor.cli._server import add_server_arguments, find_server

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mobile = sub.add_parser(
        "mobile", help="a subscriber through the profiler: profile, counters, restrictions, "
        "movements, peak hours",
        description="Show a subscriber as the running server sees it now: the profile the "
        "rules assign (and what each platform says), the counters the rules read, the "
        "restrictions in force, what its advances owe, the movement in flight, its recent "
        "movements and its peak hours. Exit status: 0 fine, 1 the server could not be "
        "reached or refused, 2 usage error.")
    mobile.add_argument("msisdn")
    mobile.add_argument("--channel", help="the channel the profile is evaluated for (default "
                        "api)")
    mobile.add_argument("--json", action="store_true", help="print the server's answer whole")
    add_server_arguments(mobile)


def run(args: argparse.Namespace) -> int:
    server = find_server(args, "mobile")
    if server is None:
        return 2
    try:
        found = trio.run(fetch, server.url, server.key, args.msisdn, args.channel)
    except AdminApiError as exc:
        print(f"gestor mobile: {exc} ({exc.status or 'no answer'})", file=sys.stderr)
        return 2 if exc.status == 422 else 1
    if args.json:
        sys.stdout.write(json.dumps(found, ensure_ascii=False, indent=1) + "\n")
    else:
        sys.stdout.write(render(found))
    return 0


async def fetch(url: str, key: str, msisdn: str, channel: str | None = None) -> dict[str, Any]:
    async with open_admin(url, key) as admin:
        return await admin.mobile(msisdn, channel)


# -- the text -----------------------------------------------------------------------------------
def _money(cents: int | None) -> str:
    return "-" if cents is None else f"{cents / 100:,.2f}"


def _when(iso: str | None, tz: ZoneInfo | None) -> str:
    if iso is None:
        return "never"
    moment = datetime.fromisoformat(iso)
    return (moment.astimezone(tz) if tz else moment).strftime("%Y-%m-%d %H:%M:%S")


def _fields(record: Mapping[str, Any], skip: tuple[str, ...] = ("msisdn",)) -> str:
    return " ".join(f"{k}={json.dumps(v) if isinstance(v, bool) else v}"
                    for k, v in record.items() if k not in skip)


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _movement(tx: Mapping[str, Any], tz: ZoneInfo | None) -> str:
    """One line: when, role, kind, bono, the other mobile, money (a purchase's price; a
    movement's amount and fee), state, the id's first 8 characters."""
    what = tx["bono"]["id"] if tx.get("bono") else "-"
    other = ""
    if tx.get("beneficiary") and tx["beneficiary"] != tx["msisdn"]:
        other = (f"to {tx['beneficiary']}" if tx.get("role") != "beneficiary"
                 else f"from {tx['msisdn']}")
    if tx["kind"] == "purchase":
        money = _money(tx.get("price"))
    else:
        money = _money(tx.get("amount")) + (f" +{_money(tx['fee'])}" if tx.get("fee") else "")
    return (f"{_when(tx['created_at'], tz)}  {tx.get('role', ''):<11} {tx['kind']:<8} "
            f"{what:<14} {other:<17} {money:>18}  {tx['state']:<12} {tx['id'][:8]}").rstrip()


def grid(peak: Mapping[str, Any]) -> list[str]:
    """The peak hours as a 7-by-24 grid (a dot for none), weekdays down, hours across."""
    counts = {(c["weekday"], c["hour"]): c["count"] for c in peak["cells"]}
    width = max(2, *(len(str(n)) for n in counts.values())) + 1
    lines = ["     " + "".join(f"{h:>{width}}" for h in range(24))]
    for d, name in enumerate(WEEKDAYS):
        row = "".join(f"{counts.get((d, h), 0) or '.':>{width}}" for h in range(24))
        lines.append(f"{name}  {row}")
    return lines


def render(view: Mapping[str, Any]) -> str:
    """The view for a terminal (times in the server's `[purchase] timezone`)."""
    peak = view["peak_hours"]
    tz = _zone(peak["timezone"])
    profile = view["profile"]
    out = [f"mobile {view['msisdn']} (as of {_when(view['at'], tz)} {peak['timezone']})", ""]
    who = profile["profile_id"] or "not evaluated"
    if profile["profile_id"] is not None:
        who += (f" (rule {profile['rule_id'] or '-'}, rules version {profile['rules_version']},"
                f" channel {profile['channel']})")
    out.append(f"profile      {who}")
    out.append(f"category     {profile['category'] or '-'}")
    if profile["attributes"]:
        out.append(f"attributes   {_fields(profile['attributes'], ())}")
    for name, record in profile["sources"].items():
        out.append(f"{name:<12} {'-' if record is None else _fields(record)}")
    for note in profile["notes"]:
        out.append(f"note         {note}")
    c = view["counters"]
    out += ["",
            f"today        {c['purchases_today']} purchases, {_money(c['spent_today'])} spent; "
            f"{c['gifts_today']} gifts, {_money(c['gifted_today'])} given",
            f"this month   {c['purchases_month']} purchases, {_money(c['spent_month'])} spent",
            f"last bought  {_when(c['last_purchase_at'], tz)}",
            f"advance owed {_money(view['advance_outstanding'])}",
            f"ledger       {_money(view['ledger_balance'])} moved on the balance through Gestor",
            ""]
    if view["restrictions"]:
        out.append("restrictions")
        for r in view["restrictions"]:
            until = f"until {_when(r['until'], tz)}" if r["until"] else "no end"
            out.append(f"  {r['code']:<20} {until:<26} {r['reason'] or ''}".rstrip())
    else:
        out.append("restrictions none")
    pending = view["pending"]
    out.append("in flight    " + ("nothing" if pending is None
                                  else _movement(pending, tz).lstrip()))
    out += ["", f"recent movements ({len(view['recent'])}, newest first)"]
    out += [f"  {_movement(tx, tz)}" for tx in view["recent"]] or ["  none"]
    total = sum(cell["count"] for cell in peak["cells"])
    out += ["", f"peak hours since {_when(peak['from'], tz)[:10]} ({total} movements)",
            *grid(peak)]
    return "\n".join(out) + "\n"
