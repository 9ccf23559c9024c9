"""Batched evaluation plans: the whole rule set folded into a few CEL expressions.

Evaluating a compiled CEL expression costs ~2 µs of fixed overhead, building an activation
~4 µs, and converting each Python map an expression touches ~2-3 µs, whatever the work
inside. So besides compiling every rule on its own (for diagnostics, `explain` and the
error fallback), `compile_rules` generates from the rule sources *plans*, each answering a
whole question in one evaluation of one activation:

* profile:        `[pi, attributes]`
* decide (bono):  `[pi, attributes, g, body]`
* offers (group): `[pi, attributes, g, [body, ...]]`

`pi` is the index of the matching profiling rule (`len(profiling)` if none). `g` holds the
validation rules that do not depend on the bono, evaluated once: `[]` when all pass, else
one boolean per rule. `body` is `[oi]` when no operation rule matches (`oi` =
`len(operations)`), else `[oi, price, checks]` with `checks` like `g` for the
bono-dependent validation rules. Ordered sections become ternary chains
`w0 ? 0 : w1 ? 1 : ... : N` (lazy: nothing after the first match is evaluated), chunked
and joined with `math.least` to stay within the CEL parser's nesting limit of 32.
`profile_id`, `attributes`, `price` and `operation` are introduced with `cel.bind`.

The catalogue is static, so plans are specialised per bono: `bono.<field>` selections are
replaced by the field's literal value (no map conversion at run time), then conditions,
conjuncts of top-level `&&` chains and prices that reference no variable any more are
evaluated at compile time (`Folder`): a rule that cannot match a bono disappears from that
bono's plan. When a rule uses `bono` otherwise (`has(bono.x)`, `bono["x"]`), plans bind
`bono` to the catalogue entry instead. If no plan variant compiles, the engine evaluates
rule by rule. Plans are evaluated with `expr.eval(data=...)` (cheaper than an activation
for a single expression).

Equivalence with per-rule evaluation holds whenever a plan evaluates without error: CEL
cannot catch an error inside an expression, so any error (a missing key, a non-boolean
condition) makes the whole result an error, and the engine then falls back to per-rule
evaluation, which implements the error semantics rule by rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from gestor.rules._context import ALL_VARIABLES
from gestor.rules._model import DEFAULT_PROFILE_ID
from gestor.rules._source import cel_literal, conjuncts, scan, substitute

#: Generated expressions stay below the CEL parser's 100,000 code point limit.
MAX_PLAN_CHARS = 90_000
#: Ternary chain lengths tried, longest first, until the plans compile.
CHUNK_SIZES = (8, 4, 2, 1)
#: Up to this many special cases, a selection is a ternary chain; beyond, a list index.
_CHAIN_SELECT_MAX = 4


@attrs.frozen
class ProfilingSource:
    when: str
    profile_id: str
    attributes: Sequence[tuple[str, str]]


@attrs.frozen
class OperationSource:
    when: str
    operation: str
    price: str | None  # None: the default price (bono.price, or 0 for a free operation)
    free: bool = False  # its operation never debits (e.g. provision_only)


@attrs.frozen
class ValidationSource:
    when: str
    applies_to: str | None
    per_bono: bool  # references bono, price or operation


@attrs.frozen
class RuleSources:
    """The sources of a rule set that compiled cleanly, in evaluation order."""

    profiling: Sequence[ProfilingSource]
    operations: Sequence[OperationSource]
    validation: Sequence[ValidationSource]
    uses_operation: bool  # some validation rule references `operation`


@attrs.frozen(eq=False)
class Plans:
    """Compiled plans. `decide[i]` answers for catalogue bono i; `offers` holds
    (first catalogue index, bono count, expression). `bound`: plans read `bono` (decide)
    or `catalogue` (offers) from the activation."""

    profile: Any
    decide: tuple[Any, ...]
    offers: tuple[tuple[int, int, Any], ...]
    bound: bool
    chunk: int


def _w(src: str) -> str:
    # Newlines protect against a trailing `//` comment swallowing the closing parenthesis.
    return f"(\n{src}\n)"


Cond = str | bool  # a condition's source, or its value when known at compile time


class Folder:
    """Compile-time partial evaluation: a condition (or conjunct of a top-level `&&`
    chain) or price that references no variable once the bono's fields are inlined is
    evaluated now. Sound because CEL's `&&` is commutative over errors: one false
    operand makes the conjunction false whatever the others do."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self._cache: dict[str, object] = {}

    def value(self, src: str) -> object:
        """The constant bool or int value of `src`, else None."""
        if src in self._cache:
            return self._cache[src]
        value: object = None
        if not scan(src).names & ALL_VARIABLES:
            try:
                result = self._env.compile(src).eval(data={}).value()
            except RuntimeError:
                result = None
            if type(result) in (bool, int):
                value = result
        self._cache[src] = value
        return value

    def condition(self, src: str) -> Cond:
        value = self.value(src)
        if isinstance(value, bool):
            return value
        parts = conjuncts(src)
        if parts is None:
            return src
        kept = []
        for part in parts:
            value = self.value(part)
            if value is False:
                return False
            if value is not True:
                kept.append(part)
        if not kept:
            return True
        return " && ".join(_w(k) for k in kept)

    def price(self, src: str) -> str:
        value = self.value(src)
        if type(value) is int and value >= 0:
            return str(value)
        return src


def first_match(conditions: Sequence[Cond], chunk: int) -> str:
    """CEL int: the index of the first true condition, or len(conditions) if none."""
    n = len(conditions)
    live: list[tuple[int, str]] = []
    last = str(n)
    for i, cond in enumerate(conditions):
        if cond is True:
            last = str(i)
            break
        if cond is not False:
            live.append((i, cond))
    if not live:
        return last
    chains = []
    for start in range(0, len(live), chunk):
        part = live[start : start + chunk]
        expr = last if start + chunk >= len(live) else str(n)
        for i, cond in reversed(part):
            expr = f"{_w(cond)} ? {i} : {expr}"
        chains.append(expr)
    if len(chains) == 1:
        return chains[0]
    return "math.least([" + ", ".join(chains) + "])"


def select(var: str, cases: Mapping[int, str], default: str, n: int) -> str:
    """CEL: `cases[var]` if var is a key, else `default`; var ranges over 0..n."""
    if not cases:
        return default
    if len(cases) <= _CHAIN_SELECT_MAX:
        expr = default
        for i in sorted(cases, reverse=True):
            expr = f"{var} == {i} ? {_w(cases[i])} : {expr}"
        return f"({expr})"
    items = [
        f"{var} == {i} ? {_w(cases[i])} : {default}" if i in cases else default
        for i in range(n + 1)
    ]
    return "[" + ", ".join(items) + f"][{var}]"


def checks(conditions: Sequence[Cond]) -> str:
    """CEL list: `[]` if every condition is true, else each condition's value."""
    if all(c is True for c in conditions):
        return "[]"
    items = ", ".join(
        _w(c) if isinstance(c, str) else ("true" if c else "false") for c in conditions
    )
    if any(c is False for c in conditions):
        return f"[{items}]"
    every = " && ".join(_w(c) for c in conditions if isinstance(c, str))
    return f"(({every}) ? [] : [{items}])"


def _check(v: ValidationSource, sub: Callable[[str], str], fold: Folder) -> Cond:
    """A validation rule as one condition: `applies_to ? when : true`."""
    when = fold.condition(sub(v.when))
    if v.applies_to is None:
        return when
    applies = fold.condition(sub(v.applies_to))
    if applies is False:
        return True
    if applies is True:
        return when
    # An unknown guard stays even if `when` is constant: a guard error is a failure.
    when_src = when if isinstance(when, str) else ("true" if when else "false")
    return f"{_w(applies)} ? {_w(when_src)} : true"


def head(
    rules: RuleSources, chunk: int, rest: str, fold: Folder, *, with_globals: bool = True
) -> str:
    """Bind `__pi`, `profile_id`, `attributes` and `__g` (bono-independent checks)."""
    p = rules.profiling
    n = len(p)
    ids = ", ".join([*(cel_literal(r.profile_id) for r in p), cel_literal(DEFAULT_PROFILE_ID)])
    cases = {
        i: "dyn({" + ", ".join(f"{cel_literal(k)}: {_w(v)}" for k, v in r.attributes) + "})"
        for i, r in enumerate(p)
        if r.attributes
    }
    if with_globals:
        g = checks([_check(v, str, fold) for v in rules.validation if not v.per_bono])
        rest = f"cel.bind(__g, {g}, {rest})"
    return (
        f"cel.bind(__pi, {first_match([fold.condition(r.when) for r in p], chunk)}, "
        f"cel.bind(profile_id, [{ids}][__pi], "
        f"cel.bind(attributes, {select('__pi', cases, 'dyn({})', n)}, {rest})))"
    )


def body(rules: RuleSources, chunk: int, sub: Callable[[str], str], fold: Folder) -> str:
    """The per-bono part: operation, price, bono-dependent checks. `sub` rewrites each
    source for the bono (literal substitution) or is `str` (bono bound)."""
    ops = rules.operations
    n = len(ops)
    prices = {
        i: (fold.price(sub(o.price)) if o.price is not None else "0")
        for i, o in enumerate(ops)
        if o.price is not None or o.free
    }
    price = select("__oi", prices, sub("bono.price"), n)
    per_bono = [_check(v, sub, fold) for v in rules.validation if v.per_bono]
    result = f"[__oi, price, {checks(per_bono)}]"
    if rules.uses_operation:
        names = ", ".join([*(cel_literal(o.operation) for o in ops), '""'])
        result = f"cel.bind(operation, [{names}][__oi], {result})"
    matched = first_match([fold.condition(sub(o.when)) for o in ops], chunk)
    return f"cel.bind(__oi, {matched}, __oi == {n} ? [__oi] : cel.bind(price, {price}, {result}))"


def _substituter(bono: Mapping[str, Any]) -> Callable[[str], str]:
    def sub(src: str) -> str:
        out = substitute(src, "bono", bono)
        if out is None:
            raise _NotInlinable
        return out

    return sub


class _NotInlinable(Exception):
    pass


def plan_sources(
    rules: RuleSources,
    bonos: Sequence[Mapping[str, Any]],
    chunk: int,
    inline: bool,
    fold: Folder,
) -> dict[str, Any]:
    """The CEL sources of every plan (see the module docstring). Raises `_NotInlinable`
    when `inline` and some rule uses `bono` other than by selecting a field."""
    if inline:
        bodies = [body(rules, chunk, _substituter(b), fold) for b in bonos]
        items = bodies
    else:
        one = body(rules, chunk, str, fold)
        bodies = [one] * len(bonos)
        items = [f"cel.bind(bono, catalogue[{k}], {one})" for k in range(len(bonos))]
    budget = MAX_PLAN_CHARS - len(head(rules, chunk, "", fold))
    offers = []
    start = 0
    while start < len(items):
        end, size = start, 0
        while end < len(items) and (end == start or size + len(items[end]) + 2 <= budget):
            size += len(items[end]) + 2
            end += 1
        group = ", ".join(items[start:end])
        offers.append(
            (start, end - start, head(rules, chunk, f"[__pi, attributes, __g, [{group}]]", fold))
        )
        start = end
    return {
        "profile": head(rules, chunk, "[__pi, attributes]", fold, with_globals=False),
        "decide": [head(rules, chunk, f"[__pi, attributes, __g, {b}]", fold) for b in bodies],
        "offers": offers,
    }


def build_plans(
    env: Any, rules: RuleSources, bonos: Sequence[Mapping[str, Any]]
) -> tuple[Plans | None, str]:
    """Compile the fastest plan variant that compiles: bono fields inlined, then bound;
    longest ternary chunks first. Returns (plans, note) or (None, reason)."""
    reason = ""
    fold = Folder(env)
    for inline in (True, False):
        for chunk in CHUNK_SIZES:
            try:
                sources = plan_sources(rules, bonos, chunk, inline, fold)
            except _NotInlinable:
                reason = "a rule uses `bono` other than by field selection"
                break
            try:
                compiled: dict[str, Any] = {}
                decide = []
                for src in sources["decide"]:
                    if src not in compiled:
                        compiled[src] = env.compile(src)
                    decide.append(compiled[src])
                plans = Plans(
                    profile=env.compile(sources["profile"]),
                    decide=tuple(decide),
                    offers=tuple((s, c, env.compile(src)) for s, c, src in sources["offers"]),
                    bound=not inline,
                    chunk=chunk,
                )
            except RuntimeError as exc:
                reason = str(exc).splitlines()[0]
                continue
            variant = "bono fields inlined" if inline else "bono bound"
            return plans, f"batched plans: {variant}, chains of {chunk}"
    return None, f"batched plans do not compile ({reason}); evaluating rule by rule"
