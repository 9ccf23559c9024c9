"""Rule sets as data: profiling, validation and operation rules written in CEL, compiled
once per rule-set version and evaluated without I/O (see docs/rules.md).

    spec = load_rules("config/rules.toml")            # or parse_rules(text)
    rules = compile_rules(spec, catalogue, version=3, tz="America/Argentina/Buenos_Aires")
    decision = rules.decide(PurchaseContext(customer, "app", now), "DATA_2GB_7D")
"""

from gestor.rules._compile import compile_rules
from gestor.rules._context import (
    BASE_VARIABLES,
    HISTORY_DEFAULTS,
    NEVER_AGE_S,
    SECTION_VARIABLES,
    RuleLimits,
)
from gestor.rules._engine import CompiledRules, UnknownBonoError
from gestor.rules._fields import CUSTOMER_FIELDS, CustomerField, customer_problems
from gestor.rules._model import (
    BONO_NOT_OFFERED,
    CHANNELS,
    DEFAULT_PROFILE_ID,
    Decision,
    Failure,
    Listing,
    Offer,
    OperationChoice,
    OperationRule,
    ProfileDecision,
    ProfilingRule,
    PurchaseContext,
    RuleIssue,
    RuleSetError,
    RuleSetSpec,
    ValidationRule,
)
from gestor.rules._operations import (
    STANDARD_OPERATIONS,
    STEPS,
    Operation,
    Step,
    decode_steps,
)
from gestor.rules._parse import load_rules, parse_rules, rules_from_dict

__all__ = [
    "BASE_VARIABLES",
    "BONO_NOT_OFFERED",
    "CHANNELS",
    "CUSTOMER_FIELDS",
    "DEFAULT_PROFILE_ID",
    "HISTORY_DEFAULTS",
    "NEVER_AGE_S",
    "SECTION_VARIABLES",
    "STANDARD_OPERATIONS",
    "STEPS",
    "CompiledRules",
    "CustomerField",
    "Decision",
    "Failure",
    "Listing",
    "Offer",
    "Operation",
    "OperationChoice",
    "OperationRule",
    "ProfileDecision",
    "ProfilingRule",
    "PurchaseContext",
    "RuleIssue",
    "RuleLimits",
    "RuleSetError",
    "RuleSetSpec",
    "Step",
    "UnknownBonoError",
    "ValidationRule",
    "compile_rules",
    "customer_problems",
    "decode_steps",
    "load_rules",
    "parse_rules",
    "rules_from_dict",
]
