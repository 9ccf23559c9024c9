"""Two `gestor serve` nodes, two workers each, on one PostgreSQL of the test's own and one shared
simulator (issue 10's first acceptance test): the rules' limits hold exactly across the four
processes, a mobile never has two debits in flight, and its records never overlap in time."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import trio

from tests.e2e._postgres import own_postgres
from tests.e2e._proc import (
    clean_env,
    config_without_rate_limits,
    free_port,
    start,
    stop,
)

pytestmark = pytest.mark.e2e

PREPAID_SEQUENTIAL = "5491100000021"  # well known: active, prepaid, well funded
PREPAID_CONCURRENT = "5491100000022"
POSTPAID_SEQUENTIAL = "5491150000000"  # synthetic postpaid: active, home, 500,000 a month
POSTPAID_CONCURRENT = "5491150000015"
CREDIT_LIMIT = 500_000


@pytest.fixture(scope="module")
def nodes(platforms_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Base URLs of two nodes (`--workers 2` each) on one PostgreSQL, started one after the
    other (each migrates on start; the migration lock makes that safe either way)."""
    with own_postgres() as pg:
        env = clean_env(GESTOR_DATABASE_URL=pg.dsn)
        procs = []
        try:
            bases = []
            for n in range(2):
                port = free_port()
                proc, _ = start(
                    ["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                     "--platforms", platforms_url,
                     "--data-dir", str(tmp_path_factory.mktemp(f"node{n}")),
                     "--config", str(config_without_rate_limits(
                         tmp_path_factory.mktemp(f"config{n}")))],
                    env, "gestor listening on ",
                )
                procs.append(proc)
                bases.append(f"http://127.0.0.1:{port}")
            yield bases
        finally:
            for proc in procs:
                assert stop(proc) == 0


async def _buy(base: str, msisdn: str, bono: str, key: str, wait: int = 0
               ) -> tuple[httpx.Response, str]:
    """One purchase on a connection of its own (so the node's kernel may hand it to either
    worker); the response and the worker that answered."""
    headers = {"Idempotency-Key": key}
    if wait:
        headers["Prefer"] = f"wait={wait}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.post("/v1/purchases", json={"msisdn": msisdn, "bono_id": bono},
                            headers=headers)
    return r, f"{base} {r.headers.get('Gestor-Worker')}"


async def _simulator(platforms_url: str, msisdn: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=platforms_url) as sim:
        stats: dict[str, Any] = (await sim.get("/control/stats",
                                               params={"msisdn": msisdn})).json()
    return stats["per_msisdn"]


async def _records(base: str, msisdn: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.get(f"/v1/mobiles/{msisdn}/transactions", params={"limit": 500})
    assert r.status_code == 200
    records: list[dict[str, Any]] = r.json()["transactions"]
    return records


def _assert_never_overlap(records: list[dict[str, Any]]) -> None:
    """Each record's history runs from its `created_at` to its `updated_at`, and a mobile's
    records follow one another: previous.updated_at <= next.created_at."""
    spans = []
    for tx in records:
        assert tx["final"], tx
        start_, end = datetime.fromisoformat(tx["created_at"]), datetime.fromisoformat(
            tx["updated_at"])
        times = [datetime.fromisoformat(h["at"]) for h in tx["history"]]
        assert times[0] == start_ and times[-1] == end and times == sorted(times), tx
        spans.append((start_, end))
    spans.sort()
    for (_, end), (start_, _) in itertools.pairwise(spans):
        assert end <= start_, spans


async def _set_debit_latency(platforms_url: str, ms: int) -> None:
    async with httpx.AsyncClient(base_url=platforms_url) as sim:
        r = await sim.put("/control/faults", json={"ocs.debit": {"latency_ms": ms}})
        assert r.status_code == 200


async def _hammer(nodes: list[str], msisdn: str, bono: str, tag: str) -> tuple[int, set[str]]:
    """Purchases with distinct keys on one mobile, half of them on each node, each waiting for
    its purchase's end if it was accepted: first 300 at once (one connection each), then 300
    more from 30 clients, 10 each, one after the other (so that many are accepted, and the
    limits are reached under contention). Returns how many were accepted and the workers seen.
    A refusal (one in flight: 409; the mobile's actor swamped: 429) writes nothing: the
    callers check that the records are exactly the accepted ones."""
    accepted = 0
    workers: set[str] = set()

    async def one(node: str, key: str) -> None:
        nonlocal accepted
        r, worker = await _buy(node, msisdn, bono, key, wait=10)
        assert r.status_code in (200, 409, 429), r.text  # ended, one in flight, swamped
        accepted += r.status_code == 200
        workers.add(worker)

    async def client(c: int) -> None:
        for i in range(10):
            await one(nodes[c % 2], f"{tag}-{c}-{i}")

    async with trio.open_nursery() as nursery:
        for c in range(300):
            nursery.start_soon(one, nodes[c % 2], f"{tag}-burst-{c}")
    async with trio.open_nursery() as nursery:
        for c in range(30):
            nursery.start_soon(client, c)
    return accepted, workers


async def _ended(nodes: list[str], msisdn: str, count: int) -> list[dict[str, Any]]:
    records = await _records(nodes[0], msisdn)
    assert len(records) == count
    return records


async def test_daily_limit_holds_across_nodes_and_workers(nodes: list[str],
                                                          platforms_url: str) -> None:
    """30 sequential purchases alternating nodes: exactly 10 completed, 20 rejected by the
    `daily_limit` rule; exactly 10 debits at the charging system."""
    with trio.fail_after(60):
        states: list[str] = []
        workers: set[str] = set()
        for i in range(30):
            r, worker = await _buy(nodes[i % 2], PREPAID_SEQUENTIAL, "SMS_200_30D",
                                   f"seq-{i}", wait=10)
            assert r.status_code == 200, r.text
            tx = r.json()
            states.append(tx["state"])
            workers.add(worker)
            if tx["state"] == "rejected":
                assert [x["rule"] for x in tx["reasons"]] == ["daily_limit"], tx
        assert states == ["completed"] * 10 + ["rejected"] * 20
        assert len({w.split()[0] for w in workers}) == 2
        account = await _simulator(platforms_url, PREPAID_SEQUENTIAL)
        assert account["debits"] == 10 and account["refunds"] == 0
        assert account["max_concurrent_debits"] == 1
        _assert_never_overlap(await _records(nodes[1], PREPAID_SEQUENTIAL))


async def test_concurrent_purchases_one_debit_at_a_time_and_records_never_overlap(
    nodes: list[str], platforms_url: str
) -> None:
    """300 concurrent purchases on one fresh mobile over both nodes (four workers), then 300
    more from 30 clients: one debit in flight at any moment, records that follow one another,
    and exactly min(accepted, 10) completed."""
    with trio.fail_after(60):
        await _set_debit_latency(platforms_url, 20)  # a second debit would overlap the first
        try:
            accepted, workers = await _hammer(nodes, PREPAID_CONCURRENT, "SMS_200_30D", "conc")
        finally:
            await _set_debit_latency(platforms_url, 0)
        assert accepted >= 1 and len({w.split()[0] for w in workers}) == 2
        records = await _ended(nodes, PREPAID_CONCURRENT, accepted)
        completed = [tx for tx in records if tx["state"] == "completed"]
        assert len(completed) == min(accepted, 10)
        assert all(tx["state"] == "rejected" and tx["reasons"][0]["rule"] == "daily_limit"
                   for tx in records if tx["state"] != "completed")
        _assert_never_overlap(records)
        account = await _simulator(platforms_url, PREPAID_CONCURRENT)
        assert account["debits"] == len(completed) and account["refunds"] == 0
        assert account["max_concurrent_debits"] == 1


async def test_credit_limit_holds_across_nodes_and_workers(nodes: list[str],
                                                           platforms_url: str) -> None:
    """The postpaid `credit_limit` (this month's spending + price <= 500,000): sequential
    purchases alternating nodes complete exactly as many as fit; 300 concurrent ones on another
    mobile never spend beyond it, one debit at a time, with records that never overlap."""
    with trio.fail_after(60):
        states: list[str] = []
        prices: list[int] = []
        for i in range(6):
            r, _ = await _buy(nodes[i % 2], POSTPAID_SEQUENTIAL, "DATA_10GB_30D",
                              f"post-{i}", wait=10)
            assert r.status_code == 200, r.text
            tx = r.json()
            states.append(tx["state"])
            prices.append(tx["price"])
            if tx["state"] == "rejected":
                assert [x["rule"] for x in tx["reasons"]] == ["credit_limit"], tx
        fit = CREDIT_LIMIT // prices[0]
        assert 1 <= fit < 6
        assert states == ["completed"] * fit + ["rejected"] * (6 - fit)
        account = await _simulator(platforms_url, POSTPAID_SEQUENTIAL)
        assert account["debits"] == fit and account["debited_total"] == fit * prices[0]
        _assert_never_overlap(await _records(nodes[0], POSTPAID_SEQUENTIAL))

        await _set_debit_latency(platforms_url, 20)
        try:
            accepted, _ = await _hammer(nodes, POSTPAID_CONCURRENT, "DATA_10GB_30D", "pconc")
        finally:
            await _set_debit_latency(platforms_url, 0)
        records = await _ended(nodes, POSTPAID_CONCURRENT, accepted)
        completed = [tx for tx in records if tx["state"] == "completed"]
        spent = sum(tx["price"] for tx in completed)
        assert spent <= CREDIT_LIMIT
        assert len(completed) == min(accepted, CREDIT_LIMIT // completed[0]["price"])
        _assert_never_overlap(records)
        account = await _simulator(platforms_url, POSTPAID_CONCURRENT)
        assert account["debits"] == len(completed) and account["debited_total"] == spent
        assert account["max_concurrent_debits"] == 1

