"""Delivering top-up notifications to Gestor, as a real recharge platform would: at least once.

Each top-up made while ``topup_notify_url`` is configured is ``POST``ed there as
``{"msisdn", "amount", "reference"}`` with ``Idempotency-Key: <reference>`` (and
``Authorization: Bearer <key>`` when a key is configured), retried with jittered exponential
backoff until an answer ends it: a 2xx (delivered) or a 4xx other than 408, 425 and 429
(rejected). Every attempt's outcome is recorded on the top-up (and journaled), so a pending
notification is taken up again after a restart. The key is never logged.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
from collections.abc import Mapping

import attrs
import msgspec
import trio

from ._config import SimulatorConfig
from ._outbound import OutboundError, post_json
from ._simulator import Simulator
from ._topups import NOTICE_PENDING, TopupRecord

__all__ = ["KEY_ENV", "NotifySettings", "TopupNotifier"]

#: The environment variable read for the key when ``topup_notify_key`` is not configured.
KEY_ENV = "GESTOR_SIMULATOR_TOPUP_KEY"

_log = logging.getLogger("gestor.simulator.notifier")


@attrs.frozen(kw_only=True)
class NotifySettings:
    url: str
    key: str | None = attrs.field(default=None, repr=False)
    timeout: float = 10.0
    backoff: float = 0.5
    backoff_max: float = 60.0

    @classmethod
    def from_config(
        cls, config: SimulatorConfig, environ: Mapping[str, str] | None = None
    ) -> NotifySettings | None:
        """The settings of ``config``, or None when it does not notify top-ups."""
        if config.topup_notify_url is None:
            return None
        env = os.environ if environ is None else environ
        return cls(
            url=config.topup_notify_url,
            key=config.topup_notify_key or env.get(KEY_ENV) or None,
            timeout=config.topup_notify_timeout,
            backoff=config.topup_notify_backoff,
            backoff_max=config.topup_notify_backoff_max,
        )


class _Notice(msgspec.Struct):
    msisdn: str
    amount: int
    reference: str


def notice_body(topup: TopupRecord) -> bytes:
    return msgspec.json.encode(_Notice(topup.msisdn, topup.amount, topup.reference))


@attrs.define(eq=False)
class TopupNotifier:
    """Delivers the pending notifications of one :class:`Simulator` while :meth:`run` runs."""

    simulator: Simulator
    settings: NotifySettings
    max_concurrent: int = 16
    ssl_context: ssl.SSLContext | None = None
    _wake: trio.Event = attrs.field(factory=trio.Event)
    _delivering: set[str] = attrs.field(factory=set)

    def wake(self) -> None:
        """Look for pending notifications again (a top-up was made)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver every pending notification (those left by a previous run first) and each
        new one, until cancelled. An attempt cut by the cancellation stays pending."""
        self.simulator.on_notice_pending = self.wake
        limiter = trio.CapacityLimiter(self.max_concurrent)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    self._wake = trio.Event()
                    for topup in self.simulator.pending_topups():
                        if topup.reference not in self._delivering:
                            self._delivering.add(topup.reference)
                            nursery.start_soon(self._deliver, topup, limiter)
                    await self._wake.wait()
        finally:
            self.simulator.on_notice_pending = None

    async def _deliver(self, topup: TopupRecord, limiter: trio.CapacityLimiter) -> None:
        settings = self.settings
        body = notice_body(topup)
        headers = [("idempotency-key", topup.reference)]
        if settings.key:
            headers.append(("authorization", f"Bearer {settings.key}"))
        reference = topup.reference
        tried = 0  # by this run: one left pending by a previous run is tried again at once
        try:
            while True:
                if tried:
                    delay = min(settings.backoff_max, settings.backoff * 2 ** (tried - 1))
                    await trio.sleep(delay * random.uniform(0.5, 1.0))
                tried += 1
                status: int | None = None
                error: str | None = None
                async with limiter:
                    with trio.move_on_after(settings.timeout) as scope:
                        try:
                            status = await post_json(
                                settings.url, body, headers, ssl_context=self.ssl_context
                            )
                        except OutboundError as exc:
                            error = str(exc)
                    if scope.cancelled_caught:
                        error = f"no answer within {settings.timeout}s"
                updated = self.simulator.notice_attempted(topup, status, error)
                if updated is None:  # forgotten by a reset (maybe made again since): look again
                    self.wake()
                    return
                topup = updated
                outcome = topup.notification.status
                if outcome != NOTICE_PENDING:
                    log = _log.info if status is not None and status < 300 else _log.warning
                    log("top-up %s: notification %s (%s) after %d attempt(s)", reference,
                        outcome, status, topup.notification.attempts)
                    return
                _log.warning("top-up %s: notification attempt %d to %s failed (%s); retrying",
                             reference, topup.notification.attempts, settings.url,
                             status if error is None else error)
        finally:
            self._delivering.discard(reference)
