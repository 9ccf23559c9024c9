"""Typed customer fields: the rules declare every field of the data warehouse (dwh) and the
charging system (ocs) with its type, so misspelt and mistyped fields are compile errors; a
rule set reading every field evaluates right on real simulator profiles."""

from __future__ import annotations

import functools
from typing import Any

import attrs
import msgspec
import pytest
import trio

from gestor.platforms import Account, CustomerData, Profile, open_platforms
from gestor.rules import CUSTOMER_FIELDS, PurchaseContext, RuleSetError, customer_problems
from gestor.rules._source import cel_literal
from gestor.simulator import SimulatorConfig, SimulatorHandle, serve_simulator
from gestor.simulator._synthetic import SyntheticAccount, SyntheticProfile
from tests.platforms.support import fast_settings
from tests.rules.support import NOW, compile_text, context, decide_checked

CATCH_ALL = """
[[profiling]]
id = "p_all"
when = "true"
profile_id = "ANY"

[[operations]]
id = "o_all"
when = "true"
operation = "debit_and_provision"
"""


def _types(cls: type) -> dict[str, type]:
    return {f.name: f.type for f in attrs.fields(attrs.resolve_types(cls))}


def test_the_declarations_are_the_platform_records() -> None:
    """Every field the platforms answer, no other, with the records' types and sources."""
    dwh, ocs = _types(Profile), _types(Account)
    expected = {k: (t, "ocs") for k, t in ocs.items()}
    expected.update({k: (t, "dwh") for k, t in dwh.items()})  # msisdn: both, declared dwh
    assert {f.name: (f.py_type, f.source) for f in CUSTOMER_FIELDS.values()} == expected
    assert list(CUSTOMER_FIELDS) == [a.name for a in attrs.fields(CustomerData)]
    # The simulator's data has the same fields and types (currency is added by the server).
    simulated = {**_types(SyntheticProfile), **_types(SyntheticAccount)}
    assert simulated == {k: v for k, (v, _) in expected.items() if k != "currency"}
    assert {f.name: f.type_name for f in CUSTOMER_FIELDS.values()}["roaming"] == "bool"


def test_a_platform_answer_lacking_a_field_or_mistyped_is_refused() -> None:
    """Why no customer field needs a default: the clients decode answers strictly."""
    good = {"msisdn": "5491100000001", "balance": 5, "currency": "ARS",
            "line_status": "active", "roaming": False, "credit_limit": 0}
    assert msgspec.json.decode(msgspec.json.encode(good), type=Account).balance == 5
    for broken in ({k: v for k, v in good.items() if k != "roaming"}, {**good, "balance": "5"},
                   {**good, "roaming": 0}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(msgspec.json.encode(broken), type=Account)


def refused(when: str, section: str = "validation") -> str:
    """The one error message of a rule `r1` with this `when`."""
    rule = (
        f'[[validation]]\nid = "r1"\nwhen = {when!r}\ncode = "X"\nmessage = "x"\n'
        if section == "validation"
        else f'[[profiling]]\nid = "r1"\nwhen = {when!r}\nprofile_id = "P"\n'
    )
    with pytest.raises(RuleSetError) as info:
        compile_text(rule + CATCH_ALL)
    errors = [i for i in info.value.issues if i.severity == "error"]
    assert [(i.section, i.rule_id, i.field) for i in errors] == [(section, "r1", "when")]
    assert "\n" not in errors[0].message  # one line per problem
    return errors[0].message


@pytest.mark.parametrize(
    ("when", "wrong", "meant"),
    [
        ('customer.segmnt == "corporate"', "segmnt", "segment"),  # dwh
        ("customer.tenure < 3", "tenure", "tenure_months"),  # dwh
        ('customer.Region == "AMBA"', "Region", "region"),  # dwh
        ("customer.balanse > 0", "balanse", "balance"),  # ocs
        ('customer.line_state == "active"', "line_state", "line_status"),  # ocs
        ("customer.roamming", "roamming", "roaming"),  # ocs
    ],
)
def test_a_misspelt_field_is_refused_naming_it(when: str, wrong: str, meant: str) -> None:
    for section in ("profiling", "validation"):
        message = refused(when, section)
        assert message.startswith("unknown variable or function: 1:")
        assert f"unknown customer field {wrong!r} (did you mean {meant!r}?)" in message


@pytest.mark.parametrize(
    ("when", "types"),
    [
        ("customer.segment > 3", "customer.segment is string"),  # dwh
        ('customer.tenure_months == "24"', "customer.tenure_months is int"),  # dwh
        ("customer.plan.startsWith(1)", "customer.plan is string"),  # dwh
        ('customer.balance == "x"', "customer.balance is int"),  # ocs
        ("customer.roaming == 1", "customer.roaming is bool"),  # ocs
        ("customer.credit_limit + customer.currency != 0", "customer.credit_limit is int, "
         "customer.currency is string"),  # ocs
    ],
)
def test_a_mistyped_field_is_refused_with_its_type(when: str, types: str) -> None:
    message = refused(when)
    assert message.startswith("type error: 1:") and "no matching overload" in message
    assert f"(in: {when})" in message and message.endswith(f"[{types}]")


def test_customer_is_only_its_fields() -> None:
    assert "has(customer.<field>)" in refused("has(customer.segment)")
    assert "has(customer.<field>)" in refused('has(.customer.segment) && channel == "app"')
    for bare in ('"segment" in customer', 'customer["segment"] == "vip"', "size(customer) > 0"):
        assert "`customer` is not a value: use its fields" in refused(bare)
    # A misspelt field far from any name gets the list of fields, without a guess.
    message = refused('customer.loyalty_tier == "gold"')
    assert "did you mean" not in message and "customer fields: msisdn, segment," in message
    # A comprehension variable may still be called `customer`.
    rules = compile_text(
        '[[validation]]\nid = "v"\nwhen = "[1, 2].all(customer, customer > 0)"\n'
        'code = "X"\nmessage = "x"\n' + CATCH_ALL
    )
    assert decide_checked(rules, context(), "DATA_2GB_7D").approved


def test_several_problems_are_each_reported() -> None:
    source = """
[[profiling]]
id = "p1"
when = 'customer.segmnt == "vip" && customer.balanc > 0'
profile_id = "VIP"

[[validation]]
id = "v1"
when = 'customer.balance == "x"'
code = "X"
message = "x"
""" + CATCH_ALL
    with pytest.raises(RuleSetError) as info:
        compile_text(source)
    errors = [i for i in info.value.issues if i.severity == "error"]
    assert [(i.rule_id, i.field) for i in errors] == [("p1", "when"), ("v1", "when")]
    assert "'segmnt'" in errors[0].message and "; 1:" in errors[0].message
    assert "'balanc'" in errors[0].message
    assert all("\n" not in str(i) for i in errors)


def test_only_the_fields_a_rule_set_reads_are_bound() -> None:
    rules = compile_text(
        '[[profiling]]\nid = "p"\nwhen = \'customer.segment == "vip" && customer.roaming\'\n'
        'profile_id = "V"\n' + CATCH_ALL
    )
    assert set(rules._bind(context())) == {"customer.segment", "customer.roaming"}
    assert rules.profile(context(segment="vip", roaming=True)).profile_id == "V"


def test_sample_customer_problems() -> None:
    assert customer_problems({"segment": "vip", "balance": 10, "roaming": True}) == []
    assert customer_problems({}) == []  # absent fields are allowed in samples
    problems = customer_problems({"segmnt": "vip", "balance": "10", "roaming": 1,
                                  "credit_limit": None, "tenure_months": 2.5})
    assert problems == [
        ("segmnt", customer_problems({"segmnt": 1})[0][1]),
        ("balance", "customer.balance is int, got string"),
        ("roaming", "customer.roaming is bool, got int"),
        ("credit_limit", "customer.credit_limit is int, got null"),
        ("tenure_months", "customer.tenure_months is int, got double"),
    ]
    assert "unknown customer field 'segmnt' (did you mean 'segment'?)" in problems[0][1]


def every_field_rules(values: dict[str, Any]) -> str:
    """A profiling rule that matches exactly `values` (every field), with every field as
    an attribute, and a validation rule reading every field."""
    exact = " && ".join(f"customer.{k} == {cel_literal(v)}" for k, v in values.items())
    listed = ", ".join(f"string(customer.{k})" for k in CUSTOMER_FIELDS)
    return f"""
[[profiling]]
id = "p_exact"
when = '{exact}'
profile_id = "EXACT"
attributes = {{ fields = '[{listed}]', billed = 'customer.segment != "prepaid"' }}

[[validation]]
id = "v_sane"
when = '''
  customer.msisdn.size() >= 8 && customer.segment != "" && customer.tenure_months >= 0
  && customer.region != "" && customer.device != "" && customer.plan != ""
  && customer.birthday_month >= 1 && customer.birthday_month <= 12
  && customer.language.size() == 2 && customer.balance >= 0 && customer.currency == "ARS"
  && customer.line_status in ["active", "suspended", "barred"]
  && (customer.roaming || !customer.roaming) && customer.credit_limit >= 0
'''
code = "INSANE"
message = "x"
""" + CATCH_ALL


async def test_every_field_evaluates_on_real_simulator_profiles(nursery: trio.Nursery) -> None:
    msisdns = ["5491100000001", "5491123456789", "5493519876543", "5492214567890"]
    with trio.fail_after(30):
        sim: SimulatorHandle = await nursery.start(functools.partial(
            serve_simulator, SimulatorConfig.from_mapping({"seed": 7}), host="127.0.0.1", port=0))
        async with open_platforms(fast_settings(sim.url, timeout=5.0)) as platforms:
            customers = [await platforms.profile(m) for m in msisdns]
    assert len({c.segment for c in customers}) > 1  # different profiles
    for subject in customers:
        values = subject.as_dict()
        assert set(values) == set(CUSTOMER_FIELDS)
        rules = compile_text(every_field_rules(values))
        for other in customers:
            ctx = PurchaseContext(customer=other, channel="app", now=NOW)  # the saga's type
            decision = decide_checked(rules, ctx, "DATA_2GB_7D")
            assert decision.failures == ()  # v_sane passes on every real profile
            profile = rules.profile(ctx)
            if other is subject:
                assert profile.profile_id == "EXACT"
                fields = [cel_literal(v) if type(v) is bool else str(v) for v in values.values()]
                assert profile.attributes["fields"] == fields
                assert profile.attributes["billed"] is (other.segment != "prepaid")
            else:
                assert profile.profile_id == "ANY"
