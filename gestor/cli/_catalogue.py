"""`gestor catalogue check|push`: work on catalogue files, locally or against a server.

`check` needs no server: it parses FILE (TOML, or the same document as JSON), names every bad
entry and field, and compiles the configured seed rules (`rules.toml`) against it. `push`
stores FILE as a draft version on a running server (found as `_server` says), which
compiles its active rules against it first; `--activate` activates it at once.
Exit status: 0 fine, 1 the catalogue was refused (or the server said no), 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from gestor.catalogue import CatalogueError, parse_source
from gestor.cli._server import Server, add_server_arguments, find_server, read_source
from gestor.rulebook import check_source
from gestor.rules import RuleSetError
from gestor.settings import load_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    catalogue = sub.add_parser("catalogue", help="check or push a bono catalogue file")
    actions = catalogue.add_subparsers(dest="catalogue_command", required=True)
    check = actions.add_parser("check", help="parse FILE and compile the seed rules against it "
                               "(no server)")
    check.add_argument("file", type=Path)
    check.add_argument("--config", type=Path, help="config directory (for rules.toml)")
    push = actions.add_parser("push", help="store FILE as a new draft version on a running "
                              "server")
    push.add_argument("file", type=Path)
    add_server_arguments(push)
    push.add_argument("--description", default="")
    push.add_argument("--activate", action="store_true", help="activate it at once")


def run(args: argparse.Namespace) -> int:
    source = read_source(args.file, "catalogue")
    if args.catalogue_command == "check":
        return _check(args, source)
    from gestor.cli._admin_client import AdminApiError

    server = find_server(args, "catalogue")
    if server is None:
        return 2
    try:
        return trio.run(_push, args, source, server)
    except AdminApiError as exc:
        print(f"gestor catalogue: {exc} ({exc.status or 'no answer'})", file=sys.stderr)
        for issue in exc.problem.get("issues", []):
            where = ".".join(str(p) for p in (issue.get("entry"), issue.get("field")) if p)
            print(f"  {where or 'catalogue'}: {issue.get('message')}", file=sys.stderr)
        return 1


async def _push(args: argparse.Namespace, source: str, server: Server) -> int:
    """`push`: store `source` as a draft catalogue version (and activate it)."""
    from gestor.cli._admin_client import open_admin

    async with open_admin(server.url, server.key) as admin:
        created = await admin.create(source, args.description, kind="catalogue")
        print(f"stored as catalogue version {created['version']} (draft)")
        for warning in created.get("warnings", []):
            print(f"  warning: {warning.get('message')}", file=sys.stderr)
        if args.activate:
            await admin.activate(created["version"], kind="catalogue")
            print(f"catalogue version {created['version']} is active")
        return 0


def _check(args: argparse.Namespace, source: str) -> int:
    try:
        catalogue = parse_source(source)
    except CatalogueError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 1
    settings = load_settings(args.config)
    rules = settings.rules_path
    try:
        warnings = check_source(read_source(rules, "catalogue"), catalogue, settings.timezone)
    except RuleSetError as exc:
        print(f"{args.file}: the rules of {rules} do not compile against it:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"{args.file}: {rules.name}: {warning}", file=sys.stderr)
    print(f"{args.file}: OK ({len(catalogue)} bonos, {len(warnings)} warning(s))")
    return 0
