"""The rule book: which rule-set and catalogue versions are active, compiled together, in this
worker (DESIGN D6).

Both live in PostgreSQL as versions. On start the active ones are loaded (`config/bonos.toml`
and `config/rules.toml` seed version 1 of each if the database has none). An activation of
either, anywhere, NOTIFYs every worker, which compiles the active rules against the active
catalogue once and swaps them in with a single assignment: a purchase or a listing reads
`RuleBook.current` once, so it runs entirely under one rules version and one catalogue version
(`current.catalogue.version`), and records both. A version that would not compile with the
other kind's active version is refused at activation.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from typing import TypeVar

import attrs
import trio

from gestor.catalogue import Catalogue, CatalogueError, parse_source
from gestor.model import Actor
from gestor.rules import (
    CompiledRules,
    RuleIssue,
    RuleSetError,
    bono_references,
    compile_rules,
    parse_rules,
)
from gestor.store import PartnerMoved, Store, StoreUnavailable, VersionRecord

logger = logging.getLogger("gestor.rules")

#: How many compiled (rules, catalogue) pairs and parsed catalogues a worker keeps.
_KEEP = 8

K = TypeVar("K")
V = TypeVar("V")


def _keep(cache: OrderedDict[K, V], key: K, value: V) -> None:
    cache[key] = value
    while len(cache) > _KEEP:
        cache.popitem(last=False)


def compile_source(source: str, catalogue: Catalogue, version: int, tz: str) -> CompiledRules:
    """Parse and compile rule-set TOML; raises `RuleSetError` naming every bad rule."""
    return compile_rules(parse_rules(source), catalogue, version=version, tz=tz)


def check_source(source: str, catalogue: Catalogue, tz: str) -> tuple[RuleIssue, ...]:
    """Warnings of a valid rule set; raises `RuleSetError` for an invalid one."""
    return compile_source(source, catalogue, 0, tz).warnings


def retired_references(rules: CompiledRules, active: Catalogue) -> list[RuleIssue]:
    """Errors for each rule of `rules` naming a bono that `active` has and the catalogue
    `rules` were compiled against retires (a rule naming a bono that neither has is only the
    compiler's warning)."""
    new = rules.catalogue
    return [RuleIssue(section, rule_id, field,
                      f"bono {bono_id!r} is named by this rule and retired by catalogue version "
                      f"{new.version or '(new)'} (active version {active.version} has it)")
            for section, rule_id, field, bono_id in bono_references(rules.spec)
            if bono_id in active and bono_id not in new]


class VersionConflict(Exception):
    """An activation kept losing its race with activations of the other kind (the versions it
    was checked against changed each time): nothing was activated."""


@attrs.frozen
class RuleBookStatistics:
    active_version: int
    catalogue_version: int
    reloads: int
    compiled_versions: int


@attrs.define
class RuleBook:
    store: Store
    tz: str
    current: CompiledRules = attrs.field(init=False)
    _rules: VersionRecord = attrs.field(init=False)  # the active rule set's record
    _compiled: OrderedDict[tuple[int, int], CompiledRules] = attrs.field(factory=OrderedDict)
    _catalogues: OrderedDict[int, Catalogue] = attrs.field(factory=OrderedDict)
    _wakeup: trio.Event = attrs.field(factory=trio.Event)
    _reloads: int = 0

    @property
    def active_rules(self) -> VersionRecord:
        """The stored record of the rule set in use."""
        return self._rules

    @property
    def catalogue(self) -> Catalogue:
        """The active catalogue (read it once per listing or purchase: it may change)."""
        return self.current.catalogue

    async def load(self, seed_rules: str, seed_catalogue: str) -> None:
        """Load the active versions; with none stored yet, the seeds (checked first, so a bad
        seed stops the start naming what is wrong) become version 1."""
        versions = self.store.catalogue_versions
        stored = await versions.active()
        if stored is None:
            parse_source(seed_catalogue)  # raises CatalogueError
            stored = await versions.seed(seed_catalogue, "seed from config/bonos.toml")
        catalogue = self.catalogue_of(stored)
        record = await self.store.active_rules()
        if record is None:
            check_source(seed_rules, catalogue, self.tz)
            record = await self.store.seed_rules(seed_rules, "seed from config/rules.toml")
        self._rules = record
        self.current = self.compiled(record, catalogue)
        logger.info("rules version %d active, catalogue version %d", record.version,
                    catalogue.version)

    def catalogue_of(self, record: VersionRecord) -> Catalogue:
        """The parsed form of a stored catalogue version (parsed once, a few kept); raises
        `CatalogueError` (never for a stored one: each was checked before it was stored)."""
        catalogue = self._catalogues.get(record.version)
        if catalogue is None:
            catalogue = parse_source(record.source, record.version)
            _keep(self._catalogues, record.version, catalogue)
        return catalogue

    async def catalogue_version(self, version: int | None) -> Catalogue:
        """Catalogue `version` (a purchase's, to provision what it was sold), read from the
        database if this worker does not have it; the active one for None (a purchase recorded
        before catalogues were versioned) or a version that is not stored."""
        if version is None:
            return self.catalogue
        catalogue = self._catalogues.get(version)
        if catalogue is not None:
            return catalogue
        record = await self.store.catalogue_versions.get(version)
        return self.catalogue if record is None else self.catalogue_of(record)

    def check_catalogue(self, catalogue: Catalogue) -> CompiledRules:
        """The active rules compiled against `catalogue`, or `RuleSetError` naming each rule
        that does not compile with it or names a bono it retires."""
        rules = self.compiled(self._rules, catalogue)
        errors = retired_references(rules, self.catalogue)
        if errors:
            raise RuleSetError([*errors, *rules.warnings])
        return rules

    def compiled(self, record: VersionRecord, catalogue: Catalogue | None = None
                 ) -> CompiledRules:
        """A stored rule set compiled against `catalogue` (the active one by default);
        compiled once per pair, a few kept for dry runs. Raises `RuleSetError`."""
        catalogue = self.catalogue if catalogue is None else catalogue
        key = (record.version, catalogue.version)
        rules = self._compiled.get(key)
        if rules is None:
            rules = compile_source(record.source, catalogue, record.version, self.tz)
            _keep(self._compiled, key, rules)
        return rules

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow activations (of rules or catalogue) made by any worker, until cancelled."""
        await self.store.listen_rules(lambda _version: self._wakeup.set())
        await self.store.catalogue_versions.listen(lambda _version: self._wakeup.set())
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            # Unreachable: the LISTEN's resumption wakes us again once the database is back.
            with contextlib.suppress(StoreUnavailable):
                await self.refresh()

    async def refresh(self) -> None:
        """Swap in the active pair of versions if it is not the one in use."""
        record = await self.store.active_rules()
        stored = await self.store.catalogue_versions.active()
        if record is None or stored is None:
            return
        if (record.version, stored.version) == (self.current.version,
                                                self.current.catalogue.version):
            return
        try:
            rules = self.compiled(record, self.catalogue_of(stored))
        except (RuleSetError, CatalogueError):  # checked before activation; never expected
            logger.exception("rules version %d with catalogue version %d do not compile; "
                             "keeping %d with %d", record.version, stored.version,
                             self.current.version, self.current.catalogue.version)
            return
        self._rules, self.current = record, rules
        self._reloads += 1
        logger.info("rules version %d active, catalogue version %d", record.version,
                    stored.version)

    async def activate(self, version: int, actor: Actor) -> VersionRecord | None:
        """Activate rule-set `version` (None if there is none), once it compiles against the
        active catalogue (else `RuleSetError`, nothing written)."""
        for _ in range(3):
            record = await self.store.rules(version)
            if record is None:
                return None
            catalogue = self.catalogue
            self.compiled(record, catalogue)  # refuse to activate what does not compile here
            activated = await self.store.activate_rules(version, actor, catalogue.version)
            await self.refresh()
            if not isinstance(activated, PartnerMoved):
                return activated
        raise VersionConflict("the catalogue kept changing while the rules were activated")

    async def activate_catalogue(self, version: int, actor: Actor) -> VersionRecord | None:
        """Activate catalogue `version` (None if there is none), once the active rules compile
        against it (else `RuleSetError`, nothing written)."""
        versions = self.store.catalogue_versions
        for _ in range(3):
            stored = await versions.get(version)
            if stored is None:
                return None
            rules = self._rules
            self.check_catalogue(self.catalogue_of(stored))  # refuse what the rules can't use
            activated = await versions.activate(version, actor, rules.version)
            await self.refresh()
            if not isinstance(activated, PartnerMoved):
                return activated
        raise VersionConflict("the rules kept changing while the catalogue was activated")

    def statistics(self) -> RuleBookStatistics:
        return RuleBookStatistics(self.current.version, self.current.catalogue.version,
                                  self._reloads, len(self._compiled))
