"""The `gestor` command: `serve` (the whole system, embedded defaults), `simulate` (the
external platforms' simulator on its own), `reconcile` (transactions against the ledger),
`rules` (rule-set files and Gestor's admin API), `keys` (API keys) and `audit` (the audit trail).

* `_main`: the parser, `serve`, `simulate`, `reconcile`.
* `_rules`, `_keys`, `_audit`: one subcommand each.
* `_admin_client`: the client of Gestor's own admin API that `gestor rules push` uses.
"""

from ._main import main

__all__ = ["main"]
