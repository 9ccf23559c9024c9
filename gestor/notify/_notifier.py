"""`open_notifier`: the notifications of one worker, opened with the runtime: the routes of
`[notifications]` written for the database's triggers, the SMS gateway's client, and the
deliverer's task."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import trio

from gestor.notify._config import NotificationSettings
from gestor.notify._deliverer import Deliverer, LanguageOf
from gestor.notify._email import SmtpSender
from gestor.platforms import open_sms_gateway
from gestor.store import Store

__all__ = ["open_notifier"]


@contextlib.asynccontextmanager
async def open_notifier(store: Store, settings: NotificationSettings, *, platforms_url: str,
                        language_of: LanguageOf,
                        bono_name: Callable[[str], str | None] = lambda _id: None,
                        ) -> AsyncIterator[Deliverer]:
    """Route as `settings` say from now on (every worker of every node writes the same routes
    at start: the last one wins) and deliver the outbox until exit. The SMS gateway is
    `settings.sms.url`, or the platforms' URL (the simulator plays it) when that is empty."""
    await store.replace_notification_routes(settings.route_rows())
    async with open_sms_gateway(settings.sms.url or platforms_url,
                                attempt_timeout=settings.sms.timeout) as gateway, \
            trio.open_nursery() as nursery:
        deliverer = Deliverer(store, settings, SmtpSender(settings.email), gateway,
                              language_of, bono_name)
        await nursery.start(deliverer.run)
        yield deliverer
        nursery.cancel_scope.cancel()
