"""The subscriber view's pure parts: the profile from the sources' answers under the seed rules
(`profile_of`), the peak-hours cells, and `gestor mobile`'s text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from gestor.cli._mobile import grid, render
from gestor.platforms import PlatformRejected, PlatformUnavailable
from gestor.purchase._portrait import PeakHours, SourceAnswer, profile_of, unanswered
from gestor.rules import PurchaseContext, compile_rules, load_rules
from tests.rules.support import CATALOGUE, CONFIG, NOW, TZ, context, customer

SEED = compile_rules(load_rules(CONFIG / "rules.toml"), CATALOGUE, tz=TZ)
DWH = ("msisdn", "segment", "tenure_months", "region", "device", "plan", "birthday_month",
       "language")


def answers(**fields: Any) -> dict[str, Any]:
    data = customer(**fields)
    dwh = {k: data[k] for k in DWH}
    ocs = {k: v for k, v in data.items() if k not in DWH or k == "msisdn"}
    return {"dwh": SourceAnswer("dwh", dwh), "ocs": SourceAnswer("ocs", ocs)}


def in_context(found: Mapping[str, Any]) -> PurchaseContext:
    return attrs.evolve(context(channel="ussd"), customer=found)


def test_the_profile_is_the_rules_profile_of_both_sources_merged() -> None:
    for fields, expected in (({"tenure_months": 1}, ("PREPAID_NEW", "new_prepaid")),
                             ({"segment": "vip"}, ("VIP", "vip")),
                             ({"segment": "postpaid"}, ("POSTPAID", "postpaid"))):
        view = profile_of(answers(**fields), SEED, in_context, "ussd")
        assert (view.profile_id, view.rule_id) == expected
        assert view.customer == customer(**fields)
        assert view.category == customer(**fields)["segment"]
        assert view.sources["dwh"] is not None and view.sources["ocs"] is not None
        assert (view.rules_version, view.channel, view.notes) == (SEED.version, "ussd", ())
        assert SEED.profile(in_context(customer(**fields))).profile_id == expected[0]
    assert profile_of(answers(segment="vip"), SEED, in_context, "ussd").attributes == {
        "discount_pct": 10}


def test_a_source_that_did_not_answer_leaves_the_profile_unevaluated() -> None:
    both = answers(segment="corporate")
    gone = {**both, "ocs": unanswered("ocs", PlatformUnavailable("ocs", "503 OUTAGE"))}
    view = profile_of(gone, SEED, in_context, "api")
    assert (view.profile_id, view.customer, view.sources["ocs"]) == (None, None, None)
    assert view.category == "corporate"  # the data warehouse did answer
    assert view.notes == ("ocs: could not be asked (ocs: 503 OUTAGE)",
                          "profile not evaluated: the rules need ocs")
    unknown = {**both, "dwh": unanswered("dwh", PlatformRejected("dwh", "NOT_FOUND", 404))}
    view = profile_of(unknown, SEED, in_context, "api")
    assert (view.profile_id, view.category) == (None, None)
    assert view.notes == ("dwh: no such line (NOT_FOUND)",
                          "profile not evaluated: the rules need dwh")


def test_peak_hours_have_every_cell_monday_midnight_first() -> None:
    peak = PeakHours(TZ, NOW, NOW, {(0, 0): 3, (6, 23): 1, (2, 9): 12})
    cells = peak.cells()
    assert len(cells) == 168 and cells[0] == (0, 0, 3) and cells[-1] == (6, 23, 1)
    assert cells[2 * 24 + 9] == (2, 9, 12) and sum(n for _, _, n in cells) == 16


def _view(**changes: Any) -> dict[str, Any]:
    peak = PeakHours(TZ, NOW, NOW, {(1, 12): 140, (1, 13): 2})
    base: dict[str, Any] = {
        "msisdn": "5491100000011", "at": NOW.isoformat(),
        "profile": {"profile_id": None, "category": "prepaid", "rule_id": None,
                    "attributes": {}, "rules_version": 1, "channel": "api",
                    "sources": {"dwh": {"msisdn": "5491100000011", "segment": "prepaid"},
                                "ocs": None},
                    "customer": None,
                    "notes": ["ocs: could not be asked (ocs: 503 OUTAGE)"]},
        "counters": {"purchases_today": 1, "purchases_month": 3, "spent_today": 60_000,
                     "spent_month": 180_000, "gifts_today": 0, "gifted_today": 0,
                     "last_purchase_at": NOW.isoformat()},
        "restrictions": [{"code": "NO_DATA_BONOS", "reason": "parental control (by otto)",
                          "until": "2027-01-01T00:00:00+00:00"}],
        "advance_outstanding": 55_000, "ledger_balance": -180_000,
        "pending": None, "recent": [],
        "peak_hours": {"timezone": TZ, "from": NOW.isoformat(), "to": NOW.isoformat(),
                       "cells": [{"weekday": d, "hour": h, "count": n}
                                 for d, h, n in peak.cells()]},
    }
    return {**base, **changes}


def test_the_text_says_what_is_missing_and_what_is_in_force() -> None:
    text = render(_view())
    lines = text.splitlines()
    assert lines[0] == "mobile 5491100000011 (as of 2026-11-24 12:00:00 " + TZ + ")"
    assert "profile      not evaluated" in lines
    assert "ocs          -" in lines
    assert "note         ocs: could not be asked (ocs: 503 OUTAGE)" in lines
    assert "today        1 purchases, 600.00 spent; 0 gifts, 0.00 given" in lines
    assert "advance owed 550.00" in lines
    assert "ledger       -1,800.00 moved on the balance through Gestor" in lines
    assert ("  NO_DATA_BONOS        until 2026-12-31 21:00:00  parental control (by otto)"
            in lines)
    assert "in flight    nothing" in lines and "  none" in lines
    assert "peak hours since 2026-11-24 (142 movements)" in lines


def test_the_grid_widens_for_big_counts() -> None:
    lines = grid(_view()["peak_hours"])
    assert len(lines) == 8 and all(len(line) == 5 + 24 * 4 for line in lines[1:])
    tuesday = lines[2].split()
    assert tuesday[0] == "Tue" and tuesday[13:15] == ["140", "2"]
    assert set(tuesday[1:13] + tuesday[15:]) == {"."}
