"""`gestor serve --workers 2`: a key limited to R listings a second, driven at 3R on fresh
connections (which the kernel spreads over both worker processes), gets about R a second; the
rest get `429 RATE_LIMITED` with Retry-After, from both workers."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e._proc import ROOT, clean_env, free_port, start, stop

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-admin-key-0123456789"
RATE, BURST = 10.0, 5.0


@pytest.fixture
def limited_server(platforms_url: str, database_url: str, tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    shipped = (config / "gestor.toml").read_text()
    (config / "gestor.toml").write_text(shipped[:shipped.index("[limits]")] + (
        "[limits]\nsync_interval = 0.1\n"
        f"[limits.key]\nlist = {{ rate = {RATE}, burst = {BURST} }}\n"))
    port = free_port()
    proc, _ = start(
        ["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--platforms", platforms_url,
         "--data-dir", str(tmp_path / "data"), "--config", str(config)],
        clean_env(GESTOR_DATABASE_URL=database_url, GESTOR_ADMIN_KEY=ADMIN_KEY),
        "gestor listening on ",
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert stop(proc) == 0


async def _clients_on_both_workers(base: str, stack: contextlib.AsyncExitStack
                                   ) -> list[httpx.AsyncClient]:
    """Two keep-alive clients connected to each worker process (told by `/healthz`, which is
    not limited): requests round-robin over them reach both."""
    by_worker: dict[str, list[httpx.AsyncClient]] = {}
    for _ in range(60):
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=30))
        worker = (await client.get("/healthz")).headers["Gestor-Worker"]
        by_worker.setdefault(worker, []).append(client)
        if len(by_worker) == 2 and all(len(c) >= 2 for c in by_worker.values()):
            return [c for clients in zip(*by_worker.values(), strict=False) for c in clients]
    raise AssertionError(f"connections reached {sorted(by_worker)} only")


async def test_a_key_is_limited_across_two_worker_processes(limited_server: str) -> None:
    seconds = 4.0
    answers: list[httpx.Response] = []
    late = 0.0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        answers.append(await client.get(f"/v1/mobiles/54911{20_000_000 + i}/bonos",
                                        headers={"X-Client-Id": "selfcare"}))

    with trio.fail_after(120):
        async with contextlib.AsyncExitStack() as stack:
            clients = await _clients_on_both_workers(limited_server, stack)
            start_at = trio.current_time()
            async with trio.open_nursery() as nursery:
                i = 0
                while (at := start_at + i / (3 * RATE)) < start_at + seconds:
                    await trio.sleep_until(at)
                    late = max(late, trio.current_time() - at)
                    nursery.start_soon(one, clients[i % len(clients)], i)
                    i += 1
                elapsed = trio.current_time() - start_at
    admitted = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert len(answers) == i
    for r in refused:
        assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED"
        assert r.json()["limit"] == "key:list" and r.headers["Retry-After"] == "1"
    # both processes admitted and refused
    assert len({r.headers["Gestor-Worker"] for r in admitted}) == 2
    assert len({r.headers["Gestor-Worker"] for r in refused}) == 2
    # ≈ R/s: the tolerance of tests/integration/test_rate_limits.py (shares one exchange late,
    # a loaded box's timing), and one burst more: each process starts with the bucket full
    ideal = BURST + RATE * elapsed
    assert ideal - RATE * 0.6 <= len(admitted) <= ideal + BURST + RATE * 0.6, (
        len(admitted), ideal)
    assert late < 0.5, f"the load generator fell {late:.2f} s behind"
    # a client with another key is not limited by this one's bucket
    async with httpx.AsyncClient(base_url=limited_server, timeout=30) as http:
        other = await http.get("/v1/mobiles/5491100000001/bonos",
                               headers={"X-Client-Id": "ussd-gw"})
        assert other.status_code == 200
