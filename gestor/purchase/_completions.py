"""`Completions`: the purchases whose saga runs in this worker, and a way to wait for each one's
final state. The subscriber actors record starts and ends here; the purchase service answers
`Prefer: wait` from it, and the recoverer skips what it lists (it is alive, not stale)."""

from __future__ import annotations

import uuid

import attrs
import trio

from gestor.model import Transaction


@attrs.define
class Completion:
    """One saga's end: `done` is set when it ends, with `final` its last state (None when it
    was handed to the recoverer rather than finished here)."""

    done: trio.Event = attrs.field(factory=trio.Event)
    final: Transaction | None = None


@attrs.define
class Completions:
    _running: dict[uuid.UUID, Completion] = attrs.field(factory=dict)
    started: int = 0
    finished: int = 0

    def track(self, tx_id: uuid.UUID) -> None:
        self._running[tx_id] = Completion()
        self.started += 1

    def end(self, tx_id: uuid.UUID, tx: Transaction | None) -> None:
        completion = self._running.pop(tx_id, None)
        self.finished += 1
        if completion is not None:
            completion.final = tx
            completion.done.set()

    def get(self, tx_id: uuid.UUID) -> Completion | None:
        return self._running.get(tx_id)

    def in_flight(self) -> list[uuid.UUID]:
        return list(self._running)

    def __len__(self) -> int:
        return len(self._running)
