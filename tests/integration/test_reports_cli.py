"""`gestor report`: the reports of a server on a real socket as terminal tables, CSV and JSON
(the same rows as the API's), a 422 as exit status 2 naming the field, and `gestor report
rebuild` on the database (audited)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import trio

from gestor.cli._main import main
from gestor.reports import COLUMNS
from tests.integration._served import ADMIN, Served, served
from tests.integration.conftest import ADMIN_KEY

__all__ = ["served"]

WEEK = ["--from", "2026-03-02", "--to", "2026-03-09"]


async def _gestor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = await trio.to_thread.run_sync(main, list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def test_report_commands(served: Served, database_url: str,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GESTOR_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("GESTOR_URL", served.url)
    monkeypatch.setenv("GESTOR_DATABASE_URL", database_url)
    with trio.fail_after(120):
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            for i, hour in enumerate((12, 12, 15)):  # UTC: 09:00 and 12:00 in Buenos Aires
                served.app.runtime.purchases.deps.clock = (
                    lambda h=hour, m=i: datetime(2026, 3, 3, h, m, tzinfo=UTC))
                r = await http.post("/v1/purchases", json={"msisdn": f"549110000030{i}",
                                                           "bono_id": "DATA_2GB_7D"},
                                    headers={"Idempotency-Key": f"cli-{i}",
                                             "Prefer": "wait=10"})
                assert r.status_code == 200 and r.json()["state"] == "completed", r.text
            api = (await http.get("/v1/admin/reports/series", headers=ADMIN,
                                  params={"from": "2026-03-02", "to": "2026-03-09"})).json()

        status, out, _ = await _gestor(capsys, "report", "series", *WEEK)
        assert status == 0
        lines = out.splitlines()
        assert lines[0] == ("series from 2026-03-02T00:00:00-03:00 to 2026-03-09T00:00:00-03:00 "
                            "(America/Argentina/Buenos_Aires)")
        assert lines[2].split() == list(COLUMNS["series"])
        assert [line.split()[:4] for line in lines[3:]] == [
            ["2026-03-03T09:00:00-03:00", "purchase", "2", "2"],
            ["2026-03-03T12:00:00-03:00", "purchase", "1", "1"]]

        status, out, _ = await _gestor(capsys, "report", "series", "--csv", *WEEK)
        assert status == 0
        rows = list(csv.DictReader(io.StringIO(out)))
        assert rows == [{k: str(v) for k, v in r.items()} for r in api["rows"]]

        status, out, _ = await _gestor(capsys, "report", "breakdown", "--by", "bono", "--json",
                                       *WEEK)
        assert status == 0
        got: dict[str, Any] = json.loads(out)
        assert [(r["key"], r["count"]) for r in got["rows"]] == [("DATA_2GB_7D", 3)]

        status, out, _ = await _gestor(capsys, "report", "peak-hours", *WEEK)
        assert status == 0
        grid = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]
                if line[:3] in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}
        assert grid["Tue"][9] == "2" and grid["Tue"][12] == "1" and grid["Tue"][24] == "3"
        assert grid["Mon"][24] == "0"

        status, out, _ = await _gestor(capsys, "report", "latency", "--every", "day", *WEEK)
        assert status == 0 and "completed" in out

        status, _, err = await _gestor(capsys, "report", "breakdown", "--by", "colour", *WEEK)
        assert status == 2 and "(by)" in err

        status, out, _ = await _gestor(capsys, "report", "series", "--from", "2026-01-05",
                                       "--to", "2026-01-06")
        assert status == 0 and "no movements in this period" in out

        status, out, _ = await _gestor(capsys, "report", "rebuild", "--from", "2026-03-01")
        assert status == 0 and out == "rollups rebuilt: 3 movement(s)\n"
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            again = (await http.get("/v1/admin/reports/series", headers=ADMIN,
                                    params={"from": "2026-03-02", "to": "2026-03-09"})).json()
            assert again == api
            audit = (await http.get("/v1/admin/audit", headers=ADMIN,
                                    params={"action": "reports.rebuild"})).json()
            assert [e["after"] for e in audit["entries"]] == [{"movements": 3}]
