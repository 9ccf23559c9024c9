"""`[purchase] accept_timeout`: read from gestor.toml, defaulted, and bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from gestor.settings import SettingsError, load_settings


def _with(tmp_path: Path, toml: str) -> Path:
    (tmp_path / "gestor.toml").write_text(toml)
    return tmp_path


def test_default_and_configured(tmp_path: Path) -> None:
    assert load_settings(_with(tmp_path, ""), environ={}).accept_timeout == 3.0
    configured = load_settings(_with(tmp_path, "[purchase]\naccept_timeout = 1.5\n"), environ={})
    assert configured.accept_timeout == 1.5


@pytest.mark.parametrize("value", ["0", "-1", "61", '"3"'])
def test_out_of_range_or_mistyped_is_refused_naming_it(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="accept_timeout"):
        load_settings(_with(tmp_path, f"[purchase]\naccept_timeout = {value}\n"), environ={})
