"""The database health state machine (`gestor.store.DatabaseHealth`), on trio's mock clock:
probes flip it down and back up, a suspected failure probes at once, `check()` refuses while
down with a reason a person reads, each change is one log line and one event, in order."""

from __future__ import annotations

import errno
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import trio
import trio.testing

from gestor.store import DatabaseDown, DatabaseHealth, StoreUnavailable, describe_failure


class FakeDatabase:
    """What a probe sees: an answer, an error, or no answer."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.hang = False
        self.probes = 0
        self.probed = trio.Event()

    async def probe(self) -> None:
        self.probes += 1
        self.probed.set()
        self.probed = trio.Event()
        if self.hang:
            await trio.sleep_forever()
        if self.error is not None:
            raise self.error


def wall_clock(autojump_clock: trio.testing.MockClock) -> datetime:
    return datetime(2026, 1, 2, 12, 3, 4, tzinfo=UTC) + timedelta(
        seconds=autojump_clock.current_time())


async def test_down_and_back_up(autojump_clock: trio.testing.MockClock,
                                caplog: pytest.LogCaptureFixture) -> None:
    db = FakeDatabase()
    resumed = 0

    async def on_reachable() -> None:
        nonlocal resumed
        resumed += 1

    health = DatabaseHealth(interval=2.0, retry_interval=0.5,
                            clock=lambda: wall_clock(autojump_clock))
    changes = health.watch()
    caplog.set_level(logging.INFO, logger="gestor.store")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(health.run, db.probe, on_reachable)
            await trio.sleep(5)  # up: a probe every 2 s, and nothing to say
            assert health.up and db.probes == 2 and resumed == 2
            assert caplog.records == []
            health.check()  # does not raise

            db.error = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
            health.suspect()  # a crossing failed: probe now, not at the next tick
            change = await changes.receive()
            assert not change.up and change.reason == "connection refused"
            assert trio.current_time() == pytest.approx(5.0)
            with pytest.raises(DatabaseDown) as refused:
                health.check()
            assert isinstance(refused.value, StoreUnavailable)
            assert str(refused.value) == ("database unreachable since 12:03:09 UTC: "
                                          "connection refused")
            assert health.describe() == str(refused.value)

            await trio.sleep(3)  # down: a probe every 0.5 s, each failing, no new log line
            probes_while_down = db.probes
            assert probes_while_down >= 6
            db.error = FileNotFoundError(errno.ENOENT, "No such file or directory")
            await trio.sleep(1)
            assert health.reason == "the server is not running (its socket is missing)"
            assert "since 12:03:09 UTC" in health.describe()  # still the same outage

            db.error = None
            change = await changes.receive()
            assert change.up and change.down_since == wall_clock(autojump_clock).replace(
                second=9, microsecond=0)
            assert health.up
            health.check()
            stats = health.statistics()
            assert stats.outages == 1 and stats.refused == 1 and stats.up
            nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "database unreachable since 12:03:09 UTC: connection refused"
    assert messages[1].startswith("database reachable again (unreachable for ")
    assert len(messages) == 2


async def test_a_probe_with_no_answer_is_a_failure(autojump_clock: trio.testing.MockClock
                                                   ) -> None:
    db = FakeDatabase()
    health = DatabaseHealth(interval=2.0, retry_interval=0.5, probe_timeout=1.5)
    changes = health.watch()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(health.run, db.probe)
            db.hang = True  # a frozen server (SIGSTOP): connections open, nothing answers
            change = await changes.receive()
            assert not change.up and change.reason == "no answer within 1.5 s"
            assert trio.current_time() == pytest.approx(3.5)  # next tick 2 s, then 1.5 s
            db.hang = False
            assert (await changes.receive()).up
            nursery.cancel_scope.cancel()


async def test_a_failing_resumption_is_tried_again_soon(autojump_clock: trio.testing.MockClock
                                                        ) -> None:
    db = FakeDatabase()
    calls: list[float] = []

    async def on_reachable() -> None:
        calls.append(trio.current_time())
        if len(calls) == 1:
            raise StoreUnavailable("LISTEN failed")

    health = DatabaseHealth(interval=10.0, retry_interval=0.5)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(health.run, db.probe, on_reachable)
            await trio.sleep(12)
            assert calls[0] == pytest.approx(10.0)
            assert calls[1] == pytest.approx(10.5)  # not 20: it failed, so soon again
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("error", "reason"), [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection refused"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"),
     "the server is not running (its socket is missing)"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "connection lost"),
    (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of "
                                                    "operation"), "connection lost"),
    (asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation "
                                            "(2) is in progress"), "connection lost"),
    (TimeoutError(), "no answer in time"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "network is unreachable"),
    (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
     "the database system is starting up"),
])
def test_failures_are_described_in_words(error: BaseException, reason: str) -> None:
    assert describe_failure(error) == reason
    wrapped = StoreUnavailable(str(error))
    wrapped.__cause__ = error
    assert describe_failure(wrapped) == reason
    assert "Errno" not in describe_failure(wrapped)
