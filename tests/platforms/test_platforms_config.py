"""Settings parsing: [simulator] and [platforms] tables, fault knobs and their merging."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gestor.platforms import PlatformSettings
from gestor.simulator import FaultSettings, SimulatorConfig
from gestor.simulator._faults import FaultInjector

SETTINGS = """
[simulator]
seed = 42
state_dir = "var/sim"

[simulator.faults.ocs]
latency_ms = 5
latency_jitter_ms = 2

[simulator.faults.ocs.debit]
late_rate = 0.01

[simulator.faults."prov.provision"]
error_rate = 0.5

[platforms]
base_url = "http://127.0.0.1:8081"
timeout = 2.5
retries = 3

[platforms.ocs]
timeout = 4
max_concurrency = 16
url = "http://ocs.example:9000/"
"""


def test_simulator_config_from_toml() -> None:
    config = SimulatorConfig.from_mapping(tomllib.loads(SETTINGS)["simulator"])
    assert config.seed == 42
    assert config.state_dir == Path("var/sim")
    assert config.faults["ocs"] == FaultSettings(latency_ms=5.0, latency_jitter_ms=2.0)
    assert config.faults["ocs.debit"] == FaultSettings(late_rate=0.01)
    assert config.faults["prov.provision"] == FaultSettings(error_rate=0.5)


def test_empty_state_dir_means_memory_only() -> None:
    assert SimulatorConfig.from_mapping({"state_dir": ""}).state_dir is None
    assert SimulatorConfig.from_mapping({}) == SimulatorConfig()


def test_platform_settings_from_toml() -> None:
    settings = PlatformSettings.from_mapping(tomllib.loads(SETTINGS)["platforms"])
    assert settings.dwh.timeout == 2.5 and settings.dwh.retries == 3
    assert settings.ocs.timeout == 4.0 and settings.ocs.retries == 3
    assert settings.ocs.max_concurrency == 16
    assert settings.url_for("ocs") == "http://ocs.example:9000"
    assert settings.url_for("prov") == "http://127.0.0.1:8081"


def test_url_is_another_name_for_base_url() -> None:
    settings = PlatformSettings.from_mapping({"url": "http://sim:1/", "timeout": 2.0})
    assert settings.base_url == "http://sim:1/" and settings.url_for("dwh") == "http://sim:1"
    settings = PlatformSettings.from_mapping(
        {"url": "", "base_url": "http://a", "ocs": {"url": ""}}
    )
    assert settings.url_for("ocs") == "http://a"
    with pytest.raises(ValueError):
        PlatformSettings.from_mapping({"url": "http://a", "base_url": "http://b"})
    with pytest.raises(ValueError):
        PlatformSettings.from_mapping({"url": ""})


@pytest.mark.parametrize(
    "table",
    [
        {"base_url": "http://x", "timeout": 0},
        {"base_url": "http://x", "retries": -1},
        {"base_url": "http://x", "tiemout": 1},
        {"base_url": "http://x", "ocs": {"max_concurrency": "8"}},
        {"timeout": 1},  # no URL at all
    ],
)
def test_platform_settings_rejects_nonsense(table: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PlatformSettings.from_mapping(table)


@pytest.mark.parametrize(
    "table",
    [
        {"seeds": 1},
        {"seed": "1"},
        {"faults": {"ocs": {"error_rate": 1.5}}},
        {"faults": {"ocs": {"latency_ms": -1}}},
        {"faults": {"ocs": {"outage": 1}}},
        {"faults": {"billing": {"outage": True}}},
        {"faults": {"ocs": {"debit": {"erorr_rate": 0.1}}}},
    ],
)
def test_simulator_config_rejects_nonsense(table: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig.from_mapping(table)


def test_operation_knobs_override_platform_knobs() -> None:
    injector = FaultInjector.create(
        {"ocs": FaultSettings(latency_ms=10, error_rate=0.2),
         "ocs.debit": FaultSettings(error_rate=0.0, late_rate=1.0)},
        seed=1,
    )
    debit = injector.for_op("ocs.debit")
    assert (debit.latency_s, debit.error_rate, debit.late_rate) == (0.01, 0.0, 1.0)
    account = injector.for_op("ocs.account")
    assert (account.latency_s, account.error_rate, account.late_rate) == (0.01, 0.2, 0.0)
    assert injector.for_op("dwh.subscriber").quiet
    assert injector.for_op("ocs.debit").hang_s == 60.0


def test_partial_updates_merge_and_none_unsets() -> None:
    injector = FaultInjector.create({"ocs": FaultSettings(latency_ms=10)}, seed=1)
    injector.update({"ocs": {"error_rate": 0.5}, "prov": {"outage": True}})
    assert injector.snapshot() == {
        "seed": 1,
        "ocs": {"latency_ms": 10.0, "error_rate": 0.5},
        "prov": {"outage": True},
    }
    injector.update({"ocs": {"latency_ms": None}, "prov": None, "seed": 9})
    assert injector.snapshot() == {"seed": 9, "ocs": {"error_rate": 0.5}}
    with pytest.raises(ValueError):
        injector.update({"ocs": {"error_rate": 0.1}, "nope": {}})
    assert injector.snapshot() == {"seed": 9, "ocs": {"error_rate": 0.5}}  # untouched
    injector.restore()
    assert injector.snapshot() == {"seed": 1, "ocs": {"latency_ms": 10.0}}


def test_seed_makes_faults_reproducible() -> None:
    def rolls(seed: int) -> list[bool]:
        injector = FaultInjector.create({}, seed=seed)
        return [injector.roll(0.5) for _ in range(50)]

    assert rolls(3) == rolls(3)
    assert rolls(3) != rolls(4)
