"""`gestor keys create|list|revoke|rotate`: manage API keys in the database.

It reaches the database as `gestor reconcile` does (`GESTOR_DATABASE_URL`, or the embedded
server of the data directory, attached without stopping a running `gestor serve`, or started
for the command), and applies pending migrations, so keys can be made before the first serve.
Changes are audited as `cli:<os user>`. A raw key is printed once, alone on standard output
(`KEY=$(gestor keys create ...)`), and is never stored: only a hash of its secret is.
Exit status: 0 done, 1 refused (no such key, already revoked, name in use), 2 usage,
3 the database could not be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import trio

from gestor.keys import ANY, DEFAULT_CALLS, KeyRequestError, key_request, replacement
from gestor.model import Actor
from gestor.rules import CHANNELS
from gestor.settings import Settings, load_settings
from gestor.store import CALLS, ROLES, KeyRecord, KeyStore, NewKey

T = TypeVar("T")

_DURATION = re.compile(r"(\d{1,6})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class KeysError(Exception):
    """A one-line refusal: `gestor: <what> (<where>)`, exit `status`."""

    def __init__(self, what: str, where: str = "", status: int = 1) -> None:
        super().__init__(what)
        self.what, self.where, self.status = what, where, status

    def __str__(self) -> str:
        return f"{self.what} ({self.where})" if self.where else self.what


def duration(value: str) -> timedelta:
    """`90s`, `30m`, `24h`, `7d`, or `0`."""
    if value == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(value)
    if not match:
        raise argparse.ArgumentTypeError(f"a duration such as 30m, 24h or 7d, got {value!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _listed(value: str, known: tuple[str, ...] | frozenset[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v != ANY and v not in known]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"{what} must be among {', '.join(sorted(known))} (or {ANY}: any), got {value!r}")
    return items


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="create, list, revoke or rotate API keys",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = keys.add_subparsers(dest="keys_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="config directory (GESTOR_CONFIG_DIR)")
        p.add_argument("--data-dir", type=Path, help="data directory of the embedded "
                       "PostgreSQL (GESTOR_DATA_DIR), unless GESTOR_DATABASE_URL is set")
        p.add_argument("--log-level", default=None, help=argparse.SUPPRESS)
        p.add_argument("--json", action="store_true", help="print JSON")

    create = actions.add_parser(
        "create", help="make a key and print it (once)",
        description="A channel key (--channel, --call, --msisdn-prefix, --read) or, with "
        "--role, an operator key.")
    common(create)
    create.add_argument("--name", required=True, help="the channel (client) or operator name "
                        "the key stands for: a channel key's transactions carry it")
    create.add_argument("--role", choices=ROLES, help="make an operator key with this role: "
                        "viewer (reads, alarm feed), operator (+ alarms, restrictions), admin "
                        "(+ rules, keys)")
    create.add_argument("--channel", action="append", type=lambda v: _listed(
        v, CHANNELS, "channels"), help="channels it may use, comma-separated or repeated "
        f"({', '.join(sorted(CHANNELS))}, or {ANY}); required for a channel key")
    create.add_argument("--call", action="append", type=lambda v: _listed(
        v, CALLS, "calls"), help=f"calls it may make ({', '.join(CALLS)}, or {ANY}); default "
        f"{','.join(DEFAULT_CALLS)}")
    create.add_argument("--msisdn-prefix", action="append", default=[], help="only mobiles "
                        "whose msisdn starts so (repeatable; default any)")
    create.add_argument("--read", choices=("own", "all"), default="own", help="transactions "
                        "it may read: its own (default) or all")
    create.add_argument("--expires", type=duration, help="valid for this long (30m, 24h, 90d; "
                        "default: until revoked)")

    listing = actions.add_parser("list", help="list keys (never their secrets)")
    common(listing)
    listing.add_argument("--all", action="store_true", help="also revoked and expired keys")

    revoke = actions.add_parser("revoke", help="revoke a key at once, in every worker")
    common(revoke)
    revoke.add_argument("id", help="the key's id (the 12 hex digits after gk_)")

    rotate = actions.add_parser("rotate", help="issue a new key for the same name and scopes; "
                                "the old one stays valid for --grace")
    common(rotate)
    rotate.add_argument("id", help="the id of the key to replace")
    rotate.add_argument("--grace", type=duration, default=timedelta(hours=24),
                        help="how long the old key stays valid (default 24h; 0: refused at once)")


def _flat(groups: list[list[str]] | None) -> list[str]:
    return sorted({v for group in groups or [] for v in group})


def _new_key(args: argparse.Namespace) -> tuple[NewKey, str]:
    expires = datetime.now(UTC) + args.expires if args.expires is not None else None
    try:
        return key_request(args.name, role=args.role, channels=_flat(args.channel),
                           calls=_flat(args.call),
                           msisdn_prefixes=[p.strip() for p in args.msisdn_prefix],
                           read=args.read, expires_at=expires)
    except KeyRequestError as exc:
        option = {"msisdn_prefixes": "msisdn-prefix", "channels": "channel", "calls": "call"}
        raise KeysError(f"--{option.get(exc.field, exc.field)}: {exc}", status=2) from None


def _describe(record: KeyRecord) -> str:
    if record.kind == "operator":
        return f"role {record.role}"
    scope = [f"channels {','.join(record.channels)}", f"calls {','.join(record.calls)}"]
    if record.msisdn_prefixes:
        scope.append(f"msisdn {','.join(p + '*' for p in record.msisdn_prefixes)}")
    scope.append(f"reads {'all' if record.read_all else 'own'}")
    return "; ".join(scope)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def _print_listing(records: list[KeyRecord], as_json: bool) -> None:
    now = datetime.now(UTC)
    if as_json:
        print(json.dumps({"keys": [r.as_dict(now) for r in records]}, indent=2))
        return
    if not records:
        print("no keys", file=sys.stderr)
        return
    rows = [("ID", "KIND", "NAME", "STATUS", "EXPIRES", "SCOPE")]
    rows += [(r.id, r.kind, r.name, r.status(now), _when(r.expires_at), _describe(r))
             for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[5])


@contextlib.contextmanager
def _database(settings: Settings) -> Any:
    """The DSN to use and where it is (for messages); stops an embedded server it started."""
    from gestor.startup import describe_dsn
    from gestor.store import (
        EmbeddedStartError,
        NoEmbeddedDatabase,
        attach_embedded,
        start_embedded,
    )

    if settings.database_url:
        yield settings.database_url, describe_dsn(settings.database_url)
        return
    pg = settings.data_dir / "pg"
    try:
        try:
            embedded = attach_embedded(pg)
        except NoEmbeddedDatabase:
            embedded = start_embedded(pg)  # a first key before the first `gestor serve`
    except EmbeddedStartError as exc:
        raise KeysError(f"the embedded PostgreSQL did not start: {exc}", str(pg), 3) from None
    try:
        yield embedded.dsn, f"embedded PostgreSQL in {pg}"
    finally:
        embedded.stop()


def _run(dsn: str, where: str, work: Callable[[KeyStore], Awaitable[T]]) -> T:
    from gestor.startup import database_failure, sole_error
    from gestor.store import migrate, open_bridge

    async def main() -> T:
        async with open_bridge(dsn, min_size=1, max_size=2) as bridge:
            await migrate(bridge)
            return await work(KeyStore(bridge))

    try:
        return trio.run(main)
    except Exception as exc:
        cause = sole_error(exc)
        if isinstance(cause, KeysError):
            raise cause from None
        raise KeysError(database_failure(cause), where, 3) from None


def run(args: argparse.Namespace) -> int:
    try:
        return _command(args)
    except KeysError as exc:
        print(f"gestor: {exc}", file=sys.stderr)
        return exc.status


def _command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, data_dir=args.data_dir)
    actor = Actor("cli", f"cli:{getpass.getuser()}")
    command = args.keys_command
    new: tuple[NewKey, str] | None = _new_key(args) if command == "create" else None
    with _database(settings) as (dsn, where):
        if command == "list":
            _print_listing(_run(dsn, where, lambda keys: keys.listing(args.all)), args.json)
            return 0
        if command == "create":
            assert new is not None
            key, raw = new
            created = _run(dsn, where, lambda keys: keys.create(key, actor))
            if created is None:
                raise KeysError(f"an active key is already named {key.name!r}: rotate it "
                                "(gestor keys rotate ID) or revoke it first", where)
            _announce(created, raw, args.json, f"created {created.kind} key {created.id} "
                      f"({created.name}: {_describe(created)})")
            return 0
        if command == "revoke":
            outcome = _run(dsn, where, lambda keys: keys.revoke(args.id, actor))
            if outcome is None:
                raise KeysError(f"no key {args.id}", where)
            record, changed = outcome
            if not changed:
                raise KeysError(f"key {args.id} was already revoked at "
                                f"{_when(record.revoked_at)}", where)
            if args.json:
                print(json.dumps(record.as_dict(datetime.now(UTC)), indent=2))
            print(f"revoked key {record.id} ({record.name}); every worker refuses it within "
                  "a second", file=sys.stderr)
            return 0
        assert command == "rotate"
        raws: list[str] = []

        def make(old: KeyRecord) -> NewKey:
            new, raw = replacement(old)
            raws.append(raw)
            return new

        rotated = _run(dsn, where, lambda keys: keys.rotate(args.id, make, args.grace, actor))
        if rotated is None:
            raise KeysError(f"no key {args.id}", where)
        if isinstance(rotated, KeyRecord):
            raise KeysError(f"key {args.id} is {rotated.status(datetime.now(UTC))}: only an "
                            "active key can be rotated", where)
        old, created = rotated
        _announce(created, raws[-1], args.json,
                  f"key {created.id} replaces {old.id} ({created.name}); {old.id} stays valid "
                  f"until {_when(old.expires_at)}")
        return 0


def _announce(record: KeyRecord, raw: str, as_json: bool, message: str) -> None:
    """The raw key, once: alone on stdout (or in the JSON), the rest on stderr."""
    if as_json:
        print(json.dumps({"key": raw, **record.as_dict(datetime.now(UTC))}, indent=2))
    else:
        print(raw)
    print(f"{message}\nthe key is shown only now: only a hash of it is kept", file=sys.stderr)
