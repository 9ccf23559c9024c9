"""The reports through the API (issue 12): the hourly and daily series, the breakdowns (bono,
channel, profile, segment, rule code), the peak hours and the latency equal what the test
bought, its purchases put in chosen hours and weekdays through the injectable clock; in JSON
and in CSV; fed by two app instances on one database; bad input is 422 naming the field; an
empty period is an empty report."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import httpx
import pytest
import trio

from gestor.api import GestorApp, create_app
from gestor.reports import COLUMNS
from gestor.settings import load_settings
from gestor.simulator import SimulatorHandle
from gestor.store import table_counts
from tests.integration.conftest import ADMIN_KEY, NO_LIMITS, set_faults

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TZ = ZoneInfo("America/Argentina/Buenos_Aires")  # config/gestor.toml's [purchase] timezone
MONDAY = datetime(2026, 3, 2, tzinfo=TZ)  # a Monday, local midnight
WEEK = {"from": "2026-03-02", "to": "2026-03-09"}

#: (local time after MONDAY, msisdn, bono, channel, what happens)
PLAN = [
    (timedelta(hours=9, minutes=5), "5491100000101", "DATA_2GB_7D", "ussd", "ok"),
    (timedelta(hours=9, minutes=40), "5491100000102", "SMS_200_30D", "app", "ok"),
    (timedelta(hours=9, minutes=59), "5491100000103", "DATA_2GB_7D", "ussd", "no balance"),
    (timedelta(hours=18, minutes=30), "5491100000104", "VOICE_100MIN_7D", "web", "ok"),
    (timedelta(days=2, hours=21), "5491100000105", "DATA_2GB_7D", "ivr", "prov fails"),
    (timedelta(days=6, hours=23, minutes=59), "5491100000106", "SMS_200_30D", "app", "ok"),
]


def _at(app: GestorApp, when: datetime) -> None:
    """The app's clock (the purchase path's injectable `now`) reads `when` from now on."""
    app.runtime.purchases.deps.clock = lambda: when


async def _buy(client: Any, msisdn: str, bono: str, channel: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/purchases", json={"msisdn": msisdn, "bono_id": bono, "channel": channel},
        headers={"Idempotency-Key": f"r-{msisdn}-{bono}", "Prefer": "wait=10"})
    assert response.status_code == 200, await response.get_data(as_text=True)
    tx: dict[str, Any] = await response.get_json()
    assert tx["state"] in ("completed", "rejected", "refunded"), tx
    return tx


async def _report(client: Any, name: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"/v1/admin/reports/{name}", query_string=params,
                                headers=ADMIN)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = await response.get_json()
    return body


async def _csv(client: Any, name: str, via_accept: bool, **params: str) -> list[dict[str, str]]:
    headers = {**ADMIN, "Accept": "text/csv"} if via_accept else ADMIN
    query = params if via_accept else {**params, "format": "csv"}
    response = await client.get(f"/v1/admin/reports/{name}", query_string=query,
                                headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/csv")
    text = await response.get_data(as_text=True)
    assert text.splitlines()[0] == ",".join(COLUMNS[name])  # the exact header
    return list(csv.DictReader(io.StringIO(text)))


def _as_text(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]


async def _bought(client: Any, control: httpx.AsyncClient, app: GestorApp
                  ) -> list[tuple[datetime, dict[str, Any], str]]:
    """Buys PLAN, each at its time; (local time, transaction, segment) of each."""
    bought = []
    for offset, msisdn, bono, channel, fate in PLAN:
        when = MONDAY + offset
        _at(app, when.astimezone(UTC))
        if fate == "no balance":
            r = await control.put(f"/control/accounts/{msisdn}", json={"balance": 0})
            assert r.status_code == 200, r.text
        await set_faults(control, {"prov": {"error_rate": 1.0 if fate == "prov fails" else 0.0}})
        tx = await _buy(client, msisdn, bono, channel)
        profile = (await control.get(f"/dwh/subscribers/{msisdn}")).json()
        bought.append((when, tx, profile["segment"]))
    return bought


def _expected_breakdown(bought: list[tuple[datetime, dict[str, Any], str]], by: str
                        ) -> list[dict[str, Any]]:
    rows: dict[str, Counter[str]] = {}
    for _, tx, segment in bought:
        keys = {"bono": [tx["bono"]["id"]], "channel": [tx["channel"]],
                "profile": [tx["profile_id"] or ""], "segment": [segment],
                "rule": [r["code"] for r in tx["reasons"]] if tx["state"] == "rejected"
                else []}[by]
        for key in keys:
            row = rows.setdefault(key, Counter())
            row["count"] += 1
            row[tx["state"]] += 1
            row["revenue"] += tx["price"] if tx["state"] == "completed" else 0
    out = [{"key": k, "count": c["count"], "completed": c["completed"],
            "rejected": c["rejected"], "failed": c["failed"], "refunded": c["refunded"],
            "revenue": c["revenue"]} for k, c in rows.items()]
    return sorted(out, key=lambda r: (-r["count"], r["key"]))


async def _check(client: Any, bought: list[tuple[datetime, dict[str, Any], str]]) -> None:
    # hourly series: one row per hour and kind with movements
    hourly: dict[datetime, Counter[str]] = {}
    for when, tx, _ in bought:
        row = hourly.setdefault(when.replace(minute=0), Counter())
        row["received"] += 1
        row[tx["state"]] += 1
        row["revenue"] += tx["price"] if tx["state"] == "completed" else 0
        row["refunds"] += tx["price"] if tx["state"] == "refunded" else 0
    series = await _report(client, "series", **WEEK)
    assert series["from"] == MONDAY.isoformat()
    assert series["to"] == (MONDAY + timedelta(days=7)).isoformat()
    assert series["timezone"] == "America/Argentina/Buenos_Aires"
    assert series["advances_outstanding"] == 0
    assert [(r["at"], r["kind"]) for r in series["rows"]] == [
        (h.isoformat(), "purchase") for h in sorted(hourly)]
    for r in series["rows"]:
        want = hourly[datetime.fromisoformat(r["at"])]
        for k in ("received", "completed", "rejected", "failed", "refunded", "revenue",
                  "refunds"):
            assert r[k] == want[k], (r, k)
        assert r["inconsistent"] == r["fees"] == r["advances_granted"] == 0
    assert await _csv(client, "series", True, **WEEK) == _as_text(series["rows"])
    # daily: the same, per local day
    daily = await _report(client, "series", every="day", **WEEK)
    days = Counter(when.date().isoformat() for when, _, _ in bought)
    assert {r["at"][:10]: r["received"] for r in daily["rows"]} == days
    assert all(r["at"].endswith("T00:00:00-03:00") for r in daily["rows"])

    for by in ("bono", "channel", "profile", "segment", "rule"):
        got = await _report(client, "breakdown", by=by, **WEEK)
        assert got["by"] == by
        assert got["rows"] == _expected_breakdown(bought, by), by
        assert await _csv(client, "breakdown", by == "rule", by=by, **WEEK) == _as_text(
            got["rows"])
    assert any(r["key"] for r in (await _report(client, "breakdown", by="rule",
                                                **WEEK))["rows"])

    peak = await _report(client, "peak-hours", **WEEK)
    assert len(peak["cells"]) == 168
    want_cells = Counter((when.weekday(), when.hour) for when, _, _ in bought)
    assert {(c["weekday"], c["hour"]): c["count"] for c in peak["cells"] if c["count"]} \
        == want_cells
    assert await _csv(client, "peak-hours", False, **WEEK) == _as_text(peak["cells"])

    latency = await _report(client, "latency", every="day", **WEEK)
    outcomes = Counter((when.date().isoformat(), tx["state"]) for when, tx, _ in bought)
    assert {(r["at"][:10], r["outcome"]): r["count"] for r in latency["rows"]} == outcomes
    for r in latency["rows"]:
        assert 0 < r["p50_ms"] <= r["p99_ms"]
    assert await _csv(client, "latency", True, every="day", **WEEK) == _as_text(
        latency["rows"])


@pytest.mark.parametrize("limit_settings", [NO_LIMITS])
async def test_reports_equal_what_was_bought_before_and_after_the_fold(
        app: GestorApp, client: Any, control: httpx.AsyncClient) -> None:
    with trio.fail_after(120):
        bought = await _bought(client, control, app)
        assert [tx["state"] for _, tx, _ in bought] == [
            "completed", "completed", "rejected", "completed", "refunded", "completed"]
        await _check(client, bought)  # every fact unfolded yet
        assert await app.runtime.store.reports.fold() > 0
        await _check(client, bought)  # every fact in the rollups
        assert await app.runtime.store.reports.rebuild() == len(PLAN)
        await _check(client, bought)  # rebuilt from the movements


async def test_bad_input_is_422_naming_the_field_and_an_empty_period_is_empty(
        app: GestorApp, client: Any) -> None:
    with trio.fail_after(60):
        cases = [
            ("series", {"from": "2026-03-09", "to": "2026-03-02"}, "to", "INVALID_PERIOD"),
            ("series", {"from": "2025-01-01", "to": "2026-03-02"}, "from", "PERIOD_TOO_LONG"),
            ("peak-hours", {"from": "yesterday"}, "from", "INVALID_TIME"),
            ("latency", {"to": "2026-02-30"}, "to", "INVALID_TIME"),
            ("series", {"every": "week"}, "every", "INVALID_EVERY"),
            ("latency", {"every": "minute"}, "every", "INVALID_EVERY"),
            ("breakdown", {"by": "colour"}, "by", "INVALID_BY"),
            ("series", {"format": "xml"}, "format", "INVALID_FORMAT"),
            ("breakdown", {"by": "bono", "kind": "gift"}, "kind", "INVALID_KIND"),
        ]
        for name, params, field, code in cases:
            response = await client.get(f"/v1/admin/reports/{name}", query_string=params,
                                        headers=ADMIN)
            assert response.status_code == 422, (name, params)
            assert response.headers["Content-Type"] == "application/problem+json"
            problem = await response.get_json()
            assert (problem["field"], problem["code"]) == (field, code), (name, params)
        # no key: 401; the reports need a viewer at least
        response = await client.get("/v1/admin/reports/series")
        assert response.status_code == 401
        # an empty period: empty rows, zeros
        empty = {"from": "2026-01-05", "to": "2026-01-12"}
        assert (await _report(client, "series", **empty))["rows"] == []
        assert (await _report(client, "breakdown", by="bono", **empty))["rows"] == []
        assert (await _report(client, "breakdown", **empty))["by"] == "bono"  # the default
        assert (await _report(client, "latency", **empty))["rows"] == []
        cells = (await _report(client, "peak-hours", **empty))["cells"]
        assert len(cells) == 168 and {c["count"] for c in cells} == {0}
        assert await _csv(client, "series", False, **empty) == []
        # from = to: an empty period too
        same = {"from": "2026-01-05", "to": "2026-01-05"}
        assert (await _report(client, "series", **same))["rows"] == []
        # defaults: the last 7 days up to the app's clock
        _at(app, datetime(2026, 3, 9, 12, tzinfo=UTC))
        got = await _report(client, "series")
        assert (got["from"], got["to"]) == ("2026-03-02T09:00:00-03:00",
                                            "2026-03-09T09:00:00-03:00")


@pytest.fixture
async def second_app(database_url: str, simulator: SimulatorHandle, config_dir: Path,
                     tmp_path: Path) -> AsyncIterator[GestorApp]:
    """Another app instance (another worker or node) on the same database and simulator; its
    background task folds the report facts every 0.1 s."""
    settings = attrs.evolve(load_settings(config_dir, environ={}, data_dir=tmp_path / "two"),
                            admin_key=ADMIN_KEY, limits=NO_LIMITS, report_fold_interval=0.1)
    other = create_app(settings, database_url, simulator.url)
    async with other.test_app():
        yield other


@pytest.mark.parametrize("limit_settings", [NO_LIMITS])
async def test_two_app_instances_feed_the_same_report(
        app: GestorApp, client: Any, second_app: GestorApp, control: httpx.AsyncClient) -> None:
    with trio.fail_after(120):
        other = second_app.test_client()
        hour = MONDAY + timedelta(hours=14)
        for i, (instance, c) in enumerate([(app, client), (second_app, other)] * 3):
            _at(instance, (hour + timedelta(minutes=i)).astimezone(UTC))
            await _buy(c, f"549110000020{i}", "DATA_2GB_7D", "ussd")
        _at(app, (hour + timedelta(minutes=30)).astimezone(UTC))
        await _buy(client, "5491100000210", "SMS_200_30D", "app")

        async def both_read_every_instance_s_movements() -> None:
            for c in (client, other):
                series = await _report(c, "series", **WEEK)
                assert [(r["at"], r["received"], r["completed"]) for r in series["rows"]] == [
                    (hour.isoformat(), 7, 7)]
                by_bono = await _report(c, "breakdown", by="bono", **WEEK)
                assert {r["key"]: r["count"] for r in by_bono["rows"]} == {"DATA_2GB_7D": 6,
                                                                           "SMS_200_30D": 1}

        await both_read_every_instance_s_movements()  # folded or not, whichever
        # the second instance's background fold empties the facts into the rollups (the turn
        # under way may have begun before the last purchase: two turns)...
        for _ in range(2):
            await second_app.runtime.report_folder.next_pass()
        counts = await table_counts(app.runtime.store.bridge)
        assert counts["report_facts"] == 0 and counts["report_rollups"] > 0
        assert second_app.runtime.report_folder.statistics().facts >= 14
        await both_read_every_instance_s_movements()  # ...and the reports say the same
