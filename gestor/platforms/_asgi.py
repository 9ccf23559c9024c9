"""The simulator's HTTP face: a plain ASGI app with a tiny router over the raw scope.

No framework: routes are a dict keyed by ``(method, segment, segment, has_argument)``,
bodies are decoded by msgspec straight into request records, and faults are injected
before (error, hang) or after (late answer) the work is done.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import attrs
import msgspec
import trio

from ._faults import OPERATIONS
from ._simulator import (
    AccountOverride,
    DebitRequest,
    ProvisionRequest,
    RefundRequest,
    Result,
    Simulator,
    SimulatorConfig,
)

__all__ = ["SimulatorApp", "build_simulator_app"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Simulator, str, bytes, bytes], Result]

_encoder = msgspec.json.Encoder()
_debit_decoder = msgspec.json.Decoder(DebitRequest)
_refund_decoder = msgspec.json.Decoder(RefundRequest)
_provision_decoder = msgspec.json.Decoder(ProvisionRequest)
_override_decoder = msgspec.json.Decoder(AccountOverride)
_any_decoder = msgspec.json.Decoder()

_NOT_FOUND = {"code": "NOT_FOUND", "message": "not found"}


def _found(record: Any) -> Result:
    return (200, record) if record is not None else (404, _NOT_FOUND)


def _timestamp(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        parsed = dt.datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()


def _query(query: bytes) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(query.decode("latin-1")).items()}


# -- platform operations ----------------------------------------------------------------------


def _subscriber(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return _found(sim.subscriber(arg))


def _account(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return _found(sim.account(arg))


def _debit(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return sim.debit(_debit_decoder.decode(body))


def _lookup_debit(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return _found(sim.lookup_debit(arg))


def _refund(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return sim.refund(_refund_decoder.decode(body))


def _lookup_refund(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return _found(sim.lookup_refund(arg))


def _provision(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return sim.provision(_provision_decoder.decode(body))


def _lookup_bundle(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return _found(sim.lookup_bundle(arg))


# -- control ----------------------------------------------------------------------------------


def _healthz(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return 200, {"status": "ok"}


def _get_faults(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return 200, sim.faults.snapshot()


def _put_faults(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    update = _any_decoder.decode(body) if body.strip() else {}
    if not isinstance(update, dict):
        raise ValueError("body must be a JSON object")
    sim.faults.update(update)
    return 200, sim.faults.snapshot()


def _delete_faults(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    sim.faults.restore()
    return 200, sim.faults.snapshot()


def _stats(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return 200, sim.stats(_query(query).get("msisdn"))


def _ledger(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    params = _query(query)
    since = params.get("since")
    until = params.get("until")
    return 200, sim.ledger(
        None if not since else _timestamp(since), None if not until else _timestamp(until)
    )


def _reset(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    sim.reset()
    return 200, {"status": "reset"}


def _put_account(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return sim.override_account(arg, _override_decoder.decode(body))


def _get_account(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return _found(sim.account(arg))


@attrs.frozen
class _Route:
    op: str | None  # platform operation (counted, faults apply) or None for control
    handler: Handler


_ROUTES: dict[tuple[str, str, str, bool], _Route] = {
    ("GET", "dwh", "subscribers", True): _Route("dwh.subscriber", _subscriber),
    ("GET", "ocs", "accounts", True): _Route("ocs.account", _account),
    ("POST", "ocs", "debits", False): _Route("ocs.debit", _debit),
    ("GET", "ocs", "debits", True): _Route("ocs.lookup_debit", _lookup_debit),
    ("POST", "ocs", "refunds", False): _Route("ocs.refund", _refund),
    ("GET", "ocs", "refunds", True): _Route("ocs.lookup_refund", _lookup_refund),
    ("POST", "prov", "bundles", False): _Route("prov.provision", _provision),
    ("GET", "prov", "bundles", True): _Route("prov.lookup_bundle", _lookup_bundle),
    ("GET", "healthz", "", False): _Route(None, _healthz),
    ("GET", "control", "faults", False): _Route(None, _get_faults),
    ("PUT", "control", "faults", False): _Route(None, _put_faults),
    ("DELETE", "control", "faults", False): _Route(None, _delete_faults),
    ("GET", "control", "stats", False): _Route(None, _stats),
    ("GET", "control", "ledger", False): _Route(None, _ledger),
    ("POST", "control", "reset", False): _Route(None, _reset),
    ("PUT", "control", "accounts", True): _Route(None, _put_account),
    ("GET", "control", "accounts", True): _Route(None, _get_account),
}
_PATHS = {(a, b, arg) for (_, a, b, arg) in _ROUTES}
assert {r.op for r in _ROUTES.values() if r.op is not None} == set(OPERATIONS)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _hang(receive: Receive, seconds: float) -> bool:
    """Hold the answer for ``seconds``; True if the client went away meanwhile."""
    with trio.move_on_after(seconds):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return True
    return False


async def _respond(send: Send, status: int, payload: Any) -> None:
    body = _encoder.encode(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@attrs.define
class SimulatorApp:
    """ASGI 3 application serving one :class:`Simulator`."""

    simulator: Simulator
    owns_simulator: bool = False  # close it (its journal) at lifespan shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.owns_simulator:
                        self.simulator.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        raw: bytes | None = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope["path"]
        parts = path.split("/")
        count = len(parts)
        if count == 4:
            key = (method, parts[1], parts[2], True)
            arg = unquote(parts[3])
        elif count in (2, 3):
            key = (method, parts[1], parts[2] if count == 3 else "", False)
            arg = ""
        else:
            await _respond(send, 404, _NOT_FOUND)
            return
        route = _ROUTES.get(key)
        if route is None:
            if key[1:] in _PATHS:
                await _respond(send, 405, {"code": "METHOD_NOT_ALLOWED", "message": method})
            else:
                await _respond(send, 404, {"code": "NO_ROUTE", "message": path})
            return
        body = await _read_body(receive) if method in ("POST", "PUT") else b""
        sim = self.simulator
        op = route.op
        if op is None:
            await self._handle(route, sim, scope, receive, send, arg, body, late=False, hang_s=0)
            return
        sim.count(op)
        sim.in_flight += 1
        sim.peak_in_flight = max(sim.peak_in_flight, sim.in_flight)
        try:
            faults = sim.faults.for_op(op)
            late = False
            if not faults.quiet:
                injector = sim.faults
                if faults.outage:
                    await _respond(send, 503, {"code": "OUTAGE", "message": f"{op} is down"})
                    return
                delay = injector.delay(faults)
                if delay > 0:
                    await trio.sleep(delay)
                if injector.roll(faults.error_rate):
                    status = injector.error_status()
                    code = "INTERNAL_ERROR" if status == 500 else "UNAVAILABLE"
                    await _respond(send, status, {"code": code, "message": "injected fault"})
                    return
                if injector.roll(faults.timeout_rate):
                    if not await _hang(receive, faults.hang_s):
                        await _respond(send, 503, {"code": "TIMEOUT", "message": "injected"})
                    return
                late = injector.roll(faults.late_rate)
            await self._handle(
                route, sim, scope, receive, send, arg, body, late=late, hang_s=faults.hang_s
            )
        finally:
            sim.in_flight -= 1

    @staticmethod
    async def _handle(
        route: _Route,
        sim: Simulator,
        scope: Scope,
        receive: Receive,
        send: Send,
        arg: str,
        body: bytes,
        *,
        late: bool,
        hang_s: float,
    ) -> None:
        try:
            status, payload = route.handler(sim, arg, body, scope.get("query_string", b""))
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            status, payload = 400, {"code": "INVALID_REQUEST", "message": str(exc)}
        if late and await _hang(receive, hang_s):
            return  # the work is done, but the client is gone
        await _respond(send, status, payload)


def build_simulator_app(simulator: Simulator | SimulatorConfig) -> SimulatorApp:
    """The ASGI app for ``simulator`` (serve it with hypercorn, or any ASGI 3 server).

    Given a :class:`SimulatorConfig`, the app builds its own simulator (replaying the journal
    now, blocking) and closes it at lifespan shutdown.
    """
    if isinstance(simulator, SimulatorConfig):
        return SimulatorApp(Simulator.open(simulator), owns_simulator=True)
    return SimulatorApp(simulator)
