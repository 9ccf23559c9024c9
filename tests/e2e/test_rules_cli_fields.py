"""`gestor rules check` refuses misspelt and mistyped customer fields, one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_rules_cli import gestor
from tests.ruletext import SEED

pytestmark = pytest.mark.e2e

BAD = {  # rule id -> (when, what its line must say)
    "dwh_misspelt": ('customer.segmnt == "corporate"',
                     "unknown customer field 'segmnt' (did you mean 'segment'?)"),
    "dwh_mistyped": ("customer.segment > 3", "[customer.segment is string]"),
    "ocs_misspelt": ('customer.line_stat == "active"',
                     "unknown customer field 'line_stat' (did you mean 'line_status'?)"),
    "ocs_mistyped": ('customer.balance == "x"', "[customer.balance is int]"),
}


def test_check_refuses_bad_customer_fields_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "typos.toml"
    path.write_text(SEED + "".join(
        f"\n[[validation]]\nid = \"{rule}\"\nwhen = '{when}'\ncode = \"X\"\nmessage = \"x\"\n"
        for rule, (when, _) in BAD.items()))
    refused = gestor("rules", "check", str(path))
    assert refused.returncode == 1
    assert refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert len(lines) == len(BAD), refused.stderr
    for line, (rule, (_, says)) in zip(lines, BAD.items(), strict=True):
        assert line.startswith(f"{path}: error: validation[{rule}].when: "), line
        assert says in line, line
    # Spelt right, the same file is fine.
    path.write_text(SEED + '\n[[validation]]\nid = "ok"\nwhen = \'customer.segment != "x"\'\n'
                    'code = "X"\nmessage = "x"\n')
    fine = gestor("rules", "check", str(path))
    assert fine.returncode == 0 and "OK" in fine.stdout, fine.stderr
