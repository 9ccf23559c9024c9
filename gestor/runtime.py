"""The composition root: everything one worker process runs, opened and closed in order.

store (+ migrations) → alarm hub → platform clients → catalogue and rules → notifications
outbox → subscriber actors → purchase service. `open_runtime` is entered by the app's
lifespan, by tests and by the bench.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import attrs
import trio

from gestor.alarms import AlarmHub, AnnouncerLock, Webhooks, open_webhooks, raise_database_alarms
from gestor.catalogue import Catalogue
from gestor.model import NewAlarm, Severity
from gestor.notify import Deliverer, open_notifier
from gestor.platforms import PlatformRejected, Platforms, PlatformSettings, open_platforms
from gestor.purchase import (
    ProfileCache,
    PurchaseDeps,
    PurchaseService,
    Recoverer,
    open_purchase_service,
)
from gestor.reports import ReportFolder
from gestor.rulebook import RuleBook
from gestor.settings import Settings
from gestor.store import Store, open_store

logger = logging.getLogger("gestor")


@attrs.frozen
class Runtime:
    settings: Settings
    store: Store
    alarms: AlarmHub
    platforms: Platforms
    rulebook: RuleBook
    purchases: PurchaseService
    recoverer: Recoverer
    webhooks: Webhooks
    report_folder: ReportFolder
    #: The notifications outbox's deliverer (e-mail to operators, SMS to subscribers).
    notifier: Deliverer | None = None

    @property
    def catalogue(self) -> Catalogue:
        """The active catalogue version (it changes on activation: read it once per use)."""
        return self.rulebook.catalogue


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, database_url: str, platforms_url: str
                       ) -> AsyncIterator[Runtime]:
    try:  # only read again to seed a database without a catalogue (`gestor serve` checks it)
        seed_catalogue = settings.catalogue_path.read_text(encoding="utf-8")
    except OSError:
        seed_catalogue = ""
    seed_rules = settings.rules_path.read_text(encoding="utf-8")
    tz = ZoneInfo(settings.timezone)
    async with open_store(database_url, pool_size=settings.pool_size) as store, \
            open_webhooks(settings.webhooks) as webhooks, trio.open_nursery() as nursery:
        alarms = AlarmHub(store, sinks=[lambda alarm: webhooks.send_nowait(alarm.as_dict())])
        await nursery.start(alarms.run)
        announcer = AnnouncerLock(settings.data_dir / "alarms.announcer.lock")
        await nursery.start(raise_database_alarms, alarms, store.health, announcer)
        rulebook = RuleBook(store, settings.timezone)
        await rulebook.load(seed_rules, seed_catalogue)
        await nursery.start(rulebook.run)
        # the movements' report facts into the hourly rollups (the workers take turns)
        folder = ReportFolder(store.reports, settings.report_fold_interval)
        await nursery.start(folder.run)

        async def on_circuit_change(platform: str, opened: bool) -> None:
            if opened:
                alarm = NewAlarm("platform_down", Severity.CRITICAL,
                                 f"{platform} is failing: circuit opened, purchases fail fast",
                                 details={"platform": platform})
            else:
                alarm = NewAlarm("platform_recovered", Severity.INFO,
                                 f"{platform} answers again: circuit closed",
                                 details={"platform": platform})
            await alarms.raise_alarm(alarm)
            if not opened:
                await alarms.resolve("platform_down", platform,
                                     f"{platform} answers again: circuit closed",
                                     details={"platform": platform})

        platform_settings = PlatformSettings.from_mapping(
            {**settings.platforms, "url": platforms_url}
        )
        async def language_of(msisdn: str) -> str | None:
            try:
                return (await platforms.subscriber(msisdn)).language
            except PlatformRejected as exc:
                if exc.status == 404:
                    return None
                raise

        def bono_name(bono_id: str) -> str | None:
            bono = rulebook.catalogue.get(bono_id)
            return bono.name if bono is not None else None

        async with open_platforms(platform_settings,
                                  on_circuit_change=on_circuit_change) as platforms, \
                open_notifier(store, settings.notifications, platforms_url=platforms_url,
                              language_of=language_of, bono_name=bono_name) as notifier:
            deps = PurchaseDeps(
                store=store, platforms=platforms, rulebook=rulebook, alarms=alarms,
                profiles=ProfileCache(platforms, settings.profile_cache_ttl),
                tz=tz,
            )
            async with open_purchase_service(
                deps, mailbox_size=settings.mailbox_size, idle_timeout=settings.idle_timeout,
                send_timeout=settings.send_timeout, max_in_flight=settings.max_in_flight,
                max_accepting=settings.max_accepting, accept_timeout=settings.accept_timeout,
            ) as service, trio.open_nursery() as recovery:
                recoverer = Recoverer(deps, interval=settings.recovery_interval,
                                      stale_after=settings.stale_after,
                                      stuck_after=settings.stuck_after,
                                      live=service.in_flight)
                await recovery.start(recoverer.run)
                yield Runtime(settings, store, alarms, platforms, rulebook, service, recoverer,
                              webhooks, folder, notifier)
                recovery.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
