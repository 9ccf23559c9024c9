"""Each fault knob of the simulator, seen through the clients."""

from __future__ import annotations

import math

import httpx
import pytest
import trio

from gestor.platforms import CircuitOpen, OutcomeUnknown, PlatformUnavailable, open_platforms
from gestor.simulator import SimulatorHandle

from .support import WELL_KNOWN, fast_settings

_BONO = {"id": "SMS_200_30D", "validity_days": 30, "sms": 200}


async def test_error_rate_means_unavailable_and_not_performed(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        await http.put("/control/faults", json={"ocs": {"debit": {"error_rate": 1}}})
        settings = fast_settings(simulator.url, retries=2, failure_threshold=10)
        async with open_platforms(settings) as platforms:
            with pytest.raises(PlatformUnavailable) as info:
                await platforms.debit("tx-e", WELL_KNOWN, 100)
            assert not isinstance(info.value, OutcomeUnknown)
            assert info.value.status in (500, 503)
            assert await platforms.lookup_debit("tx-e") is None  # other ops unaffected
            stats = platforms.statistics().ocs
            assert (stats.requests, stats.errors, stats.retries) == (4, 3, 2)
        sim_stats = (await http.get("/control/stats")).json()
        assert sim_stats["debits"] == 0 and sim_stats["requests_by_op"]["ocs.debit"] == 3


async def test_timeout_rate_means_outcome_unknown_and_nothing_done(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        await http.put("/control/faults", json={"ocs.debit": {"timeout_rate": 1}})
        settings = fast_settings(simulator.url, timeout=0.2, retries=1)
        async with (
            open_platforms(settings) as platforms,
            open_platforms(fast_settings(simulator.url, timeout=2)) as checker,
        ):
            start = trio.current_time()
            with pytest.raises(OutcomeUnknown):
                await platforms.debit("tx-t", WELL_KNOWN, 100)
            assert trio.current_time() - start >= 0.4  # two attempts, each gave up at 0.2 s
            assert platforms.statistics().ocs.timeouts == 2
            assert await checker.lookup_debit("tx-t") is None  # resolved by asking

            # a read that times out was never "performed": plain unavailable
            await http.put("/control/faults", json={"dwh": {"timeout_rate": 1}})
            with pytest.raises(PlatformUnavailable) as info:
                await platforms.subscriber(WELL_KNOWN)
            assert not isinstance(info.value, OutcomeUnknown)
        balance = (await http.get(f"/ocs/accounts/{WELL_KNOWN}")).json()["balance"]
        assert balance == 1_681_332


async def test_late_rate_means_outcome_unknown_but_performed(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        await http.put("/control/faults", json={"ocs": {"debit": {"late_rate": 1}}})
        settings = fast_settings(simulator.url, timeout=0.2, retries=1)
        async with (
            open_platforms(settings) as platforms,
            open_platforms(fast_settings(simulator.url, timeout=2)) as checker,
        ):
            with pytest.raises(OutcomeUnknown):
                await platforms.debit("tx-l", WELL_KNOWN, 100)
            found = await checker.lookup_debit("tx-l")
            assert found is not None and found.amount == 100
        stats = (await http.get("/control/stats")).json()
        assert stats["debits"] == 1 and stats["debited_total"] == 100  # the retry did not debit
        assert stats["requests_by_op"]["ocs.debit"] == 2


async def test_outage_opens_the_circuit_and_it_closes_after_reset(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    changes_in, changes_out = trio.open_memory_channel[tuple[str, bool]](math.inf)

    async def on_circuit_change(platform: str, opened: bool) -> None:
        await changes_in.send((platform, opened))

    with trio.fail_after(10):
        await http.put("/control/faults", json={"ocs": {"outage": True}})
        settings = fast_settings(
            simulator.url, retries=0, failure_threshold=3, reset_timeout=0.3
        )
        async with open_platforms(settings, on_circuit_change=on_circuit_change) as platforms:
            for _ in range(3):
                with pytest.raises(PlatformUnavailable) as info:
                    await platforms.account(WELL_KNOWN)
                assert not isinstance(info.value, CircuitOpen)
                assert info.value.status == 503
            assert await changes_out.receive() == ("ocs", True)
            with pytest.raises(CircuitOpen) as opened:
                await platforms.debit("tx-o", WELL_KNOWN, 100)
            assert 0 < opened.value.retry_after <= 0.3
            assert platforms.statistics().ocs.circuit == "open"
            assert platforms.statistics().ocs.short_circuited == 1
            assert (await platforms.subscriber(WELL_KNOWN)).msisdn == WELL_KNOWN  # dwh fine

            # still down when the probe goes: open again, no second alarm
            await trio.sleep(opened.value.retry_after)  # wait out the announced reset time
            with pytest.raises(PlatformUnavailable):
                await platforms.account(WELL_KNOWN)
            with pytest.raises(CircuitOpen) as reopened:
                await platforms.account(WELL_KNOWN)

            await http.put("/control/faults", json={"ocs": {"outage": None}})
            await trio.sleep(reopened.value.retry_after)
            assert platforms.statistics().ocs.circuit == "half_open"
            assert (await platforms.account(WELL_KNOWN)).balance == 1_681_332  # the probe
            assert await changes_out.receive() == ("ocs", False)
            assert platforms.statistics().ocs.circuit == "closed"
            receipt = await platforms.debit("tx-o", WELL_KNOWN, 100)
            assert receipt.amount == 100
        with pytest.raises(trio.WouldBlock):
            changes_out.receive_nowait()  # exactly one open and one close


async def test_half_open_lets_a_single_probe_through(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await http.put("/control/faults", json={"ocs": {"outage": True}})
        settings = fast_settings(simulator.url, retries=0, failure_threshold=1,
                                 reset_timeout=0.2)
        async with open_platforms(settings) as platforms:
            with pytest.raises(PlatformUnavailable):
                await platforms.account(WELL_KNOWN)
            with pytest.raises(CircuitOpen) as opened:
                await platforms.account(WELL_KNOWN)
            await http.put(
                "/control/faults", json={"ocs": {"outage": None, "latency_ms": 100}}
            )
            await trio.sleep(opened.value.retry_after)
            outcomes: list[str] = []

            async def call() -> None:
                try:
                    await platforms.account(WELL_KNOWN)
                    outcomes.append("ok")
                except CircuitOpen:
                    outcomes.append("refused")

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(call)
            assert sorted(outcomes) == ["ok", "refused", "refused", "refused"]
            assert platforms.statistics().ocs.circuit == "closed"


async def test_settlement_lookups_go_through_an_open_circuit(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        # long reset: the circuits stay open for the whole test
        settings = fast_settings(simulator.url, retries=0, failure_threshold=3,
                                 reset_timeout=60)
        async with open_platforms(settings) as platforms:
            known = await platforms.debit("tx-known", WELL_KNOWN, 100)
            await http.put("/control/faults", json={
                "ocs.debit": {"outage": True}, "prov.provision": {"outage": True},
            })
            for i in range(3):
                with pytest.raises(PlatformUnavailable) as info:
                    await platforms.debit(f"tx-down-{i}", WELL_KNOWN, 100)
                assert not isinstance(info.value, CircuitOpen)
                with pytest.raises(PlatformUnavailable) as info:
                    await platforms.provision(f"tx-down-{i}", WELL_KNOWN, _BONO)
                assert not isinstance(info.value, CircuitOpen)
            assert platforms.statistics().ocs.circuit == "open"
            assert platforms.statistics().prov.circuit == "open"

            # mutating calls and profile reads are short-circuited ...
            with pytest.raises(CircuitOpen):
                await platforms.debit("tx-new", WELL_KNOWN, 100)
            with pytest.raises(CircuitOpen):
                await platforms.refund("rf-new", "tx-known", WELL_KNOWN, 100)
            with pytest.raises(CircuitOpen):
                await platforms.account(WELL_KNOWN)
            with pytest.raises(CircuitOpen):
                await platforms.provision("tx-new", WELL_KNOWN, _BONO)
            # ... the settlement lookups still ask
            found = await platforms.lookup_debit("tx-known")
            assert found == known
            assert await platforms.lookup_debit("tx-down-0") is None
            assert await platforms.lookup_debit("tx-never") is None
            assert await platforms.lookup_refund("rf-never") is None
            assert await platforms.lookup_provision("tx-down-0") is None
            # a failing lookup is attempted too: the platform's answer, not CircuitOpen
            await http.put("/control/faults", json={"ocs.lookup_refund": {"outage": True}})
            with pytest.raises(PlatformUnavailable) as info:
                await platforms.lookup_refund("rf-never")
            assert not isinstance(info.value, CircuitOpen) and info.value.status == 503

            # and their successes did not close the circuits
            ocs = platforms.statistics().ocs
            assert (ocs.circuit, ocs.short_circuited, ocs.lookups) == ("open", 3, 5)
            assert ocs.requests == 1 + 3 + 5  # lookups are requests too
            prov = platforms.statistics().prov
            assert (prov.circuit, prov.short_circuited, prov.lookups) == ("open", 1, 1)
            with pytest.raises(CircuitOpen):
                await platforms.debit("tx-new", WELL_KNOWN, 100)
        sim_stats = (await http.get("/control/stats")).json()
        assert sim_stats["debits"] == 1 and sim_stats["requests_by_op"]["ocs.lookup_debit"] == 3


async def test_lookups_neither_trip_nor_reset_the_circuit(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await http.put("/control/faults", json={
            "ocs.lookup_debit": {"outage": True},
            "ocs.lookup_refund": {"timeout_rate": 1},
        })
        settings = fast_settings(simulator.url, timeout=0.2, retries=1, failure_threshold=2,
                                 reset_timeout=60)
        async with open_platforms(settings) as platforms:
            # failing lookups, far more than the threshold: the circuit stays closed
            for i in range(3):
                with pytest.raises(PlatformUnavailable) as info:
                    await platforms.lookup_debit(f"tx-{i}")
                assert not isinstance(info.value, CircuitOpen) and info.value.status == 503
            with pytest.raises(PlatformUnavailable) as info:
                await platforms.lookup_refund("rf-0")  # timed out twice: a read, not unknown
            assert not isinstance(info.value, OutcomeUnknown | CircuitOpen)
            ocs = platforms.statistics().ocs
            assert (ocs.circuit, ocs.consecutive_failures) == ("closed", 0)
            assert (ocs.requests, ocs.lookups, ocs.errors, ocs.timeouts) == (8, 8, 6, 2)
            assert (await platforms.debit("tx-ok", WELL_KNOWN, 100)).amount == 100

            # and a successful lookup does not wipe out the debits' failures
            await http.put("/control/faults", json={
                "ocs.debit": {"outage": True}, "ocs.lookup_debit": None,
            })
            with pytest.raises(PlatformUnavailable):
                await platforms.debit("tx-a", WELL_KNOWN, 100)  # 2 attempts: threshold
            assert platforms.statistics().ocs.circuit == "open"
            await http.put("/control/faults", json={"ocs.debit": {"outage": None}})
            assert await platforms.lookup_debit("tx-ok") is not None
            assert platforms.statistics().ocs.circuit == "open"
            with pytest.raises(CircuitOpen):
                await platforms.debit("tx-b", WELL_KNOWN, 100)


async def test_latency_and_jitter(simulator: SimulatorHandle, http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        await http.put(
            "/control/faults", json={"dwh": {"latency_ms": 100, "latency_jitter_ms": 50}}
        )
        async with open_platforms(fast_settings(simulator.url)) as platforms:
            for _ in range(3):
                start = trio.current_time()
                await platforms.subscriber(WELL_KNOWN)
                assert 0.1 <= trio.current_time() - start < 1.0
        assert simulator.simulator.faults.for_op("ocs.account").quiet
        dwh = simulator.simulator.faults.for_op("dwh.subscriber")
        assert (dwh.latency_s, dwh.jitter_s) == (0.1, 0.05)


async def test_seeded_faults_repeat(simulator: SimulatorHandle, http: httpx.AsyncClient) -> None:
    async def pattern() -> list[bool]:
        await http.put("/control/faults", json={"seed": 11, "dwh": {"error_rate": 0.5}})
        codes = [
            (await http.get(f"/dwh/subscribers/{WELL_KNOWN}")).status_code for _ in range(30)
        ]
        return [code == 200 for code in codes]

    with trio.fail_after(5):
        first = await pattern()
        assert await pattern() == first
        assert 5 < sum(first) < 25


async def test_bounded_concurrency(simulator: SimulatorHandle, http: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        await http.put("/control/faults", json={"ocs": {"latency_ms": 100}})
        settings = fast_settings(simulator.url, max_concurrency=2, timeout=2)
        async with open_platforms(settings) as platforms:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(platforms.account, WELL_KNOWN)
            assert trio.current_time() - start >= 0.4  # 8 calls, 2 at a time, 0.1 s each
            assert platforms.statistics().ocs.requests == 8
        stats = (await http.get("/control/stats")).json()
        assert stats["peak_in_flight"] == 2


async def test_concurrent_debits_are_counted_per_msisdn(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    """`max_concurrent_debits`: the most debits of one msisdn served at once (latency
    included); other mobiles' debits don't count."""
    other = "5491100000002"
    with trio.fail_after(10):
        await http.put("/control/faults", json={"ocs.debit": {"latency_ms": 200}})

        async def debit(msisdn: str, n: int) -> None:
            r = await http.post("/ocs/debits", json={"id": f"{msisdn}-{n}", "msisdn": msisdn,
                                                      "amount": 10})
            assert r.status_code == 200

        for n in range(2):  # one after the other
            await debit(other, n)
        async with trio.open_nursery() as nursery:  # three at once
            for n in range(3):
                nursery.start_soon(debit, WELL_KNOWN, n)
        stats = (await http.get("/control/stats", params={"msisdn": other})).json()
        assert stats["per_msisdn"]["max_concurrent_debits"] == 1
        assert stats["max_concurrent_debits_per_msisdn"] == 3
        stats = (await http.get("/control/stats", params={"msisdn": WELL_KNOWN})).json()
        assert stats["per_msisdn"]["max_concurrent_debits"] == 3
        await http.post("/control/reset")
        stats = (await http.get("/control/stats", params={"msisdn": WELL_KNOWN})).json()
        assert stats["per_msisdn"]["max_concurrent_debits"] == 0
        assert stats["max_concurrent_debits_per_msisdn"] == 0


async def test_callers_queue_for_a_free_slot(
    simulator: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        await http.put("/control/faults", json={"ocs": {"latency_ms": 400}})
        settings = fast_settings(simulator.url, max_concurrency=1, timeout=1.0)
        async with open_platforms(settings) as platforms, trio.open_nursery() as nursery:
            nursery.start_soon(platforms.account, WELL_KNOWN)
            await trio.testing.wait_all_tasks_blocked()
            assert platforms.statistics().ocs.in_flight == 1
            with trio.move_on_after(0.1) as waited:
                await platforms.account(WELL_KNOWN)  # queues behind the single slot
            assert waited.cancelled_caught
            stats = platforms.statistics().ocs
            assert (stats.requests, stats.in_flight, stats.circuit) == (1, 1, "closed")


async def test_no_free_slot_within_timeout_fails_fast_unsent(
    simulator: SimulatorHandle,
) -> None:
    with trio.fail_after(5):
        settings = fast_settings(
            simulator.url, max_concurrency=1, timeout=0.2, failure_threshold=1
        )
        async with open_platforms(settings) as platforms, trio.open_nursery() as nursery:
            limiter = platforms._endpoints["ocs"].limiter
            release = trio.Event()

            async def hold(*, task_status: trio.TaskStatus[None]) -> None:
                async with limiter:  # every ocs slot is busy
                    task_status.started()
                    await release.wait()

            await nursery.start(hold)
            with pytest.raises(PlatformUnavailable) as info:
                await platforms.account(WELL_KNOWN)
            assert not info.value.retryable and "no free slot" in info.value.message
            stats = platforms.statistics().ocs
            assert (stats.saturated, stats.requests, stats.retries) == (1, 0, 0)
            assert stats.waiting == 0 and stats.circuit == "closed"  # not the platform's fault
            release.set()
            assert (await platforms.account(WELL_KNOWN)).msisdn == WELL_KNOWN


async def test_lookups_have_slots_of_their_own(simulator: SimulatorHandle) -> None:
    """Debits hanging on every slot must not keep out the lookups that settle them."""
    with trio.fail_after(5):
        settings = fast_settings(simulator.url, max_concurrency=1, timeout=0.2)
        async with open_platforms(settings) as platforms, trio.open_nursery() as nursery:
            limiter = platforms._endpoints["ocs"].limiter
            release = trio.Event()

            async def hold(*, task_status: trio.TaskStatus[None]) -> None:
                async with limiter:  # every ordinary ocs slot is busy
                    task_status.started()
                    await release.wait()

            await nursery.start(hold)
            with pytest.raises(PlatformUnavailable):
                await platforms.account(WELL_KNOWN)
            assert await platforms.lookup_debit("never-debited") is None
            stats = platforms.statistics().ocs
            assert (stats.saturated, stats.lookups) == (1, 1)
            release.set()
