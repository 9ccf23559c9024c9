"""Client settings for the three platforms: the ``[platforms]`` table of a settings file.

Top-level knobs are defaults for every platform; ``[platforms.dwh]``, ``[platforms.ocs]`` and
``[platforms.prov]`` override them (and may give their own ``url``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["EndpointSettings", "PlatformSettings"]

_PLATFORMS = ("dwh", "ocs", "prov")
_FLOATS = ("timeout", "backoff", "backoff_max", "reset_timeout")
_INTS = ("max_concurrency", "retries", "failure_threshold")


@attrs.frozen(kw_only=True)
class EndpointSettings:
    """How to call one platform."""

    url: str | None = None
    timeout: float = 2.0  # whole attempt: waiting for a slot, connect, send, answer
    max_concurrency: int = 64  # requests in flight at once
    retries: int = 2  # extra attempts after a failure (every call is idempotent)
    backoff: float = 0.05  # first retry delay (s), doubled each retry, jittered
    backoff_max: float = 0.5
    failure_threshold: int = 5  # consecutive failures that open the circuit
    reset_timeout: float = 5.0  # seconds open before a single half-open probe

    def __attrs_post_init__(self) -> None:
        for name in ("timeout", "backoff_max", "reset_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"platform setting {name!r} must be > 0")
        if self.backoff < 0:
            raise ValueError("platform setting 'backoff' must be >= 0")
        if self.max_concurrency < 1 or self.failure_threshold < 1:
            raise ValueError("'max_concurrency' and 'failure_threshold' must be >= 1")
        if self.retries < 0:
            raise ValueError("platform setting 'retries' must be >= 0")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "platforms") -> EndpointSettings:
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "url":
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"[{where}] 'url' must be a string")
                values[key] = value
            elif key in _FLOATS:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"[{where}] {key!r} must be a number")
                values[key] = float(value)
            elif key in _INTS:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"[{where}] {key!r} must be an integer")
                values[key] = value
            else:
                raise ValueError(f"[{where}] unknown key {key!r}")
        return cls(**values)


@attrs.frozen(kw_only=True)
class PlatformSettings:
    """Where the platforms are and how to call them."""

    base_url: str | None = None
    dwh: EndpointSettings = EndpointSettings()
    ocs: EndpointSettings = EndpointSettings()
    prov: EndpointSettings = EndpointSettings()
    keepalive_expiry: float = 30.0  # idle keep-alive connections are closed after this (s)

    def endpoint(self, platform: str) -> EndpointSettings:
        if platform not in _PLATFORMS:
            raise KeyError(platform)
        endpoint: EndpointSettings = getattr(self, platform)
        return endpoint

    def url_for(self, platform: str) -> str:
        """Base URL of ``platform`` (no trailing slash); request paths start ``/dwh``..."""
        url = self.endpoint(platform).url or self.base_url
        if not url:
            raise ValueError(f"no URL for platform {platform!r}: set base_url or {platform}.url")
        return url.rstrip("/")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PlatformSettings:
        """From ``{"base_url": ..., "timeout": 2, ..., "ocs": {"timeout": 3, "url": ...}}``.

        ``url`` is accepted as another name for ``base_url``; an empty URL counts as unset.
        """
        defaults: dict[str, Any] = {}
        per_platform: dict[str, Mapping[str, Any]] = {}
        urls = [data.get("base_url"), data.get("url")]
        for url in urls:
            if url is not None and not isinstance(url, str):
                raise ValueError("[platforms] 'base_url' / 'url' must be a string")
        given = {u for u in urls if u}
        if len(given) > 1:
            raise ValueError("[platforms] 'base_url' and 'url' disagree; give one")
        base_url = given.pop() if given else None
        keepalive = data.get("keepalive_expiry", 30.0)
        if isinstance(keepalive, bool) or not isinstance(keepalive, int | float) or keepalive <= 0:
            raise ValueError("[platforms] 'keepalive_expiry' must be a number > 0")
        for key, value in data.items():
            if key in ("base_url", "url", "keepalive_expiry"):
                continue
            if key in _PLATFORMS:
                if not isinstance(value, Mapping):
                    raise ValueError(f"[platforms.{key}] must be a table")
                per_platform[key] = {k: v for k, v in value.items() if not (k == "url" and not v)}
            else:
                defaults[key] = value
        endpoints = {
            name: EndpointSettings.from_mapping(
                {**defaults, **per_platform.get(name, {})}, where=f"platforms.{name}"
            )
            for name in _PLATFORMS
        }
        settings = cls(base_url=base_url, keepalive_expiry=float(keepalive), **endpoints)
        for name in _PLATFORMS:
            settings.url_for(name)
        return settings
