"""Operations as data: declared step lists, checked at compile time; movement rules and
validation by kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gestor.rules import PurchaseContext, RuleSetError, parse_rules
from tests.rules.support import compile_text

BASE = """
[[profiling]]
id = "all"
when = "true"
profile_id = "ANY"

[[operations]]
id = "sell"
when = "true"
operation = "pay_and_give"
"""
PAY_AND_GIVE = """
[operation.pay_and_give]
steps = [{ do = "debit", undo = "refund" }, { do = "provision" }]
"""


def errors(text: str) -> dict[tuple[str, str | None, str | None], str]:
    with pytest.raises(RuleSetError) as info:
        compile_text(text)
    return {(i.section, i.rule_id, i.field): i.message for i in info.value.issues
            if i.severity == "error"}


def test_a_declared_operation_is_what_rules_name_and_what_the_saga_runs() -> None:
    rules = compile_text(PAY_AND_GIVE + BASE)
    op = rules.operation("pay_and_give")
    assert op is not None and [s.encode() for s in op.steps] == ["debit:refund", "provision"]
    assert rules.operation("debit_and_provision") is None  # declared ones replace the standard
    assert parse_rules(PAY_AND_GIVE + BASE).as_dict()["operation"] == {
        "pay_and_give": {"steps": [{"do": "debit", "undo": "refund"}, {"do": "provision"}]}}


def test_a_rule_set_declaring_none_gets_the_standard_operations() -> None:
    rules = compile_text(BASE.replace("pay_and_give", "provision_only"))
    assert rules.operation("debit_and_provision") is not None
    assert rules.operation("provision_only") is not None


@pytest.mark.parametrize(("steps", "field", "words"), [
    ('[{ do = "teleport" }]', "steps[0]", "unknown step 'teleport'"),
    ('[{ do = "debit" }, { do = "provision" }]', "steps[0]", "missing compensation"),
    ('[{ do = "provision" }, { do = "debit", undo = "refund" }]', "steps[0]",
     "must be the last step"),
    ('[{ do = "debit", undo = "reverse" }, { do = "provision" }]', "steps[0]",
     "undone by undo = 'refund'"),
    ('[{ do = "debit", undo = "refund" }, { do = "debit", undo = "refund" }, '
     '{ do = "provision" }]', "steps[1]", "appears twice"),
    ('[]', "steps", "at least one step"),
    ('[{ do = "recover" }, { do = "provision" }]', "steps[0]", "must be the last step"),
])
def test_bad_operations_are_refused_naming_the_step(steps: str, field: str, words: str) -> None:
    found = errors(f"[operation.pay_and_give]\nsteps = {steps}\n" + BASE)
    assert words in found[("operation", "pay_and_give", field)], found


def test_an_operation_nobody_declares_or_that_sells_no_bono_is_refused() -> None:
    found = errors(PAY_AND_GIVE + BASE.replace('"pay_and_give"', '"give_twice"'))
    assert "nobody declares it" in found[("operations", "sell", "operation")]
    lend = '[operation.lend]\nsteps = [{ do = "advance" }]\n'
    found = errors(PAY_AND_GIVE + lend + BASE.replace('"pay_and_give"', '"lend"'))
    assert "cannot sell a bono" in found[("operations", "sell", "operation")]


MOVEMENTS = PAY_AND_GIVE + """
[operation.transfer]
steps = [{ do = "debit", undo = "refund" }, { do = "credit" }]

[[movements]]
id = "send"
kind = "transfer"
when = "true"
operation = "transfer"
fee = "amount / 10"
max_amount = "1000"

[[validation]]
id = "active_beneficiary"
kinds = ["transfer", "purchase"]
applies_to = "has(beneficiary.msisdn)"
when = 'beneficiary.line_status == "active"'
code = "BENEFICIARY_NOT_ACTIVE"
message = "inactive"

[[validation]]
id = "covers"
kinds = ["transfer"]
when = "customer.balance >= amount + fee"
code = "INSUFFICIENT_BALANCE"
message = "short"
""" + BASE


def _ctx(balance: int, beneficiary_status: str = "active") -> PurchaseContext:
    customer = {"balance": balance, "line_status": "active", "segment": "prepaid"}
    return PurchaseContext(customer, "app", datetime(2026, 11, 26, tzinfo=UTC),
                           beneficiary={"msisdn": "5491100000002",
                                        "line_status": beneficiary_status},
                           kind="transfer")


def test_movement_rules_pick_operation_fee_and_maximum_and_validation_by_kind() -> None:
    rules = compile_text(MOVEMENTS)
    ok = rules.decide_movement(_ctx(10_000), 500)
    assert ok.approved and (ok.operation, ok.fee, ok.max_amount) == ("transfer", 50, 1000)
    short = rules.decide_movement(_ctx(520), 500)
    assert [f.code for f in short.failures] == ["INSUFFICIENT_BALANCE"]
    inactive = rules.decide_movement(_ctx(10_000, "suspended"), 2000)
    assert [f.code for f in inactive.failures] == ["AMOUNT_ABOVE_MAXIMUM",
                                                   "BENEFICIARY_NOT_ACTIVE"]
    advance = rules.decide_movement(PurchaseContext(
        {"balance": 0}, "app", datetime(2026, 11, 26, tzinfo=UTC), kind="advance"), 100)
    assert not advance.approved
    assert [f.code for f in advance.failures] == ["MOVEMENT_NOT_OFFERED"]


def test_a_movement_rule_naming_an_operation_of_another_kind_is_refused() -> None:
    found = errors(MOVEMENTS.replace('operation = "transfer"', 'operation = "pay_and_give"'))
    assert "cannot run a transfer" in found[("movements", "send", "operation")]
    found = errors(MOVEMENTS.replace('kinds = ["transfer"]', 'kinds = ["gift"]'))
    assert "movement kinds" in found[("validation", "covers", "kinds")]
    found = errors(MOVEMENTS.replace('"customer.balance >= amount + fee"',
                                     '"customer.balance >= price"'))
    assert ("validation", "covers", "when") in found  # no price for a transfer
