"""What a purchase needs from the outside, bundled: store, platforms, rules, catalogue, alarms,
profile cache and clock. One `PurchaseDeps` per process, shared by every subscriber actor."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import trio

from gestor.alarms import AlarmHub
from gestor.catalogue import Catalogue
from gestor.model import PurchaseCounters, Reason, SubscriberSnapshot, Transaction, TxKind
from gestor.platforms import Platforms
from gestor.purchase._steps import Verdict
from gestor.rulebook import RuleBook
from gestor.rules import NEVER_AGE_S, CompiledRules, PurchaseContext
from gestor.store import SnapshotRequest, Store


@attrs.frozen
class SubscriberView:
    """A subscriber's history counters and restrictions as committed at `at`: for a purchase,
    read in the crossing that accepted it (`at` is its `created_at`, the database's clock); for
    a listing, read for it. Never a per-process cache (DESIGN D1)."""

    msisdn: str
    counters: PurchaseCounters
    restrictions: tuple[str, ...]
    at: datetime

    @classmethod
    def of(cls, msisdn: str, snapshot: SubscriberSnapshot, at: datetime) -> SubscriberView:
        return cls(msisdn, snapshot.counters, snapshot.restrictions, at)


def history_of(counters: PurchaseCounters, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """The `history` map the rules see, as of `now`. Counters of an earlier day (or month) than
    `now` have rolled over."""
    last = counters.last_purchase_at
    today = now.astimezone(tz).date()
    last_day = last.astimezone(tz).date() if last else None
    same_day = last_day == today
    same_month = last_day is not None and (last_day.year, last_day.month) == (
        today.year, today.month)
    return {
        "purchases_today": counters.purchases_today if same_day else 0,
        "purchases_month": counters.purchases_month if same_month else 0,
        "spent_today": counters.spent_today if same_day else 0,
        "spent_month": counters.spent_month if same_month else 0,
        "last_purchase_at": last,
        "last_purchase_age_s": int((now - last).total_seconds()) if last else NEVER_AGE_S,
        # Read for this very moment (the acceptance, or the listing): no roll-over to apply.
        "gifts_today": counters.gifts_today,
        "gifted_today": counters.gifted_today,
        "owed": counters.owed,
    }


@attrs.define
class ProfileCache:
    """Customer data (data warehouse + charging) per msisdn, reused for `ttl` seconds; concurrent
    requests for the same msisdn share one fetch.

    Memory follows the TTL, not the cap: each insert first drops the entries whose time is up,
    oldest first (`_expiries` is in expiry order, as every entry lives `ttl`: amortised O(1)),
    so a stream of distinct msisdns keeps about `ttl` seconds of them. `max_entries` bounds a
    burst within one TTL (the oldest go first)."""

    platforms: Platforms
    ttl: float
    max_entries: int = 100_000
    _entries: dict[str, tuple[float, Mapping[str, Any]]] = attrs.field(factory=dict)
    #: (expiry, msisdn) of every insert, oldest first; one whose entry was refreshed or
    #: forgotten since is skipped when it comes out.
    _expiries: collections.deque[tuple[float, str]] = attrs.field(factory=collections.deque)
    _inflight: dict[str, trio.Event] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, msisdn: str) -> Mapping[str, Any]:
        while True:
            hit = self._entries.get(msisdn)
            if hit is not None and hit[0] > trio.current_time():
                return hit[1]
            waiting = self._inflight.get(msisdn)
            if waiting is None:
                break
            await waiting.wait()
            if msisdn not in self._entries:  # the fetch failed: try ourselves
                break
        done = self._inflight[msisdn] = trio.Event()
        try:
            data = (await self.platforms.profile(msisdn)).as_dict()
        finally:
            del self._inflight[msisdn]
            done.set()
        now = trio.current_time()
        self._evict(now)
        expires = now + self.ttl
        self._entries[msisdn] = (expires, data)
        self._expiries.append((expires, msisdn))
        return data

    def forget(self, msisdn: str) -> None:
        """Drop a subscriber's cached data (its balance just changed)."""
        self._entries.pop(msisdn, None)

    def _evict(self, now: float) -> None:
        """Drop the expired entries, and the oldest ones while there is no room for one more."""
        entries, expiries = self._entries, self._expiries
        while expiries and (expiries[0][0] <= now or len(entries) >= self.max_entries):
            expires, msisdn = expiries.popleft()
            hit = entries.get(msisdn)
            if hit is not None and hit[0] == expires:  # not refreshed since
                del entries[msisdn]


@attrs.define
class PurchaseDeps:
    store: Store
    platforms: Platforms
    rulebook: RuleBook
    alarms: AlarmHub
    profiles: ProfileCache
    tz: ZoneInfo
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def now(self) -> datetime:
        return self.clock()

    @property
    def catalogue(self) -> Catalogue:
        """The active catalogue version (a purchase uses its own: `rules.catalogue`)."""
        return self.rulebook.catalogue

    @property
    def rules(self) -> CompiledRules:
        """The active rule set, read once per decision (a hot swap lands between two)."""
        return self.rulebook.current

    def snapshot_request(self, msisdn: str) -> SnapshotRequest:
        """The windows (today, this month, in the operator's time zone) of a subscriber's
        history, as of now."""
        now = self.now()
        local = now.astimezone(self.tz)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        month = day.replace(day=1)
        return SnapshotRequest(msisdn, day.astimezone(UTC), month.astimezone(UTC), now)

    def context(self, customer: Mapping[str, Any], channel: str, view: SubscriberView,
                now: datetime, beneficiary: Mapping[str, Any] | None = None,
                kind: str = "purchase") -> PurchaseContext:
        return PurchaseContext(
            customer=customer,
            channel=channel,
            now=now,
            restrictions=list(view.restrictions),
            history=history_of(view.counters, view.at, self.tz),
            beneficiary=beneficiary or {},
            kind=kind,
        )

    def decide(self, tx: Transaction, customer: Mapping[str, Any],
               beneficiary: Mapping[str, Any] | None, view: SubscriberView,
               now: datetime, rules: CompiledRules | None = None) -> Verdict:
        """What the rules decide for `tx` under `rules` (the versions its movement started
        with; the active ones by default): its profile, operation (with the steps the rule set
        declares for it) and price, or why not."""
        rules = self.rules if rules is None else rules
        segment = customer.get("segment")
        return attrs.evolve(self._decide(tx, customer, beneficiary, view, now, rules),
                            segment=segment if isinstance(segment, str) else None)

    def _decide(self, tx: Transaction, customer: Mapping[str, Any],
                beneficiary: Mapping[str, Any] | None, view: SubscriberView,
                now: datetime, rules: CompiledRules) -> Verdict:
        catalogue = rules.catalogue
        other = None
        if beneficiary is not None and tx.beneficiary is not None:
            other = {**beneficiary, "msisdn": tx.beneficiary}
        ctx = self.context(customer, tx.channel, view, now, other, tx.kind.value)
        if tx.kind is not TxKind.PURCHASE:
            return self._decide_movement(tx, ctx, view, rules)
        if tx.bono_id not in catalogue:  # retired between the door and the acceptance
            return Verdict(
                profile_id="", rules_version=rules.version, currency=catalogue.currency,
                catalogue_version=catalogue.version,
                reasons=(Reason("UNKNOWN_BONO", f"bono {tx.bono_id!r} is not in catalogue "
                                f"version {catalogue.version}"),),
            )
        decision = rules.decide(ctx, tx.bono_id)
        reasons = tuple(Reason(f.code, f.message, f.rule_id) for f in decision.failures)
        op = decision.operation
        declared = rules.operation(op.operation) if op else None
        verdict = Verdict(
            profile_id=decision.profile_id,
            rules_version=decision.version,
            catalogue_version=catalogue.version,
            currency=catalogue.currency,
            operation=op.operation if op else None,
            price=op.price if op else None,
            reasons=reasons,
            steps=tuple(s.encode() for s in declared.steps) if declared else (),
        )
        if verdict.accepted and declared is not None and verdict.price and any(
                s.do == "advance" for s in declared.steps):
            # A bono financed by an advance of its price, on the rules' terms for advances.
            advance = rules.decide_movement(attrs.evolve(ctx, kind="advance"), verdict.price)
            failures = tuple(Reason(f.code, f.message, f.rule_id) for f in advance.failures)
            return attrs.evolve(verdict, reasons=failures, amount=verdict.price,
                                fee=advance.fee, owed=verdict.price + advance.fee)
        return verdict

    def _decide_movement(self, tx: Transaction, ctx: PurchaseContext, view: SubscriberView,
                         rules: CompiledRules) -> Verdict:
        """A transfer, advance or top-up: the first movement rule of its kind, then every
        validation rule of its kind."""
        amount = tx.amount or 0
        d = rules.decide_movement(ctx, amount)
        declared = rules.operation(d.operation) if d.operation else None
        reasons = tuple(Reason(f.code, f.message, f.rule_id) for f in d.failures)
        verdict = Verdict(
            profile_id=d.profile_id, rules_version=d.version,
            catalogue_version=rules.catalogue.version, currency=rules.catalogue.currency,
            operation=d.operation, reasons=reasons,
            steps=tuple(s.encode() for s in declared.steps) if declared else (),
            amount=amount, fee=d.fee,
        )
        if tx.kind is TxKind.TRANSFER:
            return attrs.evolve(verdict, price=amount + d.fee)
        if tx.kind is TxKind.ADVANCE:
            return attrs.evolve(verdict, owed=amount + d.fee)
        # A top-up collects what is owed, up to its amount (read at its acceptance, exact:
        # it holds the mobile's guard, so nothing else moved meanwhile).
        return attrs.evolve(verdict, collected=max(0, min(view.counters.owed, amount)))
