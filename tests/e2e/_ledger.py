"""The ledger after a crash and its recovery (issue 12): no entry lost, none doubled. Shared by
the kill -9 tests once every movement is final."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from gestor.store import open_store

# Each movement's entries against the position its final row implies (no entry lost or posted
# twice, whichever worker wrote which transition, before or after the crash).
_OFF = """
WITH posted AS (
    SELECT transaction_id AS id, account, sum(debit) - sum(credit) AS amount
    FROM ledger_entries GROUP BY transaction_id, account
), implied AS (
    SELECT t.id, p.account, sum(p.amount) AS amount
    FROM transactions t
    CROSS JOIN LATERAL ledger_position(t.kind, t.state, t.steps, t.step, t.price, t.amount,
                                       t.owed, t.collected, t.bono_id, t.msisdn,
                                       t.beneficiary, t.operation) p
    GROUP BY t.id, p.account
)
SELECT COALESCE(a.id, b.id) AS id, COALESCE(a.account, b.account) AS account,
       a.amount AS posted, b.amount AS implied
FROM posted a FULL JOIN implied b ON a.id = b.id AND a.account = b.account
WHERE COALESCE(a.amount, 0) <> COALESCE(b.amount, 0)
"""


async def _read(conn: Any) -> tuple[list[Any], list[Any], set[str]]:
    off = list(await conn.fetch(_OFF))
    accounts = list(await conn.fetch(
        "SELECT account, sum(debit) AS debits, sum(credit) AS credits FROM ledger_entries"
        " GROUP BY account"))
    references = {r["reference"] for r in await conn.fetch(
        "SELECT reference FROM transactions WHERE kind = 'topup'")}
    return off, accounts, references


async def check_ledger(database_url: str, platforms_url: str) -> None:
    """Trial balance zero with nothing in flight or owed back; each movement's entries are what
    its final row implies; each subscriber's account moved as the charging system's export
    says its balance did (its debits, refunds, credits, and the recharges Gestor recorded)."""
    async with open_store(database_url, apply_migrations=False) as store:
        off, accounts, references = await store.bridge.run(_read, transaction=False)
    async with httpx.AsyncClient(base_url=platforms_url) as sim:
        export = (await sim.get("/control/ledger")).json()
    entries = export["entries"] if isinstance(export, dict) else export
    assert off == [], [dict(r) for r in off[:10]]
    balances = {r["account"]: r["debits"] - r["credits"] for r in accounts}
    assert sum(r["debits"] for r in accounts) == sum(r["credits"] for r in accounts)
    assert balances.get("clearing:in_flight", 0) == 0 and balances.get("refunds:payable", 0) == 0
    sign = {"debit": -1, "refund": 1, "credit": 1, "topup": 1}
    moved: Counter[str] = Counter()
    for e in entries:
        if e["kind"] != "topup" or e["id"] in references:
            moved[e["msisdn"]] += sign[e["kind"]] * e["amount"]
    ledger = {a.removeprefix("subscriber:"): -b for a, b in balances.items()
              if a.startswith("subscriber:") and b}
    assert ledger == {m: v for m, v in moved.items() if v}
