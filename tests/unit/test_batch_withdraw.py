"""The batcher's withdrawal, and the store's bounded acceptance built on it: an item no worker
has taken never runs once withdrawn; a taken one is waited for until `deadline + settle`, then
reported `Unsettled` with its late answer still reachable."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
import trio
import trio.testing

from gestor.store import Batcher, Expired, StoreUnavailable, Unsettled, Withdrawn
from gestor.store._store import Store


@attrs.define
class _Gate:
    """A runner that records every batch it is given and answers when `open` is set."""

    open: trio.Event = attrs.field(factory=trio.Event)
    batches: list[list[str]] = attrs.field(factory=list)
    started: trio.Event = attrs.field(factory=trio.Event)
    error: Exception | None = None

    async def __call__(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        self.started.set()
        await self.open.wait()
        if self.error is not None:
            raise self.error
        return [f"done {i}" for i in items]


async def _running(nursery: trio.Nursery, gate: _Gate) -> Batcher[str, str]:
    batcher: Batcher[str, str] = Batcher("test", [gate])  # one worker: one batch at a time
    await nursery.start(batcher.run)
    return batcher


async def test_an_item_withdrawn_before_a_worker_took_it_never_runs() -> None:
    gate = _Gate()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            batcher = await _running(nursery, gate)
            first = batcher.put("a")
            await gate.started.wait()  # the only worker is busy with "a"
            second, third = batcher.put("b"), batcher.put("c")
            assert first.taken and not second.taken
            assert second.withdraw() is True
            assert first.withdraw() is False  # taken: it runs, whatever its submitter wants
            with pytest.raises(Withdrawn):
                await second.results()
            gate.open.set()
            assert await first.results() == ["done a"]
            assert await third.results() == ["done c"]
            assert gate.batches == [["a"], ["c"]]  # "b" never reached the runner
            stats = batcher.statistics()
            assert (stats.items, stats.withdrawn) == (2, 1)
            nursery.cancel_scope.cancel()


async def test_items_put_together_are_withdrawn_together_or_not_at_all() -> None:
    gate = _Gate()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            batcher = await _running(nursery, gate)
            batcher.put("busy")
            await gate.started.wait()
            pair = batcher.put("x", "y")
            assert pair.withdraw() is True
            gate.open.set()
            later = batcher.put("z")
            assert await later.results() == ["done z"]
            assert gate.batches == [["busy"], ["z"]]
            nursery.cancel_scope.cancel()


async def test_still_queued_at_the_deadline_is_expired_and_never_runs(
    autojump_clock: trio.abc.Clock,
) -> None:
    gate = _Gate()
    async with trio.open_nursery() as nursery:
        batcher = await _running(nursery, gate)
        batcher.put("stuck")  # holds the only worker: the database is stalled
        await gate.started.wait()
        deadline = trio.current_time() + 3
        outcome = await Store._accept(batcher.put("late"), deadline, 1.0)  # type: ignore[arg-type]
        assert isinstance(outcome, Expired)
        assert trio.current_time() == pytest.approx(deadline)
        gate.open.set()
        assert (await batcher.put("after").results()) == ["done after"]
        assert gate.batches == [["stuck"], ["after"]]
        nursery.cancel_scope.cancel()


async def test_taken_but_unanswered_is_unsettled_and_its_late_answer_stays_reachable(
    autojump_clock: trio.abc.Clock,
) -> None:
    gate = _Gate()
    async with trio.open_nursery() as nursery:
        batcher = await _running(nursery, gate)
        start = trio.current_time()
        outcome = await Store._accept(batcher.put("sent"), start + 3, 1.0)  # type: ignore[arg-type]
        assert isinstance(outcome, Unsettled) and outcome.answer is not None
        assert trio.current_time() == pytest.approx(start + 4)  # deadline + settle
        gate.open.set()
        assert await outcome.answer() == "done sent"
        nursery.cancel_scope.cancel()


async def test_an_answer_within_the_settle_time_is_the_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    gate = _Gate()
    async with trio.open_nursery() as nursery:
        batcher = await _running(nursery, gate)
        start = trio.current_time()

        async def answer_late() -> None:
            await trio.sleep(3.5)  # after the deadline, before deadline + settle
            gate.open.set()

        nursery.start_soon(answer_late)
        outcome = await Store._accept(batcher.put("sent"), start + 3, 1.0)  # type: ignore[arg-type]
        assert outcome == ["done sent"]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("sent", "kind"), [(False, Expired), (True, Unsettled)])
async def test_a_failed_crossing_is_expired_only_when_nothing_was_sent(
    sent: bool, kind: type
) -> None:
    gate = _Gate(error=StoreUnavailable("connection refused", sent=sent))
    gate.open.set()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            batcher = await _running(nursery, gate)
            outcome = await Store._accept(batcher.put("a"), trio.current_time() + 3, 1.0)  # type: ignore[arg-type]
            assert isinstance(outcome, kind)
            if isinstance(outcome, Unsettled):
                assert outcome.answer is None  # its answer was the failure: nothing to wait for
            nursery.cancel_scope.cancel()
