"""The metrics of several workers added up, sans HTTP: counters and histograms summed over every
snapshot (a stopped worker's included, once), gauges from live workers only, each labelled with
its worker; the files a worker publishes, and what retiring one does; every exposition parses
with prometheus_client's parser."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gestor.metrics import Publisher, read_snapshots, render, retire_process
from gestor.metrics._instruments import LATENCY_BUCKETS, Counter, Histogram


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def worker(index: str, pid: int, purchases: float, debit_seconds: list[float],
           in_flight: int) -> dict[str, Any]:
    requests = Counter("gestor_http_requests", "", ("method", "route", "status"))
    requests.inc(("POST", "/v1/purchases", "200"), purchases)
    calls = Histogram("gestor_platform_call_duration_seconds", "",
                      ("platform", "operation", "outcome"))
    for seconds in debit_seconds:
        calls.observe(("ocs", "debit", "ok"), seconds)
    return {"pid": pid, "worker": index,
            "counters": {"gestor_http_requests": requests.dump(),
                         "gestor_admission_rejections": [[["busy"], 2]]},
            "histograms": {calls.name: calls.dump()},
            "gauges": {"gestor_purchases_in_flight": [[[], in_flight]],
                       "gestor_up": [[[], 1]]}}


def test_counters_and_histograms_add_up_gauges_come_from_live_workers() -> None:
    live = worker("0", 101, 3, [0.004, 0.2], 5)
    stopped = worker("1", 102, 4, [0.004, 20.0, 0.0005], 7)
    replacement = worker("1", 103, 1, [0.07], 1)
    found = samples(render([(live, True), (stopped, False), (replacement, True)]))
    key = (("method", "POST"), ("route", "/v1/purchases"), ("status", "200"))
    assert found[("gestor_http_requests_total", key)] == 8
    assert found[("gestor_admission_rejections_total", (("reason", "busy"),))] == 6
    debit = (("operation", "debit"), ("outcome", "ok"), ("platform", "ocs"))
    assert found[("gestor_platform_call_duration_seconds_count", debit)] == 6
    assert found[("gestor_platform_call_duration_seconds_sum", debit)] == pytest.approx(20.2785)

    def bucket(le: str) -> float:
        return found[("gestor_platform_call_duration_seconds_bucket",
                      tuple(sorted((*debit, ("le", le)))))]

    # 0.0005 (le 0.0005) | 0.004 x2 (le 0.005) | 0.07 (le 0.075) | 0.2 | 20.0 (+Inf only)
    assert [bucket(repr(b)) for b in LATENCY_BUCKETS] == [1, 1, 1, 3, 3, 3, 3, 4, 4, 5, 5, 5,
                                                         5, 5, 5]
    assert bucket("+Inf") == 6
    in_flight = {labels: v for (name, labels), v in found.items()
                 if name == "gestor_purchases_in_flight"}
    assert in_flight == {(("worker", "0"),): 5, (("worker", "1"),): 1}  # not the stopped one's


def test_an_empty_server_still_names_every_family() -> None:
    families = {f.name for f in text_string_to_metric_families(render([]).decode())}
    assert {"gestor_http_requests", "gestor_movements", "gestor_platform_call_duration_seconds",
            "gestor_db_batch_size", "gestor_db_crossing_duration_seconds",
            "gestor_saga_step_duration_seconds", "gestor_alarms_raised",
            "gestor_admission_rejections", "gestor_platform_circuit_state",
            "gestor_actors_alive", "gestor_build_info"} <= families


async def test_a_publisher_writes_its_file_and_retires_it(tmp_path: Path,
                                                          autojump_clock: Any) -> None:
    writes = 0

    def collect() -> dict[str, Any]:
        nonlocal writes
        writes += 1
        return {"pid": os.getpid(), "worker": "0", "counters": {
            "gestor_movements": [[["purchase", "completed"], writes]]}}

    publisher = Publisher(tmp_path, collect, interval=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        assert read_snapshots(tmp_path) == [({"pid": os.getpid(), "worker": "0", "counters": {
            "gestor_movements": [[["purchase", "completed"], 1]]}}, True)]
        await trio.sleep(2.5)  # two more writes, once a second
        [(snapshot, live)] = read_snapshots(tmp_path)
        assert live and snapshot["counters"]["gestor_movements"] == [
            [["purchase", "completed"], 3]]
        assert read_snapshots(tmp_path, skip=publisher.path) == []
        nursery.cancel_scope.cancel()
    # stopped: written a last time and retired (counted, no longer live)
    [(snapshot, live)] = read_snapshots(tmp_path)
    assert not live and snapshot["counters"]["gestor_movements"] == [
        [["purchase", "completed"], 4]]
    assert [p.name for p in tmp_path.iterdir()] == [  # noqa: ASYNC240 - a test's tmp dir
        publisher.path.name + ".retired"]


def test_retiring_a_dead_process_keeps_its_counts(tmp_path: Path) -> None:
    (tmp_path / "4242-0.json").write_text('{"pid": 4242, "worker": "1", "counters": {}}')
    (tmp_path / "4243-0.json").write_text('{"pid": 4243, "worker": "2", "counters": {}}')
    retire_process(tmp_path, 4242)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4242-0.json.retired", "4243-0.json"]
    found = {snap["worker"]: live for snap, live in read_snapshots(tmp_path)}
    # 4243 is no process here either: a file whose process is gone is not live
    assert found == {"1": False, "2": False}
