"""The rule book: which rule-set version is active, compiled, in this worker (DESIGN D6).

Versions live in PostgreSQL. On start the active one is loaded (the `config/rules.toml` seed
becomes version 1 if the database has none). Activation anywhere NOTIFYs every worker, which
compiles the new version once and swaps it in with a single assignment: a purchase reads
`RuleBook.current` once, so it is evaluated entirely under one version, and records which.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict

import attrs
import trio

from gestor.catalogue import Catalogue
from gestor.model import Actor
from gestor.rules import CompiledRules, RuleIssue, RuleSetError, compile_rules, parse_rules
from gestor.store import RuleSetRecord, Store, StoreUnavailable

logger = logging.getLogger("gestor.rules")


def compile_source(source: str, catalogue: Catalogue, version: int, tz: str) -> CompiledRules:
    """Parse and compile rule-set TOML; raises `RuleSetError` naming every bad rule."""
    return compile_rules(parse_rules(source), catalogue, version=version, tz=tz)


def check_source(source: str, catalogue: Catalogue, tz: str) -> tuple[RuleIssue, ...]:
    """Warnings of a valid rule set; raises `RuleSetError` for an invalid one."""
    return compile_source(source, catalogue, 0, tz).warnings


@attrs.frozen
class RuleBookStatistics:
    active_version: int
    reloads: int
    compiled_versions: int


@attrs.define
class RuleBook:
    store: Store
    catalogue: Catalogue
    tz: str
    current: CompiledRules = attrs.field(init=False)
    _compiled: OrderedDict[int, CompiledRules] = attrs.field(factory=OrderedDict)
    _wakeup: trio.Event = attrs.field(factory=trio.Event)
    _reloads: int = 0

    async def load(self, seed_source: str) -> None:
        """Load the active version; with none stored yet, `seed_source` (checked first, so a
        bad seed stops the start with the rules named) becomes version 1."""
        record = await self.store.active_rules()
        if record is None:
            check_source(seed_source, self.catalogue, self.tz)
            record = await self.store.seed_rules(seed_source, "seed from config/rules.toml")
        self.current = self.compiled(record)
        logger.info("rules version %d active", record.version)

    def compiled(self, record: RuleSetRecord) -> CompiledRules:
        """The compiled form of a stored version (compiled once, a few kept for dry runs)."""
        rules = self._compiled.get(record.version)
        if rules is None:
            rules = compile_source(record.source, self.catalogue, record.version, self.tz)
            self._compiled[record.version] = rules
            while len(self._compiled) > 8:
                self._compiled.popitem(last=False)
        return rules

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow activations made by any worker, until cancelled."""
        await self.store.listen_rules(lambda _version: self._wakeup.set())
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            # Unreachable: the LISTEN's resumption wakes us again once the database is back.
            with contextlib.suppress(StoreUnavailable):
                await self.refresh()

    async def refresh(self) -> None:
        record = await self.store.active_rules()
        if record is None or record.version == self.current.version:
            return
        try:
            self.current = self.compiled(record)
        except RuleSetError:  # validated before it was stored; never expected
            logger.exception("active rules version %d does not compile; keeping %d",
                             record.version, self.current.version)
            return
        self._reloads += 1
        logger.info("rules version %d active", record.version)

    async def activate(self, version: int, actor: Actor) -> RuleSetRecord | None:
        record = await self.store.rules(version)
        if record is None:
            return None
        self.compiled(record)  # refuse to activate what does not compile here
        activated = await self.store.activate_rules(version, actor)
        await self.refresh()
        return activated

    def statistics(self) -> RuleBookStatistics:
        return RuleBookStatistics(self.current.version, self._reloads, len(self._compiled))
