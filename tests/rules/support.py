"""Shared helpers for the rules tests: the real catalogue, sample customers and contexts,
and a check that the batched plans and the per-rule path agree."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gestor.catalogue import Catalogue, load_catalogue
from gestor.rules import CompiledRules, PurchaseContext, RuleLimits, compile_rules, parse_rules

CONFIG = Path(__file__).resolve().parents[2] / "config"
DOCS = Path(__file__).resolve().parents[2] / "docs"
TZ = "America/Argentina/Buenos_Aires"
#: Tuesday 2026-11-24 12:00 in Buenos Aires (UTC-3).
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)

CATALOGUE: Catalogue = load_catalogue(CONFIG / "bonos.toml")


#: The data warehouse's segments: (a plan of the segment, the segment's credit limit), as the
#: platform simulator (gestor/simulator/_synthetic.py) produces them.
SEGMENTS: dict[str, tuple[str, int]] = {
    "prepaid": ("PRE_BASIC", 0),
    "postpaid": ("POST_15GB", 500_000),
    "corporate": ("CORP_POOL", 1_000_000),
    "vip": ("VIP_UNLIMITED", 2_000_000),
}


#: An override that removes the field from the customer (an absent field).
ABSENT: Any = object()


def customer(**overrides: Any) -> dict[str, Any]:
    """An active prepaid line with a healthy balance, shaped like the simulator's subscribers
    (dwh profile + ocs account); override any field. Overriding `segment` with a known
    segment also gives that segment's `plan` and `credit_limit`, unless they are overridden
    too; an unknown segment (e.g. "wholesale") keeps the prepaid plan and a 0 credit limit.
    A field overridden with `ABSENT` is left out."""
    base: dict[str, Any] = {
        "msisdn": "5491123456789",
        "segment": "prepaid",
        "tenure_months": 24,
        "region": "AMBA",
        "device": "smartphone",
        "plan": "PRE_BASIC",
        "birthday_month": 3,
        "language": "es",
        "balance": 500_000,
        "currency": "ARS",
        "line_status": "active",
        "roaming": False,
        "credit_limit": 0,
    }
    segment = overrides.get("segment")
    if isinstance(segment, str) and segment in SEGMENTS:
        base["plan"], base["credit_limit"] = SEGMENTS[segment]
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ABSENT}


def context(
    channel: str = "app",
    now: datetime = NOW,
    restrictions: tuple[str, ...] = (),
    history: dict[str, Any] | None = None,
    **overrides: Any,
) -> PurchaseContext:
    return PurchaseContext(
        customer=customer(**overrides),
        channel=channel,
        now=now,
        restrictions=list(restrictions),
        history=history or {},
    )


def compile_text(
    text: str,
    catalogue: Catalogue = CATALOGUE,
    limits: RuleLimits | None = None,
    version: int = 1,
) -> CompiledRules:
    return compile_rules(parse_rules(text), catalogue, version, tz=TZ, limits=limits)


def decide_checked(rules: CompiledRules, ctx: PurchaseContext, bono_id: str) -> Any:
    """`rules.decide`, asserting it equals the per-rule evaluation (`explain`)."""
    decision = rules.decide(ctx, bono_id)
    assert decision.as_dict() == rules.explain(ctx, bono_id)["decision"]
    return decision


def assert_paths_agree(rules: CompiledRules, ctx: PurchaseContext) -> None:
    """decide (plans) == explain (per rule) for every bono, and offers is consistent with
    decide: offered iff an operation was chosen, eligible iff approved, same failures."""
    offers = {o.bono.id: o for o in rules.offers(ctx)}
    for bono in rules.catalogue:
        decision = decide_checked(rules, ctx, bono.id)
        offer = offers.get(bono.id)
        if decision.operation is None:
            assert offer is None, bono.id
        else:
            assert offer is not None, bono.id
            assert offer.operation == decision.operation
            assert offer.eligible == decision.approved
            assert offer.failures == decision.failures
    assert rules.profile(ctx).profile_id == rules.listing(ctx).profile.profile_id
