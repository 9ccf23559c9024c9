"""The cookbook of docs/rules.md: every recipe is read from the document, compiled into a
minimal rule set (recipe first, then a catch-all profile and a default operation) and
checked against sample customers."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from gestor.rules import CompiledRules, Decision
from tests.rules.support import DOCS, NOW, assert_paths_agree, compile_text, context

DEFAULTS = """
[[profiling]]
id = "default_profile"
when = "true"
profile_id = "ANY"

[[operations]]
id = "default_sell"
when = "true"
operation = "debit_and_provision"
"""


def cookbook() -> dict[str, str]:
    """Rule id -> TOML snippet, for every ```toml block of the Cookbook section (a block of
    several rules is keyed by its last rule's id)."""
    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    section = text.split("## Cookbook", 1)[1].split("\n## ", 1)[0]
    snippets: dict[str, str] = {}
    for block in re.findall(r"```toml\n(.*?)```", section, re.S):
        doc = tomllib.loads(block)
        rule = [r for rules in doc.values() for r in rules][-1]
        assert rule["id"] not in snippets, f"duplicate cookbook id {rule['id']}"
        snippets[rule["id"]] = block
    return snippets


SNIPPETS = cookbook()


@attrs.frozen
class Case:
    """A sample request and what the recipe must make of it. `expect` is
    ("profile", id) | ("codes", [codes]) | ("op", rule id, price)."""

    bono: str | None
    ctx: dict[str, Any]
    expect: tuple[Any, ...]


def local(year: int, month: int, day: int, hour: int) -> datetime:
    """A Buenos Aires (UTC-3) local time as an aware UTC datetime."""
    return datetime(year, month, day, hour, tzinfo=UTC) + timedelta(hours=3)


def ago(**delta: float) -> dict[str, Any]:
    return {"last_purchase_at": NOW - timedelta(**delta)}


CASES: dict[str, list[Case]] = {
    "cb_vip": [
        Case(None, {"segment": "vip"}, ("profile", "VIP")),
        Case(None, {}, ("profile", "ANY")),
    ],
    "cb_new_line": [
        Case(None, {"tenure_months": 2}, ("profile", "NEW_LINE")),
        Case(None, {"tenure_months": 3}, ("profile", "ANY")),
    ],
    "cb_balance": [
        Case("DATA_2GB_7D", {"balance": 59999}, ("codes", ["INSUFFICIENT_BALANCE"])),
        Case("DATA_2GB_7D", {"balance": 60000}, ("codes", [])),
        Case("DATA_2GB_7D", {"segment": "postpaid", "balance": 0}, ("codes", [])),
        Case("DATA_2GB_7D", {"segment": "vip", "balance": 0}, ("codes", [])),
        Case(
            "DATA_2GB_7D", {"plan": "PRE_PLUS", "balance": 0}, ("codes", ["INSUFFICIENT_BALANCE"])
        ),
    ],
    "cb_daily_limit": [
        Case(
            "SMS_200_30D", {"history": {"purchases_today": 5}}, ("codes", ["DAILY_LIMIT_REACHED"])
        ),
        Case("SMS_200_30D", {"history": {"purchases_today": 4}}, ("codes", [])),
    ],
    "cb_night_data": [
        Case("DATA_2GB_7D", {"now": local(2026, 11, 24, 3)}, ("op", "cb_night_data", 30000)),
        Case("DATA_2GB_7D", {"now": local(2026, 11, 24, 6)}, ("op", "default_sell", 60000)),
        Case("VOICE_100MIN_7D", {"now": local(2026, 11, 24, 3)}, ("op", "default_sell", 40000)),
    ],
    "cb_weekend_voice": [
        Case(
            "VOICE_100MIN_7D", {"now": local(2026, 11, 28, 23)}, ("op", "cb_weekend_voice", 28000)
        ),
        Case("VOICE_100MIN_7D", {"now": local(2026, 11, 27, 23)}, ("op", "default_sell", 40000)),
    ],
    "cb_ussd_cap": [
        Case("DATA_10GB_30D", {"channel": "ussd"}, ("codes", ["CHANNEL_PRICE_CAP"])),
        Case("DATA_2GB_7D", {"channel": "ussd"}, ("codes", [])),
        Case("DATA_10GB_30D", {"channel": "app"}, ("codes", [])),
    ],
    "cb_line_status": [
        Case("SMS_200_30D", {"line_status": "suspended", "balance": 100}, ("codes", [])),
        Case(
            "SMS_200_30D",
            {"line_status": "suspended", "balance": 0},
            ("codes", ["LINE_NOT_ACTIVE"]),
        ),
        Case("SMS_200_30D", {"line_status": "barred"}, ("codes", ["LINE_NOT_ACTIVE"])),
        Case("SMS_200_30D", {}, ("codes", [])),
    ],
    "cb_roaming": [
        Case("ROAMING_1GB_7D", {}, ("codes", ["NOT_ROAMING"])),
        Case("ROAMING_1GB_7D", {"roaming": True}, ("codes", [])),
        Case(
            "ROAMING_1GB_7D",
            {"roaming": True, "line_status": "suspended"},
            ("codes", ["NOT_ROAMING"]),
        ),
        Case("DATA_2GB_7D", {}, ("codes", [])),
    ],
    "cb_blacklist": [
        Case("DATA_2GB_7D", {"restrictions": ("BLACKLISTED",)}, ("codes", ["BLACKLISTED"])),
        Case("DATA_2GB_7D", {"restrictions": ("OTHER",)}, ("codes", [])),
    ],
    "cb_no_data": [
        Case(
            "COMBO_5GB_300MIN_30D",
            {"restrictions": ("NO_DATA_BONOS",)},
            ("codes", ["DATA_BONOS_RESTRICTED"]),
        ),
        Case("VOICE_100MIN_7D", {"restrictions": ("NO_DATA_BONOS",)}, ("codes", [])),
    ],
    "cb_region_voice": [
        Case("VOICE_100MIN_7D", {"region": "CENTRO"}, ("op", "cb_region_voice", 30000)),
        Case("VOICE_100MIN_7D", {"region": "CUYO"}, ("op", "cb_region_voice", 30000)),
        Case("VOICE_100MIN_7D", {"region": "AMBA"}, ("op", "default_sell", 40000)),
        Case("DATA_2GB_7D", {"region": "CUYO"}, ("op", "default_sell", 60000)),
    ],
    "cb_device_data": [
        Case("DATA_2GB_7D", {"device": "feature"}, ("codes", ["DEVICE_NOT_SUPPORTED"])),
        Case("COMBO_5GB_300MIN_30D", {"device": "feature"}, ("codes", ["DEVICE_NOT_SUPPORTED"])),
        Case("VOICE_100MIN_7D", {"device": "feature"}, ("codes", [])),
        Case("DATA_2GB_7D", {"device": "router"}, ("codes", [])),
    ],
    "cb_welcome": [
        Case("DATA_500MB_1D", {"tenure_months": 1}, ("op", "cb_welcome", 0)),
        Case(
            "DATA_500MB_1D",
            {"tenure_months": 1, "history": ago(days=1)},
            ("op", "default_sell", 15000),
        ),
        Case("DATA_2GB_7D", {"tenure_months": 1}, ("op", "default_sell", 60000)),
        Case(
            "DATA_500MB_1D",
            {"segment": "postpaid", "tenure_months": 1},
            ("op", "default_sell", 15000),
        ),
    ],
    "cb_winback": [
        Case("DATA_2GB_7D", {"history": ago(days=31)}, ("op", "cb_winback", 48000)),
        Case("DATA_2GB_7D", {"history": ago(days=10)}, ("op", "default_sell", 60000)),
        Case("DATA_2GB_7D", {}, ("op", "default_sell", 60000)),
    ],
    "cb_cooldown": [
        Case("SMS_200_30D", {"history": ago(seconds=10)}, ("codes", ["TOO_SOON"])),
        Case("SMS_200_30D", {"history": ago(seconds=60)}, ("codes", [])),
        Case("SMS_200_30D", {}, ("codes", [])),
    ],
    "cb_spend_cap": [
        Case(
            "DATA_2GB_7D",
            {"segment": "postpaid", "credit_limit": 300000, "history": {"spent_month": 250000}},
            ("codes", ["CREDIT_LIMIT_EXCEEDED"]),
        ),
        Case("DATA_2GB_7D", {"segment": "postpaid", "credit_limit": 300000}, ("codes", [])),
        Case(
            "DATA_2GB_7D",
            {"segment": "corporate", "history": {"spent_month": 950000}},
            ("codes", ["CREDIT_LIMIT_EXCEEDED"]),
        ),
        Case("DATA_2GB_7D", {"history": {"spent_month": 10**9}}, ("codes", [])),
    ],
    "cb_loyalty_gold": [
        Case("COMBO_5GB_300MIN_30D", {"tenure_months": 150}, ("op", "cb_loyalty_gold", 230000)),
        Case("COMBO_5GB_300MIN_30D", {"tenure_months": 80}, ("op", "default_sell", 250000)),
        Case("COMBO_5GB_300MIN_30D", {}, ("op", "default_sell", 250000)),
        Case("DATA_2GB_7D", {"tenure_months": 150}, ("op", "default_sell", 60000)),
    ],
    "cb_postpaid_topup": [
        Case(
            "DATA_2GB_7D",
            {"segment": "postpaid", "plan": "POST_5GB"},
            ("op", "cb_postpaid_topup", 51000),
        ),
        Case(
            "DATA_10GB_30D",
            {"segment": "postpaid", "plan": "POST_15GB"},
            ("op", "cb_postpaid_topup", 170000),
        ),
        Case(
            "DATA_2GB_7D",
            {"segment": "postpaid", "plan": "POST_UNLIMITED"},
            ("op", "default_sell", 60000),
        ),
        Case(
            "VOICE_100MIN_7D",
            {"segment": "postpaid", "plan": "POST_5GB"},
            ("op", "default_sell", 40000),
        ),
        Case("DATA_2GB_7D", {}, ("op", "default_sell", 60000)),
    ],
    "cb_unlimited_plan": [
        Case(
            "DATA_2GB_7D",
            {"segment": "postpaid", "plan": "POST_UNLIMITED"},
            ("codes", ["PLAN_HAS_UNLIMITED_DATA"]),
        ),
        Case("COMBO_5GB_300MIN_30D", {"segment": "vip"}, ("codes", ["PLAN_HAS_UNLIMITED_DATA"])),
        Case(
            "DATA_2GB_7D",
            {"segment": "corporate", "plan": "CORP_UNLIMITED"},
            ("codes", ["PLAN_HAS_UNLIMITED_DATA"]),
        ),
        Case("VOICE_100MIN_7D", {"segment": "vip"}, ("codes", [])),
        Case("ROAMING_1GB_7D", {"segment": "vip", "roaming": True}, ("codes", [])),
        Case("DATA_2GB_7D", {"segment": "corporate", "plan": "CORP_POOL"}, ("codes", [])),
        Case("DATA_2GB_7D", {}, ("codes", [])),
    ],
}


def test_every_recipe_has_cases_and_vice_versa() -> None:
    assert len(SNIPPETS) >= 10
    assert set(SNIPPETS) == set(CASES)


@pytest.fixture(scope="module")
def compiled() -> dict[str, CompiledRules]:
    return {rule_id: compile_text(snippet + DEFAULTS) for rule_id, snippet in SNIPPETS.items()}


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_recipe(rule_id: str, compiled: dict[str, CompiledRules]) -> None:
    rules = compiled[rule_id]
    assert rules.warnings == ()
    assert rules.fast_path
    for case in CASES[rule_id]:
        ctx = context(**case.ctx)
        kind, *expected = case.expect
        if kind == "profile":
            assert rules.profile(ctx).profile_id == expected[0], case
        else:
            assert case.bono is not None
            decision: Decision = rules.decide(ctx, case.bono)
            if kind == "codes":
                assert [f.code for f in decision.failures] == expected[0], case
            else:
                assert decision.operation is not None, case
                got = (decision.operation.rule_id, decision.operation.price)
                assert got == tuple(expected), case
        assert_paths_agree(rules, ctx)


def test_vip_recipe_attributes(compiled: dict[str, CompiledRules]) -> None:
    profile = compiled["cb_vip"].profile(context(segment="vip"))
    assert profile.attributes == {"discount_pct": 15, "greeting": "Hola 5491123456789"}
