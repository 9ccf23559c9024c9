"""Every PostgreSQL process stopped for 10 s under a bounded load of purchases (issue 10's
acceptance): a purchase answered with a failure code left nothing, in the database or at the
charging system; every other one ends final and is reachable by its Idempotency-Key (an
OUTCOME_UNKNOWN is asked again with the same key until it is answered with the transaction);
`gestor reconcile --strict` is clean."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e._postgres import own_postgres
from tests.e2e._proc import ROOT, clean_env, free_port, start, stop

pytestmark = pytest.mark.e2e

PURCHASES = 400
CLIENTS = 20
PAUSE_AFTER = 100  # answers before the database is stopped
PAUSE = 10.0  # seconds the database stays stopped (the fault's length, not a synchronisation)
MSISDNS = [f"54911000000{n:02d}" for n in range(1, 100)]  # always active, prepaid, funded
BONO = "SMS_200_30D"
#: First answers that promise nothing was done (README, "Buy a bono").
NOTHING_DONE = {"SERVICE_UNAVAILABLE", "DATABASE_UNAVAILABLE", "BUSY", "TOO_MANY_REQUESTS",
                "PURCHASE_PENDING"}

CONFIG = """
[recovery]
interval = 1.0
stale_after = 15.0   # longer than the pause: live sagas are not taken over while it lasts
[limits.msisdn]
purchase = { rate = 0 }  # retries on one mobile through the pause: not rate limited here
"""


async def _post(http: httpx.AsyncClient, msisdn: str, key: str, wait: int) -> tuple[str, Any]:
    """(answer code, body): the problem code, or the HTTP status of a transaction."""
    try:
        r = await http.post("/v1/purchases", json={"msisdn": msisdn, "bono_id": BONO},
                            headers={"Idempotency-Key": key, "Prefer": f"wait={wait}"})
    except httpx.TransportError as exc:  # no answer: as good as unknown
        return f"no answer ({type(exc).__name__})", None
    body = r.json()
    if r.status_code in (200, 202):
        return str(r.status_code), body
    assert r.status_code in (409, 429, 503), r.text  # nothing else is expected here
    if r.status_code == 503:
        assert r.headers.get("Retry-After"), r.headers
    return str(body["code"]), body


async def _load(base: str, db: Any) -> dict[str, tuple[str, str, Any]]:
    """Send the purchases from CLIENTS concurrent clients; stop every process of the database
    for PAUSE seconds once PAUSE_AFTER have been answered. key -> (msisdn, code, body)."""
    answers: dict[str, tuple[str, str, Any]] = {}
    queue = [(MSISDNS[i % len(MSISDNS)], f"pause-{i}") for i in range(PURCHASES)]
    pause = trio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            msisdn, key = queue.pop(0)
            code, body = await _post(http, msisdn, key, wait=5)
            answers[key] = (msisdn, code, body)
            if len(answers) >= PAUSE_AFTER:
                pause.set()

    async def fault() -> None:
        await pause.wait()
        db.signal_all(signal.SIGSTOP)
        try:
            await trio.sleep(PAUSE)
        finally:
            db.signal_all(signal.SIGCONT)

    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http, \
            trio.open_nursery() as nursery:
        nursery.start_soon(fault)
        for _ in range(CLIENTS):
            nursery.start_soon(client, http)
    return answers


async def _settle(base: str, answers: dict[str, tuple[str, str, Any]]) -> dict[str, Any]:
    """Every purchase not refused, as a final transaction found by its Idempotency-Key."""
    finals: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for key, (msisdn, code, _) in answers.items():
            if code in NOTHING_DONE:
                continue
            while True:  # the same key until the answer is the transaction
                again, body = await _post(http, msisdn, key, wait=10)
                if again in ("200", "202"):
                    break
                assert again in ("OUTCOME_UNKNOWN", "SERVICE_UNAVAILABLE", "DATABASE_UNAVAILABLE",
                                 "PURCHASE_PENDING", "TOO_MANY_REQUESTS") \
                    or again.startswith("no answer"), again
                await trio.sleep(0.5)  # as Retry-After says
            while not body["final"]:
                r = await http.get(f"/v1/transactions/{body['id']}",
                                   headers={"Prefer": "wait=10"})
                assert r.status_code == 200, r.text
                body = r.json()
            # Reachable by its key: the same transaction, replayed.
            r = await http.post("/v1/purchases", json={"msisdn": msisdn, "bono_id": BONO},
                                headers={"Idempotency-Key": key})
            assert r.status_code == 200 and r.headers["Idempotent-Replayed"] == "true", r.text
            assert r.json()["id"] == body["id"] and r.json()["final"]
            finals[key] = r.json()
    return finals


async def test_a_stopped_database_under_load_never_charges_a_failed_answer(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "gestor.toml").write_text(CONFIG)
    with own_postgres() as db:
        sim, sim_url = start(["simulate", "--bind", "127.0.0.1:0", "--state-dir",
                              str(tmp_path / "sim")], clean_env(), "listening on ")
        port = free_port()
        env = clean_env(GESTOR_DATABASE_URL=db.dsn)
        serve, _ = start(["serve", "--bind", f"127.0.0.1:{port}", "--platforms", sim_url,
                          "--config", str(config), "--data-dir", str(tmp_path / "serve")],
                         env, "gestor listening on ")
        try:
            with trio.fail_after(300):
                base = f"http://127.0.0.1:{port}"
                answers = await _load(base, db)
                first = Counter(code for _, code, _ in answers.values())
                print(f"\nfirst answers by code: {dict(sorted(first.items()))}")
                assert len(answers) == PURCHASES
                assert first["SERVICE_UNAVAILABLE"] + first["OUTCOME_UNKNOWN"] > 0, first
                finals = await _settle(base, answers)
                states = Counter(tx["state"] for tx in finals.values())
                print(f"final states of the others: {dict(sorted(states.items()))}")

                rows = {key: (tx_id, state) for key, tx_id, state in (
                    line.split("|") for line in db.psql(
                        "SELECT idempotency_key, id, state FROM transactions").split())}
                refused = {k for k, (_, code, _) in answers.items() if code in NOTHING_DONE}
                assert refused.isdisjoint(rows), sorted(refused & rows.keys())
                assert rows.keys() == finals.keys()
                assert all(rows[k][1] == tx["state"] for k, tx in finals.items())
                async with httpx.AsyncClient(base_url=sim_url) as http:
                    ledger = (await http.get("/control/ledger")).json()
                entries = ledger["entries"] if isinstance(ledger, dict) else ledger
                debited = {e["id"] for e in entries if e["kind"] == "debit"}
                known = {tx_id for tx_id, _ in rows.values()}
                assert debited <= known  # no debit for anything answered as not done
                completed = {tx["id"] for tx in finals.values() if tx["state"] == "completed"}
                assert completed <= debited

                done = await trio.run_process(
                    [sys.executable, "-m", "gestor", "reconcile", "--platforms", sim_url,
                     "--strict", "--json"], cwd=ROOT, env=env, capture_stdout=True,
                    capture_stderr=True, check=False)
                report = json.loads(done.stdout)
                assert done.returncode == 0, (report, done.stderr.decode())
                assert report["ok"] is True and report["mismatches"] == []
        finally:
            assert stop(serve) == 0
            stop(sim)
