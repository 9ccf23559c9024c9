"""The profile cache's memory follows its TTL, not its cap: under a stream of distinct msisdns it
holds about `ttl` seconds of them; a refreshed or forgotten entry is not dropped early nor kept
late; concurrent requests share one fetch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import attrs
import trio
import trio.testing

from gestor.platforms import Platforms
from gestor.purchase import ProfileCache


@attrs.frozen
class _Data:
    msisdn: str
    fetch: int

    def as_dict(self) -> Mapping[str, Any]:
        return {"msisdn": self.msisdn, "fetch": self.fetch}


@attrs.define
class _Platforms:
    """The one call the cache makes (its HTTP client is tested against the simulator)."""

    fetches: list[str] = attrs.field(factory=list)
    delay: float = 0.0

    async def profile(self, msisdn: str) -> _Data:
        self.fetches.append(msisdn)
        await trio.sleep(self.delay)
        return _Data(msisdn, len(self.fetches))


def _cache(ttl: float, max_entries: int = 100_000, delay: float = 0.0
           ) -> tuple[ProfileCache, _Platforms]:
    platforms = _Platforms(delay=delay)
    return ProfileCache(cast(Platforms, platforms), ttl, max_entries), platforms


async def test_a_stream_of_distinct_mobiles_keeps_one_ttl_of_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """100 new msisdns a second for 60 s with a 5 s TTL: never more than 5 s of them (+ one
    tick), far below the cap, and the expiry queue does not grow either."""
    cache, platforms = _cache(ttl=5.0)
    peak = 0
    for second in range(60):
        for n in range(100):
            await cache.get(f"549110{second:03d}{n:04d}")
        peak = max(peak, len(cache))
        assert len(cache._expiries) <= 600
        await trio.sleep(1)
    assert len(platforms.fetches) == 6000
    assert 500 <= peak <= 600
    await trio.sleep(5)
    await cache.get("5491199999999")  # an insert after a quiet spell drops everything expired
    assert len(cache) == 1 and len(cache._expiries) == 1


async def test_entries_live_their_ttl_from_their_last_fetch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache, platforms = _cache(ttl=10.0)
    first = await cache.get("A")
    await trio.sleep(6)
    assert await cache.get("A") is first  # still fresh: no fetch
    await cache.get("B")
    await trio.sleep(5)  # A expired (11 s), B has 5 s left
    again = await cache.get("A")  # fetched again, its expiry queued anew
    assert again["fetch"] == 3 and platforms.fetches == ["A", "B", "A"]
    await trio.sleep(6)  # B expired; A (refreshed 6 s ago) must stay
    await cache.get("C")
    assert set(cache._entries) == {"A", "C"}
    assert await cache.get("A") is again
    cache.forget("A")
    assert await cache.get("A") != again  # forgotten: fetched anew
    await trio.sleep(11)
    await cache.get("D")
    assert set(cache._entries) == {"D"}


async def test_the_cap_drops_the_oldest_within_one_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache, _ = _cache(ttl=3600.0, max_entries=3)
    for msisdn in "ABCDE":
        await cache.get(msisdn)
        await trio.sleep(1)
    assert set(cache._entries) == {"C", "D", "E"}


async def test_concurrent_requests_share_one_fetch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache, platforms = _cache(ttl=10.0, delay=1.0)
    got: list[Mapping[str, Any]] = []

    async def get() -> None:
        got.append(await cache.get("A"))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(get)
    assert platforms.fetches == ["A"] and all(g is got[0] for g in got)
