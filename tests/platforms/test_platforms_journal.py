"""The simulator's journal: state survives a restart, a torn last line and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from gestor.platforms import open_platforms
from gestor.simulator import (
    JournalCorrupt,
    SimulatorConfig,
    SimulatorHandle,
    open_simulator,
    serve_simulator,
)
from gestor.simulator._journal import JOURNAL_NAME

from .support import WELL_KNOWN, fast_settings

BONO = {"id": "SMS_200_30D", "validity_days": 30, "sms": 200}
OTHER = "5491100000050"


async def _snapshot(url: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=url) as http:
        stats = (await http.get("/control/stats")).json()
        stats.pop("requests_by_op")  # request counts are not state
        stats.pop("peak_in_flight")
        stats.pop("max_concurrent_debits_per_msisdn")  # nor are request concurrencies
        return {
            "stats": stats,
            "ledger": (await http.get("/control/ledger")).json(),
            "account": (await http.get(f"/ocs/accounts/{WELL_KNOWN}")).json(),
            "other": (await http.get(f"/ocs/accounts/{OTHER}")).json(),
            "debit": (await http.get("/ocs/debits/tx-1")).json(),
            "bundle": (await http.get("/prov/bundles/tx-1")).json(),
            "credit": (await http.get("/ocs/credits/cr-1")).json(),
            "topup": (await http.get("/control/topups/rc-1")).json(),
        }


async def _write_state(url: str) -> None:
    async with open_platforms(fast_settings(url)) as platforms:
        await platforms.debit("tx-1", WELL_KNOWN, 60_000)
        await platforms.provision("tx-1", WELL_KNOWN, BONO)
        await platforms.debit("tx-2", WELL_KNOWN, 20_000)
        await platforms.refund("rf-2", "tx-2", WELL_KNOWN, 20_000)
        await platforms.credit("cr-1", OTHER, 3_000)
    async with httpx.AsyncClient(base_url=url) as http:
        await http.put(f"/control/accounts/{OTHER}", json={"balance": 5, "roaming": True})
        topup = {"msisdn": WELL_KNOWN, "amount": 9_000, "reference": "rc-1"}
        assert (await http.post("/control/topups", json=topup)).status_code == 200


async def test_state_survives_restart_and_torn_last_line(tmp_path: Path) -> None:
    config = SimulatorConfig(state_dir=tmp_path, seed=1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            handle: SimulatorHandle = await nursery.start(serve_simulator, config)
            await _write_state(handle.url)
            before = await _snapshot(handle.url)
            nursery.cancel_scope.cancel()
        journal = tmp_path / JOURNAL_NAME
        assert len(journal.read_bytes().splitlines()) == 7

        # a crash in the middle of a write leaves half a line behind
        with journal.open("ab") as f:
            f.write(b'{"t":"debit","r":{"id":"tx-torn","msisdn":"54911')

        async with trio.open_nursery() as nursery:
            handle = await nursery.start(serve_simulator, config)
            assert await _snapshot(handle.url) == before
            async with open_platforms(fast_settings(handle.url)) as platforms:
                assert await platforms.lookup_debit("tx-torn") is None
                assert (await platforms.debit("tx-1", WELL_KNOWN, 60_000)).id == "tx-1"
                await platforms.debit("tx-3", WELL_KNOWN, 1)  # appended on a clean line
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            handle = await nursery.start(serve_simulator, config)
            after = await _snapshot(handle.url)
            assert after["stats"]["debits"] == 3  # type: ignore[index]
            async with httpx.AsyncClient(base_url=handle.url) as http:
                assert (await http.get("/ocs/debits/tx-3")).status_code == 200
                await http.post("/control/reset")
            nursery.cancel_scope.cancel()
        assert journal.read_bytes() == b""


async def test_corrupt_middle_line_is_refused(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_NAME).write_bytes(b'{"t":"reset","r":null}\nnot json\n{"t":"reset"}\n')
    with trio.fail_after(5), pytest.raises(JournalCorrupt):
        async with open_simulator(SimulatorConfig(state_dir=tmp_path)):
            pass


def _start_process(state_dir: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gestor.simulator", "--bind", "127.0.0.1:0",
         "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("simulator listening on http://127.0.0.1:"), line
    return process, line.rsplit(" ", 1)[1].strip()


async def test_state_survives_kill_9(tmp_path: Path) -> None:
    with trio.fail_after(20):
        process, url = await trio.to_thread.run_sync(_start_process, tmp_path)
        try:
            await _write_state(url)
            before = await _snapshot(url)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            await trio.to_thread.run_sync(process.wait)
        assert process.returncode == -signal.SIGKILL
        process, url = await trio.to_thread.run_sync(_start_process, tmp_path)
        try:
            assert await _snapshot(url) == before
        finally:
            process.terminate()
            await trio.to_thread.run_sync(process.wait)


async def test_app_built_from_config_journals(tmp_path: Path) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    from tests.platforms._asgi import build_simulator_app

    app = build_simulator_app(SimulatorConfig(state_dir=tmp_path))
    config = Config()
    config.bind = ["127.0.0.1:0"]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, app, config)
            async with httpx.AsyncClient(base_url=binds[0]) as http:
                debit = {"id": "tx-app", "msisdn": WELL_KNOWN, "amount": 7}
                assert (await http.post("/ocs/debits", json=debit)).status_code == 200
            nursery.cancel_scope.cancel()
    app.simulator.close()
    assert b'"tx-app"' in (tmp_path / JOURNAL_NAME).read_bytes()
