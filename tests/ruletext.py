"""Rule-set texts for tests: the seed from config/, and the seed with a rule put first."""

from __future__ import annotations

from pathlib import Path

SEED = (Path(__file__).resolve().parent.parent / "config" / "rules.toml").read_text()


def promo(bono_id: str, price: int, rule_id: str = "promo") -> str:
    """An operation rule selling `bono_id` at `price`."""
    return f'''[[operations]]
id = "{rule_id}"
when = 'bono.id == "{bono_id}"'
operation = "debit_and_provision"
price = "{price}"

'''


def with_first_operation(rule: str, source: str = SEED) -> str:
    """`source` with `rule` (an [[operations]] table) before its first operation rule, so it
    wins the first match."""
    head, sep, tail = source.partition("[[operations]]")
    return head + rule + sep + tail
