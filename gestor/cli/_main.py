"""The `gestor` command: `serve` (the whole system, embedded defaults), `simulate` (the
external platforms' simulator on its own), `reconcile` (transactions against the ledger),
`rules` (rule-set files), `catalogue` (bono catalogue files), `keys` (API keys), `audit`
(the audit trail), `mobile` (a subscriber through the profiler), `ledger` (the double-entry
ledger: trial balance, entries, daily close) and `report` (reports and statistics)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from gestor.cli import _audit as cli_audit
from gestor.cli import _catalogue as cli_catalogue
from gestor.cli import _keys as cli_keys
from gestor.cli import _ledger as cli_ledger
from gestor.cli import _mobile as cli_mobile
from gestor.cli import _report as cli_report
from gestor.cli import _rules as cli_rules
from gestor.cli import _status as cli_status
from gestor.logs import FORMATS, configure_logging
from gestor.settings import Settings, SettingsError, load_settings
from gestor.startup import StartupError, sole_error

if TYPE_CHECKING:
    from gestor.catalogue import Catalogue
    from gestor.reconcile import ReconciliationReport

logger = logging.getLogger("gestor")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config directory (default: ./config or "
                        "GESTOR_CONFIG_DIR)")
    parser.add_argument("--data-dir", type=Path, help="where the embedded PostgreSQL and the "
                        "simulator keep their data (GESTOR_DATA_DIR)")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (GESTOR_LOG_LEVEL)")


def build_parser() -> argparse.ArgumentParser:
    from gestor.metrics import gestor_version

    parser = argparse.ArgumentParser(prog="gestor", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gestor {gestor_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run Gestor (embedded PostgreSQL and simulator unless "
                           "configured otherwise)")
    _common(serve)
    serve.add_argument("--bind", help="HOST:PORT to listen on (default 127.0.0.1:8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--platforms", help="base URL of the external platforms (default: start "
                       "the built-in simulator)")
    serve.add_argument("--certfile", type=Path, help="serve HTTPS and WSS with this certificate "
                       "(PEM, with its intermediates; GESTOR_CERTFILE); needs --keyfile")
    serve.add_argument("--keyfile", type=Path, help="the certificate's private key (PEM, "
                       "unencrypted; GESTOR_KEYFILE)")
    serve.add_argument("--log-format", choices=FORMATS, help="json (one object per line) or "
                       "text (GESTOR_LOG_FORMAT, [logging] format; default: json unless stderr "
                       "is a terminal)")
    sim = sub.add_parser("simulate", help="run the platform simulator on its own")
    _common(sim)
    sim.add_argument("--bind", default="127.0.0.1:8090", help="HOST:PORT (default "
                     "127.0.0.1:8090; port 0 picks a free one)")
    sim.add_argument("--state-dir", type=Path, help="keep the simulator's state here across "
                     "restarts")
    sim.add_argument("--stop-on-eof", action="store_true", help="also stop when standard input "
                     "closes (how `gestor serve` runs it: it never outlives its parent)")
    rec = sub.add_parser(
        "reconcile", help="compare transactions with the charging system's ledger",
        description="Compare Gestor's transactions created in [--since, --until) with the "
        "charging system's debits and refunds; report every mismatch. Exit status: 0 clean, "
        "1 mismatches, 2 usage or configuration error, 3 a side could not be read.")
    _common(rec)
    rec.add_argument("--platforms", help="base URL of the charging system (default "
                     "GESTOR_PLATFORMS_URL, else that of the running `gestor serve` of the data "
                     "directory: its simulator's)")
    rec.add_argument("--since", type=_instant, help="ISO 8601, no zone means UTC (default: "
                     "24 h before --until)")
    rec.add_argument("--until", type=_instant, help="ISO 8601, exclusive (default: now)")
    rec.add_argument("--json", action="store_true", help="print the report as JSON")
    rec.add_argument("--strict", action="store_true", help="unsettled (in-flight or "
                     "inconsistent) transactions count as mismatches")
    cli_rules.add_parser(sub)
    cli_catalogue.add_parser(sub)
    cli_status.add_parser(sub)
    cli_audit.add_parser(sub)
    cli_ledger.add_parser(sub)
    cli_report.add_parser(sub)
    cli_keys.add_parser(sub)
    cli_mobile.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `serve` logs as its settings say (json off a terminal); the simulator it starts, as it
    # does (GESTOR_LOG_FORMAT); the other commands, text.
    log_format = (getattr(args, "log_format", None) if args.command == "serve"
                  else os.environ.get("GESTOR_LOG_FORMAT", "text") if args.command == "simulate"
                  else "text")
    configure_logging(getattr(args, "log_level", None), log_format,
                      worker="simulator" if args.command == "simulate" else None)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "status":
            return cli_status.run(_settings(args), args.json)
        if args.command == "reconcile":
            return reconcile(args)
        if args.command == "rules":
            return cli_rules.run(args)
        if args.command == "catalogue":
            return cli_catalogue.run(args)
        if args.command == "audit":
            return cli_audit.run(args)
        if args.command == "ledger":
            return cli_ledger.run(args)
        if args.command == "report":
            return cli_report.run(args)
        if args.command == "keys":
            return cli_keys.run(args)
        if args.command == "mobile":
            return cli_mobile.run(args)
        return simulate(args)
    except SettingsError as exc:
        print(f"gestor: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"gestor: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(args.config, data_dir=args.data_dir, **extra)


# -- simulate ------------------------------------------------------------------------------------
def simulate(args: argparse.Namespace) -> int:
    from gestor.settings import parse_bind
    from gestor.simulator import SimulatorConfig, run_simulator

    settings = _settings(args)
    host, port = parse_bind(args.bind)
    mapping = dict(settings.simulator)
    if args.state_dir is not None:
        mapping["state_dir"] = str(args.state_dir)
    config = SimulatorConfig.from_mapping(mapping)

    async def until_eof() -> None:
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async with stdin:
            while await stdin.receive_some():
                pass

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_simulator, config, host, port)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with trio.open_nursery() as waiting:
                    async def on_signal() -> None:
                        async for _ in signals:
                            break
                        waiting.cancel_scope.cancel()

                    async def on_eof() -> None:
                        await until_eof()
                        waiting.cancel_scope.cancel()

                    waiting.start_soon(on_signal)
                    if args.stop_on_eof:
                        waiting.start_soon(on_eof)
            nursery.cancel_scope.cancel()

    trio.run(run)
    return 0


# -- reconcile -----------------------------------------------------------------------------------
def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reconcile(args: argparse.Namespace) -> int:
    """Exit 0 when Gestor and the charging system agree, 1 on mismatches, 2 on a usage or
    configuration error, 3 when the database or the ledger could not be read."""
    from gestor.store import NoEmbeddedDatabase, attach_embedded

    settings = _settings(args, platforms_url=args.platforms)
    if not settings.platforms_url:
        state = cli_status.running(settings.data_dir)
        if state is not None and state.get("platforms_url"):
            settings = attrs.evolve(settings, platforms_url=str(state["platforms_url"]))
    if not settings.platforms_url:
        print("gestor: reconcile needs the charging system's URL: pass --platforms URL or set "
              "GESTOR_PLATFORMS_URL (none is running `gestor serve` with data directory "
              f"{settings.data_dir})", file=sys.stderr)
        return 2
    until = args.until or datetime.now(UTC)
    since = args.since or until - timedelta(hours=24)
    if since >= until:
        print("gestor: --since must be before --until", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        dsn = settings.database_url
        if not dsn:
            try:  # attaches to a running `gestor serve`'s server without ever stopping it
                embedded = attach_embedded(settings.data_dir / "pg")
            except NoEmbeddedDatabase as exc:
                print(f"gestor: {exc}; set GESTOR_DATABASE_URL or --data-dir", file=sys.stderr)
                return 2
            stack.callback(embedded.stop)
            dsn = embedded.dsn
        try:
            outcome = trio.run(_reconcile, settings, dsn, since, until, args.strict)
        except Exception as exc:  # a connection that failed while opening
            logger.debug("reconciliation failed", exc_info=True)
            cause = sole_error(exc)
            outcome = f"{type(cause).__name__}: {cause}"
    if isinstance(outcome, str):
        print(f"gestor: reconciliation failed: {outcome}", file=sys.stderr)
        return 3
    from gestor.reconcile import render_json, render_text

    if args.json:
        sys.stdout.write(render_json(outcome).decode() + "\n")
    else:
        sys.stdout.write(render_text(outcome))
    return 0 if outcome.ok else 1


async def _reconcile(settings: Settings, dsn: str, since: datetime, until: datetime,
                     strict: bool) -> ReconciliationReport | str:
    """The report, or why it could not be made (caught in here: trio wraps what escapes the
    store's nursery in an exception group)."""
    from gestor.platforms import PlatformSettings, open_platforms
    from gestor.reconcile import run_reconciliation
    from gestor.store import open_store

    platform_settings = PlatformSettings.from_mapping(
        {**settings.platforms, "url": settings.platforms_url})
    async with open_store(dsn, pool_size=2, apply_migrations=False) as store, \
            open_platforms(platform_settings) as platforms:
        try:
            return await run_reconciliation(store, platforms, since, until, strict=strict,
                                            timezone=settings.timezone)
        except Exception as exc:
            logger.debug("reconciliation failed", exc_info=True)
            return f"{type(exc).__name__}: {exc}"


# -- serve ---------------------------------------------------------------------------------------
def _start_simulator(settings: Settings, stack: contextlib.ExitStack) -> str:
    """Start `gestor simulate` as a child process on a free port; return its URL.

    The child runs in a session of its own, so a Ctrl-C in the terminal (SIGINT to the
    foreground process group) or a SIGTERM to our group does not stop it while the workers
    drain: purchases in flight still reach it. It stops when we close its standard input
    (`--stop-on-eof`), which also happens if this process dies."""
    cmd = [sys.executable, "-m", "gestor", "simulate", "--bind", "127.0.0.1:0", "--stop-on-eof",
           "--config", str(settings.config_dir),
           "--state-dir", str(settings.data_dir / "simulator")]
    from gestor.logs import default_format

    env = {**os.environ, "GESTOR_LOG_FORMAT": settings.log_format or default_format()}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)

    def stop() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stack.callback(stop)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise StartupError("the platform simulator exited before it was ready",
                               " ".join(cmd[1:4]))
        if "listening on " in line:
            url = line.strip().rsplit("listening on ", 1)[1]
            logger.info("platform simulator (pid %d) at %s", proc.pid, url)
            return url
    raise StartupError("the platform simulator did not start within 30 s", " ".join(cmd[1:4]))


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    """Until the server handles SIGTERM itself, SIGTERM is Ctrl-C: it unwinds the start-up, so
    what was started is stopped (as SIGINT, which trio turns into KeyboardInterrupt safely)."""
    os.kill(os.getpid(), signal.SIGINT)


def serve(args: argparse.Namespace) -> int:
    """Check what can be checked before starting anything (settings, port, TLS certificate and
    key, catalogue, seed rules), then the database, then start the simulator and the workers.
    On SIGINT/SIGTERM the workers drain first; the simulator and the embedded database stop
    after them."""
    from gestor.startup import (
        check_catalogue,
        check_exposure,
        describe_dsn,
        open_listener,
        prepare_database,
        tls_context,
    )

    settings = _settings(args, bind=args.bind, workers=args.workers,
                         platforms_url=args.platforms, certfile=args.certfile,
                         keyfile=args.keyfile, log_format=args.log_format)
    configure_logging(args.log_level, settings.log_format or None,
                      worker="0" if settings.workers == 1 else "main")
    try:
        settings = settings.with_admin_key()  # the first write to the data directory
    except OSError as exc:
        raise StartupError(f"cannot use the data directory: {(exc.strerror or str(exc)).lower()}",
                           str(exc.filename or settings.data_dir), 2) from None
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if ignored
    try:
        with contextlib.ExitStack() as stack:
            sock = open_listener(settings)
            stack.callback(sock.close)
            if settings.workers > 1:
                sock.close()  # a probe: each worker binds its own
            tls_context(settings)  # each worker builds its own
            seed_catalogue: Catalogue | StartupError
            try:
                seed_catalogue = check_catalogue(settings)
            except StartupError as exc:  # fatal only to a database without a catalogue
                seed_catalogue = exc
            dsn = settings.database_url
            if dsn:
                where = describe_dsn(dsn)
            else:
                from gestor.store import EmbeddedStartError, start_embedded, supervise_embedded

                try:
                    embedded = start_embedded(settings.data_dir / "pg")
                except EmbeddedStartError as exc:
                    raise StartupError(f"the embedded PostgreSQL did not start: {exc}",
                                       str(settings.data_dir / "pg")) from None
                stack.callback(embedded.stop)
                stack.enter_context(supervise_embedded(embedded))  # restarts it if it dies
                dsn = embedded.dsn
                where = f"embedded PostgreSQL in {embedded.data_dir}"
            prepared = prepare_database(dsn, where)
            seed_problem = prepared.seed_problems(settings, seed_catalogue)
            if seed_problem is not None:
                raise seed_problem
            exposure = check_exposure(settings, prepared.has_channel_keys)
            if not os.environ.get("GESTOR_ADMIN_KEY"):
                logger.info("admin API key: in %s", settings.data_dir / "admin.key")
            logger.info("database: %s", where)
            if prepared.applied:
                logger.info("database migrated: %s", ", ".join(prepared.applied))
            platforms_url = settings.platforms_url or _start_simulator(settings, stack)
            if settings.workers > 1:  # their metrics add up there (gestor/metrics/_files.py)
                from gestor.metrics import prepare_directory

                settings = attrs.evolve(
                    settings, metrics_dir=prepare_directory(settings.data_dir / "metrics"))
            cli_status.record_serve(settings, dsn=dsn, database=where,
                                    platforms_url=platforms_url,
                                    simulator=not settings.platforms_url)
            stack.callback(cli_status.forget_serve, settings)
            if settings.workers == 1:
                code = _serve_one(settings, dsn, platforms_url, sock, exposure)
            else:
                code = _serve_many(settings, dsn, platforms_url, exposure)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    logger.info("stopped")
    return code


def _serve_one(settings: Settings, dsn: str, platforms_url: str, sock: socket.socket,
               note: str) -> int:
    from gestor.api import create_app
    from gestor.workers import serve_app

    app = create_app(settings, dsn, platforms_url)
    announce = f"gestor listening on {settings.scheme}://{settings.bind}{note}"
    trio.run(serve_app, app, settings, sock, lambda: print(announce, flush=True))
    return 0


def _serve_many(settings: Settings, dsn: str, platforms_url: str, note: str) -> int:
    from gestor.workers import supervise

    env = {**settings.environ(), "GESTOR_DATABASE_URL": dsn,
           "GESTOR_PLATFORMS_URL": platforms_url}
    return supervise(settings, env, note)
