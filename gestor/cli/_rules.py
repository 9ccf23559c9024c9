"""`gestor rules check|dry-run|push`: work on rule-set files, locally or against a server.

`check` needs no server: it compiles FILE against the catalogue and names every bad rule.
`dry-run` and `push` talk to a running server's admin API (`--url`, key in GESTOR_ADMIN_KEY).
Exit status: 0 fine, 1 the rule set was refused (or the server said no), 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from gestor.catalogue import CatalogueError, load_catalogue
from gestor.cli._admin_client import AdminApiError, open_admin
from gestor.rulebook import check_source
from gestor.rules import RuleSetError
from gestor.settings import load_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser("rules", help="check, dry-run or push a rule-set file")
    actions = rules.add_subparsers(dest="rules_command", required=True)
    check = actions.add_parser("check", help="compile FILE against the catalogue (no server)")
    check.add_argument("file", type=Path)
    check.add_argument("--config", type=Path, help="config directory (for the catalogue)")
    for name, text in (("dry-run", "evaluate FILE against subscribers on a running server"),
                       ("push", "store FILE as a new draft version on a running server")):
        p = actions.add_parser(name, help=text)
        p.add_argument("file", type=Path)
        p.add_argument("--url", help="the server (default GESTOR_URL, else the running `gestor "
                       "serve` of the data directory, else http://127.0.0.1:8080); the admin key "
                       "comes from GESTOR_ADMIN_KEY, else that server's <data dir>/admin.key")
        p.add_argument("--config", type=Path, help="config directory (GESTOR_CONFIG_DIR)")
        p.add_argument("--data-dir", type=Path, help="the data directory of the `gestor serve` "
                       "to talk to (GESTOR_DATA_DIR)")
        if name == "dry-run":
            p.add_argument("--msisdn", action="append", required=True, help="repeatable")
            p.add_argument("--channel")
            p.add_argument("--bono")
        else:
            p.add_argument("--description", default="")
            p.add_argument("--activate", action="store_true", help="activate it at once")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"gestor rules: cannot read {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    source = _read(args.file)
    if args.rules_command == "check":
        settings = load_settings(args.config)
        try:
            catalogue = load_catalogue(settings.catalogue_path)
            warnings = check_source(source, catalogue, settings.timezone)
        except RuleSetError as exc:
            for issue in exc.issues:
                print(f"{args.file}: {issue}", file=sys.stderr)
            return 1
        except CatalogueError as exc:
            print(f"gestor rules: {exc}", file=sys.stderr)
            return 2
        for warning in warnings:
            print(f"{args.file}: {warning}", file=sys.stderr)
        print(f"{args.file}: OK ({len(warnings)} warning(s))")
        return 0

    from gestor.cli._status import server_and_key

    data_dir = load_settings(args.config, data_dir=args.data_dir).data_dir
    url, key = server_and_key(args.url, data_dir)
    if not key:
        print("gestor rules: set GESTOR_ADMIN_KEY to the server's admin key (none in "
              f"{data_dir / 'admin.key'})", file=sys.stderr)
        return 2
    try:
        return trio.run(_remote, args, source, key, url)
    except AdminApiError as exc:
        print(f"gestor rules: {exc} ({exc.status or 'no answer'})", file=sys.stderr)
        for issue in exc.problem.get("issues", []):
            where = issue.get("rule_id") or issue.get("section")
            print(f"  {where}: {issue.get('message')}", file=sys.stderr)
        return 1


async def _remote(args: argparse.Namespace, source: str, key: str, url: str) -> int:
    """`dry-run` or `push` against the server's admin API at `url`."""
    async with open_admin(url, key) as admin:
        if args.rules_command == "dry-run":
            result = await admin.dry_run(source, args.msisdn, args.channel, args.bono)
            print(json.dumps(result, indent=2))
            return 0
        created = await admin.create(source, args.description)
        print(f"stored as version {created['version']} (draft)")
        if args.activate:
            await admin.activate(created["version"])
            print(f"version {created['version']} is active")
        return 0
