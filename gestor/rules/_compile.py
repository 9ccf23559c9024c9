"""Compiling a `RuleSetSpec` against a catalogue: every expression is compiled and
type-checked once, in the CEL environment of its section, and every problem is collected
(syntax, unknown variable, type, duplicate id, unknown operation, unreachable rule, limits)
into one `RuleSetError`. A clean rule set also gets its batched plans (see `_plan`)."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator, Sequence
from datetime import tzinfo
from typing import Any

from cel_expr_python import cel

from gestor.catalogue import Catalogue
from gestor.rules._context import (
    ALL_VARIABLES,
    PLAN_VARIABLES,
    SECTION_VARIABLES,
    Binder,
    RuleLimits,
    make_env,
)
from gestor.rules._engine import (
    PER_BONO,
    CompiledMovement,
    CompiledOperation,
    CompiledProfiling,
    CompiledRules,
    CompiledValidation,
)
from gestor.rules._fields import CUSTOMER, CUSTOMER_FIELDS, field_list, unknown_field_message
from gestor.rules._model import (
    EMPTY_ATTRIBUTES,
    ENVIRONMENTS,
    MOVEMENT_KINDS,
    Failure,
    OperationRule,
    ProfileDecision,
    RuleIssue,
    RuleSetError,
    RuleSetSpec,
    Section,
    ValidationRule,
)
from gestor.rules._operations import Operation, check_operation
from gestor.rules._plan import (
    OperationSource,
    ProfilingSource,
    RuleSources,
    ValidationSource,
    build_plans,
)
from gestor.rules._source import SourceInfo, scan, selected_fields, tests_presence

_BOOL = cel.Type.BOOL
_INT = cel.Type.INT
_DYN = cel.Type.DYN

_STATUS_PREFIX = re.compile(r"^[A-Z_]+: (?:ERROR: )?")
_STATUS_SUFFIX = re.compile(r"\s*\[[A-Z_]+\]\s*$")
_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")
_CUSTOMER_SELECTION = re.compile(r"\bcustomer\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_BONO_ID_LITERALS = (
    re.compile(r"""bono\.id\s*(?:==|!=)\s*(["'])(.*?)\1"""),
    re.compile(r"""(["'])(.*?)\1\s*(?:==|!=)\s*bono\.id"""),
)
_BONO_ID_IN = re.compile(r"""bono\.id\s+in\s*\[([^\]]*)\]""")
_QUOTED = re.compile(r"""(["'])(.*?)\1""")


def compile_rules(
    spec: RuleSetSpec,
    catalogue: Catalogue,
    version: int = 1,
    *,
    tz: str | tzinfo = "UTC",
    limits: RuleLimits | None = None,
) -> CompiledRules:
    """Compile and check `spec`; raise `RuleSetError` listing every issue found.

    `tz` (a zone name or tzinfo) is the zone of the `hour`, `weekday`, `day` and `month`
    variables; `limits` guards against runaway expressions. Warnings (e.g. no catch-all
    profiling rule) do not prevent compilation; they are kept in `CompiledRules.warnings`.
    """
    zone = _zone(tz)
    limits = limits or RuleLimits()
    c = _Compiler(limits)
    _check_ids(spec, c.issues)

    profiling: list[CompiledProfiling] = []
    ordered: list[tuple[str, Any, SourceInfo] | None] = []
    for p in spec.profiling:
        when = c.expr("profiling", p.id, "when", p.when, _BOOL)
        attributes = [
            (name, c.expr("profiling", p.id, f"attributes.{name}", src, None))
            for name, src in p.attributes.items()
        ]
        ordered.append(None if when is None else (p.id, *when))
        if when is not None and all(a is not None for _, a in attributes):
            profiling.append(
                CompiledProfiling(
                    rule=p,
                    when=when[0],
                    attributes=tuple((n, a[0]) for n, a in attributes if a is not None),
                    decision=None
                    if p.attributes
                    else ProfileDecision(p.profile_id, EMPTY_ATTRIBUTES, p.id),
                )
            )
    catch_all = _check_order("profiling", ordered, c.issues)
    if not catch_all:
        c.issues.append(
            RuleIssue(
                "profiling",
                None,
                None,
                'no catch-all rule (when = "true"); customers that match no rule get '
                "profile DEFAULT",
                "warning",
            )
        )

    validation: list[CompiledValidation] = []
    movement_checks: list[CompiledValidation] = []
    for v in spec.validation:
        if any(k in MOVEMENT_KINDS for k in v.kinds):
            checked = _movement_check(c, v)
            if checked is not None:
                movement_checks.append(checked)
        if "purchase" not in v.kinds:
            continue
        when = c.expr("validation", v.id, "when", v.when, _BOOL)
        guard = (
            None
            if v.applies_to is None
            else c.expr("validation", v.id, "applies_to", v.applies_to, _BOOL)
        )
        if when is not None and (v.applies_to is None or guard is not None):
            validation.append(
                CompiledValidation(
                    rule=v,
                    when=when[0],
                    applies_to=None if guard is None else guard[0],
                    failure=Failure(v.id, v.code, v.message),
                    names=when[1].names | (guard[1].names if guard else frozenset()),
                )
            )

    defs = {d.name: d for d in spec.operation_defs}
    for d in spec.declared:
        for field, message in check_operation(d):
            c.error("operation", d.name, field, message)
    operations: list[CompiledOperation] = []
    ordered = []
    for o in spec.operations:
        when = c.expr("operations", o.id, "when", o.when, _BOOL)
        ordered.append(None if when is None else (o.id, *when))
        ok = when is not None
        chosen = defs.get(o.operation)
        if chosen is None:
            c.error(
                "operations",
                o.id,
                "operation",
                f"unknown operation {o.operation!r}: nobody declares it (declared: "
                f"{', '.join(defs)})",
            )
            ok = False
        elif "purchase" not in chosen.kinds() or all(s.do != "provision" for s in chosen.steps):
            c.error("operations", o.id, "operation",
                    f"operation {o.operation!r} cannot sell a bono (its steps: "
                    f"{', '.join(s.do for s in chosen.steps)})")
            ok = False
        price = None
        if o.price is not None:
            if chosen is not None and not chosen.charges:
                c.error(
                    "operations",
                    o.id,
                    "price",
                    f"{o.operation} never charges the customer: remove `price`",
                )
                ok = False
            price = c.expr("operations", o.id, "price", o.price, _INT)
            ok = ok and price is not None
        if ok and when is not None:
            operations.append(
                CompiledOperation(rule=o, when=when[0], price=None if price is None else price[0])
            )
    _check_order("operations", ordered, c.issues)
    _check_bono_ids(spec, catalogue, c.issues)
    movements = _movements(c, spec, defs)

    if any(i.severity == "error" for i in c.issues):
        raise RuleSetError(c.issues)

    plan_env = make_env(PLAN_VARIABLES, limits, plan=True)
    sources = RuleSources(
        profiling=[
            ProfilingSource(p.rule.when, p.rule.profile_id, tuple(p.rule.attributes.items()))
            for p in profiling
        ],
        operations=[
            OperationSource(o.rule.when, o.rule.operation, o.rule.price,
                            not defs[o.rule.operation].charges) for o in operations
        ],
        validation=[
            ValidationSource(v.rule.when, v.rule.applies_to, bool(v.names & PER_BONO))
            for v in validation
        ],
        uses_operation=any("operation" in v.names for v in validation),
    )
    plans, note = build_plans(plan_env, sources, [b.as_dict() for b in catalogue])
    return CompiledRules(
        spec=spec,
        catalogue=catalogue,
        version=version,
        binder=Binder(zone, c.names),
        warnings=tuple(c.issues),
        envs=c.envs,
        profiling=tuple(profiling),
        validation=tuple(validation),
        operations=tuple(operations),
        movements=tuple(movements),
        movement_checks=tuple(movement_checks),
        plan_env=plan_env,
        plans=plans,
        plan_note=note,
    )


def _movement_check(c: _Compiler, v: ValidationRule) -> CompiledValidation | None:
    """A validation rule of movement kinds, compiled in their environment (no bono, no
    price: the amount, fee, operation and maximum amount)."""
    before = len(c.issues)
    when = c.expr("movement_validation", v.id, "when", v.when, _BOOL)
    guard = (None if v.applies_to is None
             else c.expr("movement_validation", v.id, "applies_to", v.applies_to, _BOOL))
    for n in range(before, len(c.issues)):  # the user wrote a [[validation]] rule
        issue = c.issues[n]
        c.issues[n] = RuleIssue("validation", issue.rule_id, issue.field, issue.message.replace(
            "movement_validation rules", f"validation rules of {', '.join(v.kinds)}"),
            issue.severity)
    if when is None or (v.applies_to is not None and guard is None):
        return None
    return CompiledValidation(
        rule=v, when=when[0], applies_to=None if guard is None else guard[0],
        failure=Failure(v.id, v.code, v.message),
        names=when[1].names | (guard[1].names if guard else frozenset()),
    )


def _movements(c: _Compiler, spec: RuleSetSpec, defs: dict[str, Operation]
               ) -> list[CompiledMovement]:
    """The movement rules: each names a declared operation that suits its kind."""
    out = []
    for m in spec.movements:
        when = c.expr("movements", m.id, "when", m.when, _BOOL)
        fee = None if m.fee is None else c.expr("movements", m.id, "fee", m.fee, _INT)
        most = (None if m.max_amount is None
                else c.expr("movements", m.id, "max_amount", m.max_amount, _INT))
        ok = when is not None and (m.fee is None or fee is not None) and (
            m.max_amount is None or most is not None)
        chosen = defs.get(m.operation)
        if chosen is None:
            c.error("movements", m.id, "operation",
                    f"unknown operation {m.operation!r}: nobody declares it (declared: "
                    f"{', '.join(defs)})")
            ok = False
        elif m.kind not in chosen.kinds():
            c.error("movements", m.id, "operation",
                    f"operation {m.operation!r} cannot run a {m.kind} (its steps: "
                    f"{', '.join(s.do for s in chosen.steps)})")
            ok = False
        if ok and when is not None:
            out.append(CompiledMovement(m, when[0], None if fee is None else fee[0],
                                        None if most is None else most[0]))
    return out


def _zone(tz: str | tzinfo) -> tzinfo:
    if not isinstance(tz, str):
        return tz
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None


class _Compiler:
    """Compiles one expression at a time in its section's environment, recording issues."""

    def __init__(self, limits: RuleLimits) -> None:
        self.limits = limits
        self.issues: list[RuleIssue] = []
        self.names: set[str] = set()  # every top-level name the rule set references
        self.envs: dict[Section, Any] = {
            s: make_env(SECTION_VARIABLES[s], limits) for s in ENVIRONMENTS
        }

    def error(self, section: str, rule_id: str, field: str | None, message: str) -> None:
        self.issues.append(RuleIssue(section, rule_id, field, message))

    def expr(
        self, section: Section, rule_id: str, field: str, src: str, expect: Any
    ) -> tuple[Any, SourceInfo] | None:
        limit = self.limits.max_expression_chars
        if len(src) > limit:
            self.error(
                section, rule_id, field, f"expression too long: {len(src)} chars (limit {limit})"
            )
            return None
        info = scan(src)
        self.names |= info.names
        if CUSTOMER in info.names:
            if tests_presence(src, CUSTOMER):
                self.error(
                    section,
                    rule_id,
                    field,
                    "has(customer.<field>): every customer field is always present "
                    "(docs/rules.md); has() is for open maps such as `attributes`",
                )
                return None
            self.names |= {f"{CUSTOMER}.{name}" for name in selected_fields(src, CUSTOMER)}
        max_depth = self.limits.max_comprehension_depth
        if info.comprehension_depth > max_depth:
            self.error(
                section,
                rule_id,
                field,
                "comprehension macros (all, exists, "
                f"exists_one, map, filter) nested {info.comprehension_depth} deep "
                f"(limit {max_depth})",
            )
            return None
        try:
            compiled = self.envs[section].compile(src)
        except RuntimeError as exc:
            self.error(section, rule_id, field, _describe(str(exc), section))
            return None
        if expect is not None:
            rtype = compiled.return_type()
            if rtype not in (expect, _DYN):
                self.error(
                    section,
                    rule_id,
                    field,
                    f"type error: `{field}` must be "
                    f"{expect.name().lower()}, but this expression is "
                    f"{rtype.name().lower()}",
                )
                return None
        return compiled, info


def _describe(text: str, section: Section) -> str:
    """A CEL compiler error as one readable line, classified: each error of the expression
    as `line:column: message (in: source line)`, several joined with `; `."""
    text = _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", text.strip()))
    text = text.replace(" (in container '')", "")
    errors: list[tuple[str, str]] = []
    for block in re.split(r"\n?ERROR: ", text):
        lines = block.strip().splitlines()
        if not lines:
            continue
        head = lines[0].replace("<input>:", "")
        excerpt = next((ln[3:].strip() for ln in lines[1:2] if ln.startswith(" | ")), "")
        errors.append(_explain(head, excerpt, section))
    kinds = [kind for kind, _ in errors]
    kind = next(
        (k for k in ("syntax error", "unknown variable or function", "too deeply nested")
         if k in kinds),
        "type error",
    )
    return f"{kind}: " + "; ".join(message for _, message in errors)


def _explain(head: str, excerpt: str, section: Section) -> tuple[str, str]:
    """(kind, message) for one CEL error line and the source line it points into."""
    where = f" (in: {excerpt[:80]}{'…' if len(excerpt) > 80 else ''})" if excerpt else ""
    if "Syntax error" in head:
        return "syntax error", head + where
    if "recursion" in head:
        return "too deeply nested", head + where
    m = _UNDECLARED.search(head)
    if m is None:
        fields = [
            CUSTOMER_FIELDS[name]
            for name in dict.fromkeys(_CUSTOMER_SELECTION.findall(excerpt))
            if name in CUSTOMER_FIELDS
        ]
        types = ", ".join(f"customer.{f.name} is {f.type_name}" for f in fields)
        return "type error", head + where + (f" [{types}]" if types else "")
    position = head[: head.find(":", head.find(":") + 1) + 2] if head[:1].isdigit() else ""
    parts = m.group(1).split(".")
    name = parts[0]
    if name == CUSTOMER and len(parts) > 1 and parts[1] not in CUSTOMER_FIELDS:
        return "unknown variable or function", position + unknown_field_message(parts[1])
    if name == CUSTOMER and len(parts) == 1:
        return "unknown variable or function", (
            f"{position}`customer` is not a value: use its fields, customer.<field> "
            f"({field_list()})"
        )
    message = head + where
    if name in ALL_VARIABLES:
        message += f" (`{name}` is not available in {section} rules)"
    return "unknown variable or function", message


def _check_ids(spec: RuleSetSpec, issues: list[RuleIssue]) -> None:
    seen: dict[str, str] = {}
    for section, rule in spec.rules():
        if rule.id in seen:
            issues.append(
                RuleIssue(
                    section,
                    rule.id,
                    "id",
                    f"duplicate rule id (first used in "
                    f"{seen[rule.id]}); rule ids are unique across the rule set",
                )
            )
        else:
            seen[rule.id] = section


def _constant(compiled: Any, info: SourceInfo) -> bool | None:
    """The value of a boolean expression that references no variable, else None."""
    if info.names & ALL_VARIABLES:
        return None
    try:
        value = compiled.eval(data={}).value()
    except RuntimeError:
        return None
    return value if isinstance(value, bool) else None


def _check_order(
    section: Section,
    rules: Sequence[tuple[str, Any, SourceInfo] | None],
    issues: list[RuleIssue],
) -> bool:
    """Flag rules after an always-true rule (unreachable) and never-true rules.
    Returns whether an always-true (catch-all) rule exists."""
    always: str | None = None
    for entry in rules:
        if entry is None:
            continue
        rule_id, compiled, info = entry
        if always is not None:
            issues.append(
                RuleIssue(
                    section,
                    rule_id,
                    "when",
                    f"unreachable: rule {always!r} before it always matches (first match wins)",
                )
            )
            continue
        value = _constant(compiled, info)
        if value is True:
            always = rule_id
        elif value is False:
            issues.append(
                RuleIssue(section, rule_id, "when", "never matches (always false)", "warning")
            )
    return always is not None


def bono_references(spec: RuleSetSpec) -> Iterator[tuple[str, str, str, str]]:
    """(section, rule id, field, bono id) of every `bono.id == "X"` (or `in [...]`) in a rule."""
    for section, rule in spec.rules():
        fields = {"when": rule.when}
        if isinstance(rule, ValidationRule) and rule.applies_to:
            fields["applies_to"] = rule.applies_to
        if isinstance(rule, OperationRule) and rule.price:
            fields["price"] = rule.price
        for field, src in fields.items():
            named: list[str] = []
            for pattern in _BONO_ID_LITERALS:
                named += [m.group(2) for m in pattern.finditer(src)]
            for m in _BONO_ID_IN.finditer(src):
                named += [q.group(2) for q in _QUOTED.finditer(m.group(1))]
            for bono_id in named:
                yield section, rule.id, field, bono_id


def _check_bono_ids(spec: RuleSetSpec, catalogue: Catalogue, issues: list[RuleIssue]) -> None:
    """Warn about `bono.id == "X"` comparisons naming a bono that is not in the catalogue."""
    for section, rule_id, field, bono_id in bono_references(spec):
        if bono_id not in catalogue:
            issues.append(RuleIssue(section, rule_id, field,
                                    f"bono id {bono_id!r} is not in the catalogue", "warning"))
