"""The lexical helpers behind compile-time checks and the batched plans."""

from __future__ import annotations

from typing import Any

import pytest

from gestor.rules._context import PLAN_VARIABLES, RuleLimits, make_env
from gestor.rules._plan import Folder, checks, first_match, select
from gestor.rules._source import conjuncts, scan, substitute

ENV = make_env(PLAN_VARIABLES, RuleLimits(), plan=True)


def evaluate(src: str, **data: Any) -> Any:
    return ENV.compile(src).eval(data=data).plain_value()


def test_scan_names_skip_strings_comments_and_members() -> None:
    info = scan(
        "customer.plan == 'price' && \"bono\" != r'history' // operation\n"
        "&& x.profile_id == 1 && size(restrictions) > 0 && '''a\nb''' != b\"c\""
    )
    assert info.names == {"customer", "x", "size", "restrictions"}
    # A leading dot resolves from the root scope: still a variable.
    assert scan(".customer.plan == 'a' && (.history.x > 0)").names == {"customer", "history"}
    assert scan("f(a).b + [c][0].d + {'k': e}.k").names == {"f", "a", "c", "e"}


def test_scan_comprehension_depth() -> None:
    assert scan("restrictions.exists(r, r == 'A')").comprehension_depth == 1
    nested = scan("[1, 2].all(x, [3].exists(y, y > x)) && [4].map(z, z).size() > 0")
    assert (nested.comprehension_depth, nested.comprehensions) == (2, 3)
    assert scan("exists(1) && has(customer.x) && a.mapper(b)").comprehension_depth == 0
    assert scan("'[1].all(x, [2].all(y, true))'").comprehension_depth == 0


def test_substitute_bono_fields() -> None:
    fields = {"kind": "data", "price": 100, "roaming": False, "name": 'say "hi"'}
    assert substitute('bono.kind == "data" && !bono.roaming', "bono", fields) == (
        '"data" == "data" && !false'
    )
    assert substitute("bono.price * 2 // bono.nope", "bono", fields) == "100 * 2 // bono.nope"
    assert substitute("x.bono.kind + bono.name", "bono", fields) == 'x.bono.kind + "say \\"hi\\""'
    assert substitute("'bono.kind'", "bono", fields) == "'bono.kind'"
    assert substitute("!.bono.roaming", "bono", fields) == "!false"
    for src in ["has(bono.kind)", 'bono["kind"]', "bono.nope", "size(bono)", "[1].all(bono, true)"]:
        assert substitute(src, "bono", fields) is None, src


def test_conjuncts_split_only_top_level_and_chains() -> None:
    assert conjuncts("a && (b || c) && d") == ["a", "(b || c)", "d"]
    assert conjuncts("a && b || c") is None
    assert conjuncts("a ? b && c : d") is None
    assert conjuncts("f(a && b)") is None
    assert conjuncts("'&&' == a") is None


def test_first_match_and_select_in_cel() -> None:
    conds: list[str | bool] = ["hour == 1", "hour == 2", False, "hour > 0", True, "hour == 9"]
    for chunk in (1, 2, 8):
        src = first_match(conds, chunk)
        assert [evaluate(src, hour=h) for h in (1, 2, 5, 0)] == [0, 1, 3, 4], chunk
    assert evaluate(first_match([False, "hour == 1"], 8), hour=2) == 2
    assert first_match([], 8) == "0"
    cases = {0: "'a'", 2: "'c'"}
    many = {i: f"'{i}'" for i in range(6)}
    got = [evaluate(select("hour", cases, "'-'", 3), hour=h) for h in range(4)]
    assert got == ["a", "-", "c", "-"]
    got = [evaluate(select("hour", many, "'-'", 6), hour=h) for h in (0, 5, 6)]
    assert got == ["0", "5", "-"]


def test_checks_lists() -> None:
    assert checks([True, True]) == "[]"
    assert evaluate(checks(["hour > 0", True]), hour=1) == []
    assert evaluate(checks(["hour > 0", True]), hour=0) == [False, True]
    assert evaluate(checks(["hour > 0", False]), hour=1) == [True, False]


@pytest.mark.parametrize(
    ("src", "folded"),
    [
        ('"data" == "data"', True),
        ('"sms" == "data" && customer.x', False),
        ("!false && customer.x == 1 && 1 < 2", "(\ncustomer.x == 1\n)"),
        ("customer.x || false", "customer.x || false"),
        ("1 / 0 == 1", "1 / 0 == 1"),  # an error is not a constant
    ],
)
def test_folding(src: str, folded: object) -> None:
    assert Folder(ENV).condition(src) == folded


def test_folding_prices() -> None:
    fold = Folder(ENV)
    assert fold.price("60000 * 80 / 100") == "48000"
    assert fold.price("60000 - 100000") == "60000 - 100000"  # negative: left to run time
    assert fold.price("customer.x") == "customer.x"
