"""The typed `customer` of the rules: every field the data warehouse (dwh) and the charging
system (ocs) provide, with its CEL type, so that the type checker refuses a misspelt or
mistyped field at compile time (docs/rules.md, "`customer` fields").

CEL declares each field as a variable of its own, `customer.<field>` (the checker resolves
the dotted name as one qualified identifier): `customer.segmnt` is an undeclared reference
and `customer.segment > 3` has no matching overload, both compile errors. `customer` on its
own is not a value. `tests/rules/test_fields.py` keeps this table equal to the platform
records (`gestor.platforms.Profile`, `Account`)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from cel_expr_python import cel

#: The variable whose fields are declared one by one.
CUSTOMER = "customer"


@attrs.frozen
class CustomerField:
    """One field of `customer`: its name, CEL type, Python type and source platform."""

    name: str
    cel_type: Any  # cel.Type
    py_type: type
    source: Literal["dwh", "ocs"]

    @property
    def variable(self) -> str:
        return f"{CUSTOMER}.{self.name}"

    @property
    def type_name(self) -> str:
        return str(self.cel_type.name()).lower()


def _field(name: str, py_type: type, source: Literal["dwh", "ocs"]) -> CustomerField:
    cel_type = {str: cel.Type.STRING, int: cel.Type.INT, bool: cel.Type.BOOL}[py_type]
    return CustomerField(name, cel_type, py_type, source)


#: Every customer field, in the order of the platform records (`msisdn` is in both).
CUSTOMER_FIELDS: Mapping[str, CustomerField] = {
    f.name: f
    for f in (
        _field("msisdn", str, "dwh"),
        _field("segment", str, "dwh"),
        _field("tenure_months", int, "dwh"),
        _field("region", str, "dwh"),
        _field("device", str, "dwh"),
        _field("plan", str, "dwh"),
        _field("birthday_month", int, "dwh"),
        _field("language", str, "dwh"),
        _field("balance", int, "ocs"),
        _field("currency", str, "ocs"),
        _field("line_status", str, "ocs"),
        _field("roaming", bool, "ocs"),
        _field("credit_limit", int, "ocs"),
    )
}

#: The CEL declarations: `customer.<field>` -> its type.
CUSTOMER_VARIABLES: Mapping[str, Any] = {f.variable: f.cel_type for f in CUSTOMER_FIELDS.values()}


_JSON_TYPES: Mapping[type, str] = {
    type(None): "null", bool: "bool", int: "int", float: "double", str: "string",
    list: "list", dict: "map",
}


def field_list() -> str:
    return ", ".join(CUSTOMER_FIELDS)


def unknown_field_message(name: str) -> str:
    """The compile error for `customer.<name>` when `name` is not a customer field."""
    close = difflib.get_close_matches(name, CUSTOMER_FIELDS, n=1, cutoff=0.75) or [
        f for f in CUSTOMER_FIELDS if len(name) >= 4 and f.startswith(name.lower())
    ][:1]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown customer field {name!r}{hint}; customer fields: {field_list()} "
        "(open data belongs in profiling `attributes`)"
    )


def customer_problems(customer: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, problem) for each key of a sample customer that is not a customer field or
    whose value has the wrong type. Absent fields are not problems (see docs/rules.md)."""
    problems: list[tuple[str, str]] = []
    for key, value in customer.items():
        spec = CUSTOMER_FIELDS.get(key) if isinstance(key, str) else None
        if spec is None:
            problems.append((str(key), unknown_field_message(str(key))))
        elif type(value) is not spec.py_type:
            got = _JSON_TYPES.get(type(value), type(value).__name__)
            problems.append((key, f"customer.{key} is {spec.type_name}, got {got}"))
    return problems
