"""The store's loop thread: results, errors and cancellation cross between trio and asyncio."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from gestor.store._bridge import _LoopThread


async def test_results_and_errors_come_back_to_the_trio_caller() -> None:
    with trio.fail_after(10):
        side = _LoopThread.start()
        try:
            async def where() -> str:
                await asyncio.sleep(0)
                return threading.current_thread().name

            assert await side.call(where) == "gestor-store"

            async def fails() -> None:
                raise ValueError("boom")

            with pytest.raises(ValueError, match="boom"):
                await side.call(fails)

            def not_a_coroutine() -> None:
                raise LookupError("before any await")

            with pytest.raises(LookupError):  # raised while starting: not a hang
                await side.call(not_a_coroutine)  # type: ignore[arg-type]
        finally:
            await side.stop()


async def test_cancelling_the_caller_cancels_the_work_and_waits_for_it() -> None:
    with trio.fail_after(10):
        side = _LoopThread.start()
        try:
            running, ended = threading.Event(), threading.Event()

            async def slow() -> None:
                running.set()
                try:
                    await asyncio.sleep(60)
                finally:
                    ended.set()

            with trio.move_on_after(0.2) as scope:
                await side.call(slow)
            assert scope.cancelled_caught
            # whatever had started there was cancelled and ended before the caller went on
            assert ended.is_set() == running.is_set()
        finally:
            await side.stop()
