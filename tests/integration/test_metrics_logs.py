"""`/metrics`, request ids and the access log, over real HTTP against the app served in this
process: the exposition parses with prometheus_client's own parser and its counters move with
a purchase; who may scrape (open on a loopback server without channel keys; else a viewer
key or above); the `Request-Id` header and the problem body's `request_id` (the client's when
sane, else a new one); one access-log line per request with exact fields, never a key."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gestor.logs import JsonFormatter, TextFormatter
from gestor.store import KeyStore
from tests.integration._keys import Leaks, Served, bearer, mint
from tests.integration._served import Served as RealServed
from tests.integration._served import served

__all__ = ["served"]  # the fixture, imported for pytest

WELL_KNOWN = "5491100000042"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


class _Lines(logging.Handler):
    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def access_lines() -> Iterator[tuple[_Lines, _Lines]]:
    """The `gestor.access` lines as the json and text formats write them."""
    logger = logging.getLogger("gestor.access")
    as_json, as_text = _Lines(JsonFormatter()), _Lines(TextFormatter())
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(as_json)
    logger.addHandler(as_text)
    try:
        yield as_json, as_text
    finally:
        logger.removeHandler(as_json)
        logger.removeHandler(as_text)
        logger.setLevel(level)


async def test_metrics_parse_and_move_with_a_purchase(served: RealServed) -> None:
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            first = await http.get("/metrics")
            assert first.status_code == 200
            assert first.headers["content-type"].startswith("text/plain; version=0.0.4")
            before = samples(first.text)
            r = await http.post("/v1/purchases", headers={
                "Idempotency-Key": "metrics-1", "Prefer": "wait=20"},
                json={"msisdn": WELL_KNOWN, "bono_id": "DATA_500MB_1D", "channel": "web"})
            assert r.status_code == 200 and r.json()["state"] == "completed", r.text
            after = samples((await http.get("/metrics")).text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gestor_http_requests_total", method="POST", route="/v1/purchases",
                 status="200") == 1
    assert moved("gestor_http_requests_total", method="GET", route="/metrics",
                 status="200") == 1  # the first scrape, counted once answered
    assert moved("gestor_movements_total", kind="purchase", state="completed") == 1
    assert moved("gestor_purchases_accepted_total") == 1
    for platform, operation in (("dwh", "subscriber"), ("ocs", "account"), ("ocs", "debit"),
                                ("prov", "provision")):
        assert moved("gestor_platform_call_duration_seconds_count", platform=platform,
                     operation=operation, outcome="ok") == 1, (platform, operation)
    for step in ("profile", "rules", "debit", "provision"):
        assert moved("gestor_saga_step_duration_seconds_count", kind="purchase", step=step) == 1
    # accepted, then charged, then completed: three durable writes, each a saga step but the
    # acceptance (the actor's turn, before the saga)
    assert moved("gestor_saga_step_duration_seconds_count", kind="purchase", step="write") == 2
    assert moved("gestor_db_batch_size_count", batcher="writes") >= 1
    assert moved("gestor_db_crossing_duration_seconds_count") >= 3
    assert value(after, "gestor_up", worker="0") == 1
    assert value(after, "gestor_platform_circuit_state", platform="ocs", state="closed",
                 worker="0") == 1
    assert value(after, "gestor_platform_circuit_state", platform="ocs", state="open",
                 worker="0") == 0
    assert value(after, "gestor_db_up", worker="0") == 1
    assert value(after, "gestor_build_info", version=_version()) == 1
    # histogram buckets are cumulative and end at the count
    count = value(after, "gestor_platform_call_duration_seconds_count", platform="ocs",
                  operation="debit", outcome="ok")
    assert value(after, "gestor_platform_call_duration_seconds_bucket", platform="ocs",
                 operation="debit", outcome="ok", le="+Inf") == count


def _version() -> str:
    from importlib.metadata import version

    return version("gestor")


async def test_who_may_scrape(gestor: Served, leaks: Leaks) -> None:
    keys = KeyStore(gestor.app.runtime.store.bridge)
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=gestor.url, timeout=30) as http:
            open_scrape = await http.get("/metrics")
            assert open_scrape.status_code == 200  # loopback, no channel key yet: open
            _, channel = await mint(keys, "gw", leaks=leaks)
            _, viewer = await mint(keys, "vera", leaks=leaks, role="viewer")
            r = await http.get("/metrics")
            while r.status_code == 200:  # until this worker's key ring knows the channel key
                await trio.sleep(0.01)
                r = await http.get("/metrics")
            assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
            r = await http.get("/metrics", headers=bearer(channel))
            assert r.status_code == 403
            assert (r.json()["code"], r.json()["role"]) == ("FORBIDDEN_ROLE", "viewer")
            r = await http.get("/metrics", headers=bearer(viewer))
            assert r.status_code == 200 and "gestor_http_requests_total" in r.text


async def test_request_id_header_problem_body_and_access_line(
    served: RealServed, access_lines: tuple[_Lines, _Lines]
) -> None:
    as_json, as_text = access_lines
    body = {"msisdn": WELL_KNOWN, "bono_id": "NO_SUCH_BONO", "channel": "web"}
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            given = await http.post("/v1/purchases", json=body, headers={
                "Idempotency-Key": "rid-1", "X-Request-Id": "shop-7f3a:42"})
            made = await http.post("/v1/purchases", json=body, headers={
                "Idempotency-Key": "rid-2", "X-Request-Id": "has spaces, so not sane"})
            other = await http.get("/healthz", headers={"Request-Id": "probe.1"})
    assert given.status_code == 422 and given.json()["code"] == "UNKNOWN_BONO"
    assert given.headers["Request-Id"] == "shop-7f3a:42"
    assert given.json()["request_id"] == "shop-7f3a:42"
    generated = made.headers["Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert made.json()["request_id"] == generated
    assert other.status_code == 200 and other.headers["Request-Id"] == "probe.1"

    lines = [json.loads(line) for line in as_json.lines]
    assert [(line["method"], line["path"], line["status"], line["request_id"]) for line in lines
            ] == [("POST", "/v1/purchases", 422, "shop-7f3a:42"),
                  ("POST", "/v1/purchases", 422, generated),
                  ("GET", "/healthz", 200, "probe.1")]
    first: dict[str, Any] = lines[0]
    assert isinstance(first.pop("time"), str) and isinstance(first.pop("pid"), int)
    duration = first.pop("duration_ms")
    assert isinstance(duration, float) and 0 < duration < 60_000
    assert first == {
        "level": "INFO", "logger": "gestor.access",
        "message": f"POST /v1/purchases 422 {duration:.1f}ms key=open client=public",
        "worker": "0", "request_id": "shop-7f3a:42", "method": "POST",
        "path": "/v1/purchases", "status": 422, "key_id": "open", "client": "public",
    }
    assert lines[2]["key_id"] is None  # /healthz: no caller is authenticated
    # the text format: one line, the ids after the worker
    assert len(as_text.lines) == 3 and all("\n" not in line for line in as_text.lines)
    assert as_text.lines[0].endswith(
        f"gestor.access[{lines[1]['pid']}] w0 request_id=shop-7f3a:42: "
        f"POST /v1/purchases 422 {duration:.1f}ms key=open client=public")
