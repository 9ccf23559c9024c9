"""The simulator's HTTP core, shared by its servers: routing, handlers and fault injection.

No framework: routes are a dict keyed by ``(method, segment, segment, has_argument)``, bodies
are decoded by msgspec straight into request records, answers are encoded by msgspec, and
faults are injected before (outage, latency, error, hang) or after (late answer) the work is
done. Both the lean h11 server (:mod:`._server`, what :func:`serve_simulator` uses) and the
ASGI app (:mod:`._asgi`) are thin adapters over :meth:`SimulatorRouter.answer`; all they
supply is the request and a way to hold the answer while watching for the client to leave.
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
    CreditRequest,
    DebitRequest,
    ProvisionRequest,
    RefundRequest,
    Result,
    Simulator,
)
from ._sms import SmsControl, SmsRequest
from ._topups import TopupRequest

__all__ = ["Answer", "Hold", "SimulatorRouter"]

#: ``await hold(seconds)`` keeps the answer back for ``seconds``; True if the client went away
#: meanwhile (then no answer is sent).
Hold = Callable[[float], Awaitable[bool]]
#: An encoded answer: status and JSON body.
Answer = tuple[int, bytes]
Handler = Callable[[Simulator, str, bytes, bytes], Result]

_encoder = msgspec.json.Encoder()
_debit_decoder = msgspec.json.Decoder(DebitRequest)
_refund_decoder = msgspec.json.Decoder(RefundRequest)
_credit_decoder = msgspec.json.Decoder(CreditRequest)
_topup_decoder = msgspec.json.Decoder(TopupRequest)
_provision_decoder = msgspec.json.Decoder(ProvisionRequest)
_override_decoder = msgspec.json.Decoder(AccountOverride)
_sms_decoder = msgspec.json.Decoder(SmsRequest)
_sms_control_decoder = msgspec.json.Decoder(SmsControl)
_any_decoder = msgspec.json.Decoder()


class _DebitPeek(msgspec.Struct):
    msisdn: str


_debit_peek = msgspec.json.Decoder(_DebitPeek)


def _debit_msisdn(body: bytes) -> str | None:
    """The msisdn a debit request names (for the per-msisdn in-flight count), if it parses."""
    try:
        return _debit_peek.decode(body).msisdn
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None

_NOT_FOUND = {"code": "NOT_FOUND", "message": "not found"}
_NOT_FOUND_ANSWER: Answer = (404, _encoder.encode(_NOT_FOUND))


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


def _credit(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return sim.credit(_credit_decoder.decode(body))


def _lookup_credit(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return _found(sim.lookup_credit(arg))


def _provision(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return sim.provision(_provision_decoder.decode(body))


def _lookup_bundle(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return _found(sim.lookup_bundle(arg))


def _send_sms(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return sim.send_sms(_sms_decoder.decode(body))


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


def _post_topup(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return sim.topup(_topup_decoder.decode(body))


def _get_topup(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return _found(sim.lookup_topup(arg))


def _get_sms(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return 200, {"messages": sim.sms_sent(_query(query).get("to"))}


def _put_sms(sim: Simulator, arg: str, body: bytes, query: bytes) -> Result:
    return sim.control_sms(_sms_control_decoder.decode(body or b"{}"))


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
    ("POST", "ocs", "credits", False): _Route("ocs.credit", _credit),
    ("GET", "ocs", "credits", True): _Route("ocs.lookup_credit", _lookup_credit),
    ("POST", "prov", "bundles", False): _Route("prov.provision", _provision),
    ("GET", "prov", "bundles", True): _Route("prov.lookup_bundle", _lookup_bundle),
    ("POST", "sms", "messages", False): _Route("sms.send", _send_sms),
    ("GET", "healthz", "", False): _Route(None, _healthz),
    ("GET", "control", "faults", False): _Route(None, _get_faults),
    ("PUT", "control", "faults", False): _Route(None, _put_faults),
    ("DELETE", "control", "faults", False): _Route(None, _delete_faults),
    ("GET", "control", "stats", False): _Route(None, _stats),
    ("GET", "control", "ledger", False): _Route(None, _ledger),
    ("POST", "control", "reset", False): _Route(None, _reset),
    ("PUT", "control", "accounts", True): _Route(None, _put_account),
    ("GET", "control", "accounts", True): _Route(None, _get_account),
    ("POST", "control", "topups", False): _Route(None, _post_topup),
    ("GET", "control", "topups", True): _Route(None, _get_topup),
    ("GET", "control", "sms", False): _Route(None, _get_sms),
    ("PUT", "control", "sms", False): _Route(None, _put_sms),
}
_PATHS = {(a, b, arg) for (_, a, b, arg) in _ROUTES}
assert {r.op for r in _ROUTES.values() if r.op is not None} == set(OPERATIONS)


def _encoded(status: int, payload: Any) -> Answer:
    return status, _encoder.encode(payload)


@attrs.define
class SimulatorRouter:
    """Routes requests to one :class:`Simulator`, injecting its faults."""

    simulator: Simulator

    async def answer(
        self, method: str, path: str, query: bytes, body: bytes, hold: Hold
    ) -> Answer | None:
        """The answer to one request (``path`` without its query string, not unquoted), or
        None if the client went away while its answer was held back."""
        parts = path.split("/")
        count = len(parts)
        if count == 4:
            key = (method, parts[1], parts[2], True)
            arg = unquote(parts[3])
        elif count in (2, 3):
            key = (method, parts[1], parts[2] if count == 3 else "", False)
            arg = ""
        else:
            return _NOT_FOUND_ANSWER
        route = _ROUTES.get(key)
        if route is None:
            if key[1:] in _PATHS:
                return _encoded(405, {"code": "METHOD_NOT_ALLOWED", "message": method})
            return _encoded(404, {"code": "NO_ROUTE", "message": path})
        sim = self.simulator
        op = route.op
        if op is None:
            return self._run(route, sim, arg, body, query)
        sim.count(op)
        sim.in_flight += 1
        if sim.in_flight > sim.peak_in_flight:
            sim.peak_in_flight = sim.in_flight
        debiting = _debit_msisdn(body) if op == "ocs.debit" else None
        if debiting is not None:
            sim.debit_arrived(debiting)
        try:
            faults = sim.faults.for_op(op)
            if faults.quiet:
                return self._run(route, sim, arg, body, query)
            injector = sim.faults
            if faults.outage:
                return _encoded(503, {"code": "OUTAGE", "message": f"{op} is down"})
            delay = injector.delay(faults)
            if delay > 0:
                await trio.sleep(delay)
            if injector.roll(faults.error_rate):
                status = injector.error_status()
                code = "INTERNAL_ERROR" if status == 500 else "UNAVAILABLE"
                return _encoded(status, {"code": code, "message": "injected fault"})
            if injector.roll(faults.timeout_rate):
                if await hold(faults.hang_s):
                    return None
                return _encoded(503, {"code": "TIMEOUT", "message": "injected"})
            late = injector.roll(faults.late_rate)
            answer = self._run(route, sim, arg, body, query)
            if late and await hold(faults.hang_s):
                return None  # the work is done, but the client is gone
            return answer
        finally:
            sim.in_flight -= 1
            if debiting is not None:
                sim.debit_left(debiting)

    @staticmethod
    def _run(route: _Route, sim: Simulator, arg: str, body: bytes, query: bytes) -> Answer:
        try:
            status, payload = route.handler(sim, arg, body, query)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            status, payload = 400, {"code": "INVALID_REQUEST", "message": str(exc)}
        return status, _encoder.encode(payload)
