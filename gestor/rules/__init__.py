"""Rule sets as data: profiling, validation and operation rules written in CEL, compiled
once per rule-set version and evaluated without I/O (see docs/rules.md).

    spec = load_rules("config/rules.toml")            # or parse_rules(text)
    rules = compile_rules(spec, catalogue, version=3, tz="America/Argentina/Buenos_Aires")
    decision = rules.decide(PurchaseContext(customer, "app", now), "DATA_2GB_7D")
"""

from gestor.rules._compile import bono_references, compile_rules
from gestor.rules._context import (
    NEVER_AGE_S,
    RuleLimits,
)
from gestor.rules._engine import CompiledRules, UnknownBonoError
from gestor.rules._fields import CUSTOMER_FIELDS, customer_problems
from gestor.rules._model import (
    BONO_NOT_OFFERED,
    CHANNELS,
    Decision,
    Failure,
    Offer,
    OperationChoice,
    OperationRule,
    ProfilingRule,
    PurchaseContext,
    RuleIssue,
    RuleSetError,
    ValidationRule,
)
from gestor.rules._operations import (
    STANDARD_OPERATIONS,
    Step,
    decode_steps,
)
from gestor.rules._parse import load_rules, parse_rules

__all__ = [
    "BONO_NOT_OFFERED",
    "CHANNELS",
    "CUSTOMER_FIELDS",
    "NEVER_AGE_S",
    "STANDARD_OPERATIONS",
    "CompiledRules",
    "Decision",
    "Failure",
    "Offer",
    "OperationChoice",
    "OperationRule",
    "ProfilingRule",
    "PurchaseContext",
    "RuleIssue",
    "RuleLimits",
    "RuleSetError",
    "Step",
    "UnknownBonoError",
    "ValidationRule",
    "bono_references",
    "compile_rules",
    "customer_problems",
    "decode_steps",
    "load_rules",
    "parse_rules",
]
