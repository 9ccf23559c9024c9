"""The behaviour protocol implemented by user actors, and a convenience base class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from ._context import ActorContext

__all__ = ["Actor", "ActorBase"]

M_contra = TypeVar("M_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
M = TypeVar("M")
R = TypeVar("R")


class Actor(Protocol[M_contra, R_co]):
    """The behaviour of one actor: one instance per live key, built by the factory.

    The runtime calls ``on_start`` once per activation (and again after each
    restart), then ``handle`` for each message, strictly one at a time, then
    ``on_stop`` when the actor is passivated or the system shuts down. ``on_stop``
    is *not* called for a behaviour that crashed: it is discarded and a fresh one
    is built.
    """

    async def on_start(self, ctx: ActorContext) -> None:
        """Load the actor's state. Exceptions count as crashes."""

    async def handle(self, ctx: ActorContext, message: M_contra) -> R_co:
        """Handle one message; the return value answers an ``ask``."""
        ...

    async def on_stop(self, ctx: ActorContext) -> None:
        """Save or release state before the actor leaves memory."""


class ActorBase(Generic[M, R]):
    """Base class with no-op ``on_start``/``on_stop``; subclasses implement ``handle``."""

    __slots__ = ()

    async def on_start(self, ctx: ActorContext) -> None:
        """Do nothing."""

    async def handle(self, ctx: ActorContext, message: M) -> R:
        raise NotImplementedError

    async def on_stop(self, ctx: ActorContext) -> None:
        """Do nothing."""
