"""Fault knobs of the platform simulator: latency, errors, hangs, late answers and outages.

Knobs live in *scopes*: a platform (``dwh``, ``ocs``, ``prov``, ``sms``) or one operation of it
(``ocs.debit``). The knobs in force for an operation are the platform's knobs overridden, knob
by knob, by the operation's. Randomness comes from one seeded :class:`random.Random`.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "OPERATIONS",
    "PLATFORM_NAMES",
    "EffectiveFaults",
    "FaultInjector",
    "FaultSettings",
    "parse_fault_scopes",
]

PLATFORM_NAMES: tuple[str, ...] = ("dwh", "ocs", "prov", "sms")

#: Every operation the simulator serves, as ``platform.operation``.
OPERATIONS: tuple[str, ...] = (
    "dwh.subscriber",
    "ocs.account",
    "ocs.debit",
    "ocs.lookup_debit",
    "ocs.refund",
    "ocs.lookup_refund",
    "ocs.credit",
    "ocs.lookup_credit",
    "prov.provision",
    "prov.lookup_bundle",
    "sms.send",
)

_SCOPES = frozenset(PLATFORM_NAMES + OPERATIONS)
_RATES = ("error_rate", "timeout_rate", "late_rate")
_DURATIONS = ("latency_ms", "latency_jitter_ms", "hang_ms")
_DEFAULT_HANG_MS = 60_000.0


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"fault knob {name!r} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"fault knob {name!r} must be a finite number >= 0, got {value!r}")
    return number


@attrs.frozen(kw_only=True)
class FaultSettings:
    """Knobs of one scope; ``None`` means "not set here" (inherit, or the default)."""

    latency_ms: float | None = None
    latency_jitter_ms: float | None = None
    error_rate: float | None = None
    timeout_rate: float | None = None
    late_rate: float | None = None
    outage: bool | None = None
    hang_ms: float | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultSettings:
        """Validate knobs from a config table or a control request; ``None`` values unset."""
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in _KNOB_NAMES:
                raise ValueError(f"unknown fault knob {key!r}; known: {sorted(_KNOB_NAMES)}")
            if value is None:
                values[key] = None
            elif key == "outage":
                if not isinstance(value, bool):
                    raise ValueError(f"fault knob 'outage' must be a boolean, got {value!r}")
                values[key] = value
            else:
                number = _number(key, value)
                if key in _RATES and number > 1:
                    raise ValueError(f"fault knob {key!r} is a probability in [0, 1]")
                values[key] = number
        return cls(**values)

    def merged(self, override: FaultSettings) -> FaultSettings:
        """These knobs with every knob that ``override`` sets replaced."""
        changes = {k: v for k, v in attrs.asdict(override).items() if v is not None}
        return attrs.evolve(self, **changes)

    def updated(self, data: Mapping[str, Any]) -> FaultSettings:
        """A partial update: knobs given replace, ``None`` unsets, the rest are kept."""
        parsed = FaultSettings.from_mapping(data)
        changes = {k: getattr(parsed, k) for k in data}
        return attrs.evolve(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Only the knobs set here."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}

    def is_empty(self) -> bool:
        return not self.as_dict()

    def effective(self) -> EffectiveFaults:
        return EffectiveFaults(
            latency_s=(self.latency_ms or 0.0) / 1000,
            jitter_s=(self.latency_jitter_ms or 0.0) / 1000,
            error_rate=self.error_rate or 0.0,
            timeout_rate=self.timeout_rate or 0.0,
            late_rate=self.late_rate or 0.0,
            outage=bool(self.outage),
            hang_s=(_DEFAULT_HANG_MS if self.hang_ms is None else self.hang_ms) / 1000,
        )


_KNOB_NAMES = frozenset(attrs.fields_dict(FaultSettings))


@attrs.frozen
class EffectiveFaults:
    """The concrete knobs in force for one operation."""

    latency_s: float
    jitter_s: float
    error_rate: float
    timeout_rate: float
    late_rate: float
    outage: bool
    hang_s: float

    @property
    def quiet(self) -> bool:
        return not (
            self.latency_s
            or self.jitter_s
            or self.error_rate
            or self.timeout_rate
            or self.late_rate
            or self.outage
        )


def _flatten(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any] | None]:
    flat: dict[str, Mapping[str, Any] | None] = {}
    for scope, table in data.items():
        if scope not in _SCOPES:
            raise ValueError(f"unknown fault scope {scope!r}; known: {sorted(_SCOPES)}")
        if table is None:
            flat[scope] = None
            continue
        if not isinstance(table, Mapping):
            raise ValueError(f"fault scope {scope!r} must be a table of knobs")
        knobs: dict[str, Any] = {}
        for key, value in table.items():
            if isinstance(value, Mapping) and "." not in scope:
                flat.update(_flatten({f"{scope}.{key}": value}))
            else:
                knobs[key] = value
        FaultSettings.from_mapping(knobs)  # validate
        flat[scope] = knobs
    return flat


def parse_fault_scopes(data: Mapping[str, Any]) -> dict[str, FaultSettings | None]:
    """Scopes from ``{scope: {knob: value}}``; ``None`` for a scope means "clear it".

    A platform table may nest its operations (TOML ``[faults.ocs.debit]``), so
    ``{"ocs": {"latency_ms": 5, "debit": {"late_rate": 0.1}}}`` is read as the scopes
    ``ocs`` and ``ocs.debit``.
    """
    return {
        scope: None if table is None else FaultSettings.from_mapping(table)
        for scope, table in _flatten(data).items()
    }


@attrs.define
class FaultInjector:
    """Run-time fault state: knobs per scope plus the seeded random source."""

    _initial: dict[str, FaultSettings]
    _initial_seed: int | None
    _scopes: dict[str, FaultSettings] = attrs.field(init=False)
    _cache: dict[str, EffectiveFaults] = attrs.field(init=False, factory=dict)
    seed: int = attrs.field(init=False, default=0)
    rng: random.Random = attrs.field(init=False, factory=random.Random)

    def __attrs_post_init__(self) -> None:
        self._scopes = dict(self._initial)
        self.reseed(self._initial_seed)

    @classmethod
    def create(cls, scopes: Mapping[str, FaultSettings], seed: int | None) -> FaultInjector:
        return cls(dict(scopes), seed)

    def reseed(self, seed: int | None) -> None:
        self.seed = int.from_bytes(os.urandom(4), "big") if seed is None else seed
        self.rng.seed(self.seed)

    def for_op(self, op: str) -> EffectiveFaults:
        cached = self._cache.get(op)
        if cached is None:
            platform = op.partition(".")[0]
            settings = self._scopes.get(platform, FaultSettings())
            if op in self._scopes:
                settings = settings.merged(self._scopes[op])
            cached = self._cache[op] = settings.effective()
        return cached

    def update(self, data: Mapping[str, Any]) -> None:
        """Merge a partial update ``{"seed": n, scope: {knob: value | None} | None}``.

        Knobs given replace, ``None`` unsets a knob (or a whole scope); the rest are kept.
        Everything is validated before anything changes.
        """
        data = dict(data)
        has_seed = "seed" in data
        seed = data.pop("seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("'seed' must be an integer")
        flat = _flatten(data)
        for scope, table in flat.items():
            if table is None:
                self._scopes.pop(scope, None)
                continue
            new = self._scopes.get(scope, FaultSettings()).updated(table)
            if new.is_empty():
                self._scopes.pop(scope, None)
            else:
                self._scopes[scope] = new
        self._cache.clear()
        if has_seed:
            self.reseed(seed)

    def restore(self) -> None:
        """Back to the configured knobs and seed."""
        self._scopes = dict(self._initial)
        self._cache.clear()
        self.reseed(self._initial_seed)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed}
        for scope in sorted(self._scopes):
            out[scope] = self._scopes[scope].as_dict()
        return out

    def roll(self, rate: float) -> bool:
        return rate > 0 and (rate >= 1 or self.rng.random() < rate)

    def delay(self, faults: EffectiveFaults) -> float:
        extra = self.rng.uniform(0, faults.jitter_s) if faults.jitter_s else 0.0
        return faults.latency_s + extra

    def error_status(self) -> int:
        return 500 if self.rng.random() < 0.5 else 503
