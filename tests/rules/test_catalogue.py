"""The bono catalogue: the real file, and every kind of malformed entry."""

from __future__ import annotations

import pytest

from gestor.catalogue import Bono, Catalogue, CatalogueError, load_catalogue, parse_catalogue
from tests.rules.support import CONFIG

GOOD = """
currency = "ARS"

[[bono]]
id = "A"
name = "Bono A"
kind = "data"
price = 100
validity_days = 1
data_mb = 500

[[bono]]
id = "B"
name = "Bono B"
kind = "combo"
price = 0
validity_days = 30
voice_min = 10
sms = 10
roaming = true
"""


def test_the_config_catalogue_loads_in_file_order() -> None:
    cat = load_catalogue(CONFIG / "bonos.toml")
    assert cat.currency == "ARS"
    assert cat.ids[:2] == ("DATA_500MB_1D", "DATA_2GB_7D")
    assert [b.id for b in cat] == list(cat.ids)
    assert len(cat) == 7
    bono = cat.get("DATA_2GB_7D")
    assert bono == Bono("DATA_2GB_7D", "2 GB for 7 days", "data", 60000, "ARS", 7, data_mb=2048)
    assert cat["ROAMING_1GB_7D"].roaming is True
    assert cat.get("NOPE") is None
    assert "DATA_2GB_7D" in cat and "NOPE" not in cat


def test_parse_defaults_and_as_dict() -> None:
    cat = parse_catalogue(GOOD)
    a, b = cat.bonos
    assert (a.voice_min, a.sms, a.roaming, a.currency) == (0, 0, False, "ARS")
    assert b.as_dict() == {
        "id": "B",
        "name": "Bono B",
        "kind": "combo",
        "price": 0,
        "currency": "ARS",
        "validity_days": 30,
        "data_mb": 0,
        "voice_min": 10,
        "sms": 10,
        "roaming": True,
    }
    assert cat.as_dict()["bonos"][0]["id"] == "A"


def _problems(text: str) -> str:
    with pytest.raises(CatalogueError) as info:
        parse_catalogue(text)
    return "\n".join(info.value.problems)


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('id = "B"', 'id = "A"', "bono #2 'A': duplicate id (first defined as bono #1)"),
        ('kind = "data"', 'kind = "video"', "bono #1 'A': kind: must be one of"),
        ("price = 100", "price = -5", "bono #1 'A': price: must be >= 0, got -5"),
        ("price = 100", 'price = "100"', "bono #1 'A': price: must be an integer"),
        ("price = 100", "price = 1.5", "bono #1 'A': price: must be an integer"),
        ("validity_days = 1", "validity_days = 0", "validity_days: must be >= 1"),
        ('name = "Bono A"', 'name = ""', "bono #1 'A': name: required non-empty string"),
        ("data_mb = 500", "data_mb = 500\ncolour = 1", "bono #1 'A': colour: unknown field"),
        ("data_mb = 500", "", "bono #1 'A': data_mb: a 'data' bono needs data_mb > 0"),
        ("voice_min = 10", "", "bono #2 'B': kind: a 'combo' bono needs at least two"),
        ("roaming = true", 'roaming = "yes"', "bono #2 'B': roaming: must be true or false"),
        ('id = "A"', 'id = "A B"', "bono #1 'A B': id: required; letters"),
        ('currency = "ARS"', 'currency = "pesos"', "currency: must be a 3-letter ISO code"),
        ('id = "A"', 'id = "A"\ncurrency = "USD"', "currency: must match the catalogue currency"),
        ("validity_days = 1\n", "", "bono #1 'A': validity_days: required integer"),
    ],
)
def test_malformed_entries_are_named(replace: str, by: str, expected: str) -> None:
    assert replace in GOOD
    assert expected in _problems(GOOD.replace(replace, by, 1))


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("price = 100", "price = -1").replace('kind = "combo"', 'kind = "x"')
    problems = _problems(text)
    assert "bono #1 'A': price" in problems and "bono #2 'B': kind" in problems


def test_not_toml_and_empty() -> None:
    assert "not valid TOML" in _problems("currency = ")
    assert "no [[bono]] entries" in _problems('currency = "ARS"')
    assert "unknown top-level key 'bonos'" in _problems("bonos = 1\n" + GOOD)


def test_duplicate_ids_refused_by_the_record_too() -> None:
    bono = parse_catalogue(GOOD).bonos[0]
    with pytest.raises(CatalogueError, match="duplicate id"):
        Catalogue("ARS", (bono, bono))
