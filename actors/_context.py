"""The per-actor runtime record (:class:`ActorContext`) and the actor's lifecycle.

One :class:`ActorContext` exists per live key. It owns the mailbox, the behaviour,
timers and child-task bookkeeping, and its :meth:`ActorContext._run` method is the
actor's only task: activation, the one-message-at-a-time loop, restarts,
passivation and shutdown all happen there, in sequence.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, Final, TypeVarTuple

import attrs
import trio
from trio.lowlevel import wait_task_rescheduled

from ._errors import ActorCrashed, ActorStopped, SystemStopped
from ._mailbox import EMPTY, WAKE, Mailbox, PendingAsk
from ._stats import ActorStatistics

if TYPE_CHECKING:
    from ._actor import Actor
    from ._system import ActorSystem

__all__ = ["ActorContext"]

logger = logging.getLogger("actors")

PosArgsT = TypeVarTuple("PosArgsT")

_STARTING: Final = 0
_RUNNING: Final = 1
_STOPPING: Final = 2
_DEAD: Final = 3
_STATE_NAMES: Final = ("starting", "running", "stopping", "dead")

# Why _serve() returned.
_SHUTDOWN: Final = 0
_PASSIVATE: Final = 1
_CRASHED: Final = 2


@attrs.define(eq=False, weakref_slot=False)
class _Timer:
    """A named timer of one actor; the object itself travels through the mailbox
    as the tick, so a tick of a cancelled timer is recognised and skipped."""

    cell: ActorContext
    name: Hashable
    message: object
    repeat: float | None
    deadline: float = 0.0
    scheduled: bool = False  # has an entry in the scheduler heap
    queued: bool = False  # a tick is in (or on its way to) the mailbox
    cancelled: bool = False

    def arm(self, deadline: float) -> None:
        self.deadline = deadline
        self.scheduled = True
        self.cell.system._scheduler.schedule(deadline, self)

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        system = self.cell.system
        system._counters.active_timers -= 1
        if self.scheduled:
            system._scheduler.note_stale()

    def _deadline_stale(self) -> bool:
        return self.cancelled

    def _on_deadline(self, now: float) -> None:
        self.scheduled = False
        cell = self.cell
        if not self.queued:  # a repeating timer never has more than one tick queued
            self.queued = True
            if not cell._mailbox.put_nowait(self):  # full: wait for room elsewhere
                cell.system._nursery.start_soon(self._deliver, name="actors.timer-delivery")
        if self.repeat is not None:
            deadline = self.deadline + self.repeat
            self.arm(deadline if deadline > now else now + self.repeat)

    async def _deliver(self) -> None:
        # Cancelled timers belong to actors that may have left: never touch their
        # mailbox. (No checkpoint between this check and the enqueue/park; a
        # parked tick is absorbed if the actor leaves meanwhile.)
        if not self.cancelled:
            await self.cell._mailbox.put(self)


@attrs.define(eq=False, weakref_slot=False, repr=False)
class ActorContext:
    """What a behaviour sees of its actor; passed to ``on_start``, ``handle`` and
    ``on_stop``.

    Public attributes: :attr:`key` and :attr:`system`. Everything else is private
    runtime state (this object is also the actor's registry entry).
    """

    #: The actor's key.
    key: Hashable
    #: The :class:`~actors.ActorSystem` hosting the actor.
    system: ActorSystem[Any, Any]
    _mailbox: Mailbox
    _behaviour: Actor[Any, Any] | None = None
    _state: int = _STARTING
    _messages: int = 0
    _restarts: int = 0
    _last_activity: float = 0.0
    _stop_requested: bool = False
    _evicting: bool = False
    _crash_times: deque[float] | None = None
    _children: set[trio.CancelScope] | None = None
    _children_done: trio.Event | None = None
    _timers: dict[Hashable, _Timer] | None = None

    def __repr__(self) -> str:
        return f"<ActorContext key={self.key!r} state={_STATE_NAMES[self._state]}>"

    # ------------------------------------------------------------------ public API

    def start_soon(
        self,
        async_fn: Callable[[*PosArgsT], Awaitable[object]],
        *args: *PosArgsT,
        name: object = None,
    ) -> None:
        """Run ``async_fn(*args)`` as a child task owned by this actor.

        The actor is not passivated while child tasks run. An exception in a child
        is logged with the key and otherwise ignored. Child tasks are cancelled
        when the actor restarts after a crash, on ``stop()``, and at system
        shutdown once the grace period is over. To report back, a child can
        ``await ctx.system.tell(ctx.key, message)``.
        """
        self._check_usable("start_soon")
        scope = trio.CancelScope()
        children = self._children
        if children is None:
            self._children = children = set()
        children.add(scope)
        self.system._counters.running_tasks += 1
        self.system._nursery.start_soon(
            self._run_child, scope, async_fn, args, name=async_fn if name is None else name
        )

    def start_timer(
        self, name: Hashable, delay: float, message: object, *, repeat: float | None = None
    ) -> None:
        """Deliver *message* to this actor's mailbox after *delay* seconds, then
        every *repeat* seconds if given. Replaces a timer with the same name.

        Ticks are ordinary messages but do not count as activity: a timer does not
        keep an idle actor alive. Timers are cancelled on passivation and restart.
        A repeating timer never queues a second tick before the first is handled.
        """
        self._check_usable("start_timer")
        if not delay >= 0:
            raise ValueError(f"delay must be >= 0, not {delay!r}")
        if repeat is not None and not repeat > 0:
            raise ValueError(f"repeat must be > 0, not {repeat!r}")
        timers = self._timers
        if timers is None:
            self._timers = timers = {}
        old = timers.pop(name, None)
        if old is not None:
            old.cancel()
        timer = _Timer(self, name, message, repeat)
        timers[name] = timer
        self.system._counters.active_timers += 1
        timer.arm(trio.current_time() + delay)

    def cancel_timer(self, name: Hashable) -> bool:
        """Cancel a timer (and any tick of it not yet handled); False if unknown."""
        timers = self._timers
        timer = None if timers is None else timers.pop(name, None)
        if timer is None:
            return False
        timer.cancel()
        return True

    def stop(self) -> None:
        """Passivate after the current message (when called from ``on_start``:
        after the first message, if one is queued): child tasks and timers are
        cancelled, ``on_stop`` runs, and the actor leaves memory. Messages queued
        meanwhile are handled by the next activation."""
        self._stop_requested = True
        self._mailbox.wake()  # in case a child task calls this while the actor waits

    def statistics(self) -> ActorStatistics:
        """A snapshot of this actor (also available as ``system.actor_statistics``)."""
        mailbox = self._mailbox
        idle = self._state == _RUNNING and mailbox.parked and self._children is None
        return ActorStatistics(
            key=self.key,
            state=_STATE_NAMES[self._state],
            mailbox_depth=mailbox.depth,
            waiting_senders=mailbox.waiting_senders,
            messages=self._messages,
            restarts=self._restarts,
            running_tasks=0 if self._children is None else len(self._children),
            timers=0 if self._timers is None else len(self._timers),
            idle_since=self._last_activity if idle else None,
        )

    # ------------------------------------------------------------------ helpers

    def _check_usable(self, what: str) -> None:
        if self._state not in (_STARTING, _RUNNING):
            raise RuntimeError(
                f"{what}() on actor {self.key!r} that is {_STATE_NAMES[self._state]}"
            )

    def _is_dead(self) -> bool:
        return self._state == _DEAD

    def _evictable(self) -> bool:
        return (
            self._state == _RUNNING
            and not self._evicting
            and not self._stop_requested
            and self._children is None
            and self._mailbox.parked
        )

    def _set_evicting(self, value: bool) -> None:
        if self._evicting != value:
            self._evicting = value
            self.system._evicting += 1 if value else -1

    def _idle_due(self, now: float) -> bool:
        return self._children is None and self._last_activity + self.system._idle_timeout <= now

    # -- scheduler target: the idle check (one entry per live actor)

    def _deadline_stale(self) -> bool:
        return self._state == _DEAD

    def _on_deadline(self, now: float) -> None:
        idle_timeout = self.system._idle_timeout
        due = self._last_activity + idle_timeout
        if due <= now and self._children is None and self._mailbox.parked:
            self._mailbox.wake()  # the actor re-checks and passivates
            due = now + idle_timeout  # in case a message races in
        elif due <= now:
            due = now + idle_timeout  # busy: look again later
        self.system._scheduler.schedule(due, self)

    async def _run_child(
        self,
        scope: trio.CancelScope,
        async_fn: Callable[[*PosArgsT], Awaitable[object]],
        args: tuple[*PosArgsT],
    ) -> None:
        system = self.system
        try:
            with scope:
                await async_fn(*args)
        except SystemStopped:
            logger.debug("%s: child task of actor %r stopped by shutdown", system.name, self.key)
        except Exception:
            system._counters.child_task_errors += 1
            logger.exception("%s: child task of actor %r failed", system.name, self.key)
        finally:
            system._counters.running_tasks -= 1
            children = self._children
            assert children is not None
            children.discard(scope)
            if not children:
                self._children = None
                self._last_activity = trio.current_time()
                done = self._children_done
                if done is not None:
                    self._children_done = None
                    done.set()

    def _cancel_timers(self) -> None:
        timers = self._timers
        if timers is not None:
            self._timers = None
            for timer in timers.values():
                timer.cancel()

    async def _stop_children(self, deadline: float) -> None:
        """Wait for child tasks until *deadline*, then cancel them and wait for them."""
        if self._children is None:
            return
        if deadline > trio.current_time():
            done = self._children_done = trio.Event()
            with trio.move_on_at(deadline):
                await done.wait()
        children = self._children
        if children is not None:
            for scope in children:
                scope.cancel()
            done = self._children_done = trio.Event()
            await done.wait()

    def _drain(self, make_error: Callable[[], BaseException]) -> None:
        """Empty the mailbox (absorbing blocked senders): asks fail with
        ``make_error()``, told messages are dropped and counted, ticks vanish."""
        mailbox = self._mailbox
        counters = self.system._counters
        while True:
            item = mailbox.get_nowait()
            if item is EMPTY:
                return
            if type(item) is PendingAsk:
                item.set_error(make_error())
            elif type(item) is not _Timer:
                counters.dropped_messages += 1

    def _note_crash(self, error: BaseException, doing: str) -> None:
        system = self.system
        system._counters.crashes += 1
        logger.error("%s: actor %r crashed %s", system.name, self.key, doing, exc_info=error)
        now = trio.current_time()
        times = self._crash_times
        if times is None:
            self._crash_times = times = deque()
        times.append(now)

    def _restart_allowed(self) -> bool:
        """At most ``max_restarts`` crashes within the last ``restart_window`` seconds."""
        times = self._crash_times
        if times is None:
            return True
        cutoff = trio.current_time() - self.system._restart_window
        while times and times[0] <= cutoff:
            times.popleft()
        return len(times) <= self.system._max_restarts

    def _die(self) -> None:
        """Leave memory. Synchronous, so no message can slip in unseen."""
        system = self.system
        self._state = _DEAD
        self._behaviour = None
        self._set_evicting(False)
        self._cancel_timers()
        if self._children is not None:  # only after a hard cancellation
            for scope in self._children:
                scope.cancel()
        self._drain(lambda: SystemStopped(system.name))
        system._unregister(self)

    # ------------------------------------------------------------------ lifecycle

    async def _run(self) -> None:
        """The actor's task: one loop iteration per incarnation (activation or
        restart). Kept in one frame (memory: every live actor has this stack)."""
        system = self.system
        counters = system._counters
        try:
            while True:
                error = await self._start()
                reason = _CRASHED
                if error is None:
                    reason, error = await self._serve()
                if reason == _CRASHED:
                    assert error is not None
                    self._behaviour = None  # discarded without on_stop
                    self._cancel_timers()
                    if not system._closing:
                        await self._stop_children(-math.inf)
                    if system._closing:
                        await self._shutdown(run_on_stop=False)
                        return
                    if not self._restart_allowed():
                        self._give_up(error)
                        return
                    self._restarts += 1
                    counters.restarts += 1
                    continue
                if reason == _SHUTDOWN:
                    await self._shutdown(run_on_stop=True)
                    return
                await self._passivate()
                if system._closing:
                    await self._shutdown(run_on_stop=False)
                    return
                if self._mailbox.depth == 0:
                    self._die()
                    return
                # Messages arrived while on_stop ran: they go to a fresh activation.
                counters.activations += 1
        except Exception:  # pragma: no cover - a bug in the runtime
            logger.exception("%s: internal error in actor %r", system.name, self.key)
        finally:
            if self._state != _DEAD:
                self._die()

    async def _start(self) -> BaseException | None:
        """Build the behaviour and run ``on_start``; return the error if it crashed."""
        self._state = _STARTING
        self._stop_requested = False
        self._last_activity = trio.current_time()
        try:
            behaviour = self.system._factory(self.key)
            self._behaviour = behaviour
            on_start = getattr(behaviour, "on_start", None)
            if on_start is not None:
                await on_start(self)
        except Exception as exc:
            self._note_crash(exc, "starting")
            return exc
        self._state = _RUNNING
        return None

    async def _serve(self) -> tuple[int, BaseException | None]:
        """Handle messages one at a time until told to stop, idle, or crashed."""
        system = self.system
        mailbox = self._mailbox
        # Only a wake-up (from the scheduler) or a timer tick (which does not count
        # as activity) can leave the actor idle for longer than idle_timeout.
        check_idle = False
        handled = False
        while True:
            if system._closing:
                return _SHUTDOWN, None
            # stop() takes effect after a message; one requested by on_start waits
            # for the first message (if any), or a stop/start loop would never
            # make progress.
            if self._stop_requested and (handled or mailbox.depth == 0):
                return _PASSIVATE, None
            item = mailbox.get_nowait()
            checkpoint = True
            if item is EMPTY:
                if self._evicting or (check_idle and self._idle_due(system._now())):
                    return _PASSIVATE, None
                # Park right here rather than in a Mailbox coroutine: one frame
                # less on the stack of every idle actor.
                item = await wait_task_rescheduled(mailbox.prepare_get())
                if item is WAKE:
                    check_idle = True
                    continue
                checkpoint = False  # we just blocked, that was the checkpoint
            if self._evicting:
                self._set_evicting(False)  # used again before it could be evicted
            check_idle = type(item) is _Timer
            handled = True
            error = await self._dispatch(item, checkpoint)
            if error is not None:
                return _CRASHED, error

    async def _dispatch(self, item: object, checkpoint: bool) -> BaseException | None:
        """Handle one mailbox item; return the exception if the behaviour crashed."""
        system = self.system
        counters = system._counters
        ask: PendingAsk | None = None
        tick = False
        message: object
        if type(item) is PendingAsk:
            ask = item
            message = item.message
        elif type(item) is _Timer:
            if item.cancelled:
                return None
            item.queued = False
            if item.repeat is None:  # a one-shot timer is done once its tick is handled
                timers = self._timers
                if timers is not None and timers.get(item.name) is item:
                    del timers[item.name]
                item.cancel()
            message = item.message
            tick = True
        else:
            message = item
        behaviour = self._behaviour
        assert behaviour is not None
        try:
            if checkpoint:
                await trio.lowlevel.checkpoint()  # fairness when the mailbox never empties
            result = await behaviour.handle(self, message)
        except Exception as exc:
            self._note_crash(exc, f"handling {type(message).__name__}")
            if ask is not None:
                ask.set_error(ActorCrashed(self.key, exc))
            return exc
        except BaseException:
            if ask is not None:
                ask.set_error(SystemStopped(system.name))
            raise
        finally:
            self._messages += 1
            counters.messages += 1
            if tick:
                counters.timer_ticks += 1
            else:
                self._last_activity = system._now()
        if ask is not None:
            ask.set_result(result)
        return None

    async def _call_on_stop(self) -> None:
        on_stop = getattr(self._behaviour, "on_stop", None)
        self._behaviour = None
        if on_stop is None:
            return
        try:
            await on_stop(self)
        except Exception:
            logger.exception("%s: on_stop of actor %r failed", self.system.name, self.key)

    async def _passivate(self) -> None:
        counters = self.system._counters
        self._state = _STOPPING
        if self._evicting:
            counters.evictions += 1
            self._set_evicting(False)
        self._cancel_timers()
        await self._stop_children(-math.inf)
        await self._call_on_stop()
        counters.passivations += 1

    async def _shutdown(self, *, run_on_stop: bool) -> None:
        """System shutdown: fail queued asks, give child tasks the grace period,
        run ``on_stop`` (unless the behaviour crashed), leave."""
        system = self.system
        self._state = _STOPPING
        self._set_evicting(False)
        self._drain(lambda: SystemStopped(system.name))
        self._cancel_timers()
        await self._stop_children(system._grace_deadline)
        if run_on_stop and self._behaviour is not None:
            await self._call_on_stop()
        self._die()

    def _give_up(self, error: BaseException) -> None:
        """Too many crashes: refuse the key for a back-off period."""
        system = self.system
        key = self.key
        until = trio.current_time() + system._stopped_backoff
        system._counters.stopped_actors += 1
        logger.error(
            "%s: actor %r crashed more than %d times within %gs; stopped for %gs",
            system.name,
            key,
            system._max_restarts,
            system._restart_window,
            system._stopped_backoff,
        )
        system._add_tombstone(key, until, error)
        self._drain(lambda: ActorStopped(key, error, until))
        self._die()
