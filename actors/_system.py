"""The actor system: registry of live actors, message sending, and its lifetime.

:func:`open_actor_system` opens a nursery that hosts every actor task, every
child task and the deadline scheduler; leaving it shuts the system down cleanly
(bounded by ``shutdown_timeout``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Generic, NoReturn, TypeVar, cast

import attrs
import trio

from ._actor import Actor
from ._context import ActorContext
from ._errors import ActorStopped, AskTimeout, Overloaded, SystemStopped
from ._mailbox import TIMED_OUT, Counters, Mailbox, PendingAsk
from ._scheduler import Scheduler
from ._stats import ActorStatistics, SystemStatistics

__all__ = ["ActorSystem", "open_actor_system"]

M = TypeVar("M")
R = TypeVar("R")

_EVICTION_SCAN_SLACK = 16


@attrs.define(eq=False, weakref_slot=False, repr=False)
class ActorSystem(Generic[M, R]):
    """A set of keyed actors sharing one behaviour factory.

    Create with :func:`open_actor_system`, not directly.
    """

    _name: str
    _factory: Callable[[Hashable], Actor[M, R]]
    _nursery: trio.Nursery
    _mailbox_size: int
    _idle_timeout: float
    _send_timeout: float
    _max_actors: int | None
    _max_restarts: int
    _restart_window: float
    _stopped_backoff: float
    _shutdown_grace: float
    _shutdown_timeout: float
    _registry: dict[Hashable, ActorContext] = attrs.Factory(dict)
    _counters: Counters = attrs.Factory(Counters)
    _scheduler: Scheduler = attrs.Factory(Scheduler)
    _tombstones: dict[Hashable, tuple[float, BaseException | None]] = attrs.Factory(dict)
    _tombstone_purge_at: int = 64
    _evicting: int = 0
    _closing: bool = False
    _grace_deadline: float = math.inf
    _all_stopped: trio.Event | None = None
    #: trio.current_time without the run-context lookup (hot paths).
    _now: Callable[[], float] = attrs.field(
        init=False, factory=lambda: trio.lowlevel.current_clock().current_time
    )

    def __repr__(self) -> str:
        return f"<ActorSystem {self._name!r} live={len(self._registry)}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def mailbox_size(self) -> int:
        return self._mailbox_size

    # ------------------------------------------------------------------ sending

    async def ask(self, key: Hashable, message: M, timeout: float = 5.0) -> R:  # noqa: ASYNC109
        """Send *message* to the actor for *key* (activating it if needed) and
        return what its ``handle`` returns.

        Raises:
          Overloaded: the mailbox stayed full for ``send_timeout`` seconds.
          AskTimeout: no reply within *timeout* seconds (counted from the call).
            The message may still be handled; its reply is then discarded.
          ActorCrashed: ``handle`` raised; the original is ``.error``/``__cause__``.
          ActorStopped: the actor is stopped after repeated crashes.
          SystemStopped: the system is shutting down.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        now = trio.current_time()
        deadline = now + timeout
        pending = PendingAsk(message)
        cell = self._lookup(key)
        if not cell._mailbox.put_nowait(pending):
            send_deadline = now + self._send_timeout
            if not await self._put_until(cell, pending, min(send_deadline, deadline)):
                if send_deadline <= deadline:
                    self._counters.overload_rejections += 1
                    raise Overloaded(key, self._mailbox_size)
                self._counters.ask_timeouts += 1
                raise AskTimeout(key, timeout)
        # The timeout is a scheduler entry rather than a cancel scope: much cheaper.
        timed = deadline != math.inf
        if timed:
            self._scheduler.schedule_ask(deadline, pending)
        try:
            result = await pending.wait()
        except BaseException:  # the actor crashed, the system stopped, or cancelled
            if timed:
                self._scheduler.note_ask_stale()
            raise
        if result is TIMED_OUT:
            self._counters.ask_timeouts += 1
            raise AskTimeout(key, timeout)
        if timed:
            self._scheduler.note_ask_stale()
        return cast(R, result)

    async def tell(self, key: Hashable, message: M) -> None:
        """Send *message* without waiting for it to be handled; wait at most
        ``send_timeout`` seconds for room in the mailbox.

        Raises:
          Overloaded, ActorStopped, SystemStopped: as for :meth:`ask`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        cell = self._lookup(key)
        if cell._mailbox.put_nowait(message):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if not await self._put_until(cell, message, trio.current_time() + self._send_timeout):
            self._counters.overload_rejections += 1
            raise Overloaded(key, self._mailbox_size)

    def tell_nowait(self, key: Hashable, message: M) -> None:
        """Like :meth:`tell` but raise :class:`Overloaded` at once if the mailbox is full."""
        if not self._lookup(key)._mailbox.put_nowait(message):
            self._counters.overload_rejections += 1
            raise Overloaded(key, self._mailbox_size)

    async def _put_until(self, cell: ActorContext, item: object, deadline: float) -> bool:
        return await cell._mailbox.put(item, deadline, self._scheduler)

    # ------------------------------------------------------------------ inspection

    def is_live(self, key: Hashable) -> bool:
        """True if an actor for *key* is in memory (starting, running or passivating)."""
        return key in self._registry

    def live_keys(self) -> list[Hashable]:
        """Keys of the live actors (a snapshot)."""
        return list(self._registry)

    def actor_statistics(self, key: Hashable) -> ActorStatistics | None:
        """A snapshot of the actor for *key*, or None if it is not live."""
        cell = self._registry.get(key)
        return None if cell is None else cell.statistics()

    def statistics(self) -> SystemStatistics:
        """A snapshot of the whole system (O(1))."""
        c = self._counters
        return SystemStatistics(
            name=self._name,
            live_actors=len(self._registry),
            activations=c.activations,
            passivations=c.passivations,
            evictions=c.evictions,
            restarts=c.restarts,
            crashes=c.crashes,
            stopped_actors=c.stopped_actors,
            backoff_keys=self._count_backoff(),
            messages=c.messages,
            timer_ticks=c.timer_ticks,
            mailbox_depth_total=c.queued,
            waiting_senders=c.waiting_senders,
            overload_rejections=c.overload_rejections,
            ask_timeouts=c.ask_timeouts,
            dropped_messages=c.dropped_messages,
            running_tasks=c.running_tasks,
            child_task_errors=c.child_task_errors,
            active_timers=c.active_timers,
            max_actors=self._max_actors,
            closed=self._closing,
        )

    def _count_backoff(self) -> int:
        self._purge_tombstones()
        return len(self._tombstones)

    # ------------------------------------------------------------------ registry

    def _lookup(self, key: Hashable) -> ActorContext:
        """The live actor for *key*, activated if needed. Never checkpoints, so the
        caller can enqueue before anything else runs."""
        if self._closing:
            raise SystemStopped(self._name)
        registry = self._registry
        cell = registry.get(key)
        if cell is not None:
            if self._max_actors is not None:
                cast("OrderedDict[Hashable, ActorContext]", registry).move_to_end(key)
            return cell
        if self._tombstones:
            tombstone = self._tombstones.get(key)
            if tombstone is not None:
                until, error = tombstone
                if trio.current_time() < until:
                    raise ActorStopped(key, error, until)
                del self._tombstones[key]
        return self._activate(key)

    def _activate(self, key: Hashable) -> ActorContext:
        cell = ActorContext(key, self, Mailbox(self._mailbox_size, self._counters))
        self._registry[key] = cell
        self._counters.activations += 1
        self._nursery.start_soon(cell._run, name="actors.actor")
        if self._idle_timeout != math.inf:
            self._scheduler.schedule(trio.current_time() + self._idle_timeout, cell)
        if self._max_actors is not None and len(self._registry) - self._evicting > self._max_actors:
            self._evict(cell)
        return cell

    def _evict(self, new: ActorContext) -> None:
        """Passivate least-recently-used idle actors to get back under ``max_actors``.

        Looks at a bounded number of the least recently used actors; busy ones are
        treated as used and moved to the back. If none is idle the new activation
        proceeds anyway and the system is over its cap until actors go idle.
        """
        assert self._max_actors is not None
        registry = cast("OrderedDict[Hashable, ActorContext]", self._registry)
        excess = len(registry) - self._evicting - self._max_actors
        scan = excess + _EVICTION_SCAN_SLACK
        candidates: list[ActorContext] = []
        for cell in registry.values():
            if scan <= 0:
                break
            scan -= 1
            candidates.append(cell)
        for cell in candidates:
            if excess <= 0:
                break
            if cell is new:
                continue
            if cell._evictable():
                cell._set_evicting(True)
                cell._mailbox.wake()
                excess -= 1
            elif not cell._is_dead():  # busy, so recently used
                registry.move_to_end(cell.key)

    def _unregister(self, cell: ActorContext) -> None:
        registry = self._registry
        if registry.get(cell.key) is cell:
            del registry[cell.key]
        if self._idle_timeout != math.inf:
            self._scheduler.note_stale()
        if self._closing and not registry and self._all_stopped is not None:
            self._all_stopped.set()

    def _add_tombstone(self, key: Hashable, until: float, error: BaseException | None) -> None:
        self._tombstones[key] = (until, error)
        if len(self._tombstones) >= self._tombstone_purge_at:
            self._purge_tombstones()
            self._tombstone_purge_at = max(64, 2 * len(self._tombstones))

    def _purge_tombstones(self) -> None:
        if not self._tombstones:
            return
        now = trio.current_time()
        expired = [key for key, (until, _) in self._tombstones.items() if until <= now]
        for key in expired:
            del self._tombstones[key]

    # ------------------------------------------------------------------ lifetime

    async def _aclose(self) -> None:
        """Stop accepting messages and let every actor shut down (bounded)."""
        if self._closing:
            return
        self._closing = True
        now = trio.current_time()
        self._grace_deadline = now + self._shutdown_grace
        for cell in list(self._registry.values()):
            cell._mailbox.wake()
        if self._registry:
            self._all_stopped = trio.Event()
            with trio.move_on_at(now + self._shutdown_timeout):
                await self._all_stopped.wait()
        self._tombstones.clear()


@asynccontextmanager
async def open_actor_system(
    factory: Callable[[Hashable], Actor[M, R]],
    *,
    mailbox_size: int = 64,
    idle_timeout: float = 60.0,
    send_timeout: float = 1.0,
    max_actors: int | None = None,
    max_restarts: int = 3,
    restart_window: float = 10.0,
    stopped_backoff: float | None = None,
    shutdown_grace: float = 5.0,
    shutdown_timeout: float = 15.0,
    timer_resolution: float = 0.001,
    name: str = "actors",
) -> AsyncIterator[ActorSystem[M, R]]:
    """Open an actor system; actors are created on demand by ``factory(key)``.

    Args:
      factory: builds the behaviour for a key (load state in ``on_start``).
      mailbox_size: capacity of each actor's mailbox (>= 1).
      idle_timeout: passivate an actor after this long with no message and no
        running child task (``math.inf`` to never passivate for idleness).
      send_timeout: how long ``tell``/``ask`` wait for room in a full mailbox
        before raising :class:`Overloaded`.
      max_actors: cap on live actors; least-recently-used idle ones are evicted
        (passivated). If none is idle, activations proceed over the cap.
      max_restarts, restart_window: an actor that crashes more than
        ``max_restarts`` times within ``restart_window`` seconds is stopped.
      stopped_backoff: how long a stopped actor's key refuses messages with
        :class:`ActorStopped` (default: ``restart_window``).
      shutdown_grace: on exit, how long child tasks may keep running before
        they are cancelled.
      shutdown_timeout: on exit, after this long everything still running
        (handlers, ``on_stop``) is cancelled; shutdown never takes longer.
      timer_resolution: deadlines (idle checks, timers, ask and send timeouts)
        closer together than this are served by one wake-up of the system's
        scheduler task, so one may fire up to this late. Batching them makes
        activation/passivation churn much cheaper.
      name: used in logs and statistics.

    Leaving the block stops accepting messages (:class:`SystemStopped`), lets each
    actor finish its current message, fails queued asks with
    :class:`SystemStopped`, drops queued tells, waits for child tasks up to
    ``shutdown_grace``, runs ``on_stop`` and returns. This also happens when the
    block is left by an exception or cancellation (shielded, bounded by
    ``shutdown_timeout``).
    """
    if mailbox_size < 1:
        raise ValueError("mailbox_size must be >= 1")
    if not idle_timeout > 0:
        raise ValueError("idle_timeout must be > 0")
    if not send_timeout >= 0:
        raise ValueError("send_timeout must be >= 0")
    if max_actors is not None and max_actors < 1:
        raise ValueError("max_actors must be >= 1 or None")
    if max_restarts < 0 or not restart_window > 0:
        raise ValueError("max_restarts must be >= 0 and restart_window > 0")
    if stopped_backoff is None:
        stopped_backoff = restart_window
    if not (shutdown_grace >= 0 and shutdown_timeout >= 0 and timer_resolution >= 0):
        raise ValueError("shutdown_grace, shutdown_timeout and timer_resolution must be >= 0")
    try:
        async with trio.open_nursery() as outer:
            # Actors live in a shielded nursery so that a cancellation of the
            # caller does not kill them mid-message: shutdown stays graceful
            # (and bounded), and ends by cancelling `host_scope` itself.
            nursery, host_scope = await outer.start(_host, name=f"actors.host[{name}]")
            system: ActorSystem[M, R] = ActorSystem(
                name,
                factory,
                nursery,
                mailbox_size,
                idle_timeout,
                send_timeout,
                max_actors,
                max_restarts,
                restart_window,
                stopped_backoff,
                shutdown_grace,
                shutdown_timeout,
                registry=OrderedDict() if max_actors is not None else {},
                scheduler=Scheduler(timer_resolution),
            )
            nursery.start_soon(system._scheduler.run, name=f"actors.scheduler[{name}]")
            try:
                yield system
            finally:
                with trio.CancelScope(shield=True):
                    await system._aclose()
                host_scope.cancel()
    except BaseExceptionGroup as group:
        # Our own tasks never raise, so a group holds what the body raised: unwrap it
        # so callers see their own exception, as with any other context manager.
        if len(group.exceptions) == 1:
            _reraise(group.exceptions[0])
        raise


async def _host(
    *,
    task_status: trio.TaskStatus[tuple[trio.Nursery, trio.CancelScope]] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.CancelScope(shield=True) as scope:
        async with trio.open_nursery() as nursery:
            task_status.started((nursery, scope))
            await trio.sleep_forever()


def _reraise(exc: BaseException) -> NoReturn:
    context, cause, suppress = exc.__context__, exc.__cause__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__context__, exc.__cause__, exc.__suppress_context__ = context, cause, suppress
        del exc
