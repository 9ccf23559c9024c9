"""Rate-limit arithmetic: one worker's share of a token bucket, and N workers sharing buckets
through an in-memory stand-in for the database's exchange (the same arithmetic as
gestor/store/_rate_limits.py, which tests/integration/test_rate_limits.py runs for real)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs
import pytest
import trio
import trio.testing

from gestor.ratelimits import Bucket, Limit, LimitSettings, RateLimiter, Report


def _settings(key: Limit | None = None, msisdn: Limit | None = None,
              enabled: bool = True) -> LimitSettings:
    off = Limit(0, 1)
    return LimitSettings(enabled=enabled, sync_interval=0.1, buckets={
        "key": {"purchase": key or off, "list": off, "status": off},
        "msisdn": {"purchase": msisdn or off, "list": off, "status": off},
    })


@attrs.define
class MemoryShared:
    """The database's side of the exchange, in memory, on trio's clock: a shared level per
    bucket refilled at its rate up to its burst, less what each worker reports."""

    latency: float = 0.005
    rows: dict[str, list[float]] = attrs.field(factory=dict)  # level, demand, at
    fail: bool = False
    exchanges: int = 0

    async def exchange_rate_limits(self, rows: Sequence[Report], demand_seconds: float
                                   ) -> Mapping[str, tuple[float, float]]:
        await trio.sleep(self.latency)
        if self.fail:
            raise OSError("connection refused")
        now = trio.current_time()
        out = {}
        for name, used, asked, rate, burst in rows:
            row = self.rows.get(name)
            if row is None:
                row = self.rows[name] = [burst - used, float(asked), now]
            else:
                elapsed = max(0.0, now - row[2])
                row[0] = min(burst, row[0] + rate * elapsed) - used
                row[1] = row[1] * math.exp(-elapsed / demand_seconds) + asked
                row[2] = now
            out[name] = (row[0], row[1])
        self.exchanges += 1
        await trio.sleep(self.latency)
        return out

    async def forget_rate_limits(self, idle_seconds: float) -> int:
        return 0


# -- one bucket ---------------------------------------------------------------------------------
def test_a_fresh_bucket_is_full_and_refills_at_its_rate() -> None:
    bucket = Bucket.fresh(rate=10, burst=5, now=0.0)
    taken = 0
    while bucket.ask(0.0):
        bucket.take()
        taken += 1
    assert taken == 5
    assert bucket.retry_after(0.0) == pytest.approx(0.1)
    assert not bucket.ask(0.05)
    assert bucket.ask(0.1)  # one token back after 1/rate
    bucket.take()
    assert bucket.refill(100.0) == 5  # never above the burst
    assert (bucket.used, bucket.asked) == (6, 8)


def test_a_share_scales_the_local_bucket_and_debt_is_repaid_first() -> None:
    bucket = Bucket.fresh(rate=10, burst=20, now=0.0)
    bucket.report()  # asked 0: as if another worker had all the demand
    bucket.sent_asked = 1
    bucket.settled(level=-4.0, demand=4.0, now=0.0)  # 1 of 4 asks were this worker's
    assert bucket.share == pytest.approx(0.25)
    assert bucket.tokens == pytest.approx(-1.0)  # a quarter of the debt
    assert bucket.cap == pytest.approx(5.0)
    assert not bucket.ask(0.5)  # -1 + 0.25 * 10 * 0.5 = 0.25
    assert bucket.retry_after(0.5) == pytest.approx((1 - 0.25 / 0.25) / 10 + 0.3, abs=0.31)
    assert bucket.ask(0.8)  # -1 + 2.5 * 0.8 = 1.0
    assert bucket.refill(60.0) == pytest.approx(5.0)


def test_tokens_admitted_while_a_report_is_on_its_way_are_not_counted_twice() -> None:
    bucket = Bucket.fresh(rate=1, burst=10, now=0.0)
    for _ in range(3):
        assert bucket.ask(0.0)
        bucket.take()
    assert bucket.report() == (3, 3)
    assert bucket.ask(0.0)
    bucket.take()  # during the exchange
    bucket.settled(level=7.0, demand=3.0, now=0.0)  # the database has the 3 reported
    assert bucket.tokens == pytest.approx(6.0)
    assert bucket.report() == (1, 1)


def test_a_failed_report_goes_with_the_next_one() -> None:
    bucket = Bucket.fresh(rate=1, burst=10, now=0.0)
    assert bucket.ask(0.0)
    bucket.take()
    assert bucket.report() == (1, 1)
    assert bucket.ask(0.0)
    bucket.take()
    bucket.unsent()
    assert bucket.report() == (2, 2)


# -- the limiter --------------------------------------------------------------------------------
async def test_a_refused_call_takes_no_token_from_its_other_bucket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(_settings(key=Limit(1, 3), msisdn=Limit(1, 1)))
    assert limiter.check("purchase", "ussd", "5491100000001") is None
    refusal = limiter.check("purchase", "ussd", "5491100000001")
    assert refusal is not None and refusal.limit == "msisdn:purchase"
    assert refusal.retry_after == 1
    # the key bucket still has 2 tokens: two other mobiles get through
    assert limiter.check("purchase", "ussd", "5491100000002") is None
    assert limiter.check("purchase", "ussd", "5491100000003") is None
    refusal = limiter.check("purchase", "ussd", "5491100000004")
    assert refusal is not None and refusal.limit == "key:purchase"
    stats = limiter.statistics()
    assert stats.admitted == {"key:purchase": 3, "msisdn:purchase": 3}
    assert stats.refused == {"msisdn:purchase": 1, "key:purchase": 1}
    # other kinds and other keys are not limited by these buckets
    assert limiter.check("list", "ussd", "5491100000001") is None
    assert limiter.check("purchase", "app", "5491100000005") is None


async def test_retry_after_is_whole_seconds_until_a_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(_settings(msisdn=Limit(0.2, 2)))
    assert limiter.check("purchase", "c", "1") is None
    assert limiter.check("purchase", "c", "1") is None
    refusal = limiter.check("purchase", "c", "1")
    assert refusal is not None and refusal.retry_after == 5
    await trio.sleep(3.5)
    refusal = limiter.check("purchase", "c", "1")
    assert refusal is not None and refusal.retry_after == 2  # 1.5 s left, rounded up
    await trio.sleep(1.5)
    assert limiter.check("purchase", "c", "1") is None


async def test_disabled_or_zero_rate_limits_nothing(autojump_clock: trio.testing.MockClock
                                                    ) -> None:
    for settings in (_settings(key=Limit(1, 1), enabled=False), _settings()):
        limiter = RateLimiter(settings)
        assert all(limiter.check("purchase", "c", "1") is None for _ in range(100))
        assert limiter.statistics().buckets == 0


async def _drive(limiter: RateLimiter, rate: float, seconds: float, counts: list[int],
                 retry_afters: list[int], msisdn: str | None = None) -> None:
    """Call at `rate` per second for `seconds`: counts[0] admitted, counts[1] refused."""
    start = trio.current_time()
    n = 0
    while True:
        at = start + n / rate
        if at >= start + seconds:
            return
        await trio.sleep_until(at)
        refusal = limiter.check("purchase", "ussd", msisdn)
        if refusal is None:
            counts[0] += 1
        else:
            counts[1] += 1
            retry_afters.append(refusal.retry_after)
        n += 1


async def _share(limiters: list[RateLimiter], rates: list[float], seconds: float,
                 shared: MemoryShared, msisdn: str | None = None) -> tuple[int, int, list[int]]:
    counts = [0, 0]
    retry_afters: list[int] = []
    async with trio.open_nursery() as nursery:
        for limiter in limiters:
            nursery.start_soon(limiter.run, shared)
        async with trio.open_nursery() as load:
            for limiter, rate in zip(limiters, rates, strict=True):
                load.start_soon(_drive, limiter, rate, seconds, counts, retry_afters, msisdn)
        nursery.cancel_scope.cancel()
    return counts[0], counts[1], retry_afters


@pytest.mark.parametrize("split", [(1.5, 1.5), (2.5, 0.5), (3.0, 0.0001)])
async def test_two_workers_together_admit_about_the_rate(
    autojump_clock: trio.testing.MockClock, split: tuple[float, float],
) -> None:
    rate, burst, seconds = 50.0, 10.0, 20.0
    shared = MemoryShared()
    limiters = [RateLimiter(_settings(key=Limit(rate, burst))) for _ in range(2)]
    admitted, refused, retry_afters = await _share(
        limiters, [f * rate for f in split], seconds, shared)
    # the bound (docs/rate-limits.md): burst + rate * t, plus what the workers admit before
    # they hear of each other (a full burst each at the start, one exchange interval of
    # drift in their shares); never less than rate * t less one interval's worth
    ideal = burst + rate * seconds
    assert ideal - rate * 0.5 <= admitted <= ideal + burst + rate * 0.5, (admitted, ideal)
    assert refused > 0 and set(retry_afters) == {1}
    assert admitted + refused == pytest.approx(3 * rate * seconds, rel=0.01)


async def test_a_mobile_limited_across_workers_and_its_debt_is_repaid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rate, burst, seconds = 1.0, 5.0, 30.0
    shared = MemoryShared()
    limiters = [RateLimiter(_settings(msisdn=Limit(rate, burst))) for _ in range(2)]
    admitted, refused, _ = await _share(limiters, [1.5, 1.5], seconds, shared, "5491100000001")
    ideal = burst + rate * seconds
    # both workers may start with the full burst (the extra is owed and repaid); a token
    # that comes to one worker waits for that worker's next call (0.67 s apart here), so a
    # couple may be left when the load stops
    assert ideal - 3 <= admitted <= ideal + burst, (admitted, ideal)
    assert refused == 90 - admitted


async def test_reports_lost_while_the_database_is_down_are_sent_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = MemoryShared(fail=True)
    limiter = RateLimiter(_settings(key=Limit(10, 100)))
    for _ in range(30):
        assert limiter.check("purchase", "c") is None
    await limiter.exchange(shared)
    assert limiter.statistics().exchange_errors == 1 and not shared.rows
    shared.fail = False
    await limiter.exchange(shared)
    assert shared.rows["key:purchase:c"][0] == pytest.approx(70.0)


async def test_idle_full_buckets_are_forgotten(autojump_clock: trio.testing.MockClock) -> None:
    shared = MemoryShared()
    limiter = RateLimiter(_settings(key=Limit(100, 100), msisdn=Limit(1, 5)))
    for i in range(50):
        assert limiter.check("purchase", "c", f"54911{i:08d}") is None
    assert limiter.statistics().buckets == 51
    await limiter.exchange(shared)
    await trio.sleep(4)  # idle, and every bucket full again
    await limiter.exchange(shared)
    assert limiter.statistics().buckets == 0
