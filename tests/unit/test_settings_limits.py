"""`[limits]` in gestor.toml: the shipped buckets, a kind given in part, turning limits off, and
every mistake refused with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gestor.ratelimits import DEFAULT_LIMITS, Limit
from gestor.settings import SettingsError, load_settings

SEED = Path(__file__).resolve().parents[2] / "config" / "gestor.toml"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "gestor.toml").write_text(text)
    return tmp_path


def test_the_shipped_file_has_the_defaults(tmp_path: Path) -> None:
    limits = load_settings(write(tmp_path, SEED.read_text()), environ={}).limits
    assert limits.enabled and limits.sync_interval == 0.1
    assert limits.buckets == DEFAULT_LIMITS
    assert limits.limit("msisdn", "purchase") == Limit(0.2, 5)
    # no file at all: the same
    assert load_settings(write(tmp_path, ""), environ={}).limits.buckets == DEFAULT_LIMITS


def test_a_kind_given_in_part_keeps_the_rest_and_rate_0_turns_it_off(tmp_path: Path) -> None:
    limits = load_settings(write(tmp_path, (
        "[limits.key]\npurchase = { rate = 50 }\n"
        "[limits.msisdn]\nlist = { rate = 0 }\nstatus = { burst = 7 }\n")), environ={}).limits
    assert limits.limit("key", "purchase") == Limit(50.0, DEFAULT_LIMITS["key"]["purchase"].burst)
    assert limits.limit("msisdn", "list") is None
    assert limits.limit("msisdn", "status") == Limit(2.0, 7.0)


def test_limits_can_be_turned_off(tmp_path: Path) -> None:
    limits = load_settings(write(tmp_path, "[limits]\nenabled = false\n"), environ={}).limits
    assert not limits.enabled
    assert all(limits.limit(s, k) is None for s in ("key", "msisdn")
               for k in ("purchase", "list", "status"))


@pytest.mark.parametrize(("text", "message", "line"), [
    ("[limits]\nenabeld = false\n", "unknown key 'enabeld' in [limits]", 2),
    ("[limits]\nenabled = 'no'\n", "limits.enabled must be true or false, got 'no'", 2),
    ("[limits]\nsync_interval = 0\n",
     "limits.sync_interval must be at least 0.01 and at most 10, got 0.0", 2),
    ("[limits.ip]\npurchase = { rate = 1 }\n", "unknown key 'ip' in [limits]", 1),
    ("[limits.key]\nrefund = { rate = 1 }\n", "unknown key 'refund' in [limits.key]", 2),
    ("[limits.key]\npurchase = 5\n",
     "limits.key.purchase must be a table {rate = R, burst = B}, got 5", 2),
    ("[limits.msisdn]\n\npurchase = { rate = 1, brust = 3 }\n",
     "unknown key 'brust' in [limits.msisdn.purchase]", 3),
    ("[limits.msisdn]\npurchase = { rate = -1 }\n",
     "limits.msisdn.purchase.rate must be at least 0 and at most 1000000, got -1.0", 2),
    ("[limits.msisdn.list]\nrate = 1\nburst = 0.5\n",
     "limits.msisdn.list.burst must be at least 1 and at most 1000000000, got 0.5", 3),
    ("[limits]\nkey = 3\n", "limits.key must be a [limits.key] table", 2),
])
def test_mistakes_are_named_with_their_line(tmp_path: Path, text: str, message: str,
                                            line: int) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert caught.value.message == message
    assert caught.value.where == f"{tmp_path / 'gestor.toml'}, line {line}"
