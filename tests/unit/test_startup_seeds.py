"""Which start-up problems of the seed files are fatal: `bonos.toml` only to a database without
a catalogue, `rules.toml` only to one without rules, checked against the catalogue the rules
will run with (the database's, once it has one)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gestor.settings import Settings, load_settings
from gestor.startup import Prepared, StartupError, check_catalogue

CONFIG = Path(__file__).resolve().parents[2] / "config"
SEED = (CONFIG / "bonos.toml").read_text(encoding="utf-8")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    for name in ("gestor.toml", "bonos.toml", "rules.toml"):
        shutil.copy(CONFIG / name, tmp_path / name)
    return load_settings(tmp_path, environ={})


def broken(settings: Settings) -> StartupError:
    settings.catalogue_path.write_text(SEED.replace("price = 60000", "price = -5"))
    with pytest.raises(StartupError) as caught:
        check_catalogue(settings)
    return caught.value


def test_a_broken_seed_catalogue_is_fatal_only_without_a_stored_one(settings: Settings) -> None:
    error = broken(settings)
    assert Prepared((), has_rules=False).seed_problems(settings, error) is error
    assert Prepared((), has_rules=True).seed_problems(settings, error) is error
    stored = Prepared((), has_rules=True, catalogue_source=SEED)
    assert stored.seed_problems(settings, error) is None
    # Without rules, the seed rules are checked against the stored catalogue: they compile.
    assert Prepared((), has_rules=False, catalogue_source=SEED).seed_problems(
        settings, error) is None
    # And with both files fine and nothing stored, nothing is wrong.
    settings.catalogue_path.write_text(SEED)
    assert Prepared((), has_rules=False).seed_problems(settings, check_catalogue(settings)) \
        is None
