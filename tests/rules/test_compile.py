"""Compiling rule sets: every problem is reported at once, naming the rule and field."""

from __future__ import annotations

import pytest

from gestor.rules import RuleIssue, RuleLimits, RuleSetError
from tests.rules.support import CATALOGUE, compile_text

CATCH_ALL = """
[[profiling]]
id = "all"
when = "true"
profile_id = "ANY"
"""
SELL = """
[[operations]]
id = "sell"
when = "true"
operation = "debit_and_provision"
"""


def refused(
    text: str, limits: RuleLimits | None = None
) -> dict[tuple[str, str | None, str | None], str]:
    with pytest.raises(RuleSetError) as info:
        compile_text(text, limits=limits)
    return {
        (i.section, i.rule_id, i.field): i.message
        for i in info.value.issues
        if i.severity == "error"
    }


def validation(rule_id: str, when: str, applies_to: str | None = None) -> str:
    guard = f"applies_to = '{applies_to}'\n" if applies_to else ""
    return f"""
[[validation]]
id = "{rule_id}"
when = '{when}'
{guard}code = "C"
message = "m"
"""


def test_syntax_error_names_the_rule() -> None:
    found = refused(CATCH_ALL + SELL + validation("v_syntax", "customer.balance >"))
    assert found[("validation", "v_syntax", "when")].startswith("syntax error: 1:19:")


def test_unknown_variable_names_the_rule() -> None:
    found = refused(CATCH_ALL + SELL + validation("v_unknown", "balance > 1"))
    message = found[("validation", "v_unknown", "when")]
    assert message.startswith("unknown variable or function:")
    assert "undeclared reference to 'balance'" in message


def test_variable_not_available_in_the_section() -> None:
    text = """
[[profiling]]
id = "p_bono"
when = 'bono.kind == "data"'
profile_id = "X"

[[operations]]
id = "o_price"
when = "price > 0"
operation = "debit_and_provision"
"""
    found = refused(text + CATCH_ALL)
    assert "`bono` is not available in profiling rules" in found[("profiling", "p_bono", "when")]
    assert (
        "`price` is not available in operations rules" in found[("operations", "o_price", "when")]
    )


def test_type_errors_name_the_rule_and_field() -> None:
    text = (
        CATCH_ALL
        + validation("v_int", "customer.balance + 1")
        + validation("v_mismatch", '"a" + 1 == "a1"')
        + validation("v_guard", "true", applies_to='"yes"')
        + """
[[operations]]
id = "o_double"
when = 'bono.kind == "data"'
operation = "debit_and_provision"
price = "bono.price * 0.9"

[[operations]]
id = "o_string"
when = 'bono.kind == "voice"'
operation = "debit_and_provision"
price = '"free"'
"""
        + SELL
    )
    found = refused(text)
    assert found[("validation", "v_int", "when")] == (
        "type error: `when` must be bool, but this expression is int"
    )
    assert "found no matching overload for '_+_'" in found[("validation", "v_mismatch", "when")]
    assert "`applies_to` must be bool" in found[("validation", "v_guard", "applies_to")]
    assert (
        "`price` must be int, but this expression is double"
        in found[("operations", "o_double", "price")]
    )
    assert "this expression is string" in found[("operations", "o_string", "price")]


def test_duplicate_ids_across_sections() -> None:
    found = refused(CATCH_ALL + SELL + validation("all", "true") + validation("all", "true"))
    assert found[("validation", "all", "id")].startswith(
        "duplicate rule id (first used in profiling)"
    )


def test_unknown_operation_and_priced_free_operation() -> None:
    text = (
        CATCH_ALL
        + """
[[operations]]
id = "o_gift"
when = 'bono.kind == "sms"'
operation = "give_away"

[[operations]]
id = "o_free"
when = 'bono.kind == "voice"'
operation = "provision_only"
price = "0"
"""
        + SELL
    )
    found = refused(text)
    assert found[("operations", "o_gift", "operation")].startswith("unknown operation 'give_away'")
    assert "provision_only never charges" in found[("operations", "o_free", "price")]


def test_unreachable_rules_after_an_always_true_rule() -> None:
    text = """
[[profiling]]
id = "p_all"
when = "1 == 1"
profile_id = "ANY"

[[profiling]]
id = "p_vip"
when = 'customer.segment == "vip"'
profile_id = "VIP"

[[operations]]
id = "o_all"
when = "(true)"
operation = "debit_and_provision"

[[operations]]
id = "o_vip"
when = 'profile_id == "VIP"'
operation = "provision_only"
"""
    found = refused(text)
    assert found[("profiling", "p_vip", "when")] == (
        "unreachable: rule 'p_all' before it always matches (first match wins)"
    )
    assert found[("operations", "o_vip", "when")].startswith("unreachable: rule 'o_all'")


def test_all_issues_are_collected_at_once() -> None:
    text = (
        CATCH_ALL
        + SELL
        + validation("v1", "customer.balance >")
        + validation("v2", "nope")
        + validation("v3", "1")
    )
    with pytest.raises(RuleSetError) as info:
        compile_text(text)
    assert [i.rule_id for i in info.value.issues] == ["v1", "v2", "v3"]
    assert "v1" in str(info.value) and "v3" in str(info.value)


def test_limits_expression_length_and_nested_comprehensions() -> None:
    long_rule = validation("v_long", " || ".join(['channel == "app"'] * 120))
    nested = validation("v_nested", "restrictions.all(r, restrictions.exists(s, s == r))")
    found = refused(CATCH_ALL + SELL + long_rule + nested)
    assert found[("validation", "v_long", "when")].startswith("expression too long:")
    assert "nested 2 deep (limit 1)" in found[("validation", "v_nested", "when")]
    # A single level is fine, and limits are configurable.
    rules = compile_text(CATCH_ALL + SELL + nested, limits=RuleLimits(max_comprehension_depth=2))
    assert rules.fast_path


def test_excluded_macros_are_unknown() -> None:
    text = CATCH_ALL + SELL + validation("v_map", 'restrictions.map(r, r + "!").size() == 0')
    compile_text(text)  # allowed by default
    found = refused(text, RuleLimits(excluded_macros=frozenset({"map", "filter"})))
    assert found[("validation", "v_map", "when")].startswith("unknown variable or function")


def test_too_deep_nesting_is_refused_by_the_parser() -> None:
    deep = "(" * 40 + "true" + ")" * 40
    found = refused(CATCH_ALL + SELL + validation("v_deep", deep))
    assert found[("validation", "v_deep", "when")].startswith("too deeply nested")


def test_warnings_do_not_refuse() -> None:
    text = """
[[profiling]]
id = "p_vip"
when = 'customer.segment == "vip"'
profile_id = "VIP"

[[profiling]]
id = "p_never"
when = "1 > 2"
profile_id = "NEVER"

[[operations]]
id = "o_promo"
when = 'bono.id == "NO_SUCH_BONO" || bono.id in ["DATA_2GB_7D", "GHOST"]'
operation = "provision_only"
"""
    rules = compile_text(text + SELL)
    assert {(w.section, w.rule_id, w.field, w.message) for w in rules.warnings} == {
        (
            "profiling",
            None,
            None,
            'no catch-all rule (when = "true"); customers that match no rule get profile DEFAULT',
        ),
        ("profiling", "p_never", "when", "never matches (always false)"),
        ("operations", "o_promo", "when", "bono id 'NO_SUCH_BONO' is not in the catalogue"),
        ("operations", "o_promo", "when", "bono id 'GHOST' is not in the catalogue"),
    }
    assert all(isinstance(w, RuleIssue) and w.severity == "warning" for w in rules.warnings)


def test_compiled_metadata() -> None:
    rules = compile_text(CATCH_ALL + SELL, version=7)
    assert rules.version == 7
    assert rules.catalogue is CATALOGUE
    assert rules.spec.operations[0].id == "sell"
    assert rules.warnings == ()
    assert rules.fast_path and "inlined" in rules.fast_path_note
    assert str(rules.tz) == "America/Argentina/Buenos_Aires"


def test_unknown_time_zone() -> None:
    from gestor.rules import compile_rules, parse_rules

    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        compile_rules(parse_rules(CATCH_ALL + SELL), CATALOGUE, tz="Mars/Olympus")
