"""Credits on the charging system: the simulator's contract, the client's semantics under each
fault knob, the ledger export and the journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio

from gestor.platforms import (
    CircuitOpen,
    CreditReceipt,
    OutcomeUnknown,
    PlatformRejected,
    PlatformUnavailable,
    open_platforms,
)
from gestor.simulator import SimulatorConfig, SimulatorHandle, serve_simulator
from gestor.simulator._journal import JOURNAL_NAME

from .support import WELL_KNOWN, fast_settings

BALANCE = 1_681_332  # WELL_KNOWN's starting balance
OTHER = "5491100000002"


async def _balance(http: httpx.AsyncClient, msisdn: str = WELL_KNOWN) -> int:
    balance: int = (await http.get(f"/ocs/accounts/{msisdn}")).json()["balance"]
    return balance


# -- the contract, raw --------------------------------------------------------------------------


async def test_credit_is_idempotent_by_id(http: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        body = {"id": "cr-1", "msisdn": WELL_KNOWN, "amount": 25_000, "reason": "transfer"}
        first = await http.post("/ocs/credits", json=body)
        assert first.status_code == 200
        receipt = first.json()
        assert receipt["status"] == "credited" and receipt["currency"] == "ARS"
        assert receipt["balance_after"] == BALANCE + 25_000
        assert receipt["reason"] == "transfer" and receipt["created_at"].endswith("Z")
        again = await http.post("/ocs/credits", json={**body, "currency": "ARS"})
        assert again.status_code == 200 and again.json() == receipt
        assert await _balance(http) == BALANCE + 25_000  # credited once
        assert (await http.get("/ocs/credits/cr-1")).json() == receipt
        missing = await http.get("/ocs/credits/cr-none")
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
        # a credit and a debit may share an id: they are different movements
        debit = await http.post("/ocs/debits", json={"id": "cr-1", "msisdn": WELL_KNOWN,
                                                     "amount": 5_000})
        assert debit.status_code == 200 and debit.json()["balance_after"] == BALANCE + 20_000


async def test_credit_conflicts_and_bad_requests(http: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        body = {"id": "cr-2", "msisdn": WELL_KNOWN, "amount": 100}
        assert (await http.post("/ocs/credits", json=body)).status_code == 200
        for changed in ({"amount": 101}, {"msisdn": OTHER}):
            conflict = await http.post("/ocs/credits", json={**body, **changed})
            assert conflict.status_code == 409
            assert conflict.json()["code"] == "IDEMPOTENCY_MISMATCH"
        for bad, code in (
            ({"amount": 0}, "INVALID_AMOUNT"),
            ({"amount": -5}, "INVALID_AMOUNT"),
            ({"msisdn": "12ab"}, "INVALID_MSISDN"),
            ({"currency": "USD"}, "INVALID_CURRENCY"),
            ({"id": ""}, "INVALID_REQUEST"),
            ({"amount": "ten"}, "INVALID_REQUEST"),
        ):
            answer = await http.post("/ocs/credits", json={**body, "id": "cr-bad", **bad})
            assert answer.status_code == 400 and answer.json()["code"] == code, bad
        missing_field = await http.post("/ocs/credits", json={"id": "cr-x", "msisdn": OTHER})
        assert missing_field.status_code == 400
        assert "amount" in missing_field.json()["message"]

        await http.put(f"/control/accounts/{OTHER}", json={"line_status": "barred"})
        barred = await http.post("/ocs/credits", json={"id": "cr-3", "msisdn": OTHER,
                                                       "amount": 100})
        assert barred.status_code == 403 and barred.json()["code"] == "LINE_NOT_ACTIVE"
        assert barred.json()["line_status"] == "barred"
        # a rejected credit is not stored: the same id is evaluated again
        await http.put(f"/control/accounts/{OTHER}", json={"line_status": "active"})
        later = await http.post("/ocs/credits", json={"id": "cr-3", "msisdn": OTHER,
                                                      "amount": 100})
        assert later.status_code == 200
        stats = (await http.get("/control/stats", params={"msisdn": WELL_KNOWN})).json()
        assert (stats["credits"], stats["credited_total"]) == (2, 200)
        assert stats["per_msisdn"]["credits"] == 1
        assert stats["per_msisdn"]["credited_total"] == 100
        assert stats["requests_by_op"]["ocs.credit"] == 12


async def test_credits_are_in_the_ledger_export(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await http.post("/ocs/debits", json={"id": "tx-1", "msisdn": WELL_KNOWN, "amount": 700})
        await http.post("/ocs/credits", json={"id": "cr-1", "msisdn": OTHER, "amount": 500})
        await http.post("/ocs/credits", json={"id": "cr-1", "msisdn": OTHER, "amount": 500})
        raw = (await http.get("/control/ledger")).json()
        assert [(e["kind"], e["id"], e["amount"]) for e in raw] == [
            ("debit", "tx-1", 700), ("credit", "cr-1", 500)
        ]
        async with open_platforms(fast_settings(simulator.url)) as platforms:
            now = datetime.now(UTC)
            entries = await platforms.ledger(now - timedelta(minutes=1), now + timedelta(1))
        credit = entries[1]
        assert (credit.kind, credit.id, credit.msisdn, credit.amount) == (
            "credit", "cr-1", OTHER, 500
        )
        assert credit.transaction_id == "cr-1" and credit.debit_id is None


# -- the client ---------------------------------------------------------------------------------


async def test_client_credit_and_lookup(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        async with open_platforms(fast_settings(simulator.url)) as platforms:
            assert await platforms.lookup_credit("cr-1") is None
            receipt = await platforms.credit("cr-1", WELL_KNOWN, 10_000, reason="advance")
            assert receipt == CreditReceipt(
                "cr-1", WELL_KNOWN, 10_000, BALANCE + 10_000, receipt.created_at
            )
            assert receipt.status == "credited"
            assert await platforms.credit("cr-1", WELL_KNOWN, 10_000) == receipt
            assert await platforms.lookup_credit("cr-1") == receipt
            with pytest.raises(PlatformRejected) as info:
                await platforms.credit("cr-1", WELL_KNOWN, 10_001)
            assert (info.value.code, info.value.status) == ("IDEMPOTENCY_MISMATCH", 409)
            await http.put(f"/control/accounts/{OTHER}", json={"line_status": "suspended"})
            with pytest.raises(PlatformRejected) as info:
                await platforms.credit("cr-2", OTHER, 1)
            assert info.value.code == "LINE_NOT_ACTIVE"
            with pytest.raises(ValueError):
                await platforms.credit("", WELL_KNOWN, 1)
            stats = platforms.statistics().ocs
            # rejections: the first lookup's 404, the mismatch and the suspended line
            assert (stats.requests, stats.rejections, stats.lookups) == (6, 3, 2)
        assert await _balance(http) == BALANCE + 10_000


async def test_error_rate_means_unavailable_and_not_credited(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await http.put("/control/faults", json={"ocs": {"credit": {"error_rate": 1}}})
        settings = fast_settings(simulator.url, retries=2, failure_threshold=10)
        async with open_platforms(settings) as platforms:
            with pytest.raises(PlatformUnavailable) as info:
                await platforms.credit("cr-e", WELL_KNOWN, 100)
            assert not isinstance(info.value, OutcomeUnknown)
            assert info.value.status in (500, 503)
            assert await platforms.lookup_credit("cr-e") is None  # other ops unaffected
            stats = platforms.statistics().ocs
            assert (stats.requests, stats.errors, stats.retries) == (4, 3, 2)
        sim_stats = (await http.get("/control/stats")).json()
        assert sim_stats["credits"] == 0 and sim_stats["requests_by_op"]["ocs.credit"] == 3
        assert await _balance(http) == BALANCE


async def test_timeout_rate_means_outcome_unknown_and_nothing_credited(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await http.put("/control/faults", json={"ocs.credit": {"timeout_rate": 1}})
        settings = fast_settings(simulator.url, timeout=0.2, retries=1)
        async with (
            open_platforms(settings) as platforms,
            open_platforms(fast_settings(simulator.url, timeout=5)) as checker,
        ):
            with pytest.raises(OutcomeUnknown):
                await platforms.credit("cr-t", WELL_KNOWN, 100)
            assert platforms.statistics().ocs.timeouts == 2
            assert await checker.lookup_credit("cr-t") is None  # resolved by asking
        assert await _balance(http) == BALANCE


async def test_late_rate_means_outcome_unknown_but_credited_once(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        # "accepted but answered 5xx": the work is done, the client hears nothing usable
        await http.put("/control/faults", json={"ocs": {"credit": {"late_rate": 1}}})
        settings = fast_settings(simulator.url, timeout=0.2, retries=1)
        async with (
            open_platforms(settings) as platforms,
            open_platforms(fast_settings(simulator.url, timeout=5)) as checker,
        ):
            with pytest.raises(OutcomeUnknown):
                await platforms.credit("cr-l", WELL_KNOWN, 100)
            found = await checker.lookup_credit("cr-l")
            assert found is not None and found.amount == 100
            await http.put("/control/faults", json={"ocs.credit": None})
            assert await checker.credit("cr-l", WELL_KNOWN, 100) == found  # retried: same
        stats = (await http.get("/control/stats")).json()
        assert stats["credits"] == 1 and stats["credited_total"] == 100
        assert stats["requests_by_op"]["ocs.credit"] == 3
        assert await _balance(http) == BALANCE + 100


async def test_lookup_credit_goes_through_an_open_circuit(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        settings = fast_settings(simulator.url, retries=0, failure_threshold=1, reset_timeout=30)
        async with open_platforms(settings) as platforms:
            await platforms.credit("cr-c", WELL_KNOWN, 300)
            await http.put("/control/faults", json={"ocs": {"credit": {"outage": True}}})
            with pytest.raises(PlatformUnavailable) as info:
                await platforms.credit("cr-d", WELL_KNOWN, 300)
            assert info.value.status == 503
            with pytest.raises(CircuitOpen):
                await platforms.credit("cr-d", WELL_KNOWN, 300)
            found = await platforms.lookup_credit("cr-c")  # settles while the circuit is open
            assert found is not None and found.amount == 300
            assert await platforms.lookup_credit("cr-d") is None
            stats = platforms.statistics().ocs
            assert stats.circuit == "open" and stats.short_circuited == 1
        assert (await http.get("/control/faults")).json()["ocs.credit"] == {"outage": True}


# -- durability ---------------------------------------------------------------------------------


async def test_credits_survive_a_restart(tmp_path: Path) -> None:
    config = SimulatorConfig(state_dir=tmp_path, seed=1)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handle: SimulatorHandle = await nursery.start(serve_simulator, config)
            async with open_platforms(fast_settings(handle.url)) as platforms:
                receipt = await platforms.credit("cr-1", WELL_KNOWN, 4_000)
                await platforms.credit("cr-2", OTHER, 1_000)
            async with httpx.AsyncClient(base_url=handle.url) as http:
                ledger = (await http.get("/control/ledger")).json()
            nursery.cancel_scope.cancel()
        lines = (tmp_path / JOURNAL_NAME).read_bytes().splitlines()
        assert [line[:13] for line in lines] == [b'{"t":"credit"'] * 2

        async with trio.open_nursery() as nursery:
            handle = await nursery.start(serve_simulator, config)
            async with open_platforms(fast_settings(handle.url)) as platforms:
                assert await platforms.lookup_credit("cr-1") == receipt
                assert await platforms.credit("cr-1", WELL_KNOWN, 4_000) == receipt  # not again
            async with httpx.AsyncClient(base_url=handle.url) as http:
                assert (await http.get("/control/ledger")).json() == ledger
                assert await _balance(http) == BALANCE + 4_000
                stats = (await http.get("/control/stats")).json()
                assert (stats["credits"], stats["credited_total"]) == (2, 5_000)
            nursery.cancel_scope.cancel()
