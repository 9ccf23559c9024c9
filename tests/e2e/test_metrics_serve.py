"""`gestor serve --workers 2` as an operator's tools see it: one scrape of the one port adds up
both workers' counters (each worker having sold some of the purchases), a worker killed
outright neither takes its counts with it nor counts them twice, a JSON log line written deep
in a purchase's saga carries that purchase's transaction id, and `gestor status`,
`gestor --version`, `gestor reconcile` and `gestor rules push` find the running server from its
data directory alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e._proc import ROOT, clean_env, config_without_rate_limits, free_port, start, stop

pytestmark = pytest.mark.e2e


@attrs.frozen
class TwoWorkers:
    url: str
    data_dir: Path
    stderr: Path
    config: Path
    database_url: str
    platforms_url: str


@pytest.fixture(scope="module")
def two_workers(platforms_url: str, e2e_database: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoWorkers]:
    where = tmp_path_factory.mktemp("metrics")
    port = free_port()
    data_dir, stderr = where / "data", where / "stderr"
    config = config_without_rate_limits(where)
    with open(stderr, "w") as err:
        # no GESTOR_ADMIN_KEY: the admin key is <data dir>/admin.key, as with the defaults
        proc, _ = start(["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                         "--platforms", platforms_url, "--data-dir", str(data_dir),
                         "--config", str(config), "--log-format", "json"],
                        clean_env(GESTOR_DATABASE_URL=e2e_database), "gestor listening on ",
                        stderr=err)
    try:
        yield TwoWorkers(f"http://127.0.0.1:{port}", data_dir, stderr, config, e2e_database,
                         platforms_url)
    finally:
        assert stop(proc) == 0, stderr.read_text()[-3000:]


def completed(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name, sample.labels) == ("gestor_movements_total",
                                                {"kind": "purchase", "state": "completed"}):
                return sample.value
    return 0.0


def gauge_workers(text: str, name: str) -> dict[str, float]:
    return {s.labels["worker"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


async def fresh(base: str, method: str, path: str, **kw: Any) -> httpx.Response:
    """On a new connection, so the kernel may hand it to either worker."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        return await http.request(method, path, **kw)


async def buy(base: str, msisdn: str, key: str) -> httpx.Response:
    return await fresh(base, "POST", "/v1/purchases", headers={
        "Idempotency-Key": key, "Prefer": "wait=20"},
        json={"msisdn": msisdn, "bono_id": "DATA_500MB_1D", "channel": "web"})


def files_completed(data_dir: Path) -> float:
    """Completed purchases as the workers' published files hold them."""
    total = 0.0
    for path in (data_dir / "metrics").iterdir():
        if path.name.startswith("."):
            continue
        try:
            snapshot = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for labels, count in snapshot["counters"].get("gestor_movements", []):
            if labels == ["purchase", "completed"]:
                total += count
    return total


async def test_one_scrape_adds_up_both_workers_and_survives_a_killed_one(
        two_workers: TwoWorkers) -> None:
    base = two_workers.url
    with trio.fail_after(120):
        start_count = completed((await fresh(base, "GET", "/metrics")).text)
        by_worker: dict[str, int] = {}
        n = 0
        while len(by_worker) < 2 or n < 4:  # each worker sells at least one
            r = await buy(base, f"54911000001{n:02d}", f"m-{n}")
            assert r.status_code == 200 and r.json()["state"] == "completed", r.text
            by_worker[r.headers["Gestor-Worker"]] = by_worker.get(r.headers["Gestor-Worker"],
                                                                  0) + 1
            n += 1
        # Scraped on either worker, the total is every purchase, once: the one answering adds
        # its own counters to the other's published file (within a second).
        seen: dict[str, float] = {}
        while set(seen) != set(by_worker) or set(seen.values()) != {start_count + n}:
            r = await fresh(base, "GET", "/metrics")
            assert r.status_code == 200
            seen[r.headers["Gestor-Worker"]] = completed(r.text)
            assert completed(r.text) <= start_count + n  # never more: nothing counted twice
            await trio.sleep(0.05)
        assert set(gauge_workers(r.text, "gestor_up")) == {"0", "1"}

        # A worker killed outright: once its counts are in its file, they stay, once.
        while True:
            if files_completed(two_workers.data_dir) == start_count + n:
                break
            await trio.sleep(0.05)
        victim = int(next(iter(by_worker)))
        os.kill(victim, signal.SIGKILL)
        while True:  # until its replacement publishes
            names = [p.name for p in (two_workers.data_dir / "metrics").iterdir()]
            if any(name.startswith(f"{victim}-") and name.endswith(".retired") for name in names
                   ) and sum(name.endswith(".json") for name in names) == 2:
                break
            await trio.sleep(0.05)
        for _ in range(6):  # whichever worker answers
            r = await fresh(base, "GET", "/metrics")
            assert r.status_code == 200 and r.headers["Gestor-Worker"] != str(victim)
            assert completed(r.text) == start_count + n
            assert set(gauge_workers(r.text, "gestor_up")) == {"0", "1"}  # the replacement


async def test_a_json_log_line_deep_in_the_saga_names_its_purchase(
        two_workers: TwoWorkers) -> None:
    msisdn = "5491100000177"
    with trio.fail_after(120):
        async with httpx.AsyncClient(base_url=two_workers.platforms_url, timeout=30) as sim:
            r = await sim.put("/control/faults", json={"prov": {"provision": {"outage": True}}})
            assert r.status_code == 200, r.text
            try:
                r = await fresh(two_workers.url, "POST", "/v1/purchases", headers={
                    "Idempotency-Key": "log-1", "Prefer": "wait=20",
                    "X-Request-Id": "e2e-log-1"},
                    json={"msisdn": msisdn, "bono_id": "DATA_500MB_1D", "channel": "web"})
            finally:
                await sim.put("/control/faults", json={"prov": {"provision": None}})
    assert r.status_code == 200 and r.json()["state"] == "refunded", r.text
    tx_id = r.json()["id"]
    assert r.headers["Request-Id"] == "e2e-log-1"
    lines = [json.loads(line) for line in two_workers.stderr.read_text().splitlines()
             if line.startswith("{")]
    mine = [line for line in lines if line.get("transaction_id") == tx_id]
    saga = [line for line in mine if line["logger"] == "gestor.purchase"]
    assert saga, mine
    assert saga[0]["message"].startswith(f"provision failed for {tx_id}")
    assert saga[0]["msisdn"] == msisdn and saga[0]["level"] == "WARNING"
    # written by the worker that sold it: its pid, and its index as `worker`
    assert saga[0]["pid"] == int(r.headers["Gestor-Worker"]) and saga[0]["worker"] in ("0", "1")
    access = [line for line in mine if line["logger"] == "gestor.access"]
    assert [(a["request_id"], a["status"], a["path"]) for a in access] == [
        ("e2e-log-1", 200, "/v1/purchases")]
    assert all(isinstance(line["worker"], str) for line in lines)


def gestor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gestor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_status_version_and_the_commands_that_find_the_server(
        two_workers: TwoWorkers, tmp_path: Path) -> None:
    from importlib.metadata import version

    env = clean_env()
    done = gestor("--version", env=env)
    assert (done.returncode, done.stdout) == (0, f"gestor {version('gestor')}\n")

    where = ["--data-dir", str(two_workers.data_dir), "--config", str(two_workers.config)]
    done = gestor("status", *where, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"gestor {version('gestor')} running (pid ")
    db = two_workers.database_url
    assert lines[1:] == [
        f"listening:   {two_workers.url}",
        "workers:     2",
        f"database:    {_without_password(db)} ({_described(db)})",
        f"platforms:   {two_workers.platforms_url}",
        f"admin key:   {two_workers.data_dir / 'admin.key'}",
        f"data dir:    {two_workers.data_dir}",
        f"config dir:  {two_workers.config}",
        "rules:       version 1 active",
        "catalogue:   version 1 active",
    ]
    as_json = json.loads(gestor("status", "--json", *where, env=env).stdout)
    assert (as_json["workers"], as_json["url"]) == (2, two_workers.url)
    assert (as_json["rules_version"], as_json["catalogue_version"]) == (1, 1)
    assert "password" not in json.dumps(as_json) and ":@" not in as_json["database"]

    nothing = gestor("status", "--data-dir", str(tmp_path), env=env)
    assert nothing.returncode == 1 and nothing.stdout == ""
    assert nothing.stderr == (f"gestor: no gestor serve is running with data directory "
                              f"{tmp_path}\n")

    # reconcile finds the charging system (the server's --platforms) from the data directory
    done = gestor("reconcile", "--json", *where, env=clean_env(GESTOR_DATABASE_URL=db))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    # rules push finds the server and its admin key from the data directory
    rules = tmp_path / "rules.toml"
    rules.write_text((two_workers.config / "rules.toml").read_text())
    done = gestor("rules", "push", str(rules), *where, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stored as version ") and done.stdout.endswith(" (draft)\n")
    # and so does catalogue push (the same discovery: gestor/cli/_server.py)
    catalogue = tmp_path / "bonos.toml"
    catalogue.write_text((two_workers.config / "bonos.toml").read_text())
    done = gestor("catalogue", "push", str(catalogue), *where, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stored as catalogue version ")
    assert done.stdout.endswith(" (draft)\n")


def _without_password(dsn: str) -> str:
    from gestor.cli._status import without_password

    return without_password(dsn)


def _described(dsn: str) -> str:
    from gestor.startup import describe_dsn

    return describe_dsn(dsn)
