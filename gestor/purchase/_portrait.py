"""A subscriber through the profiler (`portrait`): what the platforms say of the line now, the
profile the active rules assign it, the history and restrictions its next movement's rules
would read, what its advances owe, its movement in flight, its recent movements and its peak
hours. Read only: it asks the platforms as a purchase does (without the purchase's profile
cache: an operator looking at a subscriber wants the platforms' answer of the moment) and the
database as a listing does; nothing is written.

`profile_of` is the pure core (sources in, profile out); `portrait` the I/O around it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs
import trio

from gestor.model import PENDING_STATES, Transaction
from gestor.platforms import (
    Account,
    CustomerData,
    PlatformError,
    PlatformRejected,
    Profile,
)
from gestor.purchase._deps import PurchaseDeps, SubscriberView, history_of
from gestor.rules import CompiledRules, PurchaseContext
from gestor.store import Restriction

#: How many recent movements a portrait lists.
RECENT = 20
#: The period of a subscriber's peak hours, up to now.
PEAK_DAYS = 90
#: The platforms a profile is made of, in the order the rules' customer fields merge them.
SOURCES = ("dwh", "ocs")
_PENDING = sorted(s.value for s in PENDING_STATES)


@attrs.frozen
class SourceAnswer:
    """What one platform said of the line: its record as a dict, or None and why not."""

    name: str
    data: Mapping[str, Any] | None
    note: str | None = None


@attrs.frozen
class ProfileView:
    """The profile as the active rules assign it now (`profile_id` None when a source the
    rules need did not answer: `notes` say which and why)."""

    profile_id: str | None
    #: The data warehouse's segment of the line (prepaid, postpaid, vip, corporate).
    category: str | None
    rule_id: str | None
    attributes: Mapping[str, Any]
    rules_version: int
    channel: str
    sources: Mapping[str, Mapping[str, Any] | None]
    #: The customer fields the rules see (both sources merged), None unless both answered.
    customer: Mapping[str, Any] | None
    notes: tuple[str, ...]


@attrs.frozen
class PeakHours:
    """Movements the mobile made per (weekday 0 = Monday, hour) in `timezone`, over
    [since, until)."""

    timezone: str
    since: datetime
    until: datetime
    counts: Mapping[tuple[int, int], int]

    def cells(self) -> list[tuple[int, int, int]]:
        """All 168 (weekday, hour, count), zeros included, Monday 00h first."""
        return [(d, h, self.counts.get((d, h), 0)) for d in range(7) for h in range(24)]


@attrs.frozen
class Portrait:
    msisdn: str
    at: datetime
    profile: ProfileView
    #: The `history` the rules read (counters of today and this month, rolled over as of `at`).
    counters: Mapping[str, Any]
    #: The restrictions in force at `at` (the codes the rules see), with reason and until.
    restrictions: tuple[Restriction, ...]
    advance_outstanding: int
    #: What Gestor moved on the line's balance, by the ledger (credits - debits of
    #: `subscriber:<msisdn>`: negative when it took more than it gave).
    ledger_balance: int
    pending: Transaction | None
    recent: tuple[Transaction, ...]
    peak_hours: PeakHours


def unanswered(name: str, failure: PlatformError) -> SourceAnswer:
    """A source that did not answer with its record, and why."""
    if isinstance(failure, PlatformRejected) and failure.code == "NOT_FOUND":
        return SourceAnswer(name, None, f"{name}: no such line (NOT_FOUND)")
    return SourceAnswer(name, None, f"{name}: could not be asked ({failure})")


def profile_of(answers: Mapping[str, SourceAnswer], rules: CompiledRules,
               context: Callable[[Mapping[str, Any]], PurchaseContext], channel: str
               ) -> ProfileView:
    """The profile `rules` assign to the line the sources describe, in the `context` a
    purchase on `channel` would have (its history, restrictions, time) around its customer
    data."""
    sources = {name: answers[name].data for name in SOURCES}
    notes = [a.note for a in answers.values() if a.note]
    dwh, ocs = sources["dwh"], sources["ocs"]
    category = None if dwh is None else str(dwh["segment"])
    if dwh is None or ocs is None:
        missing = " and ".join(n for n in SOURCES if sources[n] is None)
        notes.append(f"profile not evaluated: the rules need {missing}")
        return ProfileView(None, category, None, {}, rules.version, channel, sources, None,
                           tuple(notes))
    customer = CustomerData.merge(Profile(**dwh), Account(**ocs))
    decision = rules.profile(context(customer))
    return ProfileView(decision.profile_id, category, decision.rule_id,
                       dict(decision.attributes), rules.version, channel, sources,
                       customer.as_dict(), tuple(notes))


async def _ask(deps: PurchaseDeps, msisdn: str) -> dict[str, SourceAnswer]:
    """Each source's answer, asked concurrently; a failure is that source's note, never the
    portrait's."""
    answers: dict[str, SourceAnswer] = {}

    async def ask(name: str, fetch: Callable[[str], Awaitable[Profile | Account]]) -> None:
        try:
            answers[name] = SourceAnswer(name, (await fetch(msisdn)).as_dict())
        except PlatformError as exc:
            answers[name] = unanswered(name, exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "dwh", deps.platforms.subscriber)
        nursery.start_soon(ask, "ocs", deps.platforms.account)
    return answers


async def portrait(deps: PurchaseDeps, msisdn: str, channel: str = "api") -> Portrait:
    """The subscriber as the profiler sees them now (the app's clock: `deps.now()`). The
    platforms and the database are asked concurrently; a platform that cannot be asked leaves
    its source None with a note. A database that cannot be read raises (`StoreUnavailable`)."""
    store = deps.store
    request = deps.snapshot_request(msisdn)
    now = request.now
    since = now - timedelta(days=PEAK_DAYS)
    tz = deps.tz.key
    got: dict[str, Any] = {}
    failures: list[Exception] = []

    async def read(name: str, fn: Any, *args: Any) -> None:
        try:
            got[name] = await fn(*args)
        except Exception as exc:  # raised below as is, not inside an exception group
            failures.append(exc)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, "answers", _ask, deps, msisdn)
        nursery.start_soon(read, "snapshot", store.snapshot, request)
        nursery.start_soon(read, "restrictions", store.restrictions, msisdn)
        nursery.start_soon(read, "recent", store.transactions_for, msisdn, None, RECENT)
        nursery.start_soon(read, "pending", store.transactions_for, msisdn, _PENDING, 1)
        nursery.start_soon(read, "peak", store.peak_hours, msisdn, since, now, tz)
        nursery.start_soon(read, "ledger", store.ledger_balance, f"subscriber:{msisdn}")
    if failures:
        raise failures[0]
    view = SubscriberView.of(msisdn, got["snapshot"], now)
    history = history_of(view.counters, now, deps.tz)
    in_force = set(view.restrictions)
    pending: list[Transaction] = got["pending"]
    return Portrait(
        msisdn=msisdn,
        at=now,
        profile=profile_of(got["answers"], deps.rules,
                           lambda customer: deps.context(customer, channel, view, now), channel),
        counters={k: history[k] for k in ("purchases_today", "purchases_month", "spent_today",
                                           "spent_month", "gifts_today", "gifted_today",
                                           "last_purchase_at")},
        restrictions=tuple(r for r in got["restrictions"] if r.code in in_force),
        advance_outstanding=view.counters.owed,
        ledger_balance=-got["ledger"],
        pending=pending[0] if pending else None,
        recent=tuple(got["recent"]),
        peak_hours=PeakHours(tz, since, now, got["peak"]),
    )
