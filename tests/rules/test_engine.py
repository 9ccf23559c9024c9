"""Evaluating rule sets: first-match profiling and operations, all-failures validation,
prices, offers, run-time errors, explain, and the agreement of both evaluation paths."""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gestor.rules import (
    BONO_NOT_OFFERED,
    NEVER_AGE_S,
    Failure,
    OperationChoice,
    PurchaseContext,
    UnknownBonoError,
)
from tests.rules.support import (
    ABSENT,
    NOW,
    assert_paths_agree,
    compile_text,
    context,
    customer,
    decide_checked,
)

RULES = compile_text(
    """
[[profiling]]
id = "vip"
when = 'customer.segment == "vip" || customer.plan == "PRE_PLUS"'
profile_id = "VIP"
attributes = { discount_pct = "10", label = '"VIP " + customer.msisdn' }

[[profiling]]
id = "new_prepaid"
when = 'customer.segment == "prepaid" && customer.tenure_months < 3'
profile_id = "PREPAID_NEW"

[[profiling]]
id = "prepaid"
when = 'customer.segment == "prepaid"'
profile_id = "PREPAID"

[[profiling]]
id = "other"
when = "true"
profile_id = "OTHER"

[[operations]]
id = "vip_data"
when = 'profile_id == "VIP" && bono.kind == "data" && !bono.roaming'
operation = "debit_and_provision"
price = "bono.price * (100 - attributes.discount_pct) / 100"

[[operations]]
id = "welcome"
when = 'profile_id == "PREPAID_NEW" && bono.id == "DATA_500MB_1D"'
operation = "provision_only"

[[operations]]
id = "roaming"
when = "bono.roaming && customer.roaming"
operation = "debit_and_provision"

[[operations]]
id = "standard"
when = 'bono.kind != "sms" && !bono.roaming'
operation = "debit_and_provision"

[[validation]]
id = "active"
when = 'customer.line_status == "active"'
code = "LINE_NOT_ACTIVE"
message = "The line is not active"

[[validation]]
id = "balance"
applies_to = 'operation == "debit_and_provision"'
when = "customer.balance >= price"
code = "INSUFFICIENT_BALANCE"
message = "Not enough balance"

[[validation]]
id = "no_data"
applies_to = 'bono.kind in ["data", "combo"]'
when = '!("NO_DATA_BONOS" in restrictions)'
code = "DATA_BONOS_RESTRICTED"
message = "No data bonos"

[[validation]]
id = "daily"
when = "history.purchases_today < 3"
code = "DAILY_LIMIT_REACHED"
message = "Daily limit"
"""
)

ACTIVE = Failure("active", "LINE_NOT_ACTIVE", "The line is not active")
BALANCE = Failure("balance", "INSUFFICIENT_BALANCE", "Not enough balance")
NO_DATA = Failure("no_data", "DATA_BONOS_RESTRICTED", "No data bonos")
DAILY = Failure("daily", "DAILY_LIMIT_REACHED", "Daily limit")


# --- profiling -----------------------------------------------------------------------------


def test_first_matching_profiling_rule_wins() -> None:
    # A PRE_PLUS prepaid line in its first month matches vip, new_prepaid and prepaid: vip wins.
    p = RULES.profile(context(plan="PRE_PLUS", tenure_months=1))
    assert (p.profile_id, p.rule_id) == ("VIP", "vip")
    assert p.attributes == {"discount_pct": 10, "label": "VIP 5491123456789"}
    assert RULES.profile(context(segment="vip", tenure_months=1)).profile_id == "VIP"
    assert RULES.profile(context(tenure_months=1)).profile_id == "PREPAID_NEW"
    assert RULES.profile(context()).profile_id == "PREPAID"
    other = RULES.profile(context(segment="postpaid"))
    assert (other.profile_id, other.rule_id, dict(other.attributes)) == ("OTHER", "other", {})


def test_no_matching_profiling_rule_gives_default() -> None:
    rules = compile_text(
        """
[[profiling]]
id = "vip"
when = 'customer.segment == "vip"'
profile_id = "VIP"

[[operations]]
id = "sell"
when = 'profile_id == "DEFAULT"'
operation = "debit_and_provision"
"""
    )
    ctx = context()
    p = rules.profile(ctx)
    assert (p.profile_id, p.rule_id) == ("DEFAULT", None)
    assert decide_checked(rules, ctx, "DATA_2GB_7D").approved
    assert_paths_agree(rules, ctx)


# --- operations ----------------------------------------------------------------------------


def test_operation_selection_and_price_override() -> None:
    d = decide_checked(RULES, context(segment="vip"), "DATA_2GB_7D")
    assert d.operation == OperationChoice("vip_data", "debit_and_provision", 54000)
    assert d.approved and d.failures == ()
    assert (d.profile_id, d.profile_rule_id, d.version, d.bono_id) == (
        "VIP",
        "vip",
        1,
        "DATA_2GB_7D",
    )
    # Voice is not data: the VIP rule does not match, the standard one does, full price.
    d = decide_checked(RULES, context(segment="vip"), "VOICE_100MIN_7D")
    assert d.operation == OperationChoice("standard", "debit_and_provision", 40000)


def test_provision_only_is_free_and_skips_the_balance_check() -> None:
    d = decide_checked(RULES, context(tenure_months=1, balance=0), "DATA_500MB_1D")
    assert d.operation == OperationChoice("welcome", "provision_only", 0)
    assert d.approved


def test_validation_sees_the_effective_price() -> None:
    # 55,000 is enough for the VIP price of DATA_2GB_7D (54,000), not for the list price.
    assert decide_checked(RULES, context(segment="vip", balance=55000), "DATA_2GB_7D").approved
    d = decide_checked(RULES, context(balance=55000), "DATA_2GB_7D")
    assert d.operation is not None and d.operation.price == 60000
    assert d.failures == (BALANCE,)


def test_no_operation_rule_means_not_offered() -> None:
    d = decide_checked(RULES, context(line_status="barred"), "SMS_200_30D")
    assert d.operation is None and not d.approved
    assert d.failures == (
        Failure(None, BONO_NOT_OFFERED, "Bono SMS_200_30D is not offered to profile PREPAID"),
    )
    # Roaming bonos only for roaming customers.
    assert decide_checked(RULES, context(), "ROAMING_1GB_7D").operation is None
    assert decide_checked(RULES, context(roaming=True), "ROAMING_1GB_7D").approved


# --- validation ----------------------------------------------------------------------------


def test_every_failing_validation_rule_is_reported_in_order() -> None:
    ctx = context(
        line_status="suspended",
        balance=100,
        restrictions=("NO_DATA_BONOS",),
        history={"purchases_today": 3},
    )
    d = decide_checked(RULES, ctx, "DATA_2GB_7D")
    assert d.failures == (ACTIVE, BALANCE, NO_DATA, DAILY)
    # applies_to: the data restriction does not apply to voice.
    d = decide_checked(RULES, ctx, "VOICE_100MIN_7D")
    assert d.failures == (ACTIVE, BALANCE, DAILY)
    assert d.operation is not None  # offered, but not approved
    assert not d.approved


# --- offers --------------------------------------------------------------------------------


def test_offers_for_a_profile() -> None:
    ctx = context(segment="vip", balance=50000)
    offers = RULES.offers(ctx)
    # SMS: no rule; roaming: not roaming. Catalogue order.
    assert [o.bono.id for o in offers] == [
        "DATA_500MB_1D",
        "DATA_2GB_7D",
        "DATA_10GB_30D",
        "VOICE_100MIN_7D",
        "COMBO_5GB_300MIN_30D",
    ]
    by_id = {o.bono_id: o for o in offers}
    assert by_id["DATA_500MB_1D"].price == 13500 and by_id["DATA_500MB_1D"].eligible
    assert by_id["DATA_2GB_7D"].price == 54000
    assert not by_id["DATA_2GB_7D"].eligible
    assert by_id["DATA_2GB_7D"].failures == (BALANCE,)
    assert by_id["VOICE_100MIN_7D"].operation.rule_id == "standard"
    assert by_id["COMBO_5GB_300MIN_30D"].price == 250000
    listing = RULES.listing(ctx)
    assert listing.profile.profile_id == "VIP" and listing.version == 1
    assert listing.offers == tuple(offers)
    assert offers[0].as_dict()["bono"]["id"] == "DATA_500MB_1D"
    assert_paths_agree(RULES, ctx)


def test_offers_are_stable_across_calls() -> None:
    ctx = context()
    assert RULES.offers(ctx) == RULES.offers(ctx)  # the memoised fast case is equal


# --- run-time errors -----------------------------------------------------------------------

ERRORS = compile_text(
    """
[[profiling]]
id = "p_missing"
when = 'customer.region != ""'
profile_id = "CORP"

[[profiling]]
id = "p_bad_attr"
when = 'customer.segment == "vip"'
profile_id = "VIP"
attributes = { tier = "int(customer.plan)" }

[[profiling]]
id = "p_all"
when = "true"
profile_id = "ANY"

[[operations]]
id = "o_missing"
when = 'customer.language == "X"'
operation = "provision_only"

[[operations]]
id = "o_bad_price"
when = 'bono.kind == "voice"'
operation = "debit_and_provision"
price = 'bono.price * 24 / customer.tenure_months'

[[operations]]
id = "o_negative"
when = 'bono.kind == "sms"'
operation = "debit_and_provision"
price = 'bono.price - 100000'

[[operations]]
id = "o_all"
when = "true"
operation = "debit_and_provision"

[[validation]]
id = "v_missing"
when = "customer.credit_limit > 10"
code = "LOW_SCORE"
message = "Score too low"

[[validation]]
id = "v_guard"
applies_to = 'customer.currency == "ARS"'
when = "true"
code = "FLAGGED"
message = "Flagged"

[[validation]]
id = "v_dyn"
when = "dyn(customer.segment)"
code = "NOT_BOOL"
message = "Not a bool"

[[validation]]
id = "v_ok"
when = 'customer.line_status == "active"'
code = "LINE_NOT_ACTIVE"
message = "Inactive"
"""
)


#: A customer for which ERRORS' rules fail at run time: absent fields, a zero divisor.
BROKEN: dict[str, Any] = {
    "tenure_months": 0,
    "region": ABSENT,
    "language": ABSENT,
    "credit_limit": ABSENT,
    "currency": ABSENT,
}


def test_runtime_errors_never_crash_a_purchase() -> None:
    ctx = context(segment="vip", **BROKEN)
    d = decide_checked(ERRORS, ctx, "DATA_2GB_7D")
    # Profiling: p_missing errors (skipped), p_bad_attr's attribute errors (skipped).
    assert (d.profile_id, d.profile_rule_id) == ("ANY", "p_all")
    # Operations: o_missing errors (skipped), the default rule applies.
    assert d.operation == OperationChoice("o_all", "debit_and_provision", 60000)
    # Validation: each erroring rule is a failure with its code and the error text.
    codes = [(f.rule_id, f.code) for f in d.failures]
    assert codes == [("v_missing", "LOW_SCORE"), ("v_guard", "FLAGGED"), ("v_dyn", "NOT_BOOL")]
    assert d.failures[0].message.startswith("Score too low (rule error: when: ")
    assert "customer.credit_limit" in d.failures[0].message
    assert "applies_to:" in d.failures[1].message
    assert d.failures[2].message == "Not a bool (rule error: when: expected bool, got string)"


def test_an_erroring_price_means_not_offered() -> None:
    ctx = context(tenure_months=0)
    d = decide_checked(ERRORS, ctx, "VOICE_100MIN_7D")
    assert d.operation is None
    (failure,) = d.failures
    assert (failure.rule_id, failure.code) == ("o_bad_price", BONO_NOT_OFFERED)
    assert "the price of operation rule o_bad_price failed" in failure.message
    d = decide_checked(ERRORS, ctx, "SMS_200_30D")
    assert d.operation is None and "negative price -80000" in d.failures[0].message
    offered = [o.bono_id for o in ERRORS.offers(ctx)]
    assert "VOICE_100MIN_7D" not in offered and "SMS_200_30D" not in offered
    assert "DATA_2GB_7D" in offered
    assert_paths_agree(ERRORS, ctx)


def test_explain_shows_every_rule_outcome() -> None:
    report = ERRORS.explain(context(segment="vip", **BROKEN), "VOICE_100MIN_7D")
    outcomes = {
        section: [(e["id"], e["outcome"]) for e in report[section]]
        for section in ("profiling", "operations", "validation")
    }
    assert outcomes["profiling"] == [
        ("p_missing", "error"),
        ("p_bad_attr", "error"),
        ("p_all", "matched"),
    ]
    assert outcomes["operations"] == [
        ("o_missing", "error"),
        ("o_bad_price", "error"),
        ("o_negative", "not_evaluated"),
        ("o_all", "not_evaluated"),
    ]
    assert outcomes["validation"] == [
        ("v_missing", "not_evaluated"),
        ("v_guard", "not_evaluated"),
        ("v_dyn", "not_evaluated"),
        ("v_ok", "not_evaluated"),
    ]
    assert report["profiling"][1]["error"].startswith("attributes.tier: ")
    assert report["operations"][1]["error"].startswith("price: ")
    assert report["decision"]["approved"] is False
    assert report["computed"] == {
        "hour": 12,
        "weekday": 2,
        "last_purchase_age_s": NEVER_AGE_S,
    }

    report = RULES.explain(context(balance=0), "VOICE_100MIN_7D")
    assert [(e["id"], e["outcome"]) for e in report["validation"]] == [
        ("active", "passed"),
        ("balance", "failed"),
        ("no_data", "skipped"),
        ("daily", "passed"),
    ]
    assert report["operations"][-1] == {
        "id": "standard",
        "operation": "debit_and_provision",
        "outcome": "matched",
        "price": 40000,
    }


def test_unknown_bono() -> None:
    with pytest.raises(UnknownBonoError, match="NOPE") as info:
        RULES.decide(context(), "NOPE")
    assert isinstance(info.value, KeyError) and str(info.value) == "unknown bono 'NOPE'"
    with pytest.raises(KeyError):
        RULES.explain(context(), "NOPE")


# --- the context ---------------------------------------------------------------------------

CONTEXT_RULES = compile_text(
    """
[[profiling]]
id = "p"
when = "true"
profile_id = "ANY"

[profiling.attributes]
hour = "hour"
weekday = "weekday"
day = "day"
month = "month"
channel = "channel"
age = "history.last_purchase_age_s"
last = "history.last_purchase_at"
today = "history.purchases_today"
utc_hour = "now.getHours()"
r = "restrictions"

[[operations]]
id = "o"
when = "true"
operation = "debit_and_provision"
"""
)


def test_local_time_variables_use_the_configured_zone() -> None:
    # Sunday 2026-03-01 01:30 in Buenos Aires is Sunday 04:30 UTC.
    now = datetime(2026, 3, 1, 4, 30, tzinfo=UTC)
    attrs = CONTEXT_RULES.profile(context(now=now, channel="ussd")).attributes
    assert (attrs["hour"], attrs["weekday"], attrs["day"], attrs["month"]) == (1, 7, 1, 3)
    assert attrs["utc_hour"] == 4
    assert attrs["channel"] == "ussd"


def test_history_defaults_and_last_purchase() -> None:
    attrs = CONTEXT_RULES.profile(context()).attributes
    assert (attrs["today"], attrs["age"], attrs["last"]) == (0, NEVER_AGE_S, None)
    last = NOW - timedelta(minutes=5)
    attrs = CONTEXT_RULES.profile(context(history={"last_purchase_at": last})).attributes
    assert attrs["age"] == 300
    assert attrs["last"] == "2026-11-24T14:55:00Z"
    rules = compile_text(
        """
[[profiling]]
id = "recent"
when = '''
  history.last_purchase_at != null
  && now - timestamp(history.last_purchase_at) < duration("1h")
'''
profile_id = "RECENT"

[[profiling]]
id = "p"
when = "true"
profile_id = "ANY"

[[operations]]
id = "o"
when = "true"
operation = "debit_and_provision"
"""
    )
    assert rules.profile(context(history={"last_purchase_at": last})).profile_id == "RECENT"
    old = NOW - timedelta(hours=2)
    assert rules.profile(context(history={"last_purchase_at": old})).profile_id == "ANY"
    assert rules.profile(context()).profile_id == "ANY"


def test_context_accepts_mappings_and_tuples() -> None:
    ctx = PurchaseContext(
        customer=types.MappingProxyType(customer()),
        channel="web",
        now=NOW,
        restrictions=("A", "B"),
        history=types.MappingProxyType({"purchases_today": 2}),
    )
    attrs = CONTEXT_RULES.profile(ctx).attributes
    assert attrs["r"] == ["A", "B"] and attrs["today"] == 2


def test_context_is_validated() -> None:
    with pytest.raises(ValueError, match="channel must be one of"):
        PurchaseContext(customer(), "fax", NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        PurchaseContext(customer(), "app", datetime(2026, 1, 1))


# --- both evaluation paths -----------------------------------------------------------------


def test_rules_using_bono_as_a_whole_use_bound_plans() -> None:
    rules = compile_text(
        """
[[profiling]]
id = "p"
when = "true"
profile_id = "ANY"

[[operations]]
id = "o_has"
when = 'has(bono.sms) && bono.sms > 0'
operation = "debit_and_provision"
price = "bono.price + 1"

[[operations]]
id = "o"
when = 'bono["kind"] == "data"'
operation = "debit_and_provision"
"""
    )
    assert rules.fast_path and "bono bound" in rules.fast_path_note
    ctx = context()
    assert [o.bono_id for o in rules.offers(ctx)] == [
        "DATA_500MB_1D",
        "DATA_2GB_7D",
        "DATA_10GB_30D",
        "SMS_200_30D",
        "COMBO_5GB_300MIN_30D",
        "ROAMING_1GB_7D",
    ]
    assert decide_checked(rules, ctx, "SMS_200_30D").operation == OperationChoice(
        "o_has", "debit_and_provision", 20001
    )
    assert_paths_agree(rules, ctx)


def test_rule_sets_too_deep_for_plans_are_evaluated_rule_by_rule() -> None:
    deep = "(" * 31 + 'customer.segment == "prepaid"' + ")" * 31
    rules = compile_text(
        f"""
[[profiling]]
id = "deep"
when = '{deep}'
profile_id = "PREPAID"

[[profiling]]
id = "p"
when = "true"
profile_id = "ANY"

[[operations]]
id = "o"
when = "true"
operation = "debit_and_provision"

[[validation]]
id = "v"
when = "customer.balance >= price"
code = "INSUFFICIENT_BALANCE"
message = "m"
"""
    )
    assert not rules.fast_path and "rule by rule" in rules.fast_path_note
    ctx = context(balance=50000)
    assert rules.profile(ctx).profile_id == "PREPAID"
    assert [(o.bono_id, o.eligible) for o in rules.offers(ctx)][:3] == [
        ("DATA_500MB_1D", True),
        ("DATA_2GB_7D", False),
        ("DATA_10GB_30D", False),
    ]
    assert_paths_agree(rules, ctx)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"segment": "vip"},
        {"segment": "vip", "balance": 0, "roaming": True},
        {"tenure_months": 0, "balance": 14999},
        {"segment": "postpaid", "line_status": "suspended"},
        {"plan": "PRE_PLUS", "tenure_months": 1},
        {"restrictions": ("NO_DATA_BONOS",), "history": {"purchases_today": 5}},
        {"segment": 7},  # a wrong type: errors, fallback
        {"plan": None},
        {"segment": None},
    ],
)
def test_plans_agree_with_per_rule_evaluation(overrides: dict[str, object]) -> None:
    assert_paths_agree(RULES, context(**overrides))  # type: ignore[arg-type]
    assert_paths_agree(ERRORS, context(**overrides))  # type: ignore[arg-type]


def test_an_empty_rule_set_offers_nothing() -> None:
    rules = compile_text("")
    assert [w.message.split(";")[0] for w in rules.warnings] == [
        'no catch-all rule (when = "true")'
    ]
    ctx = context()
    assert rules.offers(ctx) == []
    d = decide_checked(rules, ctx, "DATA_2GB_7D")
    assert d.profile_id == "DEFAULT" and [f.code for f in d.failures] == [BONO_NOT_OFFERED]


def test_plans_agree_with_per_rule_evaluation_on_random_customers() -> None:
    import random

    from tests.rules.test_seed import SEED

    rng = random.Random(20261124)
    values: dict[str, list[object]] = {
        "segment": ["prepaid", "postpaid", "corporate", "vip", "wholesale", 3, None],
        "plan": ["PRE_BASIC", "PRE_PLUS", "POST_5GB", "CORP_POOL", "VIP_UNLIMITED", None],
        "tenure_months": [0, 2, 3, 40],
        "balance": [0, 14999, 15000, 54000, 60000, 10**7],
        "line_status": ["active", "suspended", "barred"],
        "roaming": [True, False],
        "birthday_month": [1, 11, 12],
        "credit_limit": [0, 100000, 10**7],
        "region": ["AMBA", ABSENT],
        "language": ["es", ABSENT],
        "currency": ["ARS", "USD", ABSENT],
    }
    for _ in range(60):
        overrides: dict[str, Any] = {
            k: rng.choice(v) for k, v in values.items() if rng.random() < 0.6
        }
        if rng.random() < 0.1:
            overrides[rng.choice(["line_status", "balance", "segment"])] = {"odd": "map"}
        restrictions = tuple(
            r for r in ("NO_DATA_BONOS", "BLACKLISTED", "OTHER") if rng.random() < 0.2
        )
        history: dict[str, Any] = {
            "purchases_today": rng.choice([0, 9, 10]),
            "spent_month": rng.choice([0, 90000, 10**6]),
        }
        if rng.random() < 0.5:
            history["last_purchase_at"] = NOW - timedelta(minutes=rng.choice([1, 10**5]))
        channel = rng.choice(["app", "ussd", "ivr"])
        ctx = context(channel, restrictions=restrictions, history=history, **overrides)
        for rules in (SEED, RULES, ERRORS):
            assert_paths_agree(rules, ctx)


def test_large_catalogues_are_listed_in_several_plan_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gestor.rules import _plan, compile_rules

    monkeypatch.setattr(_plan, "MAX_PLAN_CHARS", 1)  # one bono per group
    for rules in (RULES, ERRORS):
        small = compile_rules(rules.spec, rules.catalogue, tz=rules.tz)
        assert small._plans is not None and len(small._plans.offers) == len(rules.catalogue)
        for ctx in (context(), context(segment="vip", **BROKEN), context(segment=1)):
            assert small.listing(ctx) == rules.listing(ctx)
            assert_paths_agree(small, ctx)
