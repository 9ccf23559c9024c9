"""Reading a rule set from TOML into a `RuleSetSpec`: structure only (sections, fields,
types). Expressions are checked by `compile_rules`. The only I/O is `load_rules`."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from gestor.rules._model import (
    MOVEMENT_KINDS,
    RULE_KINDS,
    MovementRule,
    OperationRule,
    ProfilingRule,
    Rule,
    RuleIssue,
    RuleSetError,
    RuleSetSpec,
    Section,
    ValidationRule,
)
from gestor.rules._operations import Operation, operation_from_dict

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
ATTRIBUTE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_FIELDS: Mapping[Section, tuple[frozenset[str], frozenset[str]]] = {
    # section: (required fields, optional fields)
    "profiling": (
        frozenset({"id", "when", "profile_id"}),
        frozenset({"attributes", "description"}),
    ),
    "validation": (
        frozenset({"id", "when", "code", "message"}),
        frozenset({"applies_to", "description", "kinds"}),
    ),
    "operations": (
        frozenset({"id", "when", "operation"}),
        frozenset({"price", "description"}),
    ),
    "movements": (
        frozenset({"id", "kind", "when", "operation"}),
        frozenset({"fee", "max_amount", "description"}),
    ),
}
_LISTS = frozenset({"attributes", "kinds"})
_TOP_KEYS = frozenset({"description", "profiling", "validation", "operations", "operation",
                       "movements"})


def load_rules(path: str | os.PathLike[str]) -> RuleSetSpec:
    """Read and parse a rule-set TOML file."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    return parse_rules(text)


def parse_rules(text: str) -> RuleSetSpec:
    """Parse rule-set TOML text; raise `RuleSetError` listing every structural problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleSetError([RuleIssue("", None, None, f"not valid TOML: {exc}")]) from None
    except RecursionError:  # `a = [[[[…` or `{a = {a = …` thousands deep
        raise RuleSetError([RuleIssue("", None, None, "not valid TOML: arrays or inline "
                                      "tables nest too deeply")]) from None
    return rules_from_dict(doc)


def rules_from_dict(doc: Mapping[str, Any]) -> RuleSetSpec:
    """Build a spec from parsed TOML (or JSON) data, with the checks of `parse_rules`."""
    issues: list[RuleIssue] = []
    for key in sorted(set(doc) - _TOP_KEYS):
        issues.append(
            RuleIssue(
                "",
                None,
                key,
                "unknown top-level key (expected [[profiling]], [[validation]], "
                "[[operations]], [operation.<name>] and an optional description)",
            )
        )
    description = doc.get("description", "")
    if not isinstance(description, str):
        issues.append(RuleIssue("", None, "description", "must be a string"))
        description = ""
    profiling = _section(doc, "profiling", _profiling, issues)
    validation = _section(doc, "validation", _validation, issues)
    operations = _section(doc, "operations", _operations, issues)
    movements = _section(doc, "movements", _movements, issues)
    declared = _declared(doc.get("operation", {}), issues)
    if issues:
        raise RuleSetError(issues)
    return RuleSetSpec(
        profiling=tuple(r for r in profiling if isinstance(r, ProfilingRule)),
        validation=tuple(r for r in validation if isinstance(r, ValidationRule)),
        operations=tuple(r for r in operations if isinstance(r, OperationRule)),
        description=description,
        declared=tuple(declared),
        movements=tuple(r for r in movements if isinstance(r, MovementRule)),
    )


def _declared(tables: Any, issues: list[RuleIssue]) -> list[Operation]:
    """The `[operation.<name>]` tables: the operations the rules may name."""
    if not isinstance(tables, dict):
        issues.append(RuleIssue("operation", None, None,
                                "must be tables: [operation.<name>] with `steps`"))
        return []
    out = []
    for name, entry in tables.items():
        if not ID_RE.match(name):
            issues.append(RuleIssue("operation", name, None,
                                    "letters, digits, '_', '.', '-' only"))
            continue
        op, problems = operation_from_dict(name, entry)
        issues += [RuleIssue("operation", name, field, message) for field, message in problems]
        if op is not None:
            out.append(op)
    return out


def _section(
    doc: Mapping[str, Any],
    section: Section,
    build: Callable[[dict[str, Any]], Rule],
    issues: list[RuleIssue],
) -> list[Rule]:
    entries = doc.get(section, [])
    if not isinstance(entries, list):
        issues.append(RuleIssue(section, None, None, f"must be an array of tables ([[{section}]])"))
        return []
    required, optional = _FIELDS[section]
    rules: list[Rule] = []
    for n, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            issues.append(RuleIssue(section, f"#{n}", None, "must be a table"))
            continue
        raw_id = entry.get("id")
        rule_id = raw_id if isinstance(raw_id, str) and raw_id else f"#{n}"
        before = len(issues)

        def bad(field: str | None, message: str, rule_id: str = rule_id) -> None:
            issues.append(RuleIssue(section, rule_id, field, message))

        for key in sorted(set(entry) - required - optional):
            bad(key, f"unknown field (allowed: {', '.join(sorted(required | optional))})")
        for key in sorted(required - set(entry)):
            bad(key, "required field is missing")
        for key in sorted((required | optional) - _LISTS):
            if key in entry and not isinstance(entry[key], str):
                bad(key, f"must be a string, got {type(entry[key]).__name__}")
            elif key in entry and key != "description" and not entry[key].strip():
                bad(key, "must not be empty")
        if isinstance(raw_id, str) and raw_id and not ID_RE.match(raw_id):
            bad("id", "letters, digits, '_', '.', '-' only")
        if "attributes" in entry:
            _check_attributes(entry["attributes"], bad)
        if "kinds" in entry and (not isinstance(entry["kinds"], list) or not entry["kinds"]
                                 or any(k not in RULE_KINDS for k in entry["kinds"])):
            bad("kinds", f"a non-empty list of movement kinds among {', '.join(RULE_KINDS)}")
        if "kind" in entry and entry["kind"] not in MOVEMENT_KINDS:
            bad("kind", f"one of {', '.join(MOVEMENT_KINDS)} (purchases have [[operations]])")
        if len(issues) == before:
            rules.append(build(entry))
    return rules


def _check_attributes(value: Any, bad: Callable[[str | None, str], None]) -> None:
    if not isinstance(value, dict):
        bad("attributes", "must be a table of name = CEL expression")
        return
    for name, expr in value.items():
        if not ATTRIBUTE_RE.match(name):
            bad(
                f"attributes.{name}", "attribute names must be identifiers ([A-Za-z_][A-Za-z0-9_]*)"
            )
        if not isinstance(expr, str) or not expr.strip():
            bad(f"attributes.{name}", "must be a CEL expression (a non-empty string)")


def _profiling(e: dict[str, Any]) -> Rule:
    return ProfilingRule(
        id=e["id"],
        when=e["when"],
        profile_id=e["profile_id"],
        attributes=e.get("attributes", {}),
        description=e.get("description", ""),
    )


def _validation(e: dict[str, Any]) -> Rule:
    return ValidationRule(
        id=e["id"],
        when=e["when"],
        code=e["code"],
        message=e["message"],
        applies_to=e.get("applies_to"),
        description=e.get("description", ""),
        kinds=tuple(e.get("kinds", ("purchase",))),
    )


def _movements(e: dict[str, Any]) -> Rule:
    return MovementRule(
        id=e["id"],
        kind=e["kind"],
        when=e["when"],
        operation=e["operation"],
        fee=e.get("fee"),
        max_amount=e.get("max_amount"),
        description=e.get("description", ""),
    )


def _operations(e: dict[str, Any]) -> Rule:
    return OperationRule(
        id=e["id"],
        when=e["when"],
        operation=e["operation"],
        price=e.get("price"),
        description=e.get("description", ""),
    )
