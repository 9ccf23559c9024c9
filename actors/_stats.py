"""Immutable statistics records returned by ``statistics()`` methods."""

from __future__ import annotations

from collections.abc import Hashable

import attrs

__all__ = ["ActorStatistics", "SystemStatistics"]


@attrs.frozen
class SystemStatistics:
    """A snapshot of an :class:`~actors.ActorSystem`.

    Counters (``activations`` ... ``child_task_errors``) are cumulative since the
    system opened; the other fields are instantaneous values.
    """

    #: The system's name.
    name: str
    #: Actors currently in memory (starting, running or passivating).
    live_actors: int
    #: Actors created on demand (including re-activations after a passivation).
    activations: int
    #: Actors that ran ``on_stop`` and left memory (idle, evicted or ``ctx.stop()``).
    passivations: int
    #: Passivations caused by ``max_actors`` (included in ``passivations``).
    evictions: int
    #: Crashes followed by a restart.
    restarts: int
    #: Exceptions raised by ``handle``, ``on_start`` or the factory.
    crashes: int
    #: Actors that crashed too often and were stopped for a back-off period.
    stopped_actors: int
    #: Keys currently in their back-off period after being stopped.
    backoff_keys: int
    #: Messages handled (timer ticks included).
    messages: int
    #: Timer ticks handled (included in ``messages``).
    timer_ticks: int
    #: Messages waiting in all mailboxes.
    mailbox_depth_total: int
    #: Senders blocked on a full mailbox.
    waiting_senders: int
    #: ``tell``/``ask`` calls rejected with :class:`~actors.Overloaded`.
    overload_rejections: int
    #: ``ask`` calls that raised :class:`~actors.AskTimeout`.
    ask_timeouts: int
    #: Told messages discarded because their actor stopped or the system shut down.
    dropped_messages: int
    #: Child tasks started with ``ctx.start_soon`` that are still running.
    running_tasks: int
    #: Child tasks that ended with an exception.
    child_task_errors: int
    #: Timers currently armed.
    active_timers: int
    #: ``max_actors`` as configured.
    max_actors: int | None
    #: True once the system stopped accepting messages.
    closed: bool


@attrs.frozen
class ActorStatistics:
    """A snapshot of one live actor."""

    #: The actor's key.
    key: Hashable
    #: ``"starting"``, ``"running"`` or ``"stopping"``.
    state: str
    #: Messages waiting in the mailbox.
    mailbox_depth: int
    #: Senders blocked on the full mailbox.
    waiting_senders: int
    #: Messages handled since the actor (this cell) was activated.
    messages: int
    #: Restarts after a crash since activation.
    restarts: int
    #: Child tasks currently running.
    running_tasks: int
    #: Timers currently armed.
    timers: int
    #: :func:`trio.current_time` since which the actor has been idle, or None if
    #: it is busy (handling a message, mailbox not empty, or child tasks running).
    idle_since: float | None
