"""Reading rule sets: structure errors name the section, rule and field."""

from __future__ import annotations

import pytest

from gestor.rules import (
    OperationRule,
    ProfilingRule,
    RuleIssue,
    RuleSetError,
    ValidationRule,
    load_rules,
    parse_rules,
)
from tests.rules.support import CONFIG

TEXT = """
description = "test"

[[profiling]]
id = "vip"
when = 'customer.segment == "vip"'
profile_id = "VIP"
attributes = { discount_pct = "10" }

[[validation]]
id = "active"
when = 'customer.line_status == "active"'
code = "LINE_NOT_ACTIVE"
message = "The line is not active"
applies_to = 'bono.kind != "sms"'

[[operations]]
id = "sell"
when = "true"
operation = "debit_and_provision"
price = "bono.price"
"""


def issues(text: str) -> list[RuleIssue]:
    with pytest.raises(RuleSetError) as info:
        parse_rules(text)
    return list(info.value.issues)


def test_parse_builds_the_spec() -> None:
    spec = parse_rules(TEXT)
    assert spec.description == "test"
    assert spec.profiling == (
        ProfilingRule("vip", 'customer.segment == "vip"', "VIP", {"discount_pct": "10"}),
    )
    assert spec.validation == (
        ValidationRule(
            "active",
            'customer.line_status == "active"',
            "LINE_NOT_ACTIVE",
            "The line is not active",
            'bono.kind != "sms"',
        ),
    )
    assert spec.operations == (OperationRule("sell", "true", "debit_and_provision", "bono.price"),)
    assert [(s, r.id) for s, r in spec.rules()] == [
        ("profiling", "vip"),
        ("validation", "active"),
        ("operations", "sell"),
    ]
    assert spec.as_dict()["operations"] == [
        {"id": "sell", "when": "true", "operation": "debit_and_provision", "price": "bono.price"}
    ]


def test_the_seed_rule_set_parses() -> None:
    spec = load_rules(CONFIG / "rules.toml")
    assert spec.profiling[-1].when == "true"
    assert len(spec.validation) >= 6


def test_missing_unknown_and_mistyped_fields() -> None:
    text = """
[[validation]]
id = "v1"
when = "true"
message = "m"
colour = "red"

[[operations]]
id = "o1"
when = 3
operation = "debit_and_provision"

[[profiling]]
when = "true"
profile_id = ""
"""
    found = {(i.section, i.rule_id, i.field): i.message for i in issues(text)}
    assert found[("validation", "v1", "code")] == "required field is missing"
    assert found[("validation", "v1", "colour")].startswith("unknown field")
    assert found[("operations", "o1", "when")] == "must be a string, got int"
    assert found[("profiling", "#1", "id")] == "required field is missing"
    assert found[("profiling", "#1", "profile_id")] == "must not be empty"


def test_bad_ids_attributes_and_sections() -> None:
    text = """
surprise = 1
operations = "nope"

[[profiling]]
id = "has space"
when = "true"
profile_id = "P"
attributes = { "bad-name" = "1", ok = 2 }
"""
    found = {(i.section, i.rule_id, i.field) for i in issues(text)}
    assert ("", None, "surprise") in found
    assert ("operations", None, None) in found
    assert ("profiling", "has space", "id") in found
    assert ("profiling", "has space", "attributes.bad-name") in found
    assert ("profiling", "has space", "attributes.ok") in found


def test_not_toml() -> None:
    (issue,) = issues("[[profiling]\nid=")
    assert issue.message.startswith("not valid TOML")


def test_issue_rendering() -> None:
    issue = RuleIssue("validation", "v1", "when", "syntax error: boom")
    assert str(issue) == "error: validation[v1].when: syntax error: boom"
    error = RuleSetError([issue, RuleIssue("profiling", None, None, "careful", "warning")])
    assert "1 error(s)" in str(error) and "warning: profiling: careful" in str(error)
