"""Per-platform circuit breaker: closed -> open -> half-open (one probe) -> closed.

``failure_threshold`` consecutive failures open the circuit; calls then fail fast with
:class:`CircuitOpen` for ``reset_timeout`` seconds; after that one call at a time is let
through as a probe: its success closes the circuit, its failure opens it again.
Business rejections (4xx) are answers, so they count as successes here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs
import trio

from ._errors import CircuitOpen

__all__ = ["CircuitBreaker", "CircuitState"]


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@attrs.define
class CircuitBreaker:
    platform: str
    failure_threshold: int
    reset_timeout: float
    on_change: Callable[[str, bool], None]  # (platform, opened); only on open <-> closed
    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    probing: bool = False
    times_opened: int = 0

    def current(self) -> CircuitState:
        if (
            self.state is CircuitState.OPEN
            and trio.current_time() >= self.opened_at + self.reset_timeout
        ):
            self.state = CircuitState.HALF_OPEN
        return self.state

    def enter(self) -> bool:
        """Admit a call (True: it is the half-open probe) or raise :class:`CircuitOpen`."""
        state = self.current()
        if state is CircuitState.CLOSED:
            return False
        if state is CircuitState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        retry_after = max(0.0, self.opened_at + self.reset_timeout - trio.current_time())
        raise CircuitOpen(self.platform, retry_after)

    def success(self, probe: bool) -> None:
        if probe:
            self.probing = False
            if self.state is CircuitState.HALF_OPEN:
                self.state = CircuitState.CLOSED
                self.consecutive_failures = 0
                self.on_change(self.platform, False)
        elif self.state is CircuitState.CLOSED:
            self.consecutive_failures = 0

    def failure(self, probe: bool) -> None:
        if probe:
            self.probing = False
            if self.state is CircuitState.HALF_OPEN:
                self._open()
        elif self.state is CircuitState.CLOSED:
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.failure_threshold:
                self._open()
                self.times_opened += 1
                self.on_change(self.platform, True)

    def release(self, probe: bool) -> None:
        """The call ended without a verdict (cancelled, saturated): free the probe slot."""
        if probe:
            self.probing = False

    def _open(self) -> None:
        self.state = CircuitState.OPEN
        self.opened_at = trio.current_time()
