"""The shared buckets' SQL on a real PostgreSQL: an exchange adds what a worker admitted and was
asked, refills by the database's clock up to the burst, keeps debt below zero, and buckets
full again are forgotten."""

from __future__ import annotations

import pytest
import trio

from gestor.store import open_store


async def test_exchanges_add_up_refill_and_keep_debt(database_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(database_url) as store:
            first = await store.exchange_rate_limits(
                [("key:purchase:a", 3, 4, 1.0, 10.0), ("msisdn:purchase:1", 15, 15, 0.2, 5.0)],
                1.0)
            assert first["key:purchase:a"] == (7.0, 4.0)  # a new bucket: full less the used
            assert first["msisdn:purchase:1"] == (-10.0, 15.0)  # admitted beyond it: owed
            second = await store.exchange_rate_limits([("key:purchase:a", 2, 2, 1.0, 10.0)], 1.0)
            level, demand = second["key:purchase:a"]
            assert 5.0 <= level <= 5.0 + 2.0  # 7 - 2, plus a refill of 1/s since the first
            assert 4.0 < demand <= 6.0  # 4 decayed over the time between, plus 2
            await trio.sleep(0.5)
            third = await store.exchange_rate_limits([("msisdn:purchase:1", 0, 1, 0.2, 5.0)], 1.0)
            assert third["msisdn:purchase:1"][0] == pytest.approx(-10.0 + 0.2 * 0.5, abs=0.1)
            # the refill stops at the burst
            await store.exchange_rate_limits([("key:purchase:b", 1, 1, 1000.0, 3.0)], 1.0)
            await trio.sleep(0.1)
            full = await store.exchange_rate_limits([("key:purchase:b", 0, 1, 1000.0, 3.0)], 1.0)
            assert full["key:purchase:b"][0] == 3.0


async def test_buckets_full_again_are_forgotten(database_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(database_url) as store:
            await store.exchange_rate_limits(
                [("key:list:a", 0, 1, 1.0, 10.0), ("key:list:b", 5, 5, 1.0, 10.0)], 1.0)
            await trio.sleep(0.05)
            assert await store.forget_rate_limits(0.0) == 1  # a is full; b refills for 5 s
            answer = await store.exchange_rate_limits([("key:list:b", 0, 1, 1.0, 10.0)], 1.0)
            assert 5.0 <= answer["key:list:b"][0] < 10.0
