"""Helpers of the key tests: Gestor served on a real loopback socket with given settings, keys
minted straight into its database, and a watch for leaked secrets: every log record (all
loggers, DEBUG) and every response body and header while a test runs, checked for the raw keys
the test made (their secrets and hashes too)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request

from gestor.api import GestorApp, create_app
from gestor.keys import new_key, parse
from gestor.model import Actor
from gestor.ratelimits import LimitSettings
from gestor.settings import Settings, load_settings
from gestor.simulator import SimulatorHandle
from gestor.store import KeyStore, NewKey

T = TypeVar("T")
ADMIN_KEY = "keys-test-admin-key-0123456789"
TEST_ACTOR = Actor("test", "test")


class _Capture(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + repr(record.args))
        except Exception as exc:  # a record that cannot be formatted: keep what it has
            self.lines.append(f"{record.msg!r} {record.args!r} {exc!r}")


@attrs.define
class Leaks:
    """What a test produced that must not hold a secret."""

    secrets: set[str] = attrs.field(factory=set)
    logs: list[str] = attrs.field(factory=list)
    bodies: list[str] = attrs.field(factory=list)

    def add_secret(self, raw: str) -> str:
        self.secrets.add(raw)
        parsed = parse(raw)
        if parsed is not None:
            from gestor.keys import digest

            self.secrets.add(parsed[1])
            self.secrets.add(digest(parsed[1]).hex())
        return raw

    def record(self, text: str) -> None:
        self.bodies.append(text)

    def found(self) -> list[tuple[str, str]]:
        return [(secret[:6] + "...", text[:200]) for secret in self.secrets
                for text in (*self.logs, *self.bodies) if secret in text]


def watch_leaks() -> Iterator[Leaks]:
    """For a `leaks` fixture: capture every log record at DEBUG while the test runs; then
    assert no secret the test registered appears in any of them, nor in any response
    recorded."""
    found = Leaks()
    handler = _Capture(found.logs)
    root = logging.getLogger()
    levels = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
              if isinstance(logger, logging.Logger)}
    root_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield found
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert found.found() == []


def settings_for(config_dir: Path, data_dir: Path, **changes: Any) -> Settings:
    """The shipped settings with the test admin key, rate limits off (these tests poll one
    mobile for as long as a change takes to reach every worker; limits have their own tests)."""
    base = load_settings(config_dir, environ={}, data_dir=data_dir)
    changes.setdefault("limits", LimitSettings(enabled=False))
    # no background fold of report facts between a refused request's row counts
    changes.setdefault("report_fold_interval", 3600.0)
    return attrs.evolve(base, admin_key=ADMIN_KEY, **changes)


@attrs.frozen
class Served:
    app: GestorApp
    url: str


@contextlib.asynccontextmanager
async def served_app(settings: Settings, database_url: str, platforms_url: str,
                     leaks: Leaks | None = None) -> AsyncIterator[Served]:
    """Gestor's app served by hypercorn on 127.0.0.1 (a free port), recording every response's
    headers and body into `leaks`."""
    app = create_app(settings, database_url, platforms_url)
    if leaks is not None:
        leaks.add_secret(settings.admin_key)
        for key in settings.api_keys.values():
            leaks.add_secret(key)

        @app.after_request
        async def _record(response: Response) -> Response:
            if (request.path.startswith("/v1/admin/keys") and request.method == "POST"
                    and response.status_code == 201):
                return response  # the one answer meant to hold a raw key (shown once)
            body = await response.get_data(as_text=True)
            leaks.record(f"{response.status_code} {dict(response.headers)!r} {body}")
            return response

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 2
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            binds = await nursery.start(
                functools.partial(serve, app, config, shutdown_trigger=stop.wait))
        yield Served(app, binds[0])
        stop.set()


async def mint(keys: KeyStore, name: str, *, leaks: Leaks | None = None, role: str | None = None,
               channels: tuple[str, ...] = ("*",), calls: tuple[str, ...] = ("*",),
               prefixes: tuple[str, ...] = (), read_all: bool = False) -> tuple[str, str]:
    """A stored key: (its id, the raw key)."""
    key_id, raw, hashed = new_key()
    if role is not None:
        new = NewKey(key_id, name, "operator", hashed, role=role)
    else:
        new = NewKey(key_id, name, "channel", hashed, channels=channels, calls=calls,
                     msisdn_prefixes=prefixes, read_all=read_all)
    assert await keys.create(new, TEST_ACTOR) is not None
    if leaks is not None:
        leaks.add_secret(raw)
    return key_id, raw


async def eventually(check: Callable[[], Awaitable[T]], done: Callable[[T], bool],
                     within: float) -> T:
    """Ask `check()` until `done(answer)`, for at most `within` seconds (a change made
    elsewhere, which no event here can announce); the last answer."""
    with trio.fail_after(within):
        while True:
            answer = await check()
            if done(answer):
                return answer
            await trio.sleep(0.01)


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def leaks() -> Iterator[Leaks]:
    """Fails the test if any registered secret shows up in a log record or a response."""
    yield from watch_leaks()


@pytest.fixture
async def gestor(database_url: str, simulator: SimulatorHandle, config_dir: Path,
                 tmp_path: Path, leaks: Leaks) -> AsyncIterator[Served]:
    """The app served on a real socket, its logs and answers watched for secrets."""
    settings = settings_for(config_dir, tmp_path)
    async with served_app(settings, database_url, simulator.url, leaks) as served:
        yield served
