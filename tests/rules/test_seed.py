"""The seed rule set (config/rules.toml) against the real catalogue, sample customers and
the platform simulator's synthetic subscribers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from gestor.rules import (
    BONO_NOT_OFFERED,
    OperationChoice,
    PurchaseContext,
    compile_rules,
    load_rules,
)
from gestor.simulator import WELL_KNOWN_PREFIX
from gestor.simulator._synthetic import synthetic_account, synthetic_profile
from tests.rules.support import (
    CATALOGUE,
    CONFIG,
    NOW,
    SEGMENTS,
    TZ,
    assert_paths_agree,
    context,
    customer,
)

SEED = compile_rules(load_rules(CONFIG / "rules.toml"), CATALOGUE, tz=TZ)
DOMESTIC = [b.id for b in CATALOGUE if not b.roaming]


def codes(bono_id: str, **overrides: Any) -> list[str]:
    return [f.code for f in SEED.decide(context(**overrides), bono_id).failures]


def test_the_seed_compiles_cleanly_with_plans() -> None:
    assert SEED.warnings == ()
    assert SEED.fast_path, SEED.fast_path_note
    assert [p.profile_id for p in SEED.spec.profiling] == [
        "VIP",
        "CORPORATE",
        "POSTPAID",
        "PREPAID_NEW",
        "PREPAID",
        "DEFAULT",
    ]


def test_active_prepaid_with_balance_buys_data_2gb() -> None:
    d = SEED.decide(context(), "DATA_2GB_7D")
    assert d.approved
    assert (d.profile_id, d.operation) == (
        "PREPAID",
        OperationChoice("standard", "debit_and_provision", 60000),
    )
    offers = SEED.offers(context())
    assert [o.bono_id for o in offers] == DOMESTIC
    assert all(o.eligible for o in offers)


def test_profiles() -> None:
    assert SEED.profile(context(segment="vip")).profile_id == "VIP"
    assert SEED.profile(context(segment="corporate", plan="CORP_UNLIMITED")).profile_id == (
        "CORPORATE"
    )
    for plan in ("POST_5GB", "POST_15GB", "POST_UNLIMITED"):
        assert SEED.profile(context(segment="postpaid", plan=plan)).profile_id == "POSTPAID"
    for plan in ("PRE_BASIC", "PRE_PLUS"):
        assert SEED.profile(context(plan=plan)).profile_id == "PREPAID"
        assert SEED.profile(context(plan=plan, tenure_months=1)).profile_id == "PREPAID_NEW"
    # Profiles follow the segment, not the plan's product code.
    assert SEED.profile(context(segment="vip", tenure_months=1)).profile_id == "VIP"
    assert SEED.profile(context(segment="postpaid", tenure_months=1)).profile_id == "POSTPAID"
    # The catch-all takes any other segment.
    wholesale = SEED.profile(context(segment="wholesale", plan="WHS_POOL", credit_limit=10**6))
    assert (wholesale.profile_id, wholesale.rule_id) == ("DEFAULT", "catch_all")
    vip = SEED.profile(context(segment="vip"))
    assert vip.attributes == {"discount_pct": 10}


def test_vip_gets_ten_percent_off_domestic_data_within_credit() -> None:
    vip: dict[str, Any] = {"segment": "vip", "plan": "VIP_UNLIMITED", "credit_limit": 300000}
    d = SEED.decide(context(**vip), "DATA_10GB_30D")
    assert d.approved and d.operation == OperationChoice(
        "vip_data_discount", "debit_and_provision", 180000
    )
    assert SEED.decide(context(**vip), "VOICE_100MIN_7D").operation == OperationChoice(
        "standard", "debit_and_provision", 40000
    )
    history = {"spent_month": 200000}
    assert codes("DATA_10GB_30D", history=history, **vip) == ["CREDIT_LIMIT_EXCEEDED"]


def test_birthday_month_discount() -> None:
    d = SEED.decide(context(birthday_month=11), "VOICE_100MIN_7D")  # NOW is in November
    assert d.operation == OperationChoice("birthday_month", "debit_and_provision", 32000)
    assert d.approved


def test_welcome_gift_for_new_prepaid_lines_until_their_first_purchase() -> None:
    d = SEED.decide(context(tenure_months=1, balance=0), "DATA_500MB_1D")
    assert d.approved and d.operation == OperationChoice("welcome_gift", "provision_only", 0)
    bought = {"last_purchase_at": NOW - timedelta(days=1), "purchases_month": 1}
    d = SEED.decide(context(tenure_months=1, balance=0, history=bought), "DATA_500MB_1D")
    assert d.operation == OperationChoice("standard", "debit_and_provision", 15000)
    assert [f.code for f in d.failures] == ["INSUFFICIENT_BALANCE"]


@pytest.mark.parametrize(
    ("bono_id", "overrides", "expected"),
    [
        ("DATA_2GB_7D", {"balance": 59999}, ["INSUFFICIENT_BALANCE"]),
        ("DATA_2GB_7D", {"line_status": "suspended"}, ["LINE_NOT_ACTIVE"]),
        ("DATA_2GB_7D", {"restrictions": ("BLACKLISTED",)}, ["BLACKLISTED"]),
        ("DATA_2GB_7D", {"currency": "USD"}, ["CURRENCY_MISMATCH"]),
        ("DATA_2GB_7D", {"restrictions": ("NO_DATA_BONOS",)}, ["DATA_BONOS_RESTRICTED"]),
        ("COMBO_5GB_300MIN_30D", {"restrictions": ("NO_DATA_BONOS",)}, ["DATA_BONOS_RESTRICTED"]),
        ("VOICE_100MIN_7D", {"restrictions": ("NO_DATA_BONOS",)}, []),
        ("SMS_200_30D", {"history": {"purchases_today": 10}}, ["DAILY_LIMIT_REACHED"]),
        ("SMS_200_30D", {"history": {"purchases_today": 9}}, []),
        (
            "DATA_2GB_7D",
            {"segment": "postpaid", "plan": "POST_5GB", "credit_limit": 50000},
            ["CREDIT_LIMIT_EXCEEDED"],
        ),
        # Billed lines are not limited by their balance, prepaid ones not by a credit limit.
        ("DATA_2GB_7D", {"segment": "postpaid", "balance": 0}, []),
        ("DATA_2GB_7D", {"segment": "corporate", "balance": 0}, []),
        ("DATA_2GB_7D", {"history": {"spent_month": 10**7}}, []),
        (
            "DATA_2GB_7D",
            {"segment": "wholesale", "plan": "WHS_POOL", "credit_limit": 0},
            ["CREDIT_LIMIT_EXCEEDED"],
        ),
        (
            "DATA_2GB_7D",
            {"line_status": "barred", "balance": 0, "restrictions": ("BLACKLISTED",)},
            ["LINE_NOT_ACTIVE", "BLACKLISTED", "INSUFFICIENT_BALANCE"],
        ),
        ("ROAMING_1GB_7D", {}, [BONO_NOT_OFFERED]),
        ("ROAMING_1GB_7D", {"roaming": True}, []),
    ],
)
def test_sample_customers(bono_id: str, overrides: dict[str, Any], expected: list[str]) -> None:
    assert codes(bono_id, **overrides) == expected
    assert_paths_agree(SEED, context(**overrides))


def test_roaming_customers_see_the_roaming_bono() -> None:
    offers = {o.bono_id: o for o in SEED.offers(context(roaming=True, segment="vip"))}
    assert offers["ROAMING_1GB_7D"].price == 350000
    assert offers["ROAMING_1GB_7D"].operation.rule_id == "roaming_bonos"
    assert offers["DATA_2GB_7D"].price == 54000


def simulated(msisdn: str) -> dict[str, Any]:
    """The customer Gestor builds from the simulator's dwh profile and ocs account."""
    profile = attrs.asdict(synthetic_profile(msisdn))
    account = attrs.asdict(synthetic_account(msisdn))
    return {**profile, **account, "currency": "ARS"}


SIMULATED = [simulated(str(5491100000100 + 7919 * i)) for i in range(400)]


def test_sample_customers_look_like_the_simulators() -> None:
    assert set(customer()) == set(SIMULATED[0])
    for segment, (plan, credit_limit) in SEGMENTS.items():
        sample = customer(segment=segment)
        assert (sample["plan"], sample["credit_limit"]) == (plan, credit_limit)
        same = [c for c in SIMULATED if c["segment"] == segment]
        assert same and all(c["credit_limit"] == credit_limit for c in same)
        assert plan in {c["plan"] for c in same}
    for field in ("region", "device", "language", "line_status"):
        assert customer()[field] in {c[field] for c in SIMULATED}, field


@pytest.mark.parametrize("n", [1, 2, 50, 99])
def test_well_known_prepaid_subscribers_buy_data_2gb(n: int) -> None:
    sim = simulated(f"{WELL_KNOWN_PREFIX}{n:02d}")
    assert sim["segment"] == "prepaid" and sim["plan"] in ("PRE_BASIC", "PRE_PLUS")
    ctx = PurchaseContext(customer=sim, channel="ussd", now=NOW)
    assert SEED.profile(ctx).profile_id in ("PREPAID", "PREPAID_NEW")
    d = SEED.decide(ctx, "DATA_2GB_7D")
    assert d.approved, d.failures
    assert d.operation == OperationChoice("standard", "debit_and_provision", 60000)
    offers = {o.bono_id: o for o in SEED.offers(ctx)}
    assert offers["DATA_2GB_7D"].eligible
    assert_paths_agree(SEED, ctx)


def test_every_simulated_segment_gets_its_profile() -> None:
    expected = {"vip": {"VIP"}, "corporate": {"CORPORATE"}, "postpaid": {"POSTPAID"}}
    expected["prepaid"] = {"PREPAID", "PREPAID_NEW"}
    seen = set()
    for sim in SIMULATED:
        ctx = PurchaseContext(customer=sim, channel="app", now=NOW)
        profile_id = SEED.profile(ctx).profile_id
        assert profile_id in expected[sim["segment"]], sim
        seen.add(profile_id)
        if sim["line_status"] == "active" and not sim["roaming"]:
            # Funded prepaid lines and every billed line with an unused limit can buy.
            d = SEED.decide(ctx, "DATA_2GB_7D")
            assert d.operation is not None
            prepaid = sim["segment"] == "prepaid"
            funded = sim["balance"] >= d.operation.price if prepaid else True
            assert d.approved == funded, (sim, d.failures)
    assert seen == {"VIP", "CORPORATE", "POSTPAID", "PREPAID", "PREPAID_NEW"}
