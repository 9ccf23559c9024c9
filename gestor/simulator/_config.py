"""Configuration of the simulator: the ``[simulator]`` table of a settings file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ._faults import FaultSettings, parse_fault_scopes

__all__ = ["SimulatorConfig"]


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """Configuration of the simulator: the ``[simulator]`` table of a settings file."""

    seed: int | None = None
    state_dir: Path | None = None
    fsync: bool = False
    faults: Mapping[str, FaultSettings] = attrs.field(factory=dict)
    bind: str | None = None
    #: Where to notify each top-up (``POST``, Gestor's ``/v1/topups``); None: no notifications.
    topup_notify_url: str | None = None
    #: Sent as ``Authorization: Bearer <key>``; None: from ``$GESTOR_SIMULATOR_TOPUP_KEY``.
    topup_notify_key: str | None = attrs.field(default=None, repr=False)
    topup_notify_timeout: float = 10.0  # seconds per attempt
    topup_notify_backoff: float = 0.5  # first retry delay (s), doubled per retry, jittered
    topup_notify_backoff_max: float = 60.0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SimulatorConfig:
        """Keys: ``seed`` (int), ``state_dir`` (path), ``fsync`` (bool), ``bind``
        ("HOST:PORT", informational), ``faults`` (``{scope: {knob: value}}``) and the
        ``topup_notify_*`` settings of top-up notifications."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown [simulator] keys {sorted(unknown)}; known: {sorted(known)}")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("simulator 'seed' must be an integer")
        state_dir = data.get("state_dir") or None  # "" means no journal
        if state_dir is not None and not isinstance(state_dir, str | Path):
            raise ValueError("simulator 'state_dir' must be a path")
        fsync = data.get("fsync", False)
        if not isinstance(fsync, bool):
            raise ValueError("simulator 'fsync' must be a boolean")
        bind = data.get("bind")
        if bind is not None and not isinstance(bind, str):
            raise ValueError("simulator 'bind' must be a string HOST:PORT")
        faults_table = data.get("faults", {})
        if not isinstance(faults_table, Mapping):
            raise ValueError("simulator 'faults' must be a table")
        faults = {k: v for k, v in parse_fault_scopes(faults_table).items() if v is not None}
        url = data.get("topup_notify_url") or None
        if url is not None and (
            not isinstance(url, str) or not url.startswith(("http://", "https://"))
        ):
            raise ValueError("simulator 'topup_notify_url' must be an http(s) URL")
        key = data.get("topup_notify_key") or None
        if key is not None and not isinstance(key, str):
            raise ValueError("simulator 'topup_notify_key' must be a string")
        durations: dict[str, float] = {}
        for name in ("topup_notify_timeout", "topup_notify_backoff", "topup_notify_backoff_max"):
            value = data.get(name, getattr(attrs.fields(cls), name).default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"simulator {name!r} must be a number of seconds > 0")
            durations[name] = float(value)
        return cls(
            seed=seed,
            state_dir=None if state_dir is None else Path(state_dir),
            fsync=fsync,
            faults=faults,
            bind=bind,
            topup_notify_url=url,
            topup_notify_key=key,
            **durations,
        )
