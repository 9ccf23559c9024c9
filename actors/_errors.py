"""Exceptions raised by the actor runtime.

All of them derive from :class:`ActorError`, so a caller that does not care about
the precise failure can catch that one class.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = [
    "ActorCrashed",
    "ActorError",
    "ActorStopped",
    "AskTimeout",
    "Overloaded",
    "SystemStopped",
]


class ActorError(Exception):
    """Base class of every exception raised by :mod:`actors`."""


class Overloaded(ActorError):
    """The actor's mailbox stayed full for longer than the sender was willing to wait.

    Attributes:
      key: the actor's key.
      mailbox_size: the capacity of the (full) mailbox.
    """

    def __init__(self, key: Hashable, mailbox_size: int) -> None:
        super().__init__(f"mailbox of actor {key!r} is full ({mailbox_size} messages)")
        self.key = key
        self.mailbox_size = mailbox_size


class AskTimeout(ActorError, TimeoutError):
    """No reply to an :meth:`~actors.ActorSystem.ask` arrived in time.

    The message may still be handled later; its reply is then discarded.

    Attributes:
      key: the actor's key.
      timeout: the timeout that expired, in seconds.
    """

    def __init__(self, key: Hashable, timeout: float) -> None:
        super().__init__(f"no reply from actor {key!r} within {timeout:g}s")
        self.key = key
        self.timeout = timeout


class ActorCrashed(ActorError):
    """The actor raised while handling the message (or while starting).

    The original exception is available as :attr:`error` and as ``__cause__``.

    Attributes:
      key: the actor's key.
      error: the exception raised by the behaviour.
    """

    def __init__(self, key: Hashable, error: BaseException | None) -> None:
        super().__init__(f"actor {key!r} crashed: {error!r}")
        self.key = key
        self.error = error
        self.__cause__ = error


class ActorStopped(ActorCrashed):
    """The actor crashed too often and is stopped for a back-off period.

    Messages that were queued when it gave up, and messages sent to its key until
    :attr:`until` (in :func:`trio.current_time` units), fail with this error.
    Afterwards the key can be activated again.

    Attributes:
      key: the actor's key.
      error: the last exception raised by the behaviour.
      until: when the key may be activated again.
    """

    def __init__(self, key: Hashable, error: BaseException | None, until: float) -> None:
        super().__init__(key, error)
        self.args = (f"actor {key!r} is stopped after repeated crashes (last: {error!r})",)
        self.until = until


class SystemStopped(ActorError):
    """The actor system is shutting down or has shut down."""

    def __init__(self, name: str) -> None:
        super().__init__(f"actor system {name!r} is stopped")
        self.name = name
