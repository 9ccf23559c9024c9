"""Loading `gestor.toml`: every unknown key is named with its file, table and line; values of
the wrong type or out of range are refused the same way; environment and options say which."""

from __future__ import annotations

from pathlib import Path

import pytest

from gestor.settings import SettingsError, load_settings
from gestor.tomlines import line_of, syntax_location

SEED = Path(__file__).resolve().parents[2] / "config" / "gestor.toml"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "gestor.toml").write_text(text)
    return tmp_path


def refusal(tmp_path: Path, text: str, **overrides: object) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, text), environ={}, **overrides)
    return caught.value


def test_the_shipped_file_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, SEED.read_text()), environ={})
    assert (settings.workers, settings.pool_size) == (1, 10)


@pytest.mark.parametrize(("text", "message", "line"), [
    ("[server]\nbind = '127.0.0.1:1'\nwrkers = 2\n", "unknown key 'wrkers' in [server]", 3),
    ("[database]\n\n# the pool\npool = 3\n", "unknown key 'pool' in [database]", 4),
    ("[recovery]\ninterval = 1.0\n[actors]\nmailbox = 3\n", "unknown key 'mailbox' in [actors]",
     4),
    ("[sever]\nbind = 'x'\n", "unknown table [sever]", 1),
    ("workers = 2\n", "unknown key 'workers'", 1),
    ("server.wrkers = 2\n", "unknown key 'wrkers' in [server]", 1),
    ("[alarms]\nwebhooks = []\nwebhook = 'http://x'\n", "unknown key 'webhook' in [alarms]", 3),
    ("[platforms]\ntimout = 1.0\n", "unknown key 'timout' in [platforms]", 2),
    ("[platforms]\ntimeout = 1.0\n[platforms.ocs]\nretrys = 1\n",
     "unknown key 'retrys' in [platforms.ocs]", 4),
    ("[simulator]\nseed = 1\nsed = 2\n", "unknown key 'sed' in [simulator]", 3),
], ids=["server", "database", "actors", "table", "top-level", "dotted", "alarms", "platforms",
        "platforms.ocs", "simulator"])
def test_unknown_keys_are_named_with_file_table_and_line(
    tmp_path: Path, text: str, message: str, line: int
) -> None:
    error = refusal(tmp_path, text)
    assert error.message == message
    assert error.where == f"{tmp_path / 'gestor.toml'}, line {line}"
    assert str(error) == f"{message} ({tmp_path / 'gestor.toml'}, line {line})"


@pytest.mark.parametrize(("text", "message", "line"), [
    ("[database]\npool_size = -3\n", "database.pool_size must be at least 1, got -3", 2),
    ("[server]\nworkers = 0\n", "server.workers must be at least 1, got 0", 2),
    ("[server]\nshutdown_grace = -1\n", "server.shutdown_grace must be at least 0, got -1.0", 2),
    ("[actors]\nidle_timeout = 0\n", "actors.idle_timeout must be more than 0, got 0.0", 2),
    ("[purchase]\nmax_in_flight = 0\n", "purchase.max_in_flight must be at least 1, got 0", 2),
    ("[database]\npool_size = '10'\n", "database.pool_size must be a whole number, got '10'", 2),
    ("[server]\nworkers = true\n", "server.workers must be a whole number, got True", 2),
    ("[purchase]\ntimezone = 'Mars/Olympus'\n",
     "purchase.timezone: unknown time zone 'Mars/Olympus'", 2),
    ("[alarms]\nwebhooks = ['ftp://x']\n", "alarms.webhooks must be a list of http(s) URLs", 2),
    ("[platforms]\n\ntimeout = -1.0\n", "platform setting 'timeout' must be > 0", 3),
    ("[simulator]\nseed = 'x'\n", "simulator 'seed' must be an integer", 2),
    ("[server]\nbind = 'nowhere'\n", "bind must be HOST:PORT, got 'nowhere'", 2),
    ("[server]\nkeep_alive_timeout = nan\n", "server.keep_alive_timeout must be a number, got nan",
     2),
    ("[purchase]\n\nmax_wait = -nan\n", "purchase.max_wait must be a number, got nan", 3),
], ids=["pool_size", "workers", "grace", "idle", "in_flight", "type", "bool", "timezone",
        "webhooks", "platforms", "simulator", "bind", "nan", "nan-unbounded"])
def test_bad_values_are_named_with_their_line(
    tmp_path: Path, text: str, message: str, line: int
) -> None:
    error = refusal(tmp_path, text)
    assert (error.message, error.where) == (message, f"{tmp_path / 'gestor.toml'}, line {line}")


def test_whole_tables_with_sub_tables_load(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, (
        "[platforms]\ntimeout = 3.0\n[platforms.ocs]\nretries = 0\n"
        "[simulator]\nseed = 2\n[simulator.faults.ocs]\nlatency_ms = 5\n")), environ={})
    assert settings.platforms["ocs"] == {"retries": 0}
    assert settings.simulator["faults"] == {"ocs": {"latency_ms": 5}}


def test_a_declared_range_with_a_maximum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """Another part's setting only needs its range declared to be checked like the rest."""
    from gestor import settings as module

    monkeypatch.setitem(module._BOUNDS, ("purchase", "max_wait"), module._Range(0, False, 60))
    error = refusal(tmp_path, "[purchase]\nmax_wait = 61\n")
    assert str(error) == (f"purchase.max_wait must be at most 60, got 61.0 "
                          f"({tmp_path / 'gestor.toml'}, line 2)")
    error = refusal(tmp_path, "[purchase]\nmax_wait = 0\n")
    assert error.message == "purchase.max_wait must be more than 0 and at most 60, got 0.0"


def test_a_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    error = refusal(tmp_path, "[server]\nworkers = = 2\n")
    assert error.message.startswith("not valid TOML: ")
    assert error.where == f"{tmp_path / 'gestor.toml'}, line 2, column 11"


def test_environment_and_options_are_named(tmp_path: Path) -> None:
    write(tmp_path, "")
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path, environ={"GESTOR_WORKERS": "two"})
    assert caught.value.where == "GESTOR_WORKERS"
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path, environ={}, workers=0)
    assert str(caught.value) == "workers must be at least 1, got 0 (--workers)"
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path, environ={"GESTOR_BIND": "x"})
    assert str(caught.value) == "bind must be HOST:PORT, got 'x' (GESTOR_BIND)"
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path, environ={"GESTOR_API_KEYS": "app=short"})
    assert caught.value.where == "GESTOR_API_KEYS"


def test_every_message_is_one_line(tmp_path: Path) -> None:
    error = SettingsError("first\nsecond", "somewhere")
    assert str(error) == "first second (somewhere)"


# -- finding lines -------------------------------------------------------------------------------
def test_line_of_follows_arrays_of_tables_and_skips_strings() -> None:
    text = (
        "top = 1\n"                     # 1
        "[[bono]]\n"                    # 2
        "id = 'A'\n"                    # 3
        "note = '''\n"                  # 4
        "[[bono]]\n"                    # 5  (inside a string)
        "id = 'fake'\n"                 # 6  (inside a string)
        "'''\n"                         # 7
        "list = [\n"                    # 8
        "  ['x'],\n"                    # 9  (inside an array)
        "]\n"                           # 10
        "[[bono]]\n"                    # 11
        "id = 'B'\n"                    # 12
        "[bono.extra]\n"                # 13
        "deep = 1\n"                    # 14
        '"quoted key" = 2\n'            # 15
    )
    assert line_of(text, ("top",)) == 1
    assert line_of(text, ("bono", 0, "id")) == 3
    assert line_of(text, ("bono", 1, "id")) == 12
    assert line_of(text, ("bono", 1, "extra", "deep")) == 14
    assert line_of(text, ("bono", 1, "extra", "quoted key")) == 15
    assert line_of(text, ("bono", 1, "missing")) == 11  # the nearest enclosing table
    assert line_of(text, ("nowhere",)) is None


def test_syntax_location() -> None:
    assert syntax_location("Invalid value (at line 3, column 7)") == (
        "Invalid value", "line 3, column 7")
    assert syntax_location("Unclosed array (at end of document)") == (
        "Unclosed array", "at the end")
    assert syntax_location("odd") == ("odd", "")
