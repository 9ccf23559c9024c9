"""Two hypercorn worker processes: a rule set activated through one reaches both (LISTEN/NOTIFY),
with no restart; and the one-pending-purchase guard holds across processes (DESIGN D3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e._proc import (
    clean_env,
    config_without_rate_limits,
    free_port,
    start,
    stop,
)
from tests.ruletext import promo, with_first_operation

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-admin-key-0123456789"


@pytest.fixture
def two_workers(platforms_url: str, database_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc, _ = start(
        ["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--platforms", platforms_url,
         "--data-dir", str(tmp_path),
         "--config", str(config_without_rate_limits(tmp_path))],
        clean_env(GESTOR_DATABASE_URL=database_url, GESTOR_ADMIN_KEY=ADMIN_KEY),
        "gestor listening on ",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        yield base
    finally:
        assert stop(proc) == 0


async def fresh_get(base: str, path: str) -> httpx.Response:
    """A request on a new connection, so the kernel may hand it to either worker."""
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.get(path)


async def test_activation_reaches_every_worker(two_workers: str) -> None:
    path = "/v1/mobiles/5491100000051/bonos"
    with trio.fail_after(60):
        before: dict[str, int] = {}
        while len(before) < 2:
            r = await fresh_get(two_workers, path)
            price = {b["id"]: b["price"] for b in r.json()["bonos"]}["DATA_2GB_7D"]
            before[r.headers["Gestor-Worker"]] = price
        assert set(before.values()) == {60000}
        async with httpx.AsyncClient(
            base_url=two_workers, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ) as admin:
            source = with_first_operation(promo("DATA_2GB_7D", 45000))
            r = await admin.post("/v1/admin/rules", json={"source": source})
            assert r.status_code == 201, r.text
            version = r.json()["version"]
            r = await admin.post(f"/v1/admin/rules/{version}/activate")
            assert r.status_code == 200
        switched: set[str] = set()
        while switched != set(before):
            r = await fresh_get(two_workers, path)
            worker = r.headers["Gestor-Worker"]
            body = r.json()
            price = {b["id"]: b["price"] for b in body["bonos"]}["DATA_2GB_7D"]
            if worker in switched:  # once switched, a worker never goes back
                assert (body["rules_version"], price) == (version, 45000)
            elif body["rules_version"] == version:
                assert price == 45000
                switched.add(worker)


async def test_one_pending_purchase_per_mobile_across_workers(
    two_workers: str, platforms_url: str
) -> None:
    msisdn = "5491100000052"
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=platforms_url) as sim:
            r = await sim.put("/control/faults", json={"ocs.debit": {"latency_ms": 1500}})
            assert r.status_code == 200
        try:
            statuses: list[int] = []
            workers: set[str] = set()

            async def one(i: int) -> None:
                async with httpx.AsyncClient(base_url=two_workers, timeout=20) as http:
                    r = await http.post(
                        "/v1/purchases", json={"msisdn": msisdn, "bono_id": "SMS_200_30D"},
                        headers={"Idempotency-Key": f"workers-{i}"})
                    statuses.append(r.status_code)
                    workers.add(r.headers["Gestor-Worker"])

            async with trio.open_nursery() as nursery:
                for i in range(40):
                    nursery.start_soon(one, i)
            assert sorted(statuses).count(202) == 1, statuses
            assert statuses.count(409) == 39
            assert len(workers) == 2  # both processes took part
        finally:
            async with httpx.AsyncClient(base_url=platforms_url) as sim:
                await sim.put("/control/faults", json={"ocs.debit": {"latency_ms": 0}})


async def test_restriction_holds_at_once_in_every_worker(two_workers: str) -> None:
    """Seen by both workers first; once set through one, neither lists the bono as eligible
    (each listing reads restrictions from the database: no copy to go stale)."""
    msisdn = "5491100000053"
    path = f"/v1/mobiles/{msisdn}/bonos"

    def data_eligible(r: httpx.Response) -> bool:
        return bool({b["id"]: b["eligible"] for b in r.json()["bonos"]}["DATA_2GB_7D"])

    with trio.fail_after(60):
        seen: set[str] = set()
        while len(seen) < 2:  # both workers answered for this msisdn
            r = await fresh_get(two_workers, path)
            assert data_eligible(r)
            seen.add(r.headers["Gestor-Worker"])
        async with httpx.AsyncClient(base_url=two_workers) as admin:
            r = await admin.put(f"/v1/admin/mobiles/{msisdn}/restrictions/NO_DATA_BONOS",
                                headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert r.status_code == 200
        after: set[str] = set()
        while after != seen:
            r = await fresh_get(two_workers, path)
            assert not data_eligible(r)  # at once, in whichever worker answers
            after.add(r.headers["Gestor-Worker"])
