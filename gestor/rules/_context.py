"""The documented rule context: the CEL variables each section may use, with their types,
the CEL environments declaring them, and the conversion of a `PurchaseContext` into the
variable bindings of an activation (docs/rules.md, "Context")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import attrs
from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_math, ext_strings

from gestor.rules._fields import CUSTOMER_FIELDS, CUSTOMER_VARIABLES
from gestor.rules._model import PurchaseContext, Section

#: `history.last_purchase_age_s` when the customer never bought (about 68 years).
NEVER_AGE_S = 2**31 - 1

#: Keys always present in `history` (a caller's values override these defaults).
HISTORY_DEFAULTS: Mapping[str, Any] = {
    "purchases_today": 0,
    "purchases_month": 0,
    "spent_today": 0,
    "spent_month": 0,
    "last_purchase_at": None,
    "gifts_today": 0,
    "gifted_today": 0,
    "owed": 0,
}

_STR = cel.Type.STRING
_INT = cel.Type.INT
_DYN_MAP = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)

#: Variables every section sees, computed from the `PurchaseContext`. `customer` is declared
#: field by field (`customer.segment`: string, ... see `_fields`).
BASE_VARIABLES: Mapping[str, Any] = {
    **CUSTOMER_VARIABLES,
    "channel": _STR,
    "now": cel.Type.TIMESTAMP,
    "hour": _INT,
    "weekday": _INT,
    "day": _INT,
    "month": _INT,
    "restrictions": cel.Type.List(_STR),
    "history": _DYN_MAP,
    "beneficiary": _DYN_MAP,
    "kind": _STR,
}
#: Added for operation rules (and validation): the profiling outcome and the bono.
PROFILE_VARIABLES: Mapping[str, Any] = {
    "profile_id": _STR,
    "attributes": _DYN_MAP,
    "bono": _DYN_MAP,
}
#: Added for validation rules: the chosen operation's name and effective price.
OPERATION_VARIABLES: Mapping[str, Any] = {"price": _INT, "operation": _STR}

#: Movement rules (transfers, advances, top-ups) see the amount instead of a bono...
MOVEMENT_VARIABLES: Mapping[str, Any] = {
    "profile_id": _STR,
    "attributes": _DYN_MAP,
    "amount": _INT,
}
#: ...and their validation rules also the fee, the operation and the maximum amount.
MOVEMENT_OPERATION_VARIABLES: Mapping[str, Any] = {
    "fee": _INT,
    "operation": _STR,
    "max_amount": _INT,
}

SECTION_VARIABLES: Mapping[Section, Mapping[str, Any]] = {
    "profiling": BASE_VARIABLES,
    "operations": {**BASE_VARIABLES, **PROFILE_VARIABLES},
    "validation": {**BASE_VARIABLES, **PROFILE_VARIABLES, **OPERATION_VARIABLES},
    "movements": {**BASE_VARIABLES, **MOVEMENT_VARIABLES},
    "movement_validation": {**BASE_VARIABLES, **MOVEMENT_VARIABLES,
                            **MOVEMENT_OPERATION_VARIABLES},
}
#: Top-level names (`customer`, not `customer.segment`).
ALL_VARIABLES = frozenset(name.split(".")[0] for names in SECTION_VARIABLES.values()
                          for name in names)

#: The variables of the batched plans (see `_plan`): the rest are bound inside the plan.
PLAN_VARIABLES: Mapping[str, Any] = {
    **BASE_VARIABLES,
    "bono": _DYN_MAP,
    "catalogue": cel.Type.List(_DYN_MAP),
}


@attrs.frozen
class RuleLimits:
    """Compile-time guards against runaway cost (CEL itself has no I/O and no loops beyond
    comprehensions over finite lists; its parser also refuses nesting deeper than 32)."""

    max_expression_chars: int = 2000
    max_comprehension_depth: int = 1
    excluded_macros: frozenset[str] = frozenset()


def _config(limits: RuleLimits) -> Any:
    if not limits.excluded_macros:
        return None
    lines = ["stdlib:", "  exclude_macros:"]
    lines += [f'    - "{m}"' for m in sorted(limits.excluded_macros)]
    return cel.NewEnvConfigFromYaml("\n".join(lines) + "\n")


def make_env(variables: Mapping[str, Any], limits: RuleLimits, *, plan: bool = False) -> Any:
    """A CEL environment declaring `variables`: the standard library (minus any excluded
    macros) and the strings extension; plans also get `cel.bind` and `math.least`."""
    extensions: list[Any] = [ext_strings.ExtStrings()]
    if plan:
        extensions += [ext_bindings.ExtBindings(), ext_math.ExtMath()]
    config = _config(limits)
    if config is None:
        return cel.NewEnv(variables=dict(variables), extensions=extensions)
    return cel.NewEnv(config=config, variables=dict(variables), extensions=extensions)


_LOCAL_TIME = frozenset({"hour", "weekday", "day", "month"})


_ABSENT = object()


class Binder:
    """Builds the base variable bindings of a `PurchaseContext`, limited to the variables
    a rule set references (each binding costs time in the activation): `needed` names
    variables and customer fields (`customer.segment`). A customer field absent from the
    context's mapping stays unbound: a rule reading it gets a run-time error."""

    def __init__(self, tz: tzinfo, needed: Iterable[str] = BASE_VARIABLES) -> None:
        needed = frozenset(needed) & BASE_VARIABLES.keys()
        self.tz = tz
        self.needed = needed
        self._customer = tuple(
            (f.name, f.variable) for f in CUSTOMER_FIELDS.values() if f.variable in needed
        )
        self._channel = "channel" in needed
        self._now = "now" in needed
        self._local = bool(needed & _LOCAL_TIME)
        self._restrictions = "restrictions" in needed
        self._history = "history" in needed
        self._beneficiary = "beneficiary" in needed
        self._kind = "kind" in needed

    def bind(self, ctx: PurchaseContext) -> dict[str, Any]:
        """A fresh dict of bindings (the caller may add to it)."""
        out: dict[str, Any] = {}
        if self._customer:
            get = ctx.customer.get
            for name, variable in self._customer:
                value = get(name, _ABSENT)
                if value is not _ABSENT:
                    out[variable] = value
        if self._channel:
            out["channel"] = ctx.channel
        if self._now:
            out["now"] = ctx.now
        if self._local:
            local = ctx.now.astimezone(self.tz)
            out["hour"] = local.hour
            out["weekday"] = local.isoweekday()
            out["day"] = local.day
            out["month"] = local.month
        if self._restrictions:
            restrictions = ctx.restrictions
            out["restrictions"] = restrictions if type(restrictions) is list else list(restrictions)
        if self._history:
            out["history"] = history_binding(ctx)
        if self._beneficiary:
            out["beneficiary"] = dict(ctx.beneficiary)
        if self._kind:
            out["kind"] = ctx.kind
        return out


def history_binding(ctx: PurchaseContext) -> dict[str, Any]:
    """`history` with defaults, `last_purchase_age_s`, and `last_purchase_at` as text."""
    given = ctx.history
    history = {**HISTORY_DEFAULTS, **given}
    last = history["last_purchase_at"]
    if isinstance(last, datetime):
        # CEL maps cannot hold timestamps here: RFC 3339 text, `timestamp(...)` in rules.
        history["last_purchase_at"] = _rfc3339(last)
        if "last_purchase_age_s" not in given:
            history["last_purchase_age_s"] = int((ctx.now - last).total_seconds())
    elif "last_purchase_age_s" not in given:
        history["last_purchase_age_s"] = NEVER_AGE_S
    return history


def _rfc3339(value: datetime) -> str:
    """UTC RFC 3339 text, as CEL's `timestamp()` parses it."""
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat() + "Z"
