"""`ReportFolder`: one per worker, every `interval` seconds folds the report facts the
movements' writes appended into the hourly rollups, batch after batch until none is left. The
workers and nodes take turns (the fold's advisory lock: a worker that finds it taken skips its
turn). Reports read the facts not folded yet too, so a fold late changes speed, never a figure."""

from __future__ import annotations

import logging

import attrs
import trio

from gestor.store import DatabaseDown, Reports, StoreUnavailable

logger = logging.getLogger("gestor.reports")


@attrs.frozen
class FolderStatistics:
    folds: int  # batches folded
    facts: int  # facts folded
    skipped: int  # turns skipped: another worker was folding
    errors: int  # turns lost to an unavailable database


@attrs.define
class ReportFolder:
    reports: Reports
    interval: float = 2.0
    batch: int = 10_000
    _folds: int = 0
    _facts: int = 0
    _skipped: int = 0
    _errors: int = 0
    _passed: trio.Event = attrs.field(factory=trio.Event)

    def statistics(self) -> FolderStatistics:
        return FolderStatistics(self._folds, self._facts, self._skipped, self._errors)

    async def fold_all(self) -> int:
        """Fold every fact there is now, a batch at a time; how many (0 if another worker
        was folding)."""
        total = 0
        while True:
            folded = await self.reports.fold(self.batch)
            if folded < 0:
                self._skipped += 1
                return total
            self._folds += 1
            self._facts += folded
            total += folded
            if folded < self.batch:
                return total

    async def next_pass(self) -> None:
        """Wait until the background task's next turn is over (folded, skipped or failed)."""
        await self._passed.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """A fold every `interval` seconds, until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            try:
                await self.fold_all()
            except DatabaseDown:
                self._errors += 1  # the store's health state has said so, once
            except StoreUnavailable as exc:
                self._errors += 1
                logger.warning("report fold skipped: database unavailable (%s)", exc)
            passed, self._passed = self._passed, trio.Event()
            passed.set()
