"""Evaluating a compiled rule set: `CompiledRules.profile / decide / offers / explain`.

Two equivalent evaluation paths:

* the batched plans (`_plan`): one activation and one CEL evaluation answer a whole
  purchase decision or bono listing;
* per-rule evaluation with one shared activation per stage (profiling, operations,
  validation), which implements the error semantics rule by rule and records per-rule
  outcomes for `explain`.

The plans are used whenever they evaluate cleanly; any runtime error in them (a missing
key, a non-boolean condition, an invalid price) sends that request to the per-rule path.
Run-time errors never raise: an erroring profiling or operation `when` skips the rule, an
erroring price makes the bono not offered, an erroring validation rule is a failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import tzinfo
from typing import Any

import attrs
from cel_expr_python import cel

from gestor.catalogue import Bono, Catalogue
from gestor.rules._context import Binder
from gestor.rules._model import (
    BONO_NOT_OFFERED,
    DEFAULT_PROFILE_ID,
    EMPTY_ATTRIBUTES,
    MOVEMENT_NOT_OFFERED,
    Decision,
    Failure,
    Listing,
    MovementDecision,
    MovementRule,
    Offer,
    OperationChoice,
    OperationRule,
    ProfileDecision,
    ProfilingRule,
    PurchaseContext,
    RuleIssue,
    RuleSetSpec,
    Section,
    ValidationRule,
)
from gestor.rules._operations import Operation
from gestor.rules._plan import Plans

_ERROR = cel.Type.ERROR
#: Validation rules naming these are evaluated per bono; the others once per request.
PER_BONO = frozenset({"bono", "price", "operation"})
_CACHE_MAX = 4096

Trace = dict[str, list[dict[str, Any]]]
BonoResult = tuple[OperationChoice | None, tuple[Failure, ...]]


class UnknownBonoError(KeyError):
    """The bono id is not in the catalogue the rule set was compiled with."""

    def __init__(self, bono_id: str) -> None:
        super().__init__(bono_id)
        self.bono_id = bono_id

    def __str__(self) -> str:
        return f"unknown bono {self.bono_id!r}"


@attrs.frozen(eq=False)
class CompiledProfiling:
    rule: ProfilingRule
    when: Any
    attributes: tuple[tuple[str, Any], ...]
    decision: ProfileDecision | None  # shared result when the rule sets no attributes


@attrs.frozen(eq=False)
class CompiledValidation:
    rule: ValidationRule
    when: Any
    applies_to: Any | None
    failure: Failure
    names: frozenset[str]  # top-level names referenced by `when` and `applies_to`


@attrs.frozen(eq=False)
class CompiledMovement:
    rule: MovementRule
    when: Any
    fee: Any | None
    max_amount: Any | None


@attrs.frozen(eq=False)
class CompiledOperation:
    rule: OperationRule
    when: Any
    price: Any | None


def _fault(value: Any, expected: str) -> str:
    """Why a CEL result is unusable: its error text, or the type mismatch."""
    rtype = value.type()
    if rtype == _ERROR:
        return str(value.value())
    return f"expected {expected}, got {rtype.name().lower()}"


def _truth(value: Any) -> bool | str:
    """A boolean CEL result, or the reason it is not one."""
    x = value.value()
    if x is True or x is False:
        return bool(x)
    return _fault(value, "bool")


class CompiledRules:
    """A rule set compiled for one catalogue; immutable and safe to share. Build it with
    `compile_rules`."""

    def __init__(
        self,
        *,
        spec: RuleSetSpec,
        catalogue: Catalogue,
        version: int,
        binder: Binder,
        warnings: tuple[RuleIssue, ...],
        envs: Mapping[Section, Any],
        profiling: tuple[CompiledProfiling, ...],
        validation: tuple[CompiledValidation, ...],
        operations: tuple[CompiledOperation, ...],
        movements: tuple[CompiledMovement, ...] = (),
        movement_checks: tuple[CompiledValidation, ...] = (),
        plan_env: Any,
        plans: Plans | None,
        plan_note: str,
    ) -> None:
        self._spec = spec
        self._catalogue = catalogue
        self._version = version
        self._binder = binder
        self._bind = binder.bind
        self._full_binder = Binder(binder.tz)
        self._warnings = warnings
        self._profiling_env = envs["profiling"]
        self._operations_env = envs["operations"]
        self._validation_env = envs["validation"]
        self._profiling = profiling
        self._validation = validation
        self._operations = operations
        self._movements = movements
        self._movement_checks = movement_checks
        self._movements_env = envs["movements"]
        self._movement_validation_env = envs["movement_validation"]
        self._plan_env = plan_env
        self._plans = plans
        self._plan_note = plan_note
        self._bonos = catalogue.bonos
        self._bono_dicts = [b.as_dict() for b in catalogue.bonos]
        self._bono_index = {b.id: i for i, b in enumerate(catalogue.bonos)}
        self._validation_failures = tuple(v.failure for v in validation)
        self._validation_per_bono = tuple(bool(v.names & PER_BONO) for v in validation)
        self._n_operations = len(operations)
        self._default_profile = ProfileDecision(DEFAULT_PROFILE_ID, EMPTY_ATTRIBUTES, None)
        self._choices: dict[tuple[int, int], OperationChoice] = {}
        self._defs = {d.name: d for d in spec.operation_defs}
        self._free = frozenset(d.name for d in spec.operation_defs if not d.charges)
        self._offers: dict[tuple[int, int, int], Offer] = {}

    # --- metadata --------------------------------------------------------------------------

    @property
    def spec(self) -> RuleSetSpec:
        return self._spec

    def operation(self, name: str) -> Operation | None:
        """The operation `name` as this rule set declares it (None: it declares none such)."""
        return self._defs.get(name)

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    @property
    def version(self) -> int:
        return self._version

    @property
    def tz(self) -> tzinfo:
        return self._binder.tz

    @property
    def warnings(self) -> tuple[RuleIssue, ...]:
        """Non-fatal issues found at compile time."""
        return self._warnings

    @property
    def fast_path(self) -> bool:
        """Whether the batched plans compiled (else every request is evaluated per rule)."""
        return self._plans is not None

    @property
    def fast_path_note(self) -> str:
        return self._plan_note

    # --- public evaluation -----------------------------------------------------------------

    def profile(self, ctx: PurchaseContext) -> ProfileDecision:
        """The customer's profile: the first profiling rule that matches."""
        return self._profile(self._bind(ctx))

    def decide(self, ctx: PurchaseContext, bono_id: str) -> Decision:
        """Profiling, operation selection and validation for buying `bono_id`.

        Raises `UnknownBonoError` (a KeyError) if the bono is not in the catalogue.
        """
        index = self._index(bono_id)
        base = self._bind(ctx)
        plans = self._plans
        if plans is not None:
            if plans.bound:
                base["bono"] = self._bono_dicts[index]
            r = plans.decide[index].eval(data=base).plain_value()
            if type(r) is list:
                profile = self._profile_of(r[0], r[1])
                result = self._body(r[2], r[3], index, profile)
                if result is not None:
                    return self._decision(profile, index, result)
        return self._slow_decide(base, index, None)

    def offers(self, ctx: PurchaseContext) -> list[Offer]:
        """Every bono an operation rule offers to the customer's profile, catalogue order,
        each with its operation, price, and whether validation lets it be bought now."""
        return list(self.listing(ctx).offers)

    def listing(self, ctx: PurchaseContext) -> Listing:
        """`offers` together with the profile they were computed for."""
        base = self._bind(ctx)
        plans = self._plans
        if plans is None:
            profile = self._slow_profile(base, None)
            return self._listing(profile, self._slow_offers(base, profile, range(len(self._bonos))))
        if plans.bound:
            base["catalogue"] = self._bono_dicts
        data: Any = self._plan_env.Activation(base) if len(plans.offers) > 1 else None
        found: ProfileDecision | None = None
        offers: list[Offer] = []
        for start, count, expr in plans.offers:
            r = (expr.eval(data) if data is not None else expr.eval(data=base)).plain_value()
            if type(r) is not list:
                found = found or self._slow_profile(base, None)
                offers += self._slow_offers(base, found, range(start, start + count))
                continue
            profile = found = found or self._profile_of(r[0], r[1])
            g = r[2]
            for index, body in enumerate(r[3], start):
                decoded, offer = self._planned_offer(g, body, index, profile)
                if not decoded:
                    offers += self._slow_offers(base, profile, (index,))
                elif offer is not None:
                    offers.append(offer)
        return self._listing(found or self._profile(base), offers)

    def decide_movement(self, ctx: PurchaseContext, amount: int) -> MovementDecision:
        """Profiling, then the first movement rule of `ctx.kind` that matches (operation, fee,
        maximum amount), then every validation rule of that kind: for a transfer, an advance
        or a top-up of `amount`. Evaluated rule by rule (movements are few beside purchases);
        run-time errors never raise: an erroring `when` skips the rule, an erroring fee or
        maximum refuses the movement, an erroring validation rule is a failure."""
        base = self._full_binder.bind(ctx)
        profile = self._slow_profile(base, None)
        data = dict(base)
        data["profile_id"] = profile.profile_id
        data["attributes"] = dict(profile.attributes)
        data["amount"] = amount
        kind = ctx.kind
        activation = self._movements_env.Activation(data)
        chosen: CompiledMovement | None = None
        fee, most = 0, None
        refusal: Failure | None = None
        for m in self._movements:
            if m.rule.kind != kind or _truth(m.when.eval(activation)) is not True:
                continue
            chosen = m
            for name, expr in (("fee", m.fee), ("max_amount", m.max_amount)):
                if expr is None:
                    continue
                value = expr.eval(activation)
                x = value.value()
                if type(x) is not int or x < 0:
                    why = _fault(value, "int") if type(x) is not int else f"negative: {x}"
                    refusal = Failure(m.rule.id, MOVEMENT_NOT_OFFERED,
                                      f"the {name} of movement rule {m.rule.id} failed: {why}")
                elif name == "fee":
                    fee = x
                else:
                    most = x
            break
        def decision(failures: tuple[Failure, ...]) -> MovementDecision:
            return MovementDecision(
                kind, profile.profile_id, failures, self._version,
                chosen.rule.id if chosen else None, chosen.rule.operation if chosen else None,
                fee, most)

        if chosen is None or refusal is not None:
            return decision((refusal or Failure(
                None, MOVEMENT_NOT_OFFERED,
                f"no {kind} is offered to profile {profile.profile_id}"),))
        data["fee"] = fee
        data["operation"] = chosen.rule.operation
        data["max_amount"] = most if most is not None else amount
        activation = self._movement_validation_env.Activation(data)
        failures: list[Failure] = []
        if most is not None and amount > most:
            failures.append(Failure(chosen.rule.id, "AMOUNT_ABOVE_MAXIMUM",
                                    f"the {kind} may be of {most} at most"))
        for v in self._movement_checks:
            if kind not in v.rule.kinds:
                continue
            if v.applies_to is not None:
                applies = _truth(v.applies_to.eval(activation))
                if applies is False:
                    continue
                if isinstance(applies, str):
                    failures.append(Failure(v.rule.id, v.rule.code,
                                            f"{v.rule.message} (rule error: {applies})"))
                    continue
            ok = _truth(v.when.eval(activation))
            if ok is False:
                failures.append(v.failure)
            elif isinstance(ok, str):
                failures.append(Failure(v.rule.id, v.rule.code,
                                        f"{v.rule.message} (rule error: {ok})"))
        return decision(tuple(failures))

    def explain(self, ctx: PurchaseContext, bono_id: str) -> dict[str, Any]:
        """A dry run of `decide` rule by rule: every rule's outcome and the decision.

        Outcomes: profiling and operations `matched | no_match | error | not_evaluated`;
        validation `passed | failed | error | skipped | not_evaluated`.
        """
        index = self._index(bono_id)
        base = self._full_binder.bind(ctx)
        trace: Trace = {"profiling": [], "operations": [], "validation": []}
        decision = self._slow_decide(base, index, trace)
        return {
            "version": self._version,
            "bono_id": bono_id,
            "computed": {
                "hour": base["hour"],
                "weekday": base["weekday"],
                "last_purchase_age_s": base["history"]["last_purchase_age_s"],
            },
            "profiling": trace["profiling"],
            "operations": trace["operations"],
            "validation": trace["validation"],
            "decision": decision.as_dict(),
        }

    # --- shared helpers --------------------------------------------------------------------

    def _index(self, bono_id: str) -> int:
        index = self._bono_index.get(bono_id)
        if index is None:
            raise UnknownBonoError(bono_id)
        return index

    def _profile(self, base: dict[str, Any]) -> ProfileDecision:
        plans = self._plans
        if plans is not None:
            r = plans.profile.eval(data=base).plain_value()
            if type(r) is list:
                return self._profile_of(r[0], r[1])
        return self._slow_profile(base, None)

    def _profile_of(self, index: int, attributes: dict[str, Any]) -> ProfileDecision:
        if index >= len(self._profiling):
            return self._default_profile
        p = self._profiling[index]
        if p.decision is not None:
            return p.decision
        values = {name: attributes[name] for name, _ in p.attributes}
        return ProfileDecision(p.rule.profile_id, values, p.rule.id)

    def _body(
        self, g: list[Any], body: list[Any], index: int, profile: ProfileDecision
    ) -> BonoResult | None:
        """Decode a plan's per-bono result; None if it needs per-rule evaluation."""
        op = body[0]
        if op >= self._n_operations:
            return None, (self._not_offered(index, profile),)
        price = body[1]
        if type(price) is not int or price < 0:
            return None
        failures: tuple[Failure, ...] = ()
        checks = body[2]
        if g or checks:
            found = self._failures(g, checks)
            if found is None:
                return None
            failures = found
        choice = self._choices.get((op, price))
        if choice is None:
            rule = self._operations[op].rule
            choice = OperationChoice(rule.id, rule.operation, price)
            self._remember(self._choices, (op, price), choice)
        return choice, failures

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        """Memoise an immutable result; the caches are bounded by clearing when full."""
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = value

    def _planned_offer(
        self, g: list[Any], body: list[Any], index: int, profile: ProfileDecision
    ) -> tuple[bool, Offer | None]:
        """(decoded, offer) from a plan's per-bono result; decoded is False when the bono
        needs per-rule evaluation, offer None when it is not offered."""
        price_ok = len(body) == 3 and type(body[1]) is int
        key = (index, body[0], body[1]) if price_ok else None
        if key is not None and not g and not body[2]:
            # The common case, offered and eligible: memoised per (bono, rule, price).
            cached = self._offers.get(key)
            if cached is not None:
                return True, cached
        result = self._body(g, body, index, profile)
        if result is None:
            return False, None
        choice, failures = result
        if choice is None:
            return True, None
        offer = Offer(self._bonos[index], choice, not failures, failures)
        if key is not None and not failures:
            self._remember(self._offers, key, offer)
        return True, offer

    def _slow_offers(
        self, base: dict[str, Any], profile: ProfileDecision, indexes: Iterable[int]
    ) -> list[Offer]:
        offers = []
        for index in indexes:
            choice, failures = self._slow_bono(base, profile, index, None)
            if choice is not None:
                offers.append(Offer(self._bonos[index], choice, not failures, failures))
        return offers

    def _listing(self, profile: ProfileDecision, offers: list[Offer]) -> Listing:
        return Listing(profile, tuple(offers), self._version)

    def _failures(self, g: list[Any], checks: list[Any]) -> tuple[Failure, ...] | None:
        """Merge the once-per-request and per-bono check results into failures, in rule
        order; None if some result is not a boolean. An empty list means all passed."""
        failures: list[Failure] = []
        gi = ci = 0
        for position, per_bono in enumerate(self._validation_per_bono):
            if per_bono:
                ok = checks[ci] if checks else True
                ci += 1
            else:
                ok = g[gi] if g else True
                gi += 1
            if ok is False:
                failures.append(self._validation_failures[position])
            elif ok is not True:
                return None
        return tuple(failures)

    def _not_offered(self, index: int, profile: ProfileDecision) -> Failure:
        return Failure(
            None,
            BONO_NOT_OFFERED,
            f"Bono {self._bonos[index].id} is not offered to profile {profile.profile_id}",
        )

    def _decision(self, profile: ProfileDecision, index: int, result: BonoResult) -> Decision:
        choice, failures = result
        return Decision(
            profile.profile_id,
            profile.attributes,
            failures,
            choice,
            self._version,
            self._bonos[index].id,
            profile.rule_id,
        )

    # --- per-rule evaluation ---------------------------------------------------------------

    def _slow_decide(self, base: dict[str, Any], index: int, trace: Trace | None) -> Decision:
        profile = self._slow_profile(base, trace)
        return self._decision(profile, index, self._slow_bono(base, profile, index, trace))

    def _slow_profile(self, base: dict[str, Any], trace: Trace | None) -> ProfileDecision:
        activation = self._profiling_env.Activation(base)
        chosen: ProfileDecision | None = None
        for p in self._profiling:
            entry: dict[str, Any] = {"id": p.rule.id, "profile_id": p.rule.profile_id}
            if chosen is not None:
                entry["outcome"] = "not_evaluated"
            else:
                matched = _truth(p.when.eval(activation))
                if isinstance(matched, str):
                    entry.update(outcome="error", error=f"when: {matched}")
                elif not matched:
                    entry["outcome"] = "no_match"
                else:
                    values, error = self._attributes(p, activation)
                    if error:
                        entry.update(outcome="error", error=error)
                    else:
                        chosen = p.decision or ProfileDecision(p.rule.profile_id, values, p.rule.id)
                        entry.update(outcome="matched", attributes=values)
            if trace is None:
                if chosen is not None:
                    return chosen
            else:
                trace["profiling"].append(entry)
        return chosen or self._default_profile

    @staticmethod
    def _attributes(p: CompiledProfiling, activation: Any) -> tuple[dict[str, Any], str]:
        values: dict[str, Any] = {}
        for name, expr in p.attributes:
            value = expr.eval(activation)
            if value.type() == _ERROR:
                return values, f"attributes.{name}: {value.value()}"
            values[name] = value.plain_value()
        return values, ""

    def _slow_bono(
        self, base: dict[str, Any], profile: ProfileDecision, index: int, trace: Trace | None
    ) -> BonoResult:
        bono: Bono = self._bonos[index]
        data = dict(base)
        data["profile_id"] = profile.profile_id
        data["attributes"] = dict(profile.attributes)
        data["bono"] = self._bono_dicts[index]
        activation = self._operations_env.Activation(data)
        choice: OperationChoice | None = None
        refusal: Failure | None = None
        for o in self._operations:
            entry: dict[str, Any] = {"id": o.rule.id, "operation": o.rule.operation}
            if choice is not None or refusal is not None:
                entry["outcome"] = "not_evaluated"
            else:
                matched = _truth(o.when.eval(activation))
                if isinstance(matched, str):
                    entry.update(outcome="error", error=f"when: {matched}")
                elif not matched:
                    entry["outcome"] = "no_match"
                else:
                    price, error = self._price(o, bono, activation)
                    if error:
                        entry.update(outcome="error", error=f"price: {error}")
                        refusal = Failure(
                            o.rule.id,
                            BONO_NOT_OFFERED,
                            f"Bono {bono.id} is not offered: the price of operation rule "
                            f"{o.rule.id} failed: {error}",
                        )
                    else:
                        choice = OperationChoice(o.rule.id, o.rule.operation, price)
                        entry.update(outcome="matched", price=price)
            if trace is not None:
                trace["operations"].append(entry)
            elif choice is not None or refusal is not None:
                break
        if choice is None:
            if trace is not None:
                trace["validation"] += [
                    {"id": v.rule.id, "code": v.rule.code, "outcome": "not_evaluated"}
                    for v in self._validation
                ]
            return None, (refusal or self._not_offered(index, profile),)
        data["price"] = choice.price
        data["operation"] = choice.operation
        activation = self._validation_env.Activation(data)
        failures: list[Failure] = []
        for v in self._validation:
            entry = {"id": v.rule.id, "code": v.rule.code}
            outcome = "passed"
            error = ""
            if v.applies_to is not None:
                applies = _truth(v.applies_to.eval(activation))
                if isinstance(applies, str):
                    outcome, error = "error", f"applies_to: {applies}"
                elif not applies:
                    outcome = "skipped"
            if outcome == "passed":
                ok = _truth(v.when.eval(activation))
                if isinstance(ok, str):
                    outcome, error = "error", f"when: {ok}"
                elif not ok:
                    outcome = "failed"
                    failures.append(v.failure)
            if outcome == "error":
                failures.append(
                    Failure(v.rule.id, v.rule.code, f"{v.rule.message} (rule error: {error})")
                )
                entry["error"] = error
            entry["outcome"] = outcome
            if trace is not None:
                trace["validation"].append(entry)
        return choice, tuple(failures)

    def _price(self, o: CompiledOperation, bono: Bono, activation: Any) -> tuple[int, str]:
        if o.price is None:
            return (0 if o.rule.operation in self._free else bono.price), ""
        value = o.price.eval(activation)
        x = value.value()
        if type(x) is not int:
            return 0, _fault(value, "int")
        if x < 0:
            return 0, f"negative price {x}"
        return x, ""
