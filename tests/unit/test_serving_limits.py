"""The connection settings (`[server] keep_alive_timeout`, `max_connections`) and the per-worker
connection cap derived from the descriptor limit."""

from __future__ import annotations

import resource
from pathlib import Path

import attrs
import pytest

from gestor.serving import connection_cap, descriptor_reserve, raise_descriptor_limit
from gestor.serving._descriptors import BASE_RESERVE, DATABASE_EXTRA, MIN_CAP
from gestor.settings import Settings, SettingsError, load_settings


def settings_from(tmp_path: Path, server: str) -> Settings:
    (tmp_path / "gestor.toml").write_text(f"[server]\n{server}\n", encoding="utf-8")
    return load_settings(tmp_path, environ={}, data_dir=tmp_path)


def test_defaults_close_idle_connections_within_30_s(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, "")
    assert 0 < settings.keep_alive_timeout <= 30
    assert settings.max_connections == 0


def test_shipped_config_sets_the_defaults(config_dir: Path, tmp_path: Path) -> None:
    shipped = load_settings(config_dir, environ={}, data_dir=tmp_path)
    default = settings_from(tmp_path, "")
    assert (shipped.keep_alive_timeout, shipped.max_connections) == (
        default.keep_alive_timeout, default.max_connections)


def test_settings_are_read(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, "keep_alive_timeout = 5\nmax_connections = 300")
    assert (settings.keep_alive_timeout, settings.max_connections) == (5.0, 300)


@pytest.mark.parametrize(("line", "named"), [
    ("keep_alive_timeout = 0", "server.keep_alive_timeout"),
    ("keep_alive_timeout = -1.5", "server.keep_alive_timeout"),
    ("keep_alive_timeout = 1e9", "server.keep_alive_timeout"),
    ('keep_alive_timeout = "20"', "server.keep_alive_timeout"),
    ("max_connections = -1", "server.max_connections"),
    ("max_connections = 2.5", "server.max_connections"),
    ("max_connections = true", "server.max_connections"),
])
def test_bad_values_are_refused_naming_the_setting(tmp_path: Path, line: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        settings_from(tmp_path, line)


def test_reserve_counts_the_pool_and_the_platform_calls(tmp_path: Path) -> None:
    settings = attrs.evolve(settings_from(tmp_path, ""), pool_size=25, platforms={
        "url": "http://127.0.0.1:1", "max_concurrency": 10, "ocs": {"max_concurrency": 30}})
    assert descriptor_reserve(settings) == BASE_RESERVE + 25 + DATABASE_EXTRA + 2 * (10 + 30 + 10)


def test_cap_is_the_limit_less_the_reserve_unless_set(tmp_path: Path) -> None:
    automatic = settings_from(tmp_path, "")
    reserve = descriptor_reserve(automatic)
    assert connection_cap(automatic, 20000) == 20000 - reserve
    assert connection_cap(attrs.evolve(automatic, max_connections=500), 20000) == 500
    # a setting that does not fit under the limit is lowered to what does
    assert connection_cap(attrs.evolve(automatic, max_connections=50000), 20000) == 20000 - reserve
    # a tiny limit still lets a few clients in
    assert connection_cap(automatic, 64) == MIN_CAP


def test_descriptor_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY and hard > 1024:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        limit = raise_descriptor_limit()
        now_soft, now_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert now_hard == hard and limit == now_soft
        if hard != resource.RLIM_INFINITY:
            assert now_soft == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
