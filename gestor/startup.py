"""Start-up checks of `gestor serve`, each failing with one line: `StartupError` says what went
wrong and where (a file and line, an address, a database), and `gestor` prints it as
`gestor: <what> (<where>)` with a non-zero exit status.

What can be checked before anything starts is (the port, the TLS certificate and key, the
catalogue, the seed rules);
what needs the database is checked right after it is reached, before the simulator and the
workers start.
"""

from __future__ import annotations

import re
import socket
import ssl
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import trio

from gestor.catalogue import Catalogue, CatalogueError, parse_catalogue
from gestor.settings import Settings
from gestor.tomlines import Path as TomlPath
from gestor.tomlines import line_of, syntax_location

__all__ = [
    "StartupError",
    "check_catalogue",
    "check_exposure",
    "check_seed_rules",
    "describe_dsn",
    "open_listener",
    "prepare_database",
    "tls_context",
]


class StartupError(Exception):
    """`gestor serve` cannot start: `what` went wrong, `where`; exit with `status`."""

    def __init__(self, what: str, where: str = "", status: int = 1) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.status = status

    def __str__(self) -> str:
        text = f"{self.what} ({self.where})" if self.where else self.what
        return " ".join(text.split())  # always one line


def sole_error(exc: BaseException) -> BaseException:
    """The one exception inside nested single-exception groups (trio wraps what escapes a
    nursery in a group), or `exc` itself: what a one-line error should name."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def database_failure(exc: BaseException) -> str:
    """One line saying why the database could not be used (`exc` as raised by `trio.run`)."""
    from gestor.store import StoreUnavailable

    cause = sole_error(exc)
    what = str(cause) if isinstance(cause, StoreUnavailable) else \
        f"cannot use the database: {type(cause).__name__}: {cause}"
    return " ".join(what.split())


def _at(path: Path, text: str, where: TomlPath) -> str:
    line = line_of(text, where) if where else None
    return f"{path}, line {line}" if line else str(path)


def _more(count: int, hint: str) -> str:
    return f"; and {count} more problem(s): {hint}" if count else ""


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"cannot read {path.name}: {exc}", str(path), 2) from None


# -- the catalogue -------------------------------------------------------------------------------
_BONO_PROBLEM = re.compile(r"bono #(\d+)(?: '[^']*')?: (\w+):")
_TOP_PROBLEM = re.compile(r"(?:unknown top-level key '(\w+)'|(\w+):)")


def _catalogue_path(problem: str) -> TomlPath:
    """Where in bonos.toml a `CatalogueError` problem is (see `catalogue._parse_bono`)."""
    match = _BONO_PROBLEM.match(problem)
    if match:
        return ("bono", int(match.group(1)) - 1, match.group(2))
    match = _TOP_PROBLEM.match(problem)
    if match:
        return (match.group(1) or match.group(2),)
    return ()


def check_catalogue(settings: Settings) -> Catalogue:
    """The catalogue of `bonos.toml`, or a `StartupError` naming its first problem's line."""
    path = settings.catalogue_path
    text = _read(path)
    try:
        return parse_catalogue(text)
    except CatalogueError as exc:
        first = exc.problems[0]
        if first.startswith("not valid TOML: "):
            what, at = syntax_location(first)
            raise StartupError(f"{path.name}: {what}", f"{path}, {at}" if at else str(path),
                               2) from None
        raise StartupError(f"bono catalogue refused: {first}"
                           f"{_more(len(exc.problems) - 1, 'fix them all, then start again')}",
                           _at(path, text, _catalogue_path(first)), 2) from None


# -- the seed rules ------------------------------------------------------------------------------
def _rule_path(text: str, section: str, rule_id: str | None, field: str | None) -> TomlPath:
    """Where in rules.toml an issue of rule `rule_id` (an id, or `#n`) in `section` is."""
    fields = tuple(field.split(".")) if field else ()
    if not section:
        return fields
    try:
        entries = tomllib.loads(text).get(section, [])
    except tomllib.TOMLDecodeError:
        return (section,)
    index = None
    if isinstance(entries, list):
        for n, entry in enumerate(entries):
            if rule_id in (f"#{n + 1}", entry.get("id") if isinstance(entry, dict) else None):
                index = n
                break
    return (section,) if index is None else (section, index, *fields)


def check_seed_rules(settings: Settings, catalogue: Catalogue) -> StartupError | None:
    """Why `rules.toml` cannot seed the rule book (it only does on a database without rules,
    so the caller raises this only then), or None."""
    from gestor.rulebook import check_source
    from gestor.rules import RuleSetError

    path = settings.rules_path
    text = _read(path)
    try:
        check_source(text, catalogue, settings.timezone)
    except RuleSetError as exc:
        errors = [i for i in exc.issues if i.severity == "error"] or list(exc.issues)
        first = errors[0]
        if first.message.startswith("not valid TOML: "):
            what, at = syntax_location(first.message)
            return StartupError(f"{path.name}: {what}", f"{path}, {at}" if at else str(path), 2)
        hint = f"`gestor rules check {path}` lists them"
        where = _at(path, text, _rule_path(text, first.section, first.rule_id, first.field))
        issue = str(first).removeprefix("error: ").splitlines()[0]  # CEL adds a caret diagram
        return StartupError(f"seed rule set refused: {issue}"
                            f"{_more(len(errors) - 1, hint)}", where, 2)
    return None


# -- the port ------------------------------------------------------------------------------------
def open_listener(settings: Settings) -> socket.socket:
    """The listening socket of a one-worker server; with several workers, a probe (closed by
    the caller) that no other process listens on the port: each worker binds its own with
    SO_REUSEPORT, which would otherwise share the port with any other such server."""
    from gestor.serving import listening_socket

    try:
        return listening_socket(settings.bind, reuse_port=False)
    except OSError as exc:
        raise StartupError(f"cannot listen: {(exc.strerror or str(exc)).lower()}",
                           settings.bind) from None


# -- TLS ---------------------------------------------------------------------------------------
def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context if `[server] certfile/keyfile` are set (else None), or a
    `StartupError` naming the file at fault and what is wrong with it."""
    if settings.certfile is None or settings.keyfile is None:
        return None  # `load_settings` refuses one without the other
    from gestor.serving import TLSConfigError, server_context

    try:
        return server_context(settings.certfile, settings.keyfile)
    except TLSConfigError as exc:
        raise StartupError(exc.what, exc.where, 2) from None


# -- the database --------------------------------------------------------------------------------
def describe_dsn(dsn: str) -> str:
    """A database URL without credentials, for logs and messages."""
    parts = urlsplit(dsn)
    if not parts.scheme:
        return "an unparsable database URL"
    return f"{parts.scheme}://{parts.hostname or 'localhost'}{':' if parts.port else ''}" \
           f"{parts.port or ''}{parts.path}"


@attrs.frozen
class Prepared:
    """What `prepare_database` did: the migrations it applied, whether the database already
    has an active rule set, and whether it has an active channel key."""

    applied: tuple[str, ...]
    has_rules: bool
    has_channel_keys: bool = False


def prepare_database(dsn: str, where: str) -> Prepared:
    """Connect, migrate and look for rules (blocking); a `StartupError` if it cannot."""
    from gestor.store import KeyStore, has_active_rules, migrate, open_bridge

    async def run() -> Prepared:
        async with open_bridge(dsn, min_size=1, max_size=1) as bridge:
            applied = await migrate(bridge)
            return Prepared(tuple(applied), await has_active_rules(bridge),
                            await KeyStore(bridge).has_active_channel_keys())

    try:
        return trio.run(run)
    except Exception as exc:
        raise StartupError(database_failure(exc), where) from None


# -- exposure ------------------------------------------------------------------------------------
def check_exposure(settings: Settings, has_channel_keys: bool) -> str:
    """Refuse to serve channel calls without keys anywhere but on loopback; else what the
    start-up line adds: a note when channel calls are open (loopback, no channel key)."""
    from gestor.keys import is_loopback

    if settings.api_keys or has_channel_keys:
        return ""
    if is_loopback(settings.bind):
        return " (no channel keys: channel calls open to this machine only)"
    raise StartupError(
        "no channel keys: refusing to serve channel calls on a non-loopback address without "
        "keys; create one (gestor keys create --name NAME --channel CHANNEL) or set "
        "GESTOR_API_KEYS, or bind to 127.0.0.1", settings.bind, 2)
