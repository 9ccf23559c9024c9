"""Clients of the three platforms (dwh, ocs, prov) over one shared keep-alive HTTP client.

Every call is bounded per platform by a :class:`trio.CapacityLimiter`, by a total deadline
per attempt (``timeout``: waiting for a slot, connecting, sending and reading), retried with
jittered exponential backoff (every call is a GET or idempotent by id) and guarded by a
circuit breaker, except the settlement lookups (``lookup_debit``, ``lookup_refund``,
``lookup_credit``, ``lookup_provision``): they are attempted while the circuit is open and
neither trip nor reset it, since they are how money whose outcome is unknown gets settled.
Failures are sorted into rejected / unavailable / outcome-unknown; a mutating request counts
as possibly performed as soon as a byte of it may have been written
(:class:`~gestor.platforms._http.Progress`, also readable after a cancelled attempt).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlencode

import attrs
import msgspec
import trio

from ._breaker import CircuitBreaker
from ._errors import (
    CircuitOpen,
    OutcomeUnknown,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
)
from ._http import HTTPClient, HTTPError, Progress, Response
from ._records import (
    Account,
    CreditReceipt,
    CustomerData,
    DebitReceipt,
    Profile,
    Provisioned,
    RefundReceipt,
)
from ._settings import EndpointSettings, PlatformSettings

__all__ = [
    "CircuitCallback",
    "LedgerEntry",
    "PlatformStatistics",
    "Platforms",
    "PlatformsStatistics",
    "open_platforms",
]

CircuitCallback = Callable[[str, bool], Awaitable[None]]

_log = logging.getLogger("gestor.platforms")
_encoder = msgspec.json.Encoder()
_JSON = (("content-type", "application/json"),)
#: One decoder per answer type (``msgspec.json.decode(..., type=)`` looks the type up anew)
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_T = TypeVar("_T")
#: Seconds allowed for one ledger export (``Platforms.ledger``).
LEDGER_TIMEOUT = 30.0
#: Largest ledger export read, in bytes (other answers are capped at the client's 4 MiB).
LEDGER_MAX_BYTES = 1 << 30


def _decoder(kind: type[_T]) -> msgspec.json.Decoder[_T]:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return decoder


def _q(value: str) -> str:
    if not value:
        raise ValueError("empty identifier")
    return quote(value, safe="")


@attrs.frozen
class LedgerEntry:
    """One money movement in the charging system's ledger export (``GET /control/ledger``).

    A debit's ``id`` is the transaction id Gestor charged with; a refund has its own ``id``
    and names the debit it gives back in ``debit_id``; a credit's ``id`` is the id Gestor
    credited with; a top-up (a recharge the subscriber made, not Gestor's doing) has the
    recharge platform's reference as ``id``. ``ts`` is ``created_at`` in epoch seconds.
    """

    kind: Literal["debit", "refund", "credit", "topup"]
    id: str
    msisdn: str
    amount: int
    created_at: str
    ts: float
    debit_id: str | None = None

    @property
    def transaction_id(self) -> str:
        """The id this movement is filed under: a refund's debit, else its own id."""
        if self.kind == "refund" and self.debit_id:
            return self.debit_id
        return self.id


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("ledger bounds must be timezone-aware datetimes")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@attrs.frozen
class PlatformStatistics:
    """Counters of one platform since :func:`open_platforms`."""

    platform: str
    requests: int  # attempts that got a slot and went to the wire
    errors: int  # attempts failed by a 5xx answer or a transport error
    timeouts: int  # attempts that hit the deadline after getting a slot
    rejections: int  # 4xx answers
    retries: int
    short_circuited: int  # calls refused by the open circuit
    lookups: int  # of ``requests``: settlement lookups (outside the circuit breaker)
    saturated: int  # calls that found no free slot within the deadline
    in_flight: int
    waiting: int  # tasks waiting for a slot
    max_concurrency: int
    circuit: str  # closed | open | half_open
    consecutive_failures: int


@attrs.frozen
class PlatformsStatistics:
    dwh: PlatformStatistics
    ocs: PlatformStatistics
    prov: PlatformStatistics

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: attrs.asdict(getattr(self, name)) for name in ("dwh", "ocs", "prov")}


@attrs.define
class _Endpoint:
    name: str
    url: str
    settings: EndpointSettings
    limiter: trio.CapacityLimiter
    breaker: CircuitBreaker
    #: Settlement lookups have slots of their own: hanging debits that fill `limiter` must not
    #: keep out the lookups that settle the ones already timed out.
    lookup_limiter: trio.CapacityLimiter
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    rejections: int = 0
    retries: int = 0
    short_circuited: int = 0
    lookups: int = 0
    saturated: int = 0
    in_flight: int = 0

    def statistics(self) -> PlatformStatistics:
        return PlatformStatistics(
            platform=self.name,
            requests=self.requests,
            errors=self.errors,
            timeouts=self.timeouts,
            rejections=self.rejections,
            retries=self.retries,
            short_circuited=self.short_circuited,
            lookups=self.lookups,
            saturated=self.saturated,
            in_flight=self.in_flight,
            waiting=self.limiter.statistics().tasks_waiting,
            max_concurrency=self.settings.max_concurrency,
            circuit=self.breaker.current().value,
            consecutive_failures=self.breaker.consecutive_failures,
        )


def _failure(ep: _Endpoint, maybe_performed: bool, message: str) -> PlatformError:
    if maybe_performed:
        return OutcomeUnknown(ep.name, message)
    return PlatformUnavailable(ep.name, message)


@attrs.define
class Platforms:
    """The three platforms. Build it with :func:`open_platforms`."""

    _http: HTTPClient
    _endpoints: dict[str, _Endpoint]

    # -- dwh -----------------------------------------------------------------------------------

    async def subscriber(self, msisdn: str) -> Profile:
        """Profile from the data warehouse; unknown msisdn -> PlatformRejected(NOT_FOUND)."""
        content = await self._call("dwh", "GET", f"/dwh/subscribers/{_q(msisdn)}")
        return self._decode("dwh", content, Profile, mutating=False)

    # -- ocs -----------------------------------------------------------------------------------

    async def account(self, msisdn: str) -> Account:
        content = await self._call("ocs", "GET", f"/ocs/accounts/{_q(msisdn)}")
        return self._decode("ocs", content, Account, mutating=False)

    async def profile(self, msisdn: str) -> CustomerData:
        """Profile (dwh) and account (ocs) fetched concurrently, merged.

        The first failure cancels the other fetch and is raised as is (no exception group).
        """
        _q(msisdn)
        profile: list[Profile] = []
        account: list[Account] = []
        failures: list[PlatformError] = []

        async def fetch(target: list[_T], fetcher: Callable[[str], Awaitable[_T]]) -> None:
            try:
                target.append(await fetcher(msisdn))
            except PlatformError as exc:
                failures.append(exc)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch, account, self.account)
            await fetch(profile, self.subscriber)  # in this task: one spawn fewer per profile
        if failures:
            raise failures[0]
        return CustomerData.merge(profile[0], account[0])

    async def debit(
        self, tx_id: str, msisdn: str, amount: int, *, reason: str | None = None
    ) -> DebitReceipt:
        """Debit ``amount`` cents, idempotent by ``tx_id``.

        Raises PlatformRejected (INSUFFICIENT_BALANCE, LINE_NOT_ACTIVE, IDEMPOTENCY_MISMATCH),
        PlatformUnavailable (not debited) or OutcomeUnknown (resolve with ``lookup_debit``).
        """
        body: dict[str, Any] = {"id": tx_id, "msisdn": msisdn, "amount": amount}
        if reason is not None:
            body["reason"] = reason
        _q(tx_id)
        content = await self._call("ocs", "POST", "/ocs/debits", body=body, mutating=True)
        return self._decode("ocs", content, DebitReceipt, mutating=True)

    async def lookup_debit(self, tx_id: str) -> DebitReceipt | None:
        """The debit made with ``tx_id``, or None if the charging system has none.

        A settlement lookup: attempted even while the ocs circuit is open, and its outcome
        neither opens nor closes the circuit (as ``lookup_refund`` and ``lookup_provision``).
        """
        try:
            content = await self._call("ocs", "GET", f"/ocs/debits/{_q(tx_id)}", guarded=False)
        except PlatformRejected as exc:
            if exc.status == 404:
                return None
            raise
        return self._decode("ocs", content, DebitReceipt, mutating=False)

    async def refund(
        self, refund_id: str, tx_id: str, msisdn: str, amount: int
    ) -> RefundReceipt:
        """Give back (part of) debit ``tx_id``; idempotent by ``refund_id``.

        Raises PlatformRejected (NOT_FOUND, ALREADY_REFUNDED, IDEMPOTENCY_MISMATCH, ...),
        PlatformUnavailable or OutcomeUnknown (retry with the same ``refund_id``).
        """
        _q(refund_id)
        body = {"id": refund_id, "debit_id": tx_id, "msisdn": msisdn, "amount": amount}
        content = await self._call("ocs", "POST", "/ocs/refunds", body=body, mutating=True)
        return self._decode("ocs", content, RefundReceipt, mutating=True)

    async def lookup_refund(self, refund_id: str) -> RefundReceipt | None:
        """The refund made with ``refund_id``, or None; a settlement lookup (no circuit)."""
        try:
            path = f"/ocs/refunds/{_q(refund_id)}"
            content = await self._call("ocs", "GET", path, guarded=False)
        except PlatformRejected as exc:
            if exc.status == 404:
                return None
            raise
        return self._decode("ocs", content, RefundReceipt, mutating=False)

    async def credit(
        self, credit_id: str, msisdn: str, amount: int, *, reason: str | None = None
    ) -> CreditReceipt:
        """Credit ``amount`` cents to ``msisdn``, idempotent by ``credit_id``.

        Raises PlatformRejected (LINE_NOT_ACTIVE, IDEMPOTENCY_MISMATCH, INVALID_AMOUNT, ...),
        PlatformUnavailable (not credited) or OutcomeUnknown (resolve with ``lookup_credit``).
        """
        body: dict[str, Any] = {"id": credit_id, "msisdn": msisdn, "amount": amount}
        if reason is not None:
            body["reason"] = reason
        _q(credit_id)
        content = await self._call("ocs", "POST", "/ocs/credits", body=body, mutating=True)
        return self._decode("ocs", content, CreditReceipt, mutating=True)

    async def lookup_credit(self, credit_id: str) -> CreditReceipt | None:
        """The credit made with ``credit_id``, or None if the charging system has none; a
        settlement lookup (attempted even while the ocs circuit is open, as ``lookup_debit``).
        """
        try:
            path = f"/ocs/credits/{_q(credit_id)}"
            content = await self._call("ocs", "GET", path, guarded=False)
        except PlatformRejected as exc:
            if exc.status == 404:
                return None
            raise
        return self._decode("ocs", content, CreditReceipt, mutating=False)

    async def ledger(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LedgerEntry]:
        """The charging system's money movements (debits, refunds, credits, top-ups) with
        ``since <= created_at < until``, oldest first
        (``GET {ocs url}/control/ledger?since=&until=``, ISO 8601 UTC).

        A bulk export for reconciliation, not a hot-path call: one attempt bounded by
        ``LEDGER_TIMEOUT`` seconds, outside the ocs limiter and circuit breaker (a slow export
        must not open the circuit purchases depend on). Raises :class:`PlatformRejected` on a
        4xx answer and :class:`PlatformUnavailable` otherwise.
        """
        params: dict[str, str] = {}
        if since is not None:
            params["since"] = _iso(since)
        if until is not None:
            params["until"] = _iso(until)
        ep = self._endpoints["ocs"]
        url = ep.url + "/control/ledger" + (f"?{urlencode(params)}" if params else "")
        try:
            with trio.fail_after(LEDGER_TIMEOUT):
                response = await self._http.request("GET", url, max_body=LEDGER_MAX_BYTES)
        except (trio.TooSlowError, HTTPError) as exc:
            text = f"ledger export failed: {type(exc).__name__}: {exc}"
            raise PlatformUnavailable(ep.name, text) from exc
        status = response.status
        if 400 <= status < 500:
            raise self._rejection(ep.name, response)
        if status >= 300:
            code = self._detail(response).get("code", "SERVER_ERROR")
            raise PlatformUnavailable(ep.name, f"ledger export: {status} {code}", status=status)
        return self._decode("ocs", response.content, list[LedgerEntry], mutating=False)

    # -- prov ----------------------------------------------------------------------------------

    async def provision(self, tx_id: str, msisdn: str, bono_spec: Mapping[str, Any]) -> Provisioned:
        """Give bono ``bono_spec`` (a catalogue entry: ``id``/``bono_id``, ``validity_days``,
        ``data_mb``, ``voice_min``, ``sms``) to ``msisdn``; idempotent by ``tx_id``."""
        _q(tx_id)
        bono_id = bono_spec.get("bono_id", bono_spec.get("id"))
        if not isinstance(bono_id, str) or not bono_id:
            raise ValueError("bono_spec needs a string 'id' or 'bono_id'")
        body = {
            "id": tx_id,
            "msisdn": msisdn,
            "bono_id": bono_id,
            "validity_days": int(bono_spec["validity_days"]),
            "data_mb": int(bono_spec.get("data_mb", 0)),
            "voice_min": int(bono_spec.get("voice_min", 0)),
            "sms": int(bono_spec.get("sms", 0)),
        }
        content = await self._call("prov", "POST", "/prov/bundles", body=body, mutating=True)
        return self._decode("prov", content, Provisioned, mutating=True)

    async def lookup_provision(self, tx_id: str) -> Provisioned | None:
        """The bundle given with ``tx_id``, or None; a settlement lookup (no circuit)."""
        try:
            content = await self._call("prov", "GET", f"/prov/bundles/{_q(tx_id)}", guarded=False)
        except PlatformRejected as exc:
            if exc.status == 404:
                return None
            raise
        return self._decode("prov", content, Provisioned, mutating=False)

    # -- health --------------------------------------------------------------------------------

    async def ping(self) -> bool:
        """True if every platform answers ``GET /healthz`` with 200 within its timeout.

        Meant for readiness checks: it bypasses the limiters and circuit breakers and is not
        counted in the statistics. Raises :class:`PlatformUnavailable` naming the first
        platform that does not answer.
        """
        seen: set[str] = set()
        for ep in self._endpoints.values():
            if ep.url in seen:
                continue
            seen.add(ep.url)
            try:
                with trio.fail_after(ep.settings.timeout):
                    response = await self._http.request("GET", ep.url + "/healthz")
            except (trio.TooSlowError, HTTPError) as exc:
                text = f"health check failed: {type(exc).__name__}: {exc}"
                raise PlatformUnavailable(ep.name, text) from exc
            if response.status != 200:
                text = f"health check answered {response.status}"
                raise PlatformUnavailable(ep.name, text, status=response.status)
        return True

    # -- statistics ----------------------------------------------------------------------------

    def statistics(self) -> PlatformsStatistics:
        return PlatformsStatistics(
            dwh=self._endpoints["dwh"].statistics(),
            ocs=self._endpoints["ocs"].statistics(),
            prov=self._endpoints["prov"].statistics(),
        )

    # -- machinery -----------------------------------------------------------------------------

    def _decode(self, platform: str, content: bytes, kind: type[_T], *, mutating: bool) -> _T:
        try:
            return _decoder(kind).decode(content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            message = f"malformed answer: {exc}"
            if mutating:
                raise OutcomeUnknown(platform, message) from exc
            raise PlatformUnavailable(platform, message) from exc

    async def _call(
        self,
        platform: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        mutating: bool = False,
        guarded: bool = True,
    ) -> bytes:
        """One call with retries; returns the body of a 2xx answer.

        ``guarded=False`` (settlement lookups) skips the circuit breaker: the call is attempted
        whatever the circuit's state, and its outcomes neither trip nor reset it.
        """
        ep = self._endpoints[platform]
        content = None if body is None else _encoder.encode(body)
        settings = ep.settings
        unknown: OutcomeUnknown | None = None
        last: PlatformError | None = None
        for attempt in range(settings.retries + 1):
            if attempt:
                ep.retries += 1
                delay = min(settings.backoff_max, settings.backoff * 2 ** (attempt - 1))
                await trio.sleep(delay * random.uniform(0.5, 1.0))
            try:
                return await self._attempt(ep, method, path, content, mutating, guarded)
            except OutcomeUnknown as exc:
                unknown = last = exc
            except PlatformUnavailable as exc:
                last = exc
                if not exc.retryable:
                    break
        assert last is not None
        if unknown is not None and unknown is not last:
            # an earlier attempt may have been performed: that outweighs a later refusal
            raise OutcomeUnknown(ep.name, f"{unknown.message}; then {last.message}") from last
        raise last

    async def _attempt(
        self,
        ep: _Endpoint,
        method: str,
        path: str,
        content: bytes | None,
        mutating: bool,
        guarded: bool,
    ) -> bytes:
        probe = False
        if guarded:
            try:
                probe = ep.breaker.enter()
            except CircuitOpen:
                ep.short_circuited += 1
                raise
        progress = Progress()  # whether a byte of the request may have been written
        verdict: bool | None = None  # for the breaker: True success, False failure, None none
        acquired = False
        timeout = ep.settings.timeout
        limiter = ep.limiter if guarded else ep.lookup_limiter
        try:
            with trio.move_on_after(timeout) as scope:
                try:  # a free slot: take it without a trip through the scheduler
                    limiter.acquire_nowait()
                except trio.WouldBlock:
                    await limiter.acquire()
                acquired = True
                ep.requests += 1
                if not guarded:
                    ep.lookups += 1
                ep.in_flight += 1
                try:
                    response = await self._http.request(
                        method,
                        ep.url + path,
                        content=content,
                        headers=_JSON if content is not None else (),
                        progress=progress,
                    )
                except HTTPError as exc:
                    verdict = False
                    ep.errors += 1
                    text = f"{type(exc).__name__}: {exc}"
                    raise _failure(ep, exc.sent and mutating, text) from exc
                finally:
                    ep.in_flight -= 1
                    limiter.release()
            if scope.cancelled_caught:
                if not acquired:
                    ep.saturated += 1
                    raise PlatformUnavailable(
                        ep.name,
                        f"no free slot within {timeout}s ({ep.settings.max_concurrency} busy)",
                        retryable=False,
                    )
                verdict = False
                ep.timeouts += 1
                raise _failure(ep, progress.sent and mutating, f"no answer within {timeout}s")
            status = response.status
            if status < 400:
                verdict = True
                return response.content
            if status < 500:
                verdict = True
                ep.rejections += 1
                raise self._rejection(ep.name, response)
            verdict = False
            ep.errors += 1
            detail = self._detail(response)
            text = f"{status} {detail.get('code', 'SERVER_ERROR')}"
            if status == 504 and mutating:  # a gateway gave up: the platform may have done it
                raise OutcomeUnknown(ep.name, text)
            raise PlatformUnavailable(ep.name, text, status=status)
        finally:
            if guarded:
                if verdict is None:  # cancelled or saturated: no word on the platform
                    ep.breaker.release(probe)
                elif verdict:
                    ep.breaker.success(probe)
                else:
                    ep.breaker.failure(probe)

    @staticmethod
    def _detail(response: Response) -> dict[str, Any]:
        try:
            detail = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            return {"message": response.text[:200]}
        return detail if isinstance(detail, dict) else {"message": str(detail)[:200]}

    def _rejection(self, platform: str, response: Response) -> PlatformRejected:
        body = self._detail(response)
        code = body.get("code")
        if not isinstance(code, str):
            code = f"HTTP_{response.status}"
        message = body.get("message")
        detail = message if isinstance(message, str) else ""
        return PlatformRejected(platform, code, response.status, detail, body)


@asynccontextmanager
async def open_platforms(
    settings: PlatformSettings,
    *,
    on_circuit_change: CircuitCallback | None = None,
) -> AsyncIterator[Platforms]:
    """Clients of dwh, ocs and prov sharing one keep-alive HTTP client (:mod:`._http`).

    ``on_circuit_change(platform, opened)`` is awaited, in order, from a background task
    when a circuit opens (True) or closes again (False); its exceptions are logged.
    """
    names = ("dwh", "ocs", "prov")
    # the limiters bound the connections in use; keep as many idle, and no more than that
    pool = sum(settings.endpoint(name).max_concurrency for name in names)
    send_changes, receive_changes = trio.open_memory_channel[tuple[str, bool]](math.inf)

    def changed(platform: str, opened: bool) -> None:
        if opened:
            _log.warning("circuit of platform %s opened", platform)
        else:
            _log.warning("circuit of platform %s closed", platform)
        if on_circuit_change is not None:
            # a call may still finish after the platforms were closed
            with contextlib.suppress(trio.ClosedResourceError):
                send_changes.send_nowait((platform, opened))

    async def notify(callback: CircuitCallback) -> None:
        async with receive_changes:
            async for platform, opened in receive_changes:
                try:
                    await callback(platform, opened)
                except Exception:
                    _log.exception("on_circuit_change(%r, %r) failed", platform, opened)

    endpoints = {}
    for name in names:
        ep_settings = settings.endpoint(name)
        endpoints[name] = _Endpoint(
            name=name,
            url=settings.url_for(name),
            settings=ep_settings,
            limiter=trio.CapacityLimiter(ep_settings.max_concurrency),
            breaker=CircuitBreaker(
                name, ep_settings.failure_threshold, ep_settings.reset_timeout, changed
            ),
            lookup_limiter=trio.CapacityLimiter(max(4, ep_settings.max_concurrency // 4)),
        )
    async with (
        HTTPClient(keepalive_expiry=settings.keepalive_expiry, max_idle=pool) as client,
        trio.open_nursery() as nursery,
    ):
        if on_circuit_change is not None:
            nursery.start_soon(notify, on_circuit_change)
        else:
            receive_changes.close()
        try:
            yield Platforms(client, endpoints)
        finally:
            send_changes.close()  # the notifier delivers what is queued, then ends
            nursery.cancel_scope.deadline = trio.current_time() + 1.0
