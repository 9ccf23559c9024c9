"""The Quart-Trio application: routes of the three calls, the alarm feed and health checks.

`create_app` returns an ASGI app whose lifespan opens the worker's `Runtime` (store, platforms,
actors...) and closes it on shutdown, so hypercorn workers, `app.test_app()` and `gestor serve`
all start the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from typing import Any

import trio
from quart import Response, request, websocket
from werkzeug.exceptions import HTTPException

from gestor.api import (
    _access,
    _admin,
    _admin_alarms,
    _admin_audit,
    _admin_catalogue,
    _admin_keys,
    _admin_ledger,
    _admin_live,
    _admin_mobiles,
    _admin_notifications,
    _admin_reports,
    _console,
    _guards,
    _metrics,
    _movements,
    _protocol_fixes,
)
from gestor.api import _registry as reg
from gestor.api import _render as render
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import (
    WEBSOCKET_PROTOCOL,
    allow_channel,
    allow_msisdn,
    allow_read,
    check_request,
    check_websocket,
    own_client,
    principal,
)
from gestor.api._docs import register as register_docs
from gestor.api._gestor_app import GestorApp
from gestor.api._limits import enforce as enforce_limits
from gestor.api._problems import ApiProblem, json_response, problem
from gestor.api._registry import Answer, documented
from gestor.api._requests import PurchaseRequest
from gestor.keyring import KeyRing
from gestor.logs import msisdn_var, transaction_id_var
from gestor.model import PENDING_STATES, NewTransaction, TxKind, TxState
from gestor.platforms import PlatformError
from gestor.purchase import Busy, Crowded
from gestor.ratelimits import open_rate_limiter
from gestor.runtime import Runtime, open_runtime
from gestor.settings import Settings
from gestor.store import (
    DatabaseDown,
    KeyStore,
    StoreUnavailable,
    describe_failure,
)

logger = logging.getLogger("gestor.api")

_STATES = {s.value for s in TxState}
_KINDS = {k.value for k in TxKind}


def create_app(settings: Settings, database_url: str, platforms_url: str) -> GestorApp:
    _protocol_fixes.apply()
    # No /static route: there is no gestor/static (the reference page and the console serve
    # their own files).
    app = GestorApp("gestor", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    # A body that has not all arrived within keep_alive_timeout is answered 408 and its
    # connection freed, as a head that has not (Quart's own default is 60 s): a client trickling
    # a body keeps its connection busy, so it could not be evicted at the cap.
    app.config["BODY_TIMEOUT"] = settings.keep_alive_timeout
    app.config["JSON_SORT_KEYS"] = False
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.shutdown_grace
    _access.install(app, settings)  # first: request id, access log, request metrics
    stop = trio.Event()
    stopped = trio.Event()

    async def keep_runtime(*, task_status: trio.TaskStatus[Runtime]) -> None:
        try:
            async with open_runtime(settings, database_url, platforms_url) as runtime, \
                    open_rate_limiter(settings.limits, runtime.store) as limiter, \
                    trio.open_nursery() as nursery:
                app.limiter = limiter
                app.keyring = KeyRing(KeyStore(runtime.store.bridge))
                await nursery.start(app.keyring.run)
                task_status.started(runtime)
                await stop.wait()
                nursery.cancel_scope.cancel()
        finally:
            stopped.set()

    @app.before_serving
    async def _start() -> None:
        app.runtime = await app.nursery.start(keep_runtime)

    @app.after_serving
    async def _stop() -> None:
        stop.set()
        await stopped.wait()

    @app.before_request
    async def _authenticate() -> None:
        await check_request(settings)

    @app.before_websocket
    async def _authenticate_ws() -> None:
        await check_websocket(settings)

    @app.after_request
    async def _stamp(response: Response) -> Response:
        response.headers["Gestor-Worker"] = _WORKER
        if app.draining:
            response.headers["Connection"] = "close"
        return response

    _guards.install(app, settings.max_request_bytes)
    _routes(app, settings)
    _admin.register(app, settings)
    _admin.register_restrictions(app, settings)
    _admin_mobiles.register(app, settings)
    _admin_alarms.register(app, settings)
    _admin_audit.register(app, settings)
    _admin_ledger.register(app, settings)
    _admin_reports.register(app, settings)
    _admin_keys.register(app, settings)
    _admin_catalogue.register(app, settings)
    _admin_notifications.register(app, settings)
    register_docs(app)
    _console.register(app)
    collect, gather = _metrics.register(app, settings)
    _admin_live.register(app, collect, gather)
    _movements.register(app, settings)
    return app


_WORKER = str(os.getpid())


def _request_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _routes(app: GestorApp, settings: Settings) -> None:
    @app.errorhandler(ApiProblem)
    async def _problem(exc: ApiProblem) -> Response:
        return exc.response()

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        code = (exc.name or "error").upper().replace(" ", "_")
        return problem(exc.code or 500, code, exc.description or exc.name or "error")

    @app.errorhandler(Crowded)
    async def _crowded(exc: Crowded) -> Response:
        return problem(429, "TOO_MANY_REQUESTS",
                       "too many requests for this mobile at once; retry shortly",
                       headers={"Retry-After": "1"})

    @app.errorhandler(Busy)
    async def _busy(exc: Busy) -> Response:
        return problem(503, "BUSY", f"this server is at capacity ({exc}); retry shortly",
                       headers={"Retry-After": "1"})

    @app.errorhandler(StoreUnavailable)
    async def _database(exc: StoreUnavailable) -> Response:
        # No log line per request: the store's health state logs each change (down, back).
        if isinstance(exc, DatabaseDown):  # refused before anything was sent
            return problem(503, "DATABASE_UNAVAILABLE",
                           f"{exc.reason}; nothing was done, retry later",
                           headers={"Retry-After": "2"})
        return problem(503, "SERVICE_UNAVAILABLE",
                       f"the database could not be reached ({describe_failure(exc)}); retry",
                       headers={"Retry-After": "1"})

    @app.errorhandler(PlatformError)
    async def _platform(exc: PlatformError) -> Response:
        return problem(503, "PLATFORM_UNAVAILABLE",
                       f"an external platform did not answer: {exc}",
                       headers={"Retry-After": "2"})

    @app.get("/healthz")
    @documented("Liveness: the worker answers", "Health", Answer(200, res.Health, "alive"))
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    @documented("Readiness: the database and the platforms answer", "Health",
                (Answer(200, res.Readiness, "ready"),
                 Answer(503, res.Readiness, "not ready: `checks` says what is down")))
    async def readyz() -> Response:
        checks: dict[str, Any] = {}
        health = app.runtime.store.health
        try:
            with trio.fail_after(2):
                checks["database"] = await app.runtime.store.ping()
        except (trio.TooSlowError, StoreUnavailable, OSError) as exc:
            checks["database"] = False
            if not health.up:  # "database unreachable since 12:03:04 UTC: connection refused"
                checks["database_error"] = health.describe()
                checks["database_down_since"] = health.down_since
            elif isinstance(exc, trio.TooSlowError):
                checks["database_error"] = "database unreachable: no answer within 2 s"
            else:
                checks["database_error"] = f"database unreachable: {describe_failure(exc)}"
        try:
            with trio.fail_after(2):
                checks["platforms"] = await app.runtime.platforms.ping()
        except (trio.TooSlowError, PlatformError, OSError) as exc:
            checks["platforms"] = False
            checks["platforms_error"] = str(exc) or type(exc).__name__
        ready = checks["database"] is True and checks["platforms"] is True
        return json_response({"status": "ready" if ready else "not ready", "checks": checks},
                             200 if ready else 503)

    @app.post("/v1/purchases")
    @documented("Buy a bono", "Purchases", (
        Answer(200, res.Transaction, "the purchase reached its final state (`Prefer: wait`)",
               ("Location", "Idempotent-Replayed"), res.TRANSACTION_EXAMPLE),
        Answer(202, res.Transaction, "accepted and still running, or `inconsistent` (being "
               "settled); follow `Location`", ("Location", "Idempotent-Replayed"))),
        body=PurchaseRequest, params=(reg.IDEMPOTENCY_KEY, reg.PREFER_WAIT, reg.CLIENT_ID),
        problems=("IDEMPOTENCY_KEY_REQUIRED", "INVALID_IDEMPOTENCY_KEY", "INVALID_PREFER",
                  "UNKNOWN_BONO", "PURCHASE_PENDING", "IDEMPOTENCY_KEY_REUSED", "RATE_LIMITED",
                  "TOO_MANY_REQUESTS", "BUSY", "OUTCOME_UNKNOWN", "PLATFORM_UNAVAILABLE",
                  "INVALID_BENEFICIARY", "MOVEMENT_PENDING"),
        body_example={"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D", "channel": "ussd"})
    async def purchase() -> Response:
        rt = app.runtime
        key = validate.idempotency_key(request.headers.get("Idempotency-Key"))
        wait = validate.prefer_wait(request.headers.get("Prefer"), settings.max_wait)
        body = validate.json_object(await request.get_data(cache=False, as_text=False))
        only = principal().default_channel()  # a key limited to one channel buys on it
        if only is not None and "channel" not in body:
            body["channel"] = only
        # A bono for another mobile (`other`): `msisdn` pays, the beneficiary gets the bundle.
        msisdn, bono_id, channel, other = validate.purchase_body(body)
        allow_channel(channel)
        allow_msisdn(msisdn)
        if other is not None:
            allow_msisdn(other)
        enforce_limits(app, settings, "purchase", msisdn)
        if rt.catalogue.get(bono_id) is None:
            raise ApiProblem(422, "UNKNOWN_BONO", f"there is no bono {bono_id!r}",
                             field="bono_id")
        new = NewTransaction(
            id=uuid.uuid4(), msisdn=msisdn, bono_id=bono_id, channel=channel,
            client=principal().name,
            idempotency_key=key,
            request_hash=_request_hash(msisdn, bono_id, channel) if other is None
            else _request_hash(msisdn, bono_id, channel, other),
            at=rt.purchases.deps.now(), beneficiary=other,  # the injectable clock
        )
        transaction_id_var.set(str(new.id))  # this request's log lines name the purchase
        msisdn_var.set(msisdn)
        outcome = await rt.purchases.purchase(new)
        return await _movements.answer(app, outcome, key, wait, new)

    @app.get("/v1/transactions/<tx_id>")
    @documented("A transaction", "Purchases",
                Answer(200, res.Transaction, "the transaction (with `Prefer: wait`, once final "
                       "or when the wait is over)", example=res.TRANSACTION_EXAMPLE),
                params=(reg.TRANSACTION_ID, reg.PREFER_WAIT, reg.CLIENT_ID),
                problems=("INVALID_TRANSACTION_ID", "TRANSACTION_NOT_FOUND", "INVALID_PREFER",
                          "RATE_LIMITED", "TOO_MANY_REQUESTS"))
    async def get_transaction(tx_id: str) -> Response:
        rt = app.runtime
        wanted = validate.transaction_id(tx_id)
        enforce_limits(app, settings, "status")
        tx = await rt.purchases.get(wanted)
        if tx is None:
            raise ApiProblem(404, "TRANSACTION_NOT_FOUND", f"no transaction {tx_id}", field="id")
        allow_read(tx)
        wait = validate.prefer_wait(request.headers.get("Prefer"), settings.max_wait)
        if wait > 0:  # long poll: answer as soon as the transaction is final
            tx = await rt.purchases.wait_final(tx, wait)
        return json_response(render.transaction(tx, rt.catalogue))

    @app.get("/v1/mobiles/<raw_msisdn>/transactions")
    @documented("A mobile's transactions", "Purchases",
                Answer(200, res.Transactions, "newest first, the movements it pays and those "
                       "it receives, each with its `role`"),
                params=(reg.MSISDN, reg.query(
                    "state", {"type": "string"}, "`pending` (every state not final), or a "
                    "comma-separated list of states", "pending"), reg.limit(50, 500),
                    reg.CLIENT_ID, reg.query(
                        "kind", {"type": "string", "pattern": f"^({'|'.join(sorted(_KINDS))})"
                                 f"(,({'|'.join(sorted(_KINDS))}))*$"},
                        "only these kinds of movement: a comma-separated list of "
                        f"{', '.join(sorted(_KINDS))}", "transfer,advance")),
                problems=("INVALID_MSISDN", "INVALID_STATE", "INVALID_LIMIT", "RATE_LIMITED",
                          "TOO_MANY_REQUESTS", "INVALID_KIND"))
    async def mobile_transactions(raw_msisdn: str) -> Response:
        rt = app.runtime
        msisdn = validate.msisdn(raw_msisdn)
        allow_msisdn(msisdn)
        state = request.args.get("state")
        states: list[str] | None = None
        if state == "pending":
            states = sorted(s.value for s in PENDING_STATES)
        elif state:
            wanted = state.split(",")
            bad = [s for s in wanted if s not in _STATES]
            if bad:
                raise ApiProblem(422, "INVALID_STATE",
                                 f"state must be 'pending' or among {sorted(_STATES)}",
                                 field="state")
            states = wanted
        kinds: list[str] | None = None
        if kind := request.args.get("kind"):
            kinds = kind.split(",")
            if any(k not in _KINDS for k in kinds):
                raise ApiProblem(422, "INVALID_KIND", f"kind must be among {sorted(_KINDS)}",
                                 field="kind")
        limit = validate.limit(request.args.get("limit"))
        enforce_limits(app, settings, "status", msisdn)
        # A key that reads only its own transactions lists only those.
        client = own_client()
        txs = await rt.purchases.transactions(msisdn, states, limit, client, kinds)
        return json_response({
            "msisdn": msisdn,
            **({"client": client} if client is not None else {}),
            "transactions": [render.transaction(tx, rt.catalogue, msisdn) for tx in txs],
        })

    @app.get("/v1/mobiles/<raw_msisdn>/bonos")
    @documented("The bonos a mobile may buy", "Purchases",
                Answer(200, res.Offers, "every bono of the catalogue, `eligible` or not and why",
                       example=res.OFFERS_EXAMPLE),
                params=(reg.MSISDN, reg.query(
                    "channel", {"enum": sorted(validate.CHANNELS)}, "the channel (default "
                    "`api`, or the only channel of a key limited to one)", "ussd"),
                    reg.CLIENT_ID),
                problems=("INVALID_MSISDN", "INVALID_CHANNEL", "RATE_LIMITED",
                          "TOO_MANY_REQUESTS", "PLATFORM_UNAVAILABLE"))
    async def mobile_bonos(raw_msisdn: str) -> Response:
        rt = app.runtime
        msisdn = validate.msisdn(raw_msisdn)
        allow_msisdn(msisdn)
        channel = validate.channel(request.args.get("channel", principal().default_channel()))
        allow_channel(channel)
        enforce_limits(app, settings, "list", msisdn)
        result = await rt.purchases.offers(msisdn, channel)
        return json_response(render.offers(result))

    @app.websocket("/v1/alarms")
    @documented("The alarm feed (a websocket)", "Alarms",
                Answer(101, None, "the websocket: one text message per alarm (JSON: `id`, "
                       "`at`, `kind`, `severity`, `message`, `msisdn`, `transaction_id`, "
                       "`details`), every alarm after `since` first, then live ones"),
                params=(reg.query("since", {"type": "integer", "minimum": 0},
                                  "the last alarm id seen: replay every later one", 12),),
                problems=("INVALID_SINCE:400",), websocket=True)
    async def alarms() -> None:
        since = validate.alarm_since(websocket.args.get("since"))  # 400 refuses the handshake
        # Every alarm after `since`, then live ones, each once. A slow client is fed from the
        # database when it falls behind the live buffer; one that stops reading for
        # `[alarms] send_timeout` is disconnected by its connection (gestor/serving/_websocket.py).
        if WEBSOCKET_PROTOCOL in websocket.requested_subprotocols:  # a browser (the console)
            await websocket.accept(subprotocol=WEBSOCKET_PROTOCOL)
        else:
            await websocket.accept()
        try:
            async with app.runtime.alarms.subscribe(since) as stream:
                async for alarm in stream:
                    await websocket.send(render.alarm(alarm))
        except StoreUnavailable as exc:  # the replay needs the database
            reason = f"cannot replay: {describe_failure(exc)}; reconnect with ?since=<last id>"
            await websocket.close(1013, reason[:120])
