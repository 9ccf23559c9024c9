"""Lean per-actor mailbox and one-shot ask replies, built on trio.lowlevel parking.

A :class:`Mailbox` is a bounded FIFO with at most one receiver (the actor's task).
It allocates its buffer only while messages are queued and hands a message
straight to a parked receiver, so an idle mailbox costs one small object.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import attrs
import outcome
import trio
from trio.lowlevel import (
    Abort,
    RaiseCancelT,
    Task,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

if TYPE_CHECKING:
    from ._scheduler import Scheduler

__all__ = ["EMPTY", "TIMED_OUT", "WAKE", "Counters", "Mailbox", "PendingAsk"]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Returned by :meth:`Mailbox.get_nowait` when nothing is queued.
EMPTY: Final = _Sentinel("EMPTY")
#: Delivered to a parked receiver by :meth:`Mailbox.wake`.
WAKE: Final = _Sentinel("WAKE")


@attrs.define(eq=False, weakref_slot=False)
class Counters:
    """System-wide counters, shared by the system, its actors and their mailboxes."""

    activations: int = 0
    passivations: int = 0
    evictions: int = 0
    restarts: int = 0
    crashes: int = 0
    stopped_actors: int = 0
    messages: int = 0
    timer_ticks: int = 0
    queued: int = 0
    waiting_senders: int = 0
    overload_rejections: int = 0
    ask_timeouts: int = 0
    dropped_messages: int = 0
    running_tasks: int = 0
    child_task_errors: int = 0
    active_timers: int = 0


@attrs.define(eq=False, weakref_slot=False)
class _Sender:
    """A task blocked in :meth:`Mailbox.put`; also the scheduler target of its
    deadline (cheaper than a cancel scope)."""

    mailbox: Mailbox
    item: object
    task: Task
    waiting: bool = True

    def _deadline_stale(self) -> bool:
        return not self.waiting

    def _on_deadline(self, now: float) -> None:
        self.mailbox._withdraw(self)
        reschedule(self.task, outcome.Value(False))


@attrs.define(eq=False, weakref_slot=False)
class Mailbox:
    """Bounded FIFO with a single receiver.

    Nothing here checkpoints except the parking methods; callers add checkpoints
    where trio's conventions require them.
    """

    capacity: int
    counters: Counters
    _buffer: deque[object] | None = None
    _receiver: Task | None = None
    _senders: OrderedDict[_Sender, None] | None = None

    @property
    def depth(self) -> int:
        """Messages in the buffer (not counting those held by waiting senders)."""
        return 0 if self._buffer is None else len(self._buffer)

    @property
    def waiting_senders(self) -> int:
        return 0 if self._senders is None else len(self._senders)

    @property
    def parked(self) -> bool:
        """True if the receiver is blocked in :meth:`get` (so the buffer is empty)."""
        return self._receiver is not None

    def put_nowait(self, item: object) -> bool:
        """Queue *item*; return False (and do nothing) if the mailbox is full."""
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            reschedule(receiver, outcome.Value(item))
            return True
        buffer = self._buffer
        if buffer is None:
            self._buffer = buffer = deque()
        elif len(buffer) >= self.capacity:
            return False
        buffer.append(item)
        self.counters.queued += 1
        return True

    async def put(
        self, item: object, deadline: float = math.inf, scheduler: Scheduler | None = None
    ) -> bool:
        """Queue *item*, blocking while the mailbox is full, until *deadline* (served
        by *scheduler*); return False if the deadline passed first. Not a
        checkpoint if there is room at once. Cancellation withdraws the item."""
        if self.put_nowait(item):
            return True
        timed = scheduler is not None and deadline != math.inf
        if timed and deadline <= trio.current_time():
            return False
        senders = self._senders
        if senders is None:
            self._senders = senders = OrderedDict()
        sender = _Sender(self, item, current_task())
        senders[sender] = None
        self.counters.waiting_senders += 1
        if timed:
            assert scheduler is not None
            scheduler.schedule_ask(deadline, sender)

        def abort(_: RaiseCancelT) -> Abort:
            self._withdraw(sender)
            return Abort.SUCCEEDED

        try:
            accepted: bool = await wait_task_rescheduled(abort)
        except BaseException:
            if timed:
                assert scheduler is not None
                scheduler.note_ask_stale()
            raise
        if accepted and timed:
            assert scheduler is not None
            scheduler.note_ask_stale()
        return accepted

    def _withdraw(self, sender: _Sender) -> None:
        assert self._senders is not None
        del self._senders[sender]
        sender.waiting = False
        self.counters.waiting_senders -= 1

    def get_nowait(self) -> object:
        """Dequeue the oldest item, or return :data:`EMPTY`."""
        buffer = self._buffer
        if not buffer:
            return EMPTY
        item = buffer.popleft()
        senders = self._senders
        if senders:
            sender = senders.popitem(last=False)[0]
            sender.waiting = False
            buffer.append(sender.item)
            sender.item = None
            self.counters.waiting_senders -= 1
            reschedule(sender.task, outcome.Value(True))
        else:
            self.counters.queued -= 1
            if not buffer:
                self._buffer = None
        return item

    async def get(self) -> object:
        """Block until an item arrives (or :meth:`wake` is called, returning
        :data:`WAKE`). Only call when :meth:`get_nowait` returned :data:`EMPTY`."""
        return await wait_task_rescheduled(self.prepare_get())

    def prepare_get(self) -> Callable[[RaiseCancelT], Abort]:
        """Register the current task as the parked receiver; the caller must then
        ``await trio.lowlevel.wait_task_rescheduled(<the returned abort function>)``."""
        assert self._receiver is None
        self._receiver = current_task()
        return self._abort_get

    def _abort_get(self, _: RaiseCancelT) -> Abort:
        self._receiver = None
        return Abort.SUCCEEDED

    def wake(self) -> bool:
        """Make a parked :meth:`get` return :data:`WAKE`; False if not parked."""
        receiver = self._receiver
        if receiver is None:
            return False
        self._receiver = None
        reschedule(receiver, outcome.Value(WAKE))
        return True


_PENDING: Final = 0
_OK: Final = 1
_FAILED: Final = 2
_ABANDONED: Final = 3
_TIMED_OUT: Final = 4

#: Returned by :meth:`PendingAsk.wait` when the ask's deadline passed first.
TIMED_OUT: Final = _Sentinel("TIMED_OUT")


@attrs.define(eq=False, weakref_slot=False)
class PendingAsk:
    """An ``ask`` in flight: the message, a one-shot slot for its reply, and (as a
    scheduler target) its timeout."""

    message: object
    _state: int = _PENDING
    _result: object = None
    _task: Task | None = None

    @property
    def pending(self) -> bool:
        return self._state == _PENDING

    def set_result(self, value: object) -> None:
        """Deliver the reply; ignored if already answered, timed out or abandoned."""
        if self._state != _PENDING:
            return
        self._state = _OK
        self._result = value
        self._wake()

    def set_error(self, error: BaseException) -> None:
        """Fail the ask; ignored if already answered, timed out or abandoned."""
        if self._state != _PENDING:
            return
        self._state = _FAILED
        self._result = error
        self._wake()

    def _wake(self) -> None:
        task = self._task
        if task is not None:
            self._task = None
            reschedule(task, outcome.Value(None))

    # -- scheduler target: the ask's timeout

    def _deadline_stale(self) -> bool:
        return self._state != _PENDING

    def _on_deadline(self, now: float) -> None:
        self._state = _TIMED_OUT
        self._wake()

    async def wait(self) -> object:
        """Wait for the reply; return it, raise the error, or return
        :data:`TIMED_OUT`. If cancelled, the ask is abandoned and a late reply is
        discarded."""
        if self._state == _PENDING:
            self._task = current_task()

            def abort(_: RaiseCancelT) -> Abort:
                self._task = None
                self._state = _ABANDONED
                return Abort.SUCCEEDED

            await wait_task_rescheduled(abort)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        state = self._state
        if state == _TIMED_OUT:
            return TIMED_OUT  # the message may still be queued: keep it
        # Answered: drop references, the scheduler may hold this object a while.
        result, self._result, self.message = self._result, None, None
        if state == _OK:
            return result
        assert isinstance(result, BaseException)
        raise result
