"""The platform clients against a real simulator on a loopback port."""

from __future__ import annotations

import httpx
import pytest
import trio

from gestor.platforms import (
    Account,
    CustomerData,
    DebitReceipt,
    PlatformRejected,
    PlatformUnavailable,
    Profile,
    open_platforms,
)
from gestor.simulator import SimulatorHandle

from .support import WELL_KNOWN, fast_settings

BONO = {
    "id": "DATA_2GB_7D", "name": "2 GB for 7 days", "kind": "data", "price": 60000,
    "validity_days": 7, "data_mb": 2048,
}


async def test_reads(simulator: SimulatorHandle) -> None:
    with trio.fail_after(5):
        async with open_platforms(fast_settings(simulator.url)) as platforms:
            profile = await platforms.subscriber(WELL_KNOWN)
            assert isinstance(profile, Profile) and profile.segment == "prepaid"
            assert profile.as_dict()["msisdn"] == WELL_KNOWN
            account = await platforms.account(WELL_KNOWN)
            assert account == Account(WELL_KNOWN, 1_681_332, "ARS", "active", False, 0)
            both = await platforms.profile(WELL_KNOWN)
            assert isinstance(both, CustomerData)
            assert both.as_dict() == {**profile.as_dict(), **account.as_dict()}
            assert both["balance"] == 1_681_332 and both["region"] == profile.region
            assert dict(both) == both.as_dict() and len(both) == 13
            with pytest.raises(KeyError):
                both["nope"]
            with pytest.raises(PlatformRejected) as info:
                await platforms.subscriber("123")
            assert (info.value.platform, info.value.code, info.value.status) == (
                "dwh", "NOT_FOUND", 404
            )
            with pytest.raises(PlatformRejected):
                await platforms.profile("123")  # raised plainly, not as an exception group
            stats = platforms.statistics()
            # the last profile() call cancels whichever half had not answered yet
            assert stats.dwh.requests == 4 and stats.ocs.requests == 3
            assert stats.dwh.rejections + stats.ocs.rejections in (2, 3)
            assert stats.dwh.in_flight == stats.ocs.in_flight == 0
            assert stats.ocs.circuit == stats.dwh.circuit == "closed"


async def test_purchase_flow(simulator: SimulatorHandle, http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        async with open_platforms(fast_settings(simulator.url)) as platforms:
            assert await platforms.lookup_debit("tx-1") is None
            receipt = await platforms.debit("tx-1", WELL_KNOWN, 60_000, reason="DATA_2GB_7D")
            assert isinstance(receipt, DebitReceipt)
            assert receipt.balance_after == 1_681_332 - 60_000
            assert await platforms.debit("tx-1", WELL_KNOWN, 60_000) == receipt
            assert await platforms.lookup_debit("tx-1") == receipt
            bundle = await platforms.provision("tx-1", WELL_KNOWN, BONO)
            assert (bundle.id, bundle.bono_id, bundle.status) == ("tx-1", "DATA_2GB_7D",
                                                                   "provisioned")
            assert await platforms.provision("tx-1", WELL_KNOWN, BONO) == bundle
            assert await platforms.lookup_provision("tx-1") == bundle
            refund = await platforms.refund("rf-1", "tx-1", WELL_KNOWN, 60_000)
            assert refund.balance_after == 1_681_332
            assert await platforms.refund("rf-1", "tx-1", WELL_KNOWN, 60_000) == refund
            assert await platforms.lookup_refund("rf-1") == refund
            looked = await platforms.lookup_debit("tx-1")
            assert looked is not None and looked.refunded
            with pytest.raises(PlatformRejected) as info:
                await platforms.refund("rf-2", "tx-1", WELL_KNOWN, 60_000)
            assert info.value.code == "ALREADY_REFUNDED" and info.value.status == 409
        stats = (await http.get("/control/stats")).json()
        assert (stats["debits"], stats["refunds"], stats["provisioned"]) == (1, 1, 1)


async def test_business_rejections(simulator: SimulatorHandle, http: httpx.AsyncClient) -> None:
    poor, suspended = "5491100000010", "5491100000011"
    with trio.fail_after(5):
        await http.put(f"/control/accounts/{poor}", json={"balance": 0})
        await http.put(f"/control/accounts/{suspended}", json={"line_status": "suspended"})
        async with open_platforms(fast_settings(simulator.url)) as platforms:
            with pytest.raises(PlatformRejected) as info:
                await platforms.debit("tx-a", poor, 100)
            assert (info.value.code, info.value.status) == ("INSUFFICIENT_BALANCE", 402)
            assert info.value.body["balance"] == 0
            assert info.value.detail == "not enough balance"
            assert str(info.value) == "ocs: 402 INSUFFICIENT_BALANCE: not enough balance"
            with pytest.raises(PlatformRejected) as info:
                await platforms.debit("tx-b", suspended, 100)
            assert (info.value.code, info.value.status) == ("LINE_NOT_ACTIVE", 403)
            await platforms.debit("tx-c", WELL_KNOWN, 100)
            with pytest.raises(PlatformRejected) as info:
                await platforms.debit("tx-c", WELL_KNOWN, 200)
            assert info.value.code == "IDEMPOTENCY_MISMATCH"
            with pytest.raises(PlatformRejected) as info:
                await platforms.refund("rf-x", "tx-unknown", WELL_KNOWN, 100)
            assert info.value.status == 404
            # rejections are answers: they never open the circuit
            assert platforms.statistics().ocs.circuit == "closed"
            assert platforms.statistics().ocs.retries == 0


async def test_ids_with_odd_characters_round_trip(simulator: SimulatorHandle) -> None:
    with trio.fail_after(5):
        async with open_platforms(fast_settings(simulator.url)) as platforms:
            tx = "tx/with?odd#chars%20"
            receipt = await platforms.debit(tx, WELL_KNOWN, 1)
            assert receipt.id == tx
            assert await platforms.lookup_debit(tx) == receipt
            with pytest.raises(ValueError):
                await platforms.lookup_debit("")


async def test_unreachable_platform_is_unavailable() -> None:
    with trio.fail_after(5):
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()  # nothing listens there now: connection refused
        settings = fast_settings(f"http://127.0.0.1:{port}")
        async with open_platforms(settings) as platforms:
            with pytest.raises(PlatformUnavailable) as info:
                await platforms.debit("tx-1", WELL_KNOWN, 100)
            assert info.value.retryable
            stats = platforms.statistics().ocs
            assert stats.errors == 2 and stats.retries == 1
            with pytest.raises(PlatformUnavailable):
                await platforms.ping()


async def test_ping(simulator: SimulatorHandle, http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        await http.put("/control/faults", json={"ocs": {"outage": True}})
        async with open_platforms(fast_settings(simulator.url)) as platforms:
            assert await platforms.ping() is True  # reachability only: faults are not pinged
            assert platforms.statistics().ocs.requests == 0
