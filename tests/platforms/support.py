"""Helpers shared by the platform tests."""

from __future__ import annotations

from typing import Any

from gestor.platforms import PlatformSettings

WELL_KNOWN = "5491100000001"


def fast_settings(url: str, **overrides: Any) -> PlatformSettings:
    """Client settings with short timeouts so fault tests stay quick."""
    table: dict[str, Any] = {
        "base_url": url,
        "timeout": 0.5,
        "retries": 1,
        "backoff": 0.01,
        "backoff_max": 0.02,
        "failure_threshold": 3,
        "reset_timeout": 0.3,
    }
    table.update(overrides)
    return PlatformSettings.from_mapping(table)
