"""SQL for purchase transactions. Each function runs on one asyncpg connection inside one
transaction (one crossing of the bridge) and handles a whole batch: `unnest` arrays in, one
statement, `ON CONFLICT`/`RETURNING` to tell each row's fate (DESIGN D1, D3, D5)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from gestor.model import (
    PENDING_STATES,
    HistoryEntry,
    NewTransaction,
    PurchaseCounters,
    SubscriberSnapshot,
    Transaction,
    Transition,
    TxState,
)
from gestor.store._rows import encode_history, encode_reasons, transaction_from_row

_PENDING = sorted(s.value for s in PENDING_STATES)


@attrs.frozen
class Accepted:
    """The purchase was recorded; it holds the pending slot of its msisdn. `subscriber` is its
    subscriber's history and restrictions as committed at that moment: what its rules read."""

    transaction: Transaction
    subscriber: SubscriberSnapshot


@attrs.frozen
class Replayed:
    """Same client and Idempotency-Key, same request: the original transaction."""

    transaction: Transaction


@attrs.frozen
class KeyReused:
    """Same client and Idempotency-Key but a different request (DESIGN D5: 422)."""

    transaction: Transaction


@attrs.frozen
class PendingExists:
    """The msisdn already has a transaction in flight (DESIGN D3: 409)."""

    transaction: Transaction


@attrs.frozen
class Expired:
    """Nothing was written: the purchase's acceptance deadline passed before the database could
    take it (it was still queued, or the database's clock was past `accept_by` when the INSERT
    ran). Safe to retry, with the same Idempotency-Key or a new one."""

    reason: str


AcceptOutcome = Accepted | Replayed | KeyReused | PendingExists | Expired


def _stamped(events: str, at: str) -> str:
    """SQL: the JSON history entries `events` (text), each stamped `at` (the database's time of
    the write that records them, so a record's history agrees with its `updated_at`)."""
    return (f"(SELECT COALESCE(jsonb_agg(e.v || jsonb_build_object('at', {at}) ORDER BY e.n),"
            f" '[]'::jsonb) FROM jsonb_array_elements({events}::jsonb) WITH ORDINALITY AS e(v, n))")


# Acceptances through `accept_transactions` (0010: the guards of every mobile each movement
# touches, in msisdn order across the batch, then the rows; 0011: then each inserted row's
# settled `created_at` and its subscriber's history, read after the insert), transitions in the
# same statement: one statement per crossing.
_UPDATE = f"""
WITH upd AS (
    UPDATE transactions t SET
        state = u.state,
        history = t.history || {_stamped("u.events", "greatest(u.ts, t.created_at)")},
        updated_at = greatest(u.ts, t.created_at),
        price = COALESCE(u.price, t.price),
        currency = COALESCE(u.currency, t.currency),
        operation = COALESCE(u.operation, t.operation),
        profile_id = COALESCE(u.profile_id, t.profile_id),
        rules_version = COALESCE(u.rules_version, t.rules_version),
        reasons = COALESCE(u.reasons::jsonb, t.reasons),
        amount = COALESCE(u.amount, t.amount),
        fee = COALESCE(u.fee, t.fee),
        collected = COALESCE(u.collected, t.collected),
        owed = COALESCE(u.owed, t.owed),
        step = COALESCE(u.step, t.step),
        steps = COALESCE(string_to_array(u.steps, ' '), t.steps),
        catalogue_version = COALESCE(u.catalogue_version, t.catalogue_version),
        segment = COALESCE(u.segment, t.segment)
    FROM (SELECT u.*, clock_timestamp() AS ts  -- the database's clock, as it commits
          FROM unnest($14::uuid[], $15::text[], $16::text[], $17::text[], $18::timestamptz[],
                      $19::bigint[], $20::text[], $21::text[], $22::text[], $23::int[],
                      $24::text[], $25::bigint[], $26::bigint[], $27::bigint[], $28::bigint[],
                      $29::int[], $30::text[], $31::int[], $34::text[])
               AS u(id, expect, state, events, at, price, currency, operation, profile_id,
                    rules_version, reasons, amount, fee, collected, owed, step, steps,
                    catalogue_version, segment)) u
    WHERE t.id = u.id AND t.state = u.expect
    RETURNING t.id, t.updated_at
)
"""
_WRITE = _UPDATE + """
SELECT a.id, true AS inserted, NULL::timestamptz AS at, a.created_at AS created,
       a.purchases_today, a.purchases_month, a.spent_today, a.spent_month, a.gifts_today,
       a.gifted_today, a.owed AS debt, a.last_at, a.codes
FROM accept_transactions($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::bigint[], $12::text[], $13::timestamptz[],
                         $32::timestamptz[], $33::timestamptz[]) AS a
UNION ALL SELECT id, false, updated_at, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM upd
"""
# Transitions alone (most batches): the same statement without the acceptance, its
# parameters renumbered from $1.
# ($34, the segments, follows the acceptance's windows: $21 there.)
_MOVES = re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) - (15 if m.group(1) == '34' else 13)}",
                _UPDATE) + """
SELECT id, false AS inserted, updated_at AS at FROM upd
"""

_BY_KEYS = """
SELECT t.* FROM transactions t
JOIN unnest($1::text[], $2::text[]) AS k(client, key)
  ON t.client = k.client AND t.idempotency_key = k.key
"""

# The movement holding each of these mobiles' guard (as payer or beneficiary).
_PENDING_FOR = """
SELECT g.msisdn AS guarded, t.* FROM mobile_guards g JOIN transactions t ON t.id = g.transaction_id
WHERE g.msisdn = ANY($1::text[])
"""

_BY_REFERENCE = """
SELECT * FROM transactions WHERE kind = 'topup' AND reference = ANY($1::text[])
"""


WriteOutcome = AcceptOutcome


async def write_batch(
    conn: Any, accepts: Sequence[NewTransaction], moves: Sequence[Transition],
    windows: Sequence[SnapshotRequest] = (),
) -> tuple[list[WriteOutcome], list[datetime | None]]:
    """Insert new transactions and apply transitions in ONE statement (one round trip, one
    commit, atomic). Each transition gets its committed `updated_at` (the database's clock), or
    None if its row was no longer in `expect`; each acceptance that conflicted is explained
    (idempotent replay, key reuse, or pending).

    `windows` (one per acceptance: the day and month of the history its rules read): each
    inserted row is `Accepted`, the row as committed with its subscriber's history and
    restrictions at that moment, read by the same statement after the insert (migration 0011:
    exact, whatever process wrote what)."""
    if len(windows) != len(accepts):
        raise ValueError("write_batch needs one history window per acceptance")
    acceptance = [
        [t.id for t in accepts],
        [t.msisdn for t in accepts],
        [t.beneficiary for t in accepts],
        [t.kind.value for t in accepts],
        [t.bono_id or None for t in accepts],
        [t.channel for t in accepts],
        [t.client for t in accepts],
        [t.idempotency_key for t in accepts],
        [t.request_hash for t in accepts],
        [encode_history([HistoryEntry(TxState.RECEIVED, t.at)]) for t in accepts],
        [t.amount for t in accepts],
        [t.reference for t in accepts],
        [t.accept_by for t in accepts],
    ]
    transitions = [
        [m.id for m in moves],
        [m.expect.value for m in moves],
        [m.state.value for m in moves],
        [encode_history(m.events) for m in moves],
        [m.at for m in moves],
        [m.price for m in moves],
        [m.currency for m in moves],
        [m.operation for m in moves],
        [m.profile_id for m in moves],
        [m.rules_version for m in moves],
        [None if m.reasons is None else encode_reasons(m.reasons) for m in moves],
        [m.amount for m in moves],
        [m.fee for m in moves],
        [m.collected for m in moves],
        [m.owed for m in moves],
        [m.step for m in moves],
        [None if m.steps is None else " ".join(m.steps) for m in moves],
        [m.catalogue_version for m in moves],
    ]
    segments = [m.segment for m in moves]
    if accepts:
        rows = await conn.fetch(_WRITE, *acceptance, *transitions,
                                [w.day_start for w in windows], [w.month_start for w in windows],
                                segments)
    else:
        rows = await conn.fetch(_MOVES, *transitions, segments)
    inserted = {r["id"]: r for r in rows if r["inserted"]}
    updated = {r["id"]: r["at"] for r in rows if not r["inserted"]}
    outcomes: dict[uuid.UUID, WriteOutcome] = {
        t.id: _accepted(t, inserted[t.id]) for t in accepts if t.id in inserted
    }
    conflicted = [(t, w) for t, w in zip(accepts, windows, strict=True) if t.id not in inserted]
    if conflicted:
        outcomes.update(await _explain_conflicts(conn, conflicted))
    return [outcomes[t.id] for t in accepts], [updated.get(m.id) for m in moves]


def _accepted(new: NewTransaction, row: Any) -> Accepted:
    """An acceptance `_WRITE` inserted: the row as committed is `new` in `received`, both its
    times and its history's one entry at the settled `created_at` (the database's clock when
    its guards were its own, or the previous purchase's end if later: trigger
    transactions_after_previous)."""
    at: datetime = row["created"]
    tx = Transaction(
        id=new.id, msisdn=new.msisdn, bono_id=new.bono_id, channel=new.channel,
        client=new.client, idempotency_key=new.idempotency_key, request_hash=new.request_hash,
        state=TxState.RECEIVED, created_at=at, updated_at=at,
        history=(HistoryEntry(TxState.RECEIVED, at),), kind=new.kind,
        beneficiary=new.beneficiary, amount=new.amount, reference=new.reference,
    )
    return Accepted(tx, _snapshot(row))


async def _explain_conflicts(
    conn: Any, conflicted_windows: Sequence[tuple[NewTransaction, SnapshotRequest]],
    attempts: int = 3,
) -> dict[uuid.UUID, WriteOutcome]:
    conflicted = [t for t, _ in conflicted_windows]
    window_of = {t.id: w for t, w in conflicted_windows}
    by_key = {
        (r["client"], r["idempotency_key"]): transaction_from_row(r)
        for r in await conn.fetch(
            _BY_KEYS, [t.client for t in conflicted], [t.idempotency_key for t in conflicted]
        )
    }
    references = [t.reference for t in conflicted if t.reference is not None]
    by_reference = {
        r["reference"]: transaction_from_row(r)
        for r in (await conn.fetch(_BY_REFERENCE, references) if references else ())
    }
    pending = {
        r["guarded"]: transaction_from_row(r)
        for r in await conn.fetch(_PENDING_FOR, [m for t in conflicted for m in t.mobiles])
    }
    outcomes: dict[uuid.UUID, WriteOutcome] = {}
    vanished = []
    db_now: datetime | None = None
    for t in conflicted:
        original = by_key.get((t.client, t.idempotency_key))
        if original is None and t.reference is not None:  # the same top-up, by another key
            original = by_reference.get(t.reference)
        holders = [pending[m] for m in t.mobiles if m in pending]
        if original is not None:
            same = original.request_hash == t.request_hash
            outcomes[t.id] = Replayed(original) if same else KeyReused(original)
        elif holders:
            outcomes[t.id] = PendingExists(holders[0])
        elif t.accept_by is not None and t.accept_by <= (
            db_now := db_now or await conn.fetchval("SELECT clock_timestamp()")
        ):  # refused by the deadline (or late now): nothing was written, nor will be
            outcomes[t.id] = Expired("the database took it after its acceptance deadline")
        else:  # the conflicting row settled between our statements: try again
            vanished.append(t)
    if vanished:
        if attempts == 0:  # pragma: no cover - a conflict that vanishes three times in a row
            raise RuntimeError("could not settle the acceptance of a transaction")
        retried, _ = await write_batch(conn, vanished, [], [window_of[t.id] for t in vanished])
        outcomes.update({t.id: o for t, o in zip(vanished, retried, strict=True)})
    return outcomes


async def get_batch(conn: Any, ids: Sequence[uuid.UUID]) -> list[Transaction | None]:
    rows = await conn.fetch("SELECT * FROM transactions WHERE id = ANY($1::uuid[])", list(ids))
    found = {r["id"]: transaction_from_row(r) for r in rows}
    return [found.get(i) for i in ids]


@attrs.frozen
class SnapshotRequest:
    msisdn: str
    day_start: datetime
    month_start: datetime
    now: datetime


def _subscriber(msisdn: str, day_start: str, month_start: str, at: str) -> str:
    """SQL joins: a subscriber's history counters (`c`: over its completed movements of this
    month, a range scan of transactions_completed_by_msisdn: purchases, and gifts today; `l`:
    the last purchase), what its advances still owe (`d`, whenever made) and its restrictions
    in force at `at` (`x`)."""
    return f"""
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE h.kind = 'purchase' AND h.created_at >= {day_start})
               AS purchases_today,
           count(*) FILTER (WHERE h.kind = 'purchase') AS purchases_month,
           COALESCE(sum(h.price) FILTER (WHERE h.kind = 'purchase'
                                         AND h.created_at >= {day_start}), 0) AS spent_today,
           COALESCE(sum(h.price) FILTER (WHERE h.kind = 'purchase'), 0) AS spent_month,
           count(*) FILTER (WHERE h.beneficiary IS NOT NULL AND h.created_at >= {day_start})
               AS gifts_today,
           COALESCE(sum(CASE WHEN h.kind = 'transfer' THEN h.amount ELSE h.price END)
                    FILTER (WHERE h.beneficiary IS NOT NULL
                            AND h.created_at >= {day_start}), 0) AS gifted_today
    FROM transactions h
    WHERE h.msisdn = {msisdn} AND h.state = '{TxState.COMPLETED.value}'
      AND h.created_at >= {month_start}
) c ON true
LEFT JOIN LATERAL (
    SELECT h.created_at AS last_at FROM transactions h
    WHERE h.msisdn = {msisdn} AND h.state = '{TxState.COMPLETED.value}' AND h.kind = 'purchase'
    ORDER BY h.created_at DESC LIMIT 1
) l ON true
LEFT JOIN LATERAL (
    SELECT COALESCE(sum(h.owed), 0) - COALESCE(sum(h.collected), 0) AS debt
    FROM transactions h
    WHERE h.msisdn = {msisdn} AND h.state = '{TxState.COMPLETED.value}'
      AND (h.owed IS NOT NULL OR h.collected IS NOT NULL)
) d ON true
LEFT JOIN LATERAL (
    SELECT array_agg(x.code ORDER BY x.code) AS codes FROM restrictions x
    WHERE x.msisdn = {msisdn} AND (x.until IS NULL OR x.until > {at})
) x ON true
"""


_SNAPSHOT = f"""
SELECT r.msisdn, c.purchases_today, c.purchases_month, c.spent_today, c.spent_month,
       c.gifts_today, c.gifted_today, d.debt, l.last_at, x.codes
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS r(msisdn, day_start, month_start)
{_subscriber("r.msisdn", "r.day_start", "r.month_start", "$4")}
"""

def _snapshot(r: Any) -> SubscriberSnapshot:
    return SubscriberSnapshot(
        counters=PurchaseCounters(
            purchases_today=r["purchases_today"] or 0,
            purchases_month=r["purchases_month"] or 0,
            spent_today=int(r["spent_today"] or 0),
            spent_month=int(r["spent_month"] or 0),
            last_purchase_at=r["last_at"],
            gifts_today=r["gifts_today"] or 0,
            gifted_today=int(r["gifted_today"] or 0),
            owed=int(r["debt"] or 0),
        ),
        restrictions=tuple(r["codes"] or ()),
    )


async def snapshot_batch(conn: Any, items: Sequence[SnapshotRequest]) -> list[SubscriberSnapshot]:
    """Many subscribers' history and restrictions (for listings and dry runs): one statement."""
    rows = await conn.fetch(
        _SNAPSHOT,
        [i.msisdn for i in items],
        [i.day_start for i in items],
        [i.month_start for i in items],
        max(i.now for i in items),
    )
    by_msisdn = {r["msisdn"]: r for r in rows}
    return [_snapshot(by_msisdn[i.msisdn]) for i in items]


# A mobile's movements in either role, newest first: two index range scans merged.
_LIST = """
SELECT * FROM (
    (SELECT * FROM transactions WHERE msisdn = $1
       AND ($2::text[] IS NULL OR state = ANY($2::text[]))
       AND ($3::text IS NULL OR client = $3) AND ($5::text[] IS NULL OR kind = ANY($5::text[]))
     ORDER BY created_at DESC LIMIT $4)
    UNION ALL
    (SELECT * FROM transactions WHERE beneficiary = $1 AND msisdn <> $1
       AND ($2::text[] IS NULL OR state = ANY($2::text[]))
       AND ($3::text IS NULL OR client = $3) AND ($5::text[] IS NULL OR kind = ANY($5::text[]))
     ORDER BY created_at DESC LIMIT $4)
) t ORDER BY created_at DESC LIMIT $4
"""


async def list_for_msisdn(
    conn: Any, msisdn: str, states: Sequence[str] | None, limit: int, client: str | None = None,
    kinds: Sequence[str] | None = None,
) -> list[Transaction]:
    """The movements `msisdn` pays for or receives, newest first (`Transaction.role_of`)."""
    rows = await conn.fetch(_LIST, msisdn, list(states) if states else None, client, limit,
                            list(kinds) if kinds else None)
    return [transaction_from_row(r) for r in rows]


_CLAIM = """
UPDATE transactions t SET updated_at = $2
WHERE t.id IN (
    SELECT id FROM transactions
    WHERE state = ANY($3::text[]) AND updated_at < $1
    ORDER BY updated_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
RETURNING t.*
"""


async def claim_stale(conn: Any, stale_before: datetime, now: datetime, limit: int
                      ) -> list[Transaction]:
    """Lease non-terminal transactions untouched since `stale_before`: their `updated_at`
    becomes `now`, so no other recoverer takes them until they are stale again."""
    rows = await conn.fetch(_CLAIM, stale_before, now, _PENDING, limit)
    return [transaction_from_row(r) for r in rows]


_TOUCH = """
UPDATE transactions SET updated_at = $2
WHERE id IN (
    SELECT id FROM transactions
    WHERE id = ANY($1::uuid[]) AND state = ANY($3::text[]) AND updated_at < $2
    FOR UPDATE SKIP LOCKED
)
"""


async def touch(conn: Any, ids: Sequence[uuid.UUID], now: datetime) -> int:
    """Renew the lease of transactions this worker is driving (non-terminal ones only). Rows a
    writer holds right now are skipped, not waited for: that write renews them anyway, and
    waiting on rows in no set order beside the batched writes could deadlock with them."""
    result = await conn.execute(_TOUCH, list(ids), now, _PENDING)
    return int(result.rsplit(" ", 1)[1])
