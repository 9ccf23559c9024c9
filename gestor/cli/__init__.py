"""The `gestor` command: `serve` (the whole system, embedded defaults), `simulate` (the
external platforms' simulator on its own), `reconcile` (transactions against the ledger),
`rules` (rule-set files and Gestor's admin API), `keys` (API keys), `audit` (the audit trail)
and `status` (what the `gestor serve` of a data directory runs).

* `_main`: the parser, `serve`, `simulate`, `reconcile`.
* `_rules`, `_keys`, `_audit`, `_status`: one subcommand each (`_status` also keeps
  `<data dir>/serve.json`, through which the others find a running server).
* `_admin_client`: the client of Gestor's own admin API that `gestor rules push` uses.
"""

from ._main import main

__all__ = ["main"]
