"""SQL for the double-entry ledger (migration 0012): reads of the entries PostgreSQL posts with
every movement's state change (trial balance, entries, balances), and the daily close that
freezes a day's per-account totals and checks them against the entries again."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import attrs

from gestor.model import Actor
from gestor.store import _audit

#: Account names: the fixed accounts, a subscriber's (`subscriber:<msisdn>`, E.164 digits) and
#: a bono's revenue (`revenue:bono:<bono_id>`).
FIXED_ACCOUNTS = ("clearing:in_flight", "revenue:fees", "advances:receivable", "refunds:payable",
                  "recharges:platform")
ACCOUNT = re.compile(
    r"subscriber:[1-9][0-9]{7,14}|revenue:bono:[^\x00-\x1f\x7f]{1,64}|"
    + "|".join(re.escape(a) for a in FIXED_ACCOUNTS)
)
#: Seconds after a day's end before it may be closed: a movement's entries are stamped by the
#: database's clock when its statement runs, and commit a moment later.
CLOSE_GRACE_SECONDS = 60


@attrs.frozen
class AccountTotals:
    account: str
    debits: int
    credits: int

    @property
    def balance(self) -> int:
        return self.debits - self.credits

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "debits": self.debits, "credits": self.credits,
                "balance": self.balance}


@attrs.frozen
class Posting:
    """One ledger entry: one side (debit or credit) of one account for one movement."""

    id: int
    at: datetime
    transaction_id: uuid.UUID
    movement: str
    account: str
    debit: int
    credit: int
    memo: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(),
                "transaction_id": str(self.transaction_id),
                "movement": self.movement, "account": self.account, "debit": self.debit,
                "credit": self.credit, "memo": self.memo}


@attrs.frozen
class DayClose:
    """A closed day: its per-account totals as frozen when it was closed."""

    day: date
    timezone: str
    starts_at: datetime
    ends_at: datetime
    entries: int
    total_debits: int
    total_credits: int
    closed_at: datetime
    closed_by: str
    accounts: tuple[AccountTotals, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "timezone": self.timezone,
                "from": self.starts_at.isoformat(), "to": self.ends_at.isoformat(),
                "entries": self.entries, "total_debits": self.total_debits,
                "total_credits": self.total_credits, "closed_at": self.closed_at.isoformat(),
                "closed_by": self.closed_by, "accounts": [a.as_dict() for a in self.accounts]}


@attrs.frozen
class Difference:
    """An account whose entries of a closed day no longer add up to the frozen totals."""

    account: str
    closed_debits: int
    closed_credits: int
    debits: int
    credits: int

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class DayCheck:
    """A close (`created`: by this call) and what the entries say of that day now."""

    close: DayClose
    created: bool
    entries: int
    differences: tuple[Difference, ...]

    @property
    def matches(self) -> bool:
        return not self.differences and self.entries == self.close.entries

    def as_dict(self) -> dict[str, Any]:
        return {**self.close.as_dict(), "created": self.created, "matches": self.matches,
                "entries_now": self.entries,
                "differences": [d.as_dict() for d in self.differences]}


class DayNotOver(Exception):
    """The day has not ended (with the grace) in the close's timezone: it can't be closed yet."""

    def __init__(self, day: date, ends_at: datetime) -> None:
        super().__init__(f"{day} ends at {ends_at.isoformat()}; it can be closed "
                         f"{CLOSE_GRACE_SECONDS} s after that")
        self.day = day
        self.ends_at = ends_at


def _totals(rows: Sequence[Any]) -> tuple[AccountTotals, ...]:
    return tuple(AccountTotals(r["account"], int(r["debits"]), int(r["credits"])) for r in rows)


_TRIAL = """
SELECT account, sum(debit) AS debits, sum(credit) AS credits FROM ledger_entries
WHERE at >= $1 AND at < $2 GROUP BY account ORDER BY account
"""


async def trial_balance(conn: Any, since: datetime, until: datetime) -> tuple[AccountTotals, ...]:
    """Per account, the debits and credits of the entries in `[since, until)`."""
    return _totals(await conn.fetch(_TRIAL, since, until))


async def balances(conn: Any, accounts: Sequence[str]) -> dict[str, int]:
    """Debits - credits over all time of each of these accounts (0 when it has no entries)."""
    rows = await conn.fetch(
        "SELECT a.account, COALESCE((SELECT sum(debit) - sum(credit) FROM ledger_entries e"
        " WHERE e.account = a.account), 0) AS balance FROM unnest($1::text[]) AS a(account)",
        list(accounts))
    return {r["account"]: int(r["balance"]) for r in rows}


_ENTRIES = """
SELECT * FROM ledger_entries
WHERE at >= $1 AND at < $2 AND ($3::text IS NULL OR account = $3)
  AND ($4::uuid IS NULL OR transaction_id = $4) AND id > $5
ORDER BY id LIMIT $6
"""


async def entries(conn: Any, since: datetime, until: datetime, account: str | None,
                  transaction_id: uuid.UUID | None, after_id: int, limit: int
                  ) -> list[Posting]:
    """The entries in `[since, until)` (of `account`, of `transaction_id`) after `after_id`,
    in id order (the order they were posted in)."""
    rows = await conn.fetch(_ENTRIES, since, until, account, transaction_id, after_id, limit)
    return [Posting(r["id"], r["at"], r["transaction_id"], r["movement"], r["account"],
                    int(r["debit"]), int(r["credit"]), r["memo"]) for r in rows]


# -- the daily close ------------------------------------------------------------------------------

_BOUNDS = """
SELECT ($1::date)::timestamp AT TIME ZONE $2 AS starts_at,
       ($1::date + 1)::timestamp AT TIME ZONE $2 AS ends_at,
       clock_timestamp() AS now
"""

# One statement (one snapshot): the day's totals, and its row only if no other close wrote it.
_CLOSE = """
WITH t AS (
    SELECT account, sum(debit) AS debits, sum(credit) AS credits, count(*) AS n
    FROM ledger_entries WHERE at >= $3 AND at < $4 GROUP BY account
), day AS (
    INSERT INTO ledger_days (day, timezone, starts_at, ends_at, entries, total_debits,
                             total_credits, closed_by)
    SELECT $1, $2, $3, $4, COALESCE(sum(n), 0), COALESCE(sum(debits), 0),
           COALESCE(sum(credits), 0), $5
    FROM t
    ON CONFLICT (day) DO NOTHING
    RETURNING day
), totals AS (
    INSERT INTO ledger_day_totals (day, account, debits, credits)
    SELECT day.day, t.account, t.debits, t.credits FROM day CROSS JOIN t
)
SELECT count(*) FROM day
"""


async def _closed(conn: Any, day: date) -> DayClose | None:
    row = await conn.fetchrow("SELECT * FROM ledger_days WHERE day = $1", day)
    if row is None:
        return None
    accounts = await conn.fetch(
        "SELECT account, debits, credits FROM ledger_day_totals WHERE day = $1 ORDER BY account",
        day)
    return DayClose(row["day"], row["timezone"], row["starts_at"], row["ends_at"],
                    int(row["entries"]), int(row["total_debits"]), int(row["total_credits"]),
                    row["closed_at"], row["closed_by"], _totals(accounts))


async def _check(conn: Any, close: DayClose, created: bool) -> DayCheck:
    now = {a.account: a for a in await trial_balance(conn, close.starts_at, close.ends_at)}
    frozen = {a.account: a for a in close.accounts}
    differences = []
    for account in sorted(now.keys() | frozen.keys()):
        was = frozen.get(account, AccountTotals(account, 0, 0))
        is_ = now.get(account, AccountTotals(account, 0, 0))
        if (was.debits, was.credits) != (is_.debits, is_.credits):
            differences.append(Difference(account, was.debits, was.credits, is_.debits,
                                          is_.credits))
    count = await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE at >= $1 AND at < $2",
                                close.starts_at, close.ends_at)
    return DayCheck(close, created, int(count), tuple(differences))


async def close_day(conn: Any, day: date, timezone: str, actor: Actor) -> DayCheck:
    """Freeze `day`'s per-account totals (the day in `timezone`), with an audit row, unless it
    is closed already: then check the frozen totals against the entries (`created` False).
    Raises DayNotOver before the day's end (plus `CLOSE_GRACE_SECONDS`)."""
    bounds = await conn.fetchrow(_BOUNDS, day, timezone)
    closed = await _closed(conn, day)
    if closed is not None:
        return await _check(conn, closed, False)
    if (bounds["now"] - bounds["ends_at"]).total_seconds() < CLOSE_GRACE_SECONDS:
        raise DayNotOver(day, bounds["ends_at"])
    created = await conn.fetchval(_CLOSE, day, timezone, bounds["starts_at"], bounds["ends_at"],
                                  actor.name)
    close = await _closed(conn, day)
    assert close is not None
    check = await _check(conn, close, bool(created))
    if check.created:
        await _audit.record(conn, actor, "ledger.close", f"ledger/{day.isoformat()}", None,
                            {"entries": close.entries, "total_debits": close.total_debits,
                             "total_credits": close.total_credits,
                             "accounts": len(close.accounts)})
    return check


async def check_day(conn: Any, day: date) -> DayCheck | None:
    """A closed day's frozen totals against its entries now; None if it was never closed."""
    closed = await _closed(conn, day)
    return None if closed is None else await _check(conn, closed, False)


_SUBSCRIBER_NETS = """
SELECT transaction_id, substr(account, 12) AS msisdn, sum(credit) - sum(debit) AS net
FROM ledger_entries
WHERE transaction_id = ANY($1::uuid[]) AND account LIKE 'subscriber:%'
GROUP BY transaction_id, account
"""


async def subscriber_nets(conn: Any, ids: Sequence[uuid.UUID]
                          ) -> dict[tuple[str, str], int]:
    """{(transaction id, msisdn): credits - debits} of these movements' subscriber accounts:
    what the ledger says each moved on each line's balance (reconciliation)."""
    rows = await conn.fetch(_SUBSCRIBER_NETS, list(ids))
    return {(str(r["transaction_id"]), r["msisdn"]): int(r["net"]) for r in rows}
