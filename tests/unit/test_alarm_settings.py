"""`[alarms] send_timeout`: its default, a value from gestor.toml, and values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from gestor.settings import SettingsError, load_settings


def settings_with(tmp_path: Path, toml: str) -> float:
    (tmp_path / "gestor.toml").write_text(toml, encoding="utf-8")
    return load_settings(tmp_path, environ={}).alarm_send_timeout


def test_the_default_and_the_shipped_config_give_five_seconds(tmp_path: Path) -> None:
    assert settings_with(tmp_path, "") == 5.0
    shipped = Path(__file__).resolve().parents[2] / "config"
    assert load_settings(shipped, environ={}).alarm_send_timeout == 5.0


def test_a_value_from_gestor_toml(tmp_path: Path) -> None:
    assert settings_with(tmp_path, "[alarms]\nsend_timeout = 2\n") == 2.0
    assert settings_with(tmp_path, "[alarms]\nsend_timeout = 0.25\n") == 0.25


@pytest.mark.parametrize("value", ["0", "-1", "3601", "'5'", "true"])
def test_bad_values_are_refused_naming_the_setting(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match=r"alarms\.send_timeout"):
        settings_with(tmp_path, f"[alarms]\nsend_timeout = {value}\n")
