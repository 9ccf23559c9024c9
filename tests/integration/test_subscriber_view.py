"""`GET /v1/admin/mobiles/{msisdn}`: a subscriber through the profiler, served on a real socket
(real PostgreSQL, the simulator over HTTP), after movements of every kind bought through the
API: profile and sources as the rules see them, counters, restrictions, what advances owe, the
movement in flight, recent movements in both roles, peak hours; who may read it; bad input; a
platform that cannot be asked."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import trio

from gestor.simulator import SimulatorHandle
from gestor.store import KeyStore
from tests.integration._keys import Leaks, Served, bearer, mint, served_app, settings_for
from tests.integration.conftest import set_faults

A, B, C = "5491100000011", "5491100000012", "5491100000013"
BONO = "DATA_2GB_7D"
TZ = ZoneInfo("America/Argentina/Buenos_Aires")


@pytest.fixture
async def gestor(database_url: str, simulator: SimulatorHandle, config_dir: Path,
                 tmp_path: Path, leaks: Leaks) -> AsyncIterator[Served]:
    """The app served on a real socket; platform calls may take 10 s (a debit held by the
    simulator keeps its movement in flight while the view is read)."""
    base = settings_for(config_dir, tmp_path)
    settings = settings_for(config_dir, tmp_path,
                            platforms={**base.platforms, "timeout": 10.0})
    async with served_app(settings, database_url, simulator.url, leaks) as served:
        yield served


@pytest.fixture
async def keys(gestor: Served, leaks: Leaks) -> dict[str, str]:
    store = KeyStore(gestor.app.runtime.store.bridge)
    return {"viewer": (await mint(store, "vera", leaks=leaks, role="viewer"))[1],
            "operator": (await mint(store, "otto", leaks=leaks, role="operator"))[1],
            "channel": (await mint(store, "gw", leaks=leaks))[1]}


async def move(http: httpx.AsyncClient, key: str, path: str, body: dict[str, Any],
               idem: str, wait: bool = True) -> dict[str, Any]:
    headers = {**bearer(key), "Idempotency-Key": idem}
    if wait:
        headers["Prefer"] = "wait=20"
    r = await http.post(path, json=body, headers=headers)
    assert r.status_code in (200, 202), r.text
    answer: dict[str, Any] = r.json()
    return answer


async def view(http: httpx.AsyncClient, key: str, msisdn: str) -> dict[str, Any]:
    r = await http.get(f"/v1/admin/mobiles/{msisdn}", headers=bearer(key))
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def sim_account(control: httpx.AsyncClient, msisdn: str) -> dict[str, Any]:
    r = await control.get("/control/stats", params={"msisdn": msisdn})
    found: dict[str, Any] = r.json()["per_msisdn"]
    return found


def cell_of(created_at: str) -> tuple[int, int]:
    local = datetime.fromisoformat(created_at).astimezone(TZ)
    return local.weekday(), local.hour


def cells(answer: dict[str, Any]) -> dict[tuple[int, int], int]:
    """The non-zero cells of a view's peak hours (after checking all 168 are there)."""
    grid = answer["peak_hours"]["cells"]
    assert [(c["weekday"], c["hour"]) for c in grid] == [
        (d, h) for d in range(7) for h in range(24)]
    return {(c["weekday"], c["hour"]): c["count"] for c in grid if c["count"]}


async def test_the_view_after_movements_of_every_kind(
        gestor: Served, keys: dict[str, str], control: httpx.AsyncClient) -> None:
    channel, viewer = keys["channel"], keys["viewer"]
    with trio.fail_after(120):
        r = await control.put(f"/control/accounts/{C}", json={"balance": 10_000})
        assert r.status_code == 200
        async with httpx.AsyncClient(base_url=gestor.url, timeout=60) as http:
            empty = await view(http, viewer, A)
            assert (empty["recent"], empty["pending"], empty["restrictions"]) == ([], None, [])
            assert empty["advance_outstanding"] == 0
            assert empty["counters"] == {
                "purchases_today": 0, "purchases_month": 0, "spent_today": 0,
                "spent_month": 0, "gifts_today": 0, "gifted_today": 0,
                "last_purchase_at": None}
            assert sum(c["count"] for c in empty["peak_hours"]["cells"]) == 0

            own = await move(http, channel, "/v1/purchases",
                             {"msisdn": A, "bono_id": BONO}, "own")
            gift = await move(http, channel, "/v1/purchases",
                              {"msisdn": A, "bono_id": BONO, "beneficiary": B}, "gift")
            transfer = await move(http, channel, "/v1/transfers",
                                  {"msisdn": A, "beneficiary": B, "amount": 20_000}, "tr")
            advance = await move(http, channel, "/v1/advances",
                                 {"msisdn": C, "amount": 50_000}, "adv")
            for tx in (own, gift, transfer, advance):
                assert tx["state"] == "completed", tx
            restriction = {"reason": "parental control", "until": "2099-01-01T00:00:00Z"}
            r = await http.put(f"/v1/admin/mobiles/{A}/restrictions/NO_DATA_BONOS",
                               json=restriction, headers=bearer(keys["operator"]))
            assert r.status_code == 200, r.text
            # B's own purchase stays in flight while the simulator holds its debit.
            await set_faults(control, {"ocs.debit": {"latency_ms": 6000}})
            held = await move(http, channel, "/v1/purchases", {"msisdn": B, "bono_id": BONO},
                              "held", wait=False)

            a, b, c = [await view(http, viewer, m) for m in (A, B, C)]
            # B: its purchase in flight, as pending and first of its recent movements.
            assert b["pending"] is not None and b["pending"]["id"] == held["id"]
            assert b["pending"]["final"] is False and b["pending"]["role"] == "payer"
            assert [(t["id"], t["role"]) for t in b["recent"]] == [
                (held["id"], "payer"), (transfer["id"], "beneficiary"),
                (gift["id"], "beneficiary")]
            # Let it end before anything else is read (the simulator stays as it is).
            done = await http.get(f"/v1/transactions/{held['id']}",
                                  headers={**bearer(viewer), "Prefer": "wait=20"})
            assert done.json()["state"] == "completed"
            assert (await view(http, viewer, B))["pending"] is None

        # A: two bonos bought (one for B) and a transfer to B; nothing in flight.
        assert a["msisdn"] == A and a["pending"] is None
        assert [(t["id"], t["role"], t["kind"]) for t in a["recent"]] == [
            (transfer["id"], "payer", "transfer"), (gift["id"], "payer", "purchase"),
            (own["id"], "payer", "purchase")]
        assert a["recent"][0] == {**transfer, "role": "payer"}  # the transaction's own JSON
        assert a["counters"] == {
            "purchases_today": 2, "purchases_month": 2,
            "spent_today": own["price"] + gift["price"],
            "spent_month": own["price"] + gift["price"],
            "gifts_today": 2, "gifted_today": gift["price"] + 20_000,
            "last_purchase_at": gift["created_at"]}
        assert a["restrictions"] == [{"code": "NO_DATA_BONOS",
                                      "reason": "parental control (by otto)",
                                      "until": "2099-01-01T00:00:00+00:00"}]
        assert a["advance_outstanding"] == 0
        # C: the advance, owed with its 10 % fee.
        assert c["advance_outstanding"] == 55_000
        # The ledger: what Gestor moved on each balance (A paid two bonos and a transfer with
        # its fee; C was lent 50,000).
        assert a["ledger_balance"] == -(own["price"] + gift["price"] + transfer["price"])
        assert transfer["price"] == 20_000 + transfer["fee"]
        assert c["ledger_balance"] == 50_000
        assert [(t["id"], t["owed"]) for t in c["recent"]] == [(advance["id"], 55_000)]

        # The profile as the rules see it: the listing's profile, the platforms' records.
        profile = a["profile"]
        async with httpx.AsyncClient(base_url=gestor.url, timeout=60) as http:
            listing = (await http.get(f"/v1/mobiles/{A}/bonos",
                                      headers=bearer(channel))).json()
        assert profile["profile_id"] == listing["profile_id"]
        assert profile["rules_version"] == listing["rules_version"]
        dwh, ocs = profile["sources"]["dwh"], profile["sources"]["ocs"]
        assert dwh["msisdn"] == ocs["msisdn"] == A
        assert profile["category"] == dwh["segment"]
        assert profile["customer"] == {**dwh, **ocs}
        assert ocs["balance"] == (await sim_account(control, A))["balance"]
        assert profile["notes"] == []
        # Peak hours: every movement A made (as payer), in its hour and weekday.
        assert cells(a) == Counter(cell_of(t["created_at"]) for t in a["recent"])
        assert a["peak_hours"]["timezone"] == "America/Argentina/Buenos_Aires"


async def test_peak_hours_follow_the_movements_times(
        gestor: Served, keys: dict[str, str]) -> None:
    """Peak hours count each movement of the last 90 days in its weekday and hour. Movements
    are stamped by the database's clock when accepted (`created_at`), which a test cannot set:
    the test buys now, then moves each row's `created_at` to a chosen time (straight in the
    database, as a migration of old data would have it), and sets the app's clock, from which
    the view takes its period, past the 90 days."""
    channel, viewer = keys["channel"], keys["viewer"]
    runtime = gestor.app.runtime
    with trio.fail_after(120):
        async with httpx.AsyncClient(base_url=gestor.url, timeout=60) as http:
            bought = [await move(http, channel, "/v1/transfers",
                                 {"msisdn": A, "beneficiary": B, "amount": 1_000 + i}, f"t{i}")
                      for i in range(5)]
            assert all(t["state"] == "completed" for t in bought)
            now = datetime.now(UTC)
            # Monday 09:xx (twice), Friday 21:xx, Sunday 00:xx local; one 100 days ago.
            monday = (now.astimezone(TZ) - timedelta(days=now.astimezone(TZ).weekday() + 7)
                      ).replace(hour=9, minute=15, second=0, microsecond=0)
            times = [monday, monday + timedelta(minutes=30),
                     monday + timedelta(days=4, hours=12), monday + timedelta(days=6, hours=-9),
                     now - timedelta(days=100)]
            await runtime.store.bridge.run(_set_created, [t["id"] for t in bought], times)
            answer = await view(http, viewer, A)
            assert cells(answer) == {(0, 9): 2, (4, 21): 1, (6, 0): 1}
            # B received them all: none of them is B's (it made none).
            assert cells(await view(http, viewer, B)) == {}
            # The period follows the app's clock: 80 days on, the Monday ones are still in
            # (87-ish days old), 100 days on none of them is.
            deps = runtime.purchases.deps
            for days, expected in ((80, {(0, 9): 2, (4, 21): 1, (6, 0): 1}), (100, {})):
                deps.clock = lambda days=days: datetime.now(UTC) + timedelta(days=days)
                later = await view(http, viewer, A)
                assert cells(later) == expected, days
                assert later["peak_hours"]["to"] == later["at"]
                assert (datetime.fromisoformat(later["peak_hours"]["to"])
                        - datetime.fromisoformat(later["peak_hours"]["from"])) == timedelta(90)
            # ... and so do the counters, which roll over with the day and month.
            assert later["counters"]["gifts_today"] == 0


async def _set_created(conn: Any, ids: list[str], times: list[datetime]) -> None:
    await conn.execute(
        "UPDATE transactions t SET created_at = n.at FROM unnest($1::uuid[], $2::timestamptz[])"
        " AS n(id, at) WHERE t.id = n.id", ids, times)


async def test_who_may_read_it_and_bad_msisdns(gestor: Served, keys: dict[str, str]) -> None:
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=gestor.url, timeout=60) as http:
            r = await http.get(f"/v1/admin/mobiles/{A}", headers=bearer(keys["viewer"]))
            assert r.status_code == 200
            r = await http.get(f"/v1/admin/mobiles/{A}", headers=bearer(keys["channel"]))
            assert (r.status_code, r.json()["code"], r.json()["role"]) == (
                403, "FORBIDDEN_ROLE", "viewer")
            r = await http.get(f"/v1/admin/mobiles/{A}")
            assert r.status_code == 401
            for bad in ("12", "0541100000001", "54911abc", "5" * 16):
                r = await http.get(f"/v1/admin/mobiles/{bad}", headers=bearer(keys["viewer"]))
                assert r.status_code == 422, bad
                assert r.headers["content-type"].startswith("application/problem+json")
                assert (r.json()["code"], r.json()["field"]) == ("INVALID_MSISDN", "msisdn")
            r = await http.get(f"/v1/admin/mobiles/{A}?channel=fax",
                               headers=bearer(keys["viewer"]))
            assert (r.status_code, r.json()["field"]) == (422, "channel")


@pytest.mark.parametrize("down", ["dwh", "ocs"])
async def test_a_platform_that_cannot_be_asked_leaves_its_source_null(
        gestor: Served, keys: dict[str, str], control: httpx.AsyncClient, down: str) -> None:
    up = "ocs" if down == "dwh" else "dwh"
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=gestor.url, timeout=60) as http:
            bought = await move(http, keys["channel"], "/v1/purchases",
                                {"msisdn": A, "bono_id": BONO}, "before")
            assert bought["state"] == "completed"
            await set_faults(control, {down: {"outage": True}})
            answer = await view(http, keys["viewer"], A)
        profile = answer["profile"]
        assert profile["sources"][down] is None
        assert profile["sources"][up]["msisdn"] == A
        assert (profile["profile_id"], profile["customer"]) == (None, None)
        if down == "dwh":
            assert profile["category"] is None
        else:
            assert profile["category"] == profile["sources"]["dwh"]["segment"]
        assert any(n.startswith(f"{down}: could not be asked") for n in profile["notes"])
        assert any(f"the rules need {down}" in n for n in profile["notes"])
        # The rest of the view does not depend on the platforms.
        assert [t["id"] for t in answer["recent"]] == [bought["id"]]
        assert answer["counters"]["purchases_today"] == 1


async def test_gestor_mobile_prints_the_view(
        gestor: Served, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`gestor mobile` against the served app (run in a thread: it runs trio of its own): a
    readable page, `--json` the API's answer, a malformed msisdn exit status 2."""
    from gestor.cli import main

    monkeypatch.setenv("GESTOR_ADMIN_KEY", keys["viewer"])
    with trio.fail_after(90):
        async with httpx.AsyncClient(base_url=gestor.url, timeout=60) as http:
            tx = await move(http, keys["channel"], "/v1/transfers",
                            {"msisdn": A, "beneficiary": B, "amount": 12_345}, "cli")
        assert tx["state"] == "completed"
        common = ["--url", gestor.url, "--data-dir", str(tmp_path / "none")]
        status = await trio.to_thread.run_sync(main, ["mobile", A, *common])
        text = capsys.readouterr().out
        assert status == 0
        lines = text.splitlines()
        assert lines[0].startswith(f"mobile {A} (as of ")
        assert any(line.startswith("profile      PREPAID") for line in lines), text
        row = next(line for line in lines if tx["id"][:8] in line)
        assert all(part in row for part in ("payer", "transfer", f"to {B}", "123.45",
                                            "completed")), row
        weekday, hour = cell_of(tx["created_at"])
        header = next(i for i, line in enumerate(lines) if line.startswith("peak hours since"))
        assert "(1 movements)" in lines[header]
        grid = lines[header + 2: header + 9]
        assert [g[:3] for g in grid] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        assert grid[weekday].split()[1:] == ["1" if h == hour else "." for h in range(24)]

        status = await trio.to_thread.run_sync(main, ["mobile", A, "--json", *common])
        printed = json.loads(capsys.readouterr().out)
        assert status == 0 and printed["recent"][0] == {**tx, "role": "payer"}
        status = await trio.to_thread.run_sync(main, ["mobile", "12", *common])
        assert status == 2
        assert "msisdn must be an E.164 number" in capsys.readouterr().err
