"""Records of the rules package: the rule-set spec, compile issues, the purchase context and
the results of evaluating a rule set. Plain frozen attrs records; no behaviour beyond checks
and `as_dict()` renderings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

import attrs

from gestor.catalogue import Bono
from gestor.rules._operations import STANDARD_OPERATIONS, Operation

#: Sales channels a purchase may come from.
CHANNELS = frozenset({"ussd", "app", "ivr", "web", "retail", "api"})
#: Profile assigned when no profiling rule matches.
DEFAULT_PROFILE_ID = "DEFAULT"
#: Failure code when no operation rule offers the bono to the customer's profile.
BONO_NOT_OFFERED = "BONO_NOT_OFFERED"

#: The (read-only) attributes of a profile decision whose rule sets none.
EMPTY_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})

Section = Literal["profiling", "validation", "operations", "movements", "movement_validation"]
#: The sections of a rule set as written (movement_validation is the environment validation
#: rules of movement kinds compile in).
SECTIONS: tuple[Section, ...] = ("profiling", "validation", "operations", "movements")
#: Every CEL environment (`SECTIONS` and the validation of movements).
ENVIRONMENTS: tuple[Section, ...] = (*SECTIONS, "movement_validation")
#: The movement kinds rules decide (a purchase's bono; the others' amounts).
RULE_KINDS = ("purchase", "transfer", "advance", "topup")
MOVEMENT_KINDS = ("transfer", "advance", "topup")
#: Failure code when no movement rule allows the movement to the payer's profile.
MOVEMENT_NOT_OFFERED = "MOVEMENT_NOT_OFFERED"


# --- the rule-set spec ---------------------------------------------------------------------


def _to_dict(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


@attrs.frozen
class ProfilingRule:
    """Ordered; the first rule whose `when` holds assigns `profile_id` and `attributes`."""

    id: str
    when: str
    profile_id: str
    attributes: Mapping[str, str] = attrs.field(factory=dict, converter=_to_dict, hash=False)
    description: str = ""


@attrs.frozen
class ValidationRule:
    """Every applicable rule is evaluated; a `when` that is false (or errors) is a failure."""

    id: str
    when: str
    code: str
    message: str
    applies_to: str | None = None
    description: str = ""
    #: The movement kinds it checks (docs/rules.md): purchases unless it says otherwise.
    kinds: tuple[str, ...] = ("purchase",)


@attrs.frozen
class MovementRule:
    """Ordered per kind; the first rule of a movement's kind whose `when` holds selects its
    operation, fee and maximum amount (CEL over the movement's `amount`)."""

    id: str
    kind: str
    when: str
    operation: str
    fee: str | None = None
    max_amount: str | None = None
    description: str = ""


@attrs.frozen
class OperationRule:
    """Ordered; the first rule whose `when` holds selects the operation and its price."""

    id: str
    when: str
    operation: str
    price: str | None = None
    description: str = ""


Rule = ProfilingRule | ValidationRule | OperationRule | MovementRule


@attrs.frozen
class RuleSetSpec:
    """A rule set as written (TOML), before compilation."""

    profiling: tuple[ProfilingRule, ...] = ()
    validation: tuple[ValidationRule, ...] = ()
    operations: tuple[OperationRule, ...] = ()
    description: str = ""
    #: The operations declared (`[operation.<name>]`), in file order.
    declared: tuple[Operation, ...] = ()
    movements: tuple[MovementRule, ...] = ()

    @property
    def operation_defs(self) -> tuple[Operation, ...]:
        """The operations its rules may name: those declared, or the standard ones when it
        declares none (a rule set written before operations were data)."""
        return self.declared or STANDARD_OPERATIONS

    def rules(self) -> Iterator[tuple[Section, Rule]]:
        """Every rule with its section, in file order per section."""
        for p in self.profiling:
            yield "profiling", p
        for v in self.validation:
            yield "validation", v
        for o in self.operations:
            yield "operations", o
        for m in self.movements:
            yield "movements", m

    def as_dict(self) -> dict[str, Any]:
        """The TOML document shape (omitting empty optional fields)."""
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        if self.declared:
            out["operation"] = {o.name: o.as_dict() for o in self.declared}
        for section in SECTIONS:
            out[section] = [
                {k: (list(v) if isinstance(v, tuple) else v)
                 for k, v in attrs.asdict(r).items()
                 if v not in (None, "", {}) and not (k == "kinds" and v == ("purchase",))}
                for r in getattr(self, section)
            ]
        if not out["movements"]:
            del out["movements"]
        return out


# --- compile issues ------------------------------------------------------------------------


@attrs.frozen
class RuleIssue:
    """One problem found in a rule set: where (section, rule id, field) and what."""

    section: str
    rule_id: str | None
    field: str | None
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.section or "rule set"
        if self.rule_id is not None:
            where += f"[{self.rule_id}]"
        if self.field:
            where += f".{self.field}"
        return f"{self.severity}: {where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class RuleSetError(ValueError):
    """A rule set was refused. `issues` lists every error (and warning) found."""

    def __init__(self, issues: Sequence[RuleIssue]) -> None:
        self.issues: tuple[RuleIssue, ...] = tuple(issues)
        errors = sum(1 for i in self.issues if i.severity == "error")
        lines = "\n  ".join(str(i) for i in self.issues)
        super().__init__(f"rule set refused ({errors} error(s)):\n  {lines}")


# --- the purchase context ------------------------------------------------------------------


def _check_channel(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value not in CHANNELS:
        raise ValueError(f"channel must be one of {sorted(CHANNELS)}, got {value!r}")


def _check_aware(_: object, __: attrs.Attribute[datetime], value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


@attrs.frozen
class PurchaseContext:
    """What rules see about one request (see docs/rules.md, "Context").

    `customer` maps the customer fields (`CUSTOMER_FIELDS`) to values of their types (a
    `CustomerData` from the platforms, or a dict; an absent field is a run-time error of the
    rules reading it). `history` values must be CEL-compatible: None, bool, int, float, str,
    bytes, datetime (aware), timedelta, list and dict (not tuples or sets).
    """

    customer: Mapping[str, Any]
    channel: str = attrs.field(validator=_check_channel)
    now: datetime = attrs.field(validator=_check_aware)
    restrictions: Sequence[str] = ()
    history: Mapping[str, Any] = attrs.field(factory=dict)
    #: The beneficiary's customer data and `msisdn` (empty: the payer buys for itself).
    beneficiary: Mapping[str, Any] = attrs.field(factory=dict)
    kind: str = "purchase"


# --- results -------------------------------------------------------------------------------


@attrs.frozen
class ProfileDecision:
    """The profile assigned by the first matching profiling rule (`rule_id` None: no match)."""

    profile_id: str
    attributes: Mapping[str, Any]
    rule_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile_id": self.profile_id,
            "attributes": dict(self.attributes),
            "rule_id": self.rule_id,
        }


@attrs.frozen
class Failure:
    """A reason the purchase cannot go ahead (`rule_id` None: raised by the engine itself)."""

    rule_id: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "code": self.code, "message": self.message}


@attrs.frozen
class OperationChoice:
    """The operation an operation rule selected, and the effective price (minor units)."""

    rule_id: str
    operation: str
    price: int

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "operation": self.operation, "price": self.price}


@attrs.frozen
class Decision:
    """Profiling + operation + validation for one purchase. Approved iff no failures."""

    profile_id: str
    attributes: Mapping[str, Any]
    failures: tuple[Failure, ...]
    operation: OperationChoice | None
    version: int
    bono_id: str
    profile_rule_id: str | None

    @property
    def approved(self) -> bool:
        return self.operation is not None and not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "bono_id": self.bono_id,
            "approved": self.approved,
            "profile_id": self.profile_id,
            "profile_rule_id": self.profile_rule_id,
            "attributes": dict(self.attributes),
            "operation": None if self.operation is None else self.operation.as_dict(),
            "failures": [f.as_dict() for f in self.failures],
            "version": self.version,
        }


@attrs.frozen
class MovementDecision:
    """What the rules decide for a transfer, advance or top-up. Approved iff an operation
    was chosen, the amount is within `max_amount` and no validation failed."""

    kind: str
    profile_id: str
    failures: tuple[Failure, ...]
    version: int
    rule_id: str | None = None
    operation: str | None = None
    fee: int = 0
    max_amount: int | None = None

    @property
    def approved(self) -> bool:
        return self.operation is not None and not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "approved": self.approved, "profile_id": self.profile_id,
                "rule_id": self.rule_id, "operation": self.operation, "fee": self.fee,
                "max_amount": self.max_amount, "failures": [f.as_dict() for f in self.failures],
                "version": self.version}


@attrs.frozen
class Offer:
    """A bono offered to the customer's profile; `eligible` False when validation fails now."""

    bono: Bono
    operation: OperationChoice
    eligible: bool
    failures: tuple[Failure, ...]

    @property
    def bono_id(self) -> str:
        return self.bono.id

    @property
    def price(self) -> int:
        return self.operation.price

    def as_dict(self) -> dict[str, Any]:
        return {
            "bono": self.bono.as_dict(),
            "operation": self.operation.as_dict(),
            "eligible": self.eligible,
            "failures": [f.as_dict() for f in self.failures],
        }


@attrs.frozen
class Listing:
    """The customer's profile and every bono offered to it (catalogue order)."""

    profile: ProfileDecision
    offers: tuple[Offer, ...]
    version: int
