"""A domain-free keyed-actor runtime for trio.

One actor (a behaviour object plus a task and a bounded mailbox) per key,
activated on the first message, handling messages one at a time, passivated when
idle, restarted when it crashes. See ``actors/README.md``.
"""

from ._actor import Actor, ActorBase
from ._context import ActorContext
from ._errors import (
    ActorCrashed,
    ActorError,
    ActorStopped,
    AskTimeout,
    Overloaded,
    SystemStopped,
)
from ._stats import ActorStatistics, SystemStatistics
from ._system import ActorSystem, open_actor_system

__all__ = [
    "Actor",
    "ActorBase",
    "ActorContext",
    "ActorCrashed",
    "ActorError",
    "ActorStatistics",
    "ActorStopped",
    "ActorSystem",
    "AskTimeout",
    "Overloaded",
    "SystemStatistics",
    "SystemStopped",
    "open_actor_system",
]
