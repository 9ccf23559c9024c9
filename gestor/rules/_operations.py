"""Operations as data (DESIGN D10): an operation is a named list of steps from a fixed
vocabulary, each with the compensation that undoes it, declared in the rule set
(`[operation.<name>]`) and versioned with its rules. The rules pick one by name; the saga
(`gestor.purchase`) runs its steps in order and, when one fails, the compensations of those
done, in reverse order.

    [operation.debit_and_provision]
    description = "Charge the payer, then give the bono"
    steps = [{ do = "debit", undo = "refund" }, { do = "provision" }]

A rule set that declares no operation at all (every rule set written before operations were
data) gets `STANDARD_OPERATIONS`, the two it could name then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

#: The step vocabulary: what each step does, and the one compensation that undoes it (None:
#: nothing can undo it, so it must be the operation's last step).
#:
#: - debit: the payer pays what the movement costs (a bono's price; a transfer's amount + fee);
#:   undone by a refund.
#: - credit: the beneficiary receives the amount; undone by a reversing debit.
#: - advance: the payer is lent the amount (credited; owed with its fee until top-ups settle
#:   it); undone by a reversing debit.
#: - provision: the bono is given to the beneficiary (the payer when there is none).
#: - recover: collect what the payer's advances owe, up to the top-up's amount, by a debit.
STEPS: Mapping[str, str | None] = {
    "debit": "refund",
    "credit": "reverse",
    "advance": "reverse",
    "provision": None,
    "recover": None,
}
COMPENSATIONS = frozenset(c for c in STEPS.values() if c is not None)
#: The movement kinds each step makes sense for (checked where a rule names the operation).
STEP_KINDS: Mapping[str, frozenset[str]] = {
    "debit": frozenset({"purchase", "transfer"}),
    "credit": frozenset({"transfer"}),
    "advance": frozenset({"purchase", "advance"}),
    "provision": frozenset({"purchase"}),
    "recover": frozenset({"topup"}),
}


@attrs.frozen
class Step:
    """One step of an operation and the compensation declared for it (None: none)."""

    do: str
    undo: str | None = None

    def encode(self) -> str:
        """As a transaction records it: `do` or `do:undo`."""
        return self.do if self.undo is None else f"{self.do}:{self.undo}"

    @classmethod
    def decode(cls, text: str) -> Step:
        do, _, undo = text.partition(":")
        return cls(do, undo or None)

    def as_dict(self) -> dict[str, str]:
        return {"do": self.do} if self.undo is None else {"do": self.do, "undo": self.undo}


@attrs.frozen
class Operation:
    """A named list of steps (see the module docstring)."""

    name: str
    steps: tuple[Step, ...]
    description: str = ""

    @property
    def charges(self) -> bool:
        """Whether it debits the payer a price (else a bono under it is free)."""
        return any(s.do == "debit" for s in self.steps)

    def kinds(self) -> frozenset[str]:
        """The movement kinds it can run for: those every step of it suits."""
        kinds = frozenset(STEP_KINDS)
        out = frozenset({"purchase", "transfer", "advance", "topup"})
        for s in self.steps:
            out &= STEP_KINDS.get(s.do, kinds)
        return out

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": [s.as_dict() for s in self.steps]}
        if self.description:
            out["description"] = self.description
        return out


STANDARD_OPERATIONS: tuple[Operation, ...] = (
    Operation("debit_and_provision", (Step("debit", "refund"), Step("provision")),
              "Charge the payer, then give the bono"),
    Operation("provision_only", (Step("provision"),), "Give the bono, free"),
)


def decode_steps(encoded: Sequence[str]) -> tuple[Step, ...]:
    return tuple(Step.decode(s) for s in encoded)


def check_operation(op: Operation) -> list[tuple[str | None, str]]:
    """Problems of one declared operation: (field, message) pairs."""
    problems: list[tuple[str | None, str]] = []
    if not op.steps:
        problems.append(("steps", "an operation needs at least one step"))
    seen: set[str] = set()
    for n, step in enumerate(op.steps):
        where = f"steps[{n}]"
        if step.do not in STEPS:
            problems.append((where, f"unknown step {step.do!r} (one of: {', '.join(STEPS)})"))
            continue
        if step.do in seen:
            problems.append((where, f"step {step.do!r} appears twice (each step's id derives "
                                    "from the transaction and the step)"))
        seen.add(step.do)
        allowed = STEPS[step.do]
        if step.undo is not None and step.undo != allowed:
            expected = f"undo = {allowed!r}" if allowed else "no undo (nothing undoes it)"
            problems.append((where, f"{step.do!r} is undone by {expected}, not {step.undo!r}"))
        last = n == len(op.steps) - 1
        if not last and step.undo is None:
            if allowed is None:
                problems.append((where, f"{step.do!r} cannot be undone: it must be the last "
                                        "step"))
            else:
                problems.append((where, f"missing compensation: {step.do!r} is followed by "
                                        f"steps that may fail; declare undo = {allowed!r}"))
    if not op.kinds():
        problems.append(("steps", "no movement kind can run these steps together"))
    return problems


def operation_from_dict(name: str, entry: Any) -> tuple[Operation | None,
                                                       list[tuple[str | None, str]]]:
    """An `[operation.<name>]` table, or the structural problems found in it."""
    problems: list[tuple[str | None, str]] = []
    if not isinstance(entry, Mapping):
        return None, [(None, "must be a table with `steps`")]
    for key in sorted(set(entry) - {"steps", "description"}):
        problems.append((key, "unknown field (allowed: description, steps)"))
    description = entry.get("description", "")
    if not isinstance(description, str):
        problems.append(("description", "must be a string"))
    raw = entry.get("steps")
    if not isinstance(raw, list):
        problems.append(("steps", "required: a list of { do = \"<step>\", undo = \"<step>\" }"))
        return None, problems
    steps: list[Step] = []
    for n, item in enumerate(raw):
        if isinstance(item, str):
            item = {"do": item}
        if not isinstance(item, Mapping) or not isinstance(item.get("do"), str) or any(
                k not in ("do", "undo") for k in item) or not isinstance(
                item.get("undo", ""), str):
            problems.append((f"steps[{n}]", "must be { do = \"<step>\" } with an optional "
                                            "undo = \"<compensation>\""))
            continue
        steps.append(Step(item["do"], item.get("undo") or None))
    if problems:
        return None, problems
    return Operation(name, tuple(steps), description if isinstance(description, str) else ""), []
