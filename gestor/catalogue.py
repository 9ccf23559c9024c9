"""The bono catalogue: what Gestor can sell. `config/bonos.toml` seeds version 1; after that,
versions live in the database (`gestor.rulebook` keeps the active one).

Frozen records and a strict parser with no I/O except `load_catalogue`, which reads one file.
A version's source is TOML, or the same document as JSON (`parse_source` tells them apart).
Every problem is reported at once, each naming the entry and field at fault.
Prices are integer minor units (cents) of the catalogue's currency.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

__all__ = [
    "BONO_KINDS",
    "Bono",
    "Catalogue",
    "CatalogueError",
    "catalogue_from_dict",
    "load_catalogue",
    "parse_catalogue",
    "parse_source",
    "problem_at",
]

#: The closed set of bono kinds.
BONO_KINDS = frozenset({"data", "voice", "sms", "combo"})

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_CURRENCY_RE = re.compile(r"[A-Z]{3}\Z")
_BONO_KEYS = frozenset(
    {
        "id",
        "name",
        "kind",
        "price",
        "currency",
        "validity_days",
        "data_mb",
        "voice_min",
        "sms",
        "roaming",
    }
)
_TOP_KEYS = frozenset({"currency", "bono"})


_BONO_PROBLEM = re.compile(r"bono #(\d+)(?: '([^']*)')?: (\w+):")
_TOP_PROBLEM = re.compile(r"(?:unknown top-level key '(\w+)'|(\w+):)")


def problem_at(problem: str) -> tuple[int | None, str | None, str]:
    """Where a `CatalogueError` problem is: (the bono's position from 1, its id, the field),
    the field `currency`, `bono` or `source` (the text itself) outside any one bono."""
    match = _BONO_PROBLEM.match(problem)
    if match:
        return int(match.group(1)), match.group(2), match.group(3)
    match = _TOP_PROBLEM.match(problem)
    if match and not problem.startswith("not valid"):
        return None, None, match.group(1) or match.group(2)
    return None, None, "source"


class CatalogueError(ValueError):
    """The catalogue is malformed. `problems` lists every problem found, one line each."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("invalid bono catalogue:\n  " + "\n  ".join(self.problems))


@attrs.frozen
class Bono:
    """One sellable bundle. `price` is in minor units of `currency`."""

    id: str
    name: str
    kind: str
    price: int
    currency: str
    validity_days: int
    data_mb: int = 0
    voice_min: int = 0
    sms: int = 0
    roaming: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Every field, as seen by rules (the `bono` variable) and by JSON clients."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "price": self.price,
            "currency": self.currency,
            "validity_days": self.validity_days,
            "data_mb": self.data_mb,
            "voice_min": self.voice_min,
            "sms": self.sms,
            "roaming": self.roaming,
        }


def _index(bonos: tuple[Bono, ...]) -> dict[str, Bono]:
    index: dict[str, Bono] = {}
    for bono in bonos:
        if bono.id in index:
            raise CatalogueError([f"bono {bono.id!r}: duplicate id"])
        index[bono.id] = bono
    return index


@attrs.frozen
class Catalogue:
    """The bonos on sale, in file order, all priced in `currency`; `version` is the stored
    version it is (0 for one read from a file)."""

    currency: str
    bonos: tuple[Bono, ...]
    version: int = 0
    _by_id: dict[str, Bono] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_by_id", _index(self.bonos))

    def get(self, bono_id: str) -> Bono | None:
        return self._by_id.get(bono_id)

    def __getitem__(self, bono_id: str) -> Bono:
        return self._by_id[bono_id]

    def __contains__(self, bono_id: object) -> bool:
        return bono_id in self._by_id

    def __iter__(self) -> Iterator[Bono]:
        return iter(self.bonos)

    def __len__(self) -> int:
        return len(self.bonos)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(b.id for b in self.bonos)

    def as_dict(self) -> dict[str, Any]:
        return {"currency": self.currency, "bonos": [b.as_dict() for b in self.bonos]}


def load_catalogue(path: str | os.PathLike[str]) -> Catalogue:
    """Read and parse a catalogue TOML file (the only I/O in this module)."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    return parse_catalogue(text)


def parse_catalogue(text: str) -> Catalogue:
    """Parse catalogue TOML text; raise `CatalogueError` listing every problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError([f"not valid TOML: {exc}"]) from None
    return catalogue_from_dict(doc)


def parse_source(source: str, version: int = 0) -> Catalogue:
    """Parse a stored catalogue version: a JSON document (it starts with `{`; the same keys as
    the TOML, `bonos` accepted for `bono`) or TOML text; raise `CatalogueError`."""
    if source.lstrip().startswith("{"):
        try:
            doc = json.loads(source)
        except ValueError as exc:
            raise CatalogueError([f"not valid JSON: {exc}"]) from None
        if not isinstance(doc, dict):  # pragma: no cover - it starts with '{'
            raise CatalogueError(["a JSON catalogue is an object"])
        if "bonos" in doc and "bono" not in doc:
            doc["bono"] = doc.pop("bonos")
        catalogue = catalogue_from_dict(doc)
    else:
        catalogue = parse_catalogue(source)
    return attrs.evolve(catalogue, version=version)


def catalogue_from_dict(doc: Mapping[str, Any]) -> Catalogue:
    """Build a catalogue from already-parsed TOML data (same checks as `parse_catalogue`)."""
    problems: list[str] = []
    for key in sorted(set(doc) - _TOP_KEYS):
        problems.append(f"unknown top-level key {key!r} (expected 'currency' and [[bono]])")
    currency = doc.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        problems.append(f"currency: must be a 3-letter ISO code like 'ARS', got {currency!r}")
        currency = ""
    entries = doc.get("bono", [])
    if not isinstance(entries, list):
        problems.append("bono: must be an array of tables ([[bono]])")
        entries = []
    if not entries:
        problems.append("bono: the catalogue has no [[bono]] entries")
    bonos: list[Bono] = []
    seen: dict[str, int] = {}
    for n, entry in enumerate(entries, start=1):
        bono = _parse_bono(n, entry, currency, problems)
        if bono is None:
            continue
        if bono.id in seen:
            problems.append(
                f"bono #{n} {bono.id!r}: duplicate id (first defined as bono #{seen[bono.id]})"
            )
            continue
        seen[bono.id] = n
        bonos.append(bono)
    if problems:
        raise CatalogueError(problems)
    return Catalogue(currency=currency, bonos=tuple(bonos))


def _parse_bono(n: int, entry: Any, currency: str, problems: list[str]) -> Bono | None:
    if not isinstance(entry, dict):
        problems.append(f"bono #{n}: must be a table")
        return None
    raw_id = entry.get("id")
    label = f"bono #{n} {raw_id!r}" if isinstance(raw_id, str) else f"bono #{n}"
    before = len(problems)

    def bad(field: str, why: str) -> None:
        problems.append(f"{label}: {field}: {why}")

    for key in sorted(set(entry) - _BONO_KEYS):
        bad(key, "unknown field")
    if not isinstance(raw_id, str) or not _ID_RE.match(raw_id):
        bad("id", f"required; letters, digits, '_', '.', '-' only, got {raw_id!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        bad("name", f"required non-empty string, got {name!r}")
    kind = entry.get("kind")
    if kind not in BONO_KINDS:
        bad("kind", f"must be one of {sorted(BONO_KINDS)}, got {kind!r}")

    def integer(field: str, minimum: int, default: int | None = None) -> int:
        value = entry.get(field, default)
        if value is None:
            bad(field, "required integer")
            return 0
        if not isinstance(value, int) or isinstance(value, bool):
            bad(field, f"must be an integer, got {value!r}")
            return 0
        if value < minimum:
            bad(field, f"must be >= {minimum}, got {value}")
        return value

    price = integer("price", 0)
    validity_days = integer("validity_days", 1)
    data_mb = integer("data_mb", 0, 0)
    voice_min = integer("voice_min", 0, 0)
    sms = integer("sms", 0, 0)
    roaming = entry.get("roaming", False)
    if not isinstance(roaming, bool):
        bad("roaming", f"must be true or false, got {roaming!r}")
    bono_currency = entry.get("currency", currency)
    if bono_currency != currency:
        bad("currency", f"must match the catalogue currency {currency!r}, got {bono_currency!r}")
    allowances = {"data": data_mb, "voice": voice_min, "sms": sms}
    if kind in allowances and allowances[kind] <= 0:
        field = {"data": "data_mb", "voice": "voice_min", "sms": "sms"}[kind]
        bad(field, f"a {kind!r} bono needs {field} > 0")
    if kind == "combo" and sum(1 for v in allowances.values() if v > 0) < 2:
        bad("kind", "a 'combo' bono needs at least two of data_mb, voice_min, sms > 0")
    if len(problems) > before:
        return None
    return Bono(
        id=str(raw_id),
        name=str(name),
        kind=str(kind),
        price=price,
        currency=currency,
        validity_days=validity_days,
        data_mb=data_mb,
        voice_min=voice_min,
        sms=sms,
        roaming=roaming,
    )
