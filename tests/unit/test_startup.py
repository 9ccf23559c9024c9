"""Start-up checks of config files: the first problem of `bonos.toml` or `rules.toml`, as one
line naming the file and the line (or the bono / rule), and how many more there are."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from gestor.settings import Settings, load_settings
from gestor.startup import (
    StartupError,
    check_catalogue,
    check_seed_rules,
    describe_dsn,
    open_listener,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    for name in ("gestor.toml", "bonos.toml", "rules.toml"):
        shutil.copy(CONFIG / name, tmp_path / name)
    return load_settings(tmp_path, environ={})


def edit(path: Path, old: str, new: str) -> int:
    """Replace the first `old`; the line number of the first line of `new`."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


def test_the_shipped_files_pass(settings: Settings) -> None:
    catalogue = check_catalogue(settings)
    assert "DATA_2GB_7D" in catalogue
    assert check_seed_rules(settings, catalogue) is None


def test_catalogue_problem_names_bono_field_and_line(settings: Settings) -> None:
    line = edit(settings.catalogue_path, "validity_days = 7\ndata_mb = 2048",
                "validity_days = 0\ndata_mb = 2048")
    with pytest.raises(StartupError) as caught:
        check_catalogue(settings)
    error = caught.value
    assert error.what == ("bono catalogue refused: bono #2 'DATA_2GB_7D': validity_days: "
                          "must be >= 1, got 0")
    assert error.where == f"{settings.catalogue_path}, line {line}"
    assert error.status == 2


def test_catalogue_unknown_key_and_count_of_the_rest(settings: Settings) -> None:
    line = edit(settings.catalogue_path, 'currency = "ARS"', 'currency = "ARS"\nvat = 21')
    edit(settings.catalogue_path, "price = 15000", "price = -1")
    with pytest.raises(StartupError) as caught:
        check_catalogue(settings)
    assert caught.value.what.startswith("bono catalogue refused: unknown top-level key 'vat'")
    assert "and 1 more problem(s)" in caught.value.what
    assert caught.value.where == f"{settings.catalogue_path}, line {line + 1}"


def test_catalogue_syntax_error(settings: Settings) -> None:
    line = edit(settings.catalogue_path, "price = 20000", "price = 20 000")
    with pytest.raises(StartupError) as caught:
        check_catalogue(settings)
    assert caught.value.what.startswith("bonos.toml: not valid TOML")
    assert caught.value.where.startswith(f"{settings.catalogue_path}, line {line}, column")


def test_seed_rule_problem_names_rule_field_and_line(settings: Settings) -> None:
    catalogue = check_catalogue(settings)
    line = edit(settings.rules_path, "profile_id = \"CORPORATE\"",
                "profile_id = \"CORPORATE\"\nattributes = { 9x = \"1\" }")
    problem = check_seed_rules(settings, catalogue)
    assert problem is not None
    assert problem.what.startswith("seed rule set refused: profiling[corporate].attributes.9x: ")
    assert problem.where == f"{settings.rules_path}, line {line + 1}"
    assert "\n" not in str(problem)


def test_seed_rule_expression_error_is_one_line(settings: Settings) -> None:
    catalogue = check_catalogue(settings)
    line = edit(settings.rules_path, "when = 'customer.segment == \"postpaid\"'",
                "when = 'customer.segment == '")
    problem = check_seed_rules(settings, catalogue)
    assert problem is not None
    assert problem.what.startswith("seed rule set refused: profiling[postpaid].when: ")
    assert problem.where == f"{settings.rules_path}, line {line}"
    assert "\n" not in str(problem)


def test_port_in_use(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(StartupError) as caught:
            open_listener(Settings(config_dir=settings.config_dir, bind=bind))
    assert str(caught.value) == f"cannot listen: address already in use ({bind})"


def test_database_urls_lose_their_credentials() -> None:
    assert describe_dsn("postgresql://u:secret@db.example:5433/gestor?sslmode=require") == \
        "postgresql://db.example:5433/gestor"
    assert describe_dsn("nonsense") == "an unparsable database URL"
