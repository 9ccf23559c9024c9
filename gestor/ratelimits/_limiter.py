"""`RateLimiter`: a worker's token buckets per calling key and per msisdn, checked on the
request path without I/O, and shared with the other workers and nodes through PostgreSQL by
one batched statement per `sync_interval` (see `_bucket` for the arithmetic and docs for the
error bound)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio

from gestor.ratelimits._bucket import DEMAND_SECONDS, Bucket
from gestor.ratelimits._config import Limit, LimitSettings

logger = logging.getLogger("gestor.ratelimits")

Report = tuple[str, int, int, float, float]


class SharedBuckets(Protocol):
    """Where the workers share their buckets: the store (PostgreSQL)."""

    async def exchange_rate_limits(self, rows: Sequence[Report], demand_seconds: float
                                   ) -> Mapping[str, tuple[float, float]]:
        """Add each (bucket, used, asked, rate, burst) and answer each bucket's (level,
        demand)."""

    async def forget_rate_limits(self, idle_seconds: float) -> int:
        """Delete the buckets full again and idle that long (a missing bucket is full)."""

#: Buckets looked at for forgetting, at most, per exchange.
_SWEEP_BATCH = 2000
#: Seconds between deletions of the shared buckets that are full again (by each worker).
_FORGET_EVERY = 10.0
#: Seconds without a request after which a bucket full again is forgotten (its demand is
#: history by then).
_IDLE_SECONDS = 3 * DEMAND_SECONDS


@attrs.frozen
class Refusal:
    """Over `limit` ("key:purchase", "msisdn:list"...): retry after `retry_after` seconds."""

    limit: str
    rate: float
    burst: float
    retry_after: int


@attrs.frozen
class RateLimiterStatistics:
    enabled: bool
    sync_interval: float
    limits: Mapping[str, Any]
    #: Buckets this worker holds now (the others are full).
    buckets: int
    #: Requests admitted and refused, by limit ("key:purchase"...), since the worker started.
    admitted: Mapping[str, int]
    refused: Mapping[str, int]
    exchanges: int
    exchange_errors: int
    #: Buckets sent in the last exchange and how long it took (seconds).
    last_exchange_buckets: int
    last_exchange_seconds: float


@attrs.define
class RateLimiter:
    settings: LimitSettings
    _buckets: OrderedDict[str, Bucket] = attrs.field(factory=OrderedDict)
    _dirty: dict[str, Bucket] = attrs.field(factory=dict)
    _admitted: dict[str, int] = attrs.field(factory=dict)
    _refused: dict[str, int] = attrs.field(factory=dict)
    #: Set when a bucket is asked for while none was waiting to be reported: the exchange
    #: loop sleeps on it (an idle worker does not wake every interval).
    _wake: trio.Event = attrs.field(factory=trio.Event)
    _exchanges: int = 0
    _exchange_errors: int = 0
    _last_count: int = 0
    _last_seconds: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def _bucket(self, name: str, limit: Limit, now: float) -> Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = Bucket.fresh(limit.rate, limit.burst, now)
        else:
            self._buckets.move_to_end(name)
        if not self._dirty:
            self._wake.set()
        self._dirty[name] = bucket
        return bucket

    def check(self, kind: str, client: str, msisdn: str | None = None) -> Refusal | None:
        """Admit one `kind` call by `client` (about `msisdn`, if any): take a token from each
        of its buckets and return None; or, if one has none, take nothing and say which."""
        if not self.settings.enabled:
            return None
        now = trio.current_time()
        asked: list[tuple[str, Limit, Bucket]] = []
        for scope, subject in (("key", client), ("msisdn", msisdn)):
            limit = self.settings.limit(scope, kind)
            if limit is None or subject is None:
                continue
            asked.append((f"{scope}:{kind}",
                          limit, self._bucket(f"{scope}:{kind}:{subject}", limit, now)))
        refusal: Refusal | None = None
        for name, limit, bucket in asked:
            if not bucket.ask(now) and refusal is None:
                wait = max(1, math.ceil(bucket.retry_after(now)))
                refusal = Refusal(name, limit.rate, limit.burst, wait)
        if refusal is not None:
            self._refused[refusal.limit] = self._refused.get(refusal.limit, 0) + 1
            return refusal
        for name, _, bucket in asked:
            bucket.take()
            self._admitted[name] = self._admitted.get(name, 0) + 1
        return None

    # -- sharing with the other workers ---------------------------------------------------------
    async def exchange(self, shared: SharedBuckets) -> None:
        """One exchange: report every bucket asked for since the last one, and take each one's
        shared level and demand back. A failure keeps the reports for the next one."""
        if not self._dirty:
            self._forget(trio.current_time())
            return
        sent, self._dirty = self._dirty, {}
        rows = []
        for name, bucket in sorted(sent.items()):
            used, asked = bucket.report()
            rows.append((name, used, asked, bucket.rate, bucket.burst))
        started = trio.current_time()
        try:
            answers = await shared.exchange_rate_limits(rows, DEMAND_SECONDS)
        except Exception as exc:
            self._exchange_errors += 1
            for name, bucket in sent.items():
                bucket.unsent()
                self._dirty.setdefault(name, bucket)
            from gestor.store import StoreUnavailable

            # An unreachable database is logged once by the store's health state.
            if not isinstance(exc, StoreUnavailable) and (
                    self._exchange_errors == 1 or self._exchange_errors % 100 == 0):
                logger.warning("rate limits not shared this time (each worker keeps limiting "
                               "on what it knows): %r", exc)
            return
        now = trio.current_time()
        for name, bucket in sent.items():
            level, demand = answers[name]
            bucket.settled(level, demand, now)
        self._exchanges += 1
        self._last_count = len(rows)
        self._last_seconds = now - started
        self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop buckets nobody asked for lately whose shared level is full again."""
        idle_after = max(_IDLE_SECONDS, 2 * self.settings.sync_interval)
        for _ in range(min(_SWEEP_BATCH, len(self._buckets))):
            name, bucket = next(iter(self._buckets.items()))
            if now - bucket.last_asked < idle_after:
                break
            if bucket.idle(now, idle_after) and name not in self._dirty:
                del self._buckets[name]
            else:
                self._buckets.move_to_end(name)

    async def run(self, shared: SharedBuckets, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Exchange every `sync_interval` while buckets are asked for, until cancelled; now
        and then delete the shared buckets that are full again."""
        task_status.started()
        if not self.settings.enabled:
            await trio.sleep_forever()
        forget_at = trio.current_time() + _FORGET_EVERY
        while True:
            await self._wake.wait()
            await trio.sleep(self.settings.sync_interval)
            self._wake = trio.Event()
            await self.exchange(shared)
            if self._dirty:  # asked for during the exchange, or a report to send again
                self._wake.set()
            if trio.current_time() >= forget_at:
                forget_at = trio.current_time() + _FORGET_EVERY
                try:
                    await shared.forget_rate_limits(_IDLE_SECONDS)
                except Exception as exc:  # the next pass deletes them
                    logger.debug("shared rate-limit buckets not swept: %s", exc)

    def statistics(self) -> RateLimiterStatistics:
        return RateLimiterStatistics(
            enabled=self.settings.enabled, sync_interval=self.settings.sync_interval,
            limits=self.settings.as_dict(), buckets=len(self._buckets),
            admitted=dict(self._admitted), refused=dict(self._refused),
            exchanges=self._exchanges, exchange_errors=self._exchange_errors,
            last_exchange_buckets=self._last_count, last_exchange_seconds=self._last_seconds,
        )


@contextlib.asynccontextmanager
async def open_rate_limiter(settings: LimitSettings, shared: SharedBuckets
                            ) -> AsyncIterator[RateLimiter]:
    """A worker's rate limiter, sharing its buckets through `shared` (the store) until exit."""
    limiter = RateLimiter(settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(limiter.run, shared)
        yield limiter
        nursery.cancel_scope.cancel()
