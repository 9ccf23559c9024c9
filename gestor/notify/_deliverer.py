"""The outbox's delivery task, one per worker: claim due deliveries (`FOR UPDATE SKIP LOCKED`:
the workers of every node share them, each row to one at a time), compose each message, send
it, and record the outcome: `sent`; `pending` again after a backoff; or `failed` once
`max_attempts` attempts have failed (or the channel refused it for good), visible in
`GET /v1/admin/notifications` and logged. A claim counts the attempt before it is made, so a
message whose sending crashes the process is not retried forever either.

A deliverer that dies mid-attempt leaves the row to be claimed again when its lease runs out:
delivery is at least once. The SMS gateway deduplicates by the row's id, so a subscriber gets
one text; an e-mail re-sent so carries the same `Message-ID`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import attrs
import trio

from gestor.metrics import NOTIFICATIONS
from gestor.model import Alarm
from gestor.notify._config import NotificationSettings
from gestor.notify._email import SendFailed, SmtpSender
from gestor.notify._messages import Message, alarm_email, alarm_text, movement_text
from gestor.platforms import SmsGateway, SmsRefused, SmsUnavailable
from gestor.store import Delivery, Store, StoreUnavailable

logger = logging.getLogger("gestor.notify")

#: The subscriber's language from the data warehouse: None if it does not know the line.
LanguageOf = Callable[[str], Awaitable[str | None]]


@attrs.frozen
class DelivererStatistics:
    sent: int
    retried: int
    failed: int
    #: Attempts whose outcome could not be recorded (another attempt had claimed the row).
    superseded: int


@attrs.define
class Deliverer:
    store: Store
    settings: NotificationSettings
    email: SmtpSender
    sms: SmsGateway
    language_of: LanguageOf
    #: A bono's name by id (the active catalogue), for the subscriber's text.
    bono_name: Callable[[str], str | None] = lambda _id: None
    batch: int = 32
    _wakeup: trio.Event = attrs.field(factory=trio.Event)
    _sent: int = 0
    _retried: int = 0
    _failed: int = 0
    _superseded: int = 0
    _outcomes: int = 0
    _recorded: trio.Event = attrs.field(factory=trio.Event)

    @property
    def lease(self) -> float:
        """Seconds a claimed row waits before another attempt may take it."""
        return self.settings.attempt_timeout * 2 + 5

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Deliver what is due, then wait for a NOTIFY, the next due retry or the poll
        interval, until cancelled. What was pending before a restart is delivered at once."""
        await self.store.listen_notifications(self.wake)
        task_status.started()
        while True:
            self._wakeup = trio.Event()
            wait = self.settings.poll_interval
            try:
                await self.deliver_due()
                due = await self.store.next_notification_due()
                if due is not None:
                    wait = min(wait, due)
            except StoreUnavailable:
                pass  # the poll (or the LISTEN's resumption) tries again
            with trio.move_on_after(max(wait, 0.01)):
                await self._wakeup.wait()

    async def deliver_due(self) -> int:
        """Attempt every delivery due now (batch after batch); how many were attempted."""
        attempted = 0
        while True:
            batch = await self.store.claim_notifications(self.batch, self.lease)
            if not batch:
                return attempted
            async with trio.open_nursery() as nursery:
                for delivery in batch:
                    nursery.start_soon(self._attempt, delivery)
            attempted += len(batch)

    async def _attempt(self, delivery: Delivery) -> None:
        language: str | None = delivery.language
        message: Message | None = None
        error: str | None = None
        final = False
        try:
            with trio.fail_after(self.settings.attempt_timeout):
                language, message = await self._compose(delivery)
                await self._send(delivery, message)
        except SendFailed as exc:
            error, final = str(exc), exc.final
        except trio.TooSlowError:
            error = f"no outcome within {self.settings.attempt_timeout:g} s"
        except StoreUnavailable as exc:
            error = f"database unavailable: {exc}"
        except Exception as exc:  # a bug must not stop the outbox: bounded like any failure
            logger.exception("notification %d: attempt failed", delivery.id)
            error = f"{type(exc).__name__}: {exc}"
        await self._record(delivery, language, message, error, final)

    async def _record(self, delivery: Delivery, language: str | None, message: Message | None,
                      error: str | None, final: bool) -> None:
        subject = message.subject if message else None
        body = message.body if message else None
        ids = {"notification_id": delivery.id, "channel": delivery.channel,
               "alarm_id": delivery.alarm_id,
               "transaction_id": str(delivery.transaction_id) if delivery.transaction_id
               else None}
        if error is None:
            state, retry_in = "sent", 0.0
        elif final or delivery.attempts >= self.settings.max_attempts:
            state, retry_in = "failed", 0.0
        else:
            state, retry_in = "pending", self.settings.retry_delay(delivery.attempts)
        try:
            recorded = await self.store.finish_notification(
                delivery.id, delivery.attempts, state, retry_in=retry_in, error=error,
                language=language, subject=subject, body=body)
        except StoreUnavailable:
            # Its lease runs out and it is attempted again (the SMS gateway dedupes by id).
            logger.warning("notification %d: outcome %s not recorded (database unavailable)",
                           delivery.id, state, extra=ids)
            return
        if not recorded:
            self._superseded += 1
            return
        NOTIFICATIONS.inc((delivery.channel, "retry" if state == "pending" else state))
        self._outcomes += 1
        self._recorded.set()
        self._recorded = trio.Event()
        if state == "sent":
            self._sent += 1
            logger.info("notification %d sent by %s (%s, attempt %d)", delivery.id,
                        delivery.channel, delivery.event, delivery.attempts, extra=ids)
        elif state == "pending":
            self._retried += 1
            logger.warning("notification %d by %s: attempt %d failed (%s); next in %.1f s",
                           delivery.id, delivery.channel, delivery.attempts, error, retry_in,
                           extra=ids)
        else:
            self._failed += 1
            logger.error("notification %d by %s failed for good after %d attempts: %s",
                         delivery.id, delivery.channel, delivery.attempts, error, extra=ids)

    async def _compose(self, delivery: Delivery) -> tuple[str | None, Message]:
        if delivery.alarm_id is not None:
            alarm = await self._alarm(delivery.alarm_id)
            if delivery.channel == "email":
                return delivery.language, alarm_email(alarm)
            return delivery.language, alarm_text(alarm)
        if delivery.transaction_id is None:
            raise SendFailed("neither an alarm nor a transaction", final=True)
        tx = await self.store.get(delivery.transaction_id)
        if tx is None:
            raise SendFailed(f"no transaction {delivery.transaction_id}", final=True)
        language = delivery.language
        if language is None:
            try:
                language = await self.language_of(delivery.recipient)
            except Exception as exc:  # the platform's errors: try again later
                raise SendFailed(f"the subscriber's language: {exc}") from None
        sms = self.settings.sms
        if language not in sms.templates.get(delivery.event, {}):
            language = sms.default_language
        assert language is not None
        name = self.bono_name(tx.bono_id) if tx.bono_id else None
        return language, movement_text(tx, delivery.event, language, sms.templates, name)

    async def _alarm(self, alarm_id: int) -> Alarm:
        found = await self.store.list_alarms(alarm_id - 1, 1)
        if not found or found[0].id != alarm_id:
            raise SendFailed(f"no alarm {alarm_id}", final=True)
        return found[0]

    async def _send(self, delivery: Delivery, message: Message) -> None:
        if delivery.channel == "email":
            await self.email.send(delivery.recipient, message,
                                  f"gestor-notification-{delivery.id}")
        elif delivery.channel == "sms":
            try:
                await self.sms.send(delivery.recipient, message.body,
                                    f"gestor-notification-{delivery.id}")
            except SmsRefused as exc:
                raise SendFailed(str(exc), final=True) from None
            except SmsUnavailable as exc:
                raise SendFailed(str(exc)) from None
        else:
            raise SendFailed(f"no sender for channel {delivery.channel!r}", final=True)

    async def wait_outcomes(self, count: int) -> None:
        """Until this deliverer has recorded `count` outcomes (sent, retry or failed) since it
        started: for tests and embedders that must not poll."""
        while self._outcomes < count:
            await self._recorded.wait()

    def statistics(self) -> DelivererStatistics:
        return DelivererStatistics(self._sent, self._retried, self._failed, self._superseded)
