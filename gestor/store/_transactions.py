"""SQL for purchase transactions. Each function runs on one asyncpg connection inside one
transaction (one crossing of the bridge) and handles a whole batch: `unnest` arrays in, one
statement, `ON CONFLICT`/`RETURNING` to tell each row's fate (DESIGN D1, D3, D5)."""

from __future__ import annotations

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
    """The purchase was recorded; it holds the pending slot of its msisdn."""

    transaction: Transaction


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

_WRITE = f"""
WITH ins AS (
    INSERT INTO transactions (id, msisdn, bono_id, channel, client, idempotency_key,
                              request_hash, state, history, created_at, updated_at)
    SELECT i.id, i.msisdn, i.bono_id, i.channel, i.client, i.key, i.hash,
           '{TxState.RECEIVED.value}', i.history::jsonb, i.at, i.at
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::timestamptz[], $21::timestamptz[])
         AS i(id, msisdn, bono_id, channel, client, key, hash, history, at, accept_by)
    -- The acceptance deadline, by the database's clock at the moment the row is inserted: a
    -- statement that reaches a stalled server too late writes nothing (see `Expired`).
    WHERE i.accept_by IS NULL OR clock_timestamp() < i.accept_by
    ORDER BY i.msisdn, i.client, i.key  -- one order for every writer: no lock-order deadlock
    ON CONFLICT DO NOTHING
    RETURNING id
), upd AS (
    UPDATE transactions t SET
        state = u.state,
        history = t.history || u.events::jsonb,
        updated_at = u.at,
        price = COALESCE(u.price, t.price),
        currency = COALESCE(u.currency, t.currency),
        operation = COALESCE(u.operation, t.operation),
        profile_id = COALESCE(u.profile_id, t.profile_id),
        rules_version = COALESCE(u.rules_version, t.rules_version),
        reasons = COALESCE(u.reasons::jsonb, t.reasons)
    FROM unnest($10::uuid[], $11::text[], $12::text[], $13::text[], $14::timestamptz[],
                $15::bigint[], $16::text[], $17::text[], $18::text[], $19::int[], $20::text[])
         AS u(id, expect, state, events, at, price, currency, operation, profile_id,
              rules_version, reasons)
    WHERE t.id = u.id AND t.state = u.expect
    RETURNING t.id
)
SELECT id, true AS inserted FROM ins UNION ALL SELECT id, false FROM upd
"""

_BY_KEYS = """
SELECT t.* FROM transactions t
JOIN unnest($1::text[], $2::text[]) AS k(client, key)
  ON t.client = k.client AND t.idempotency_key = k.key
"""

_PENDING_FOR = """
SELECT * FROM transactions WHERE msisdn = ANY($1::text[]) AND state = ANY($2::text[])
"""


def _accepted(t: NewTransaction) -> Transaction:
    """The row as the INSERT wrote it (saves reading it back)."""
    return Transaction(
        id=t.id, msisdn=t.msisdn, bono_id=t.bono_id, channel=t.channel, client=t.client,
        idempotency_key=t.idempotency_key, request_hash=t.request_hash,
        state=TxState.RECEIVED, created_at=t.at, updated_at=t.at,
        history=(HistoryEntry(TxState.RECEIVED, t.at),),
    )


async def write_batch(
    conn: Any, accepts: Sequence[NewTransaction], moves: Sequence[Transition]
) -> tuple[list[AcceptOutcome], list[bool]]:
    """Insert new transactions and apply transitions in ONE statement (one round trip, one
    commit, atomic). Each transition says whether its row was still in `expect`; each
    acceptance that conflicted is explained (idempotent replay, key reuse, or pending)."""
    rows = await conn.fetch(
        _WRITE,
        [t.id for t in accepts],
        [t.msisdn for t in accepts],
        [t.bono_id for t in accepts],
        [t.channel for t in accepts],
        [t.client for t in accepts],
        [t.idempotency_key for t in accepts],
        [t.request_hash for t in accepts],
        [encode_history([HistoryEntry(TxState.RECEIVED, t.at)]) for t in accepts],
        [t.at for t in accepts],
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
        [t.accept_by for t in accepts],
    )
    inserted = {r["id"] for r in rows if r["inserted"]}
    updated = {r["id"] for r in rows if not r["inserted"]}
    outcomes: dict[uuid.UUID, AcceptOutcome] = {
        t.id: Accepted(_accepted(t)) for t in accepts if t.id in inserted
    }
    conflicted = [t for t in accepts if t.id not in inserted]
    if conflicted:
        outcomes.update(await _explain_conflicts(conn, conflicted))
    return [outcomes[t.id] for t in accepts], [m.id in updated for m in moves]


async def _explain_conflicts(
    conn: Any, conflicted: Sequence[NewTransaction], attempts: int = 3
) -> dict[uuid.UUID, AcceptOutcome]:
    by_key = {
        (r["client"], r["idempotency_key"]): transaction_from_row(r)
        for r in await conn.fetch(
            _BY_KEYS, [t.client for t in conflicted], [t.idempotency_key for t in conflicted]
        )
    }
    pending = {
        r["msisdn"]: transaction_from_row(r)
        for r in await conn.fetch(_PENDING_FOR, [t.msisdn for t in conflicted], _PENDING)
    }
    outcomes: dict[uuid.UUID, AcceptOutcome] = {}
    vanished = []
    db_now: datetime | None = None
    for t in conflicted:
        original = by_key.get((t.client, t.idempotency_key))
        if original is not None:
            same = original.request_hash == t.request_hash
            outcomes[t.id] = Replayed(original) if same else KeyReused(original)
        elif t.msisdn in pending:
            outcomes[t.id] = PendingExists(pending[t.msisdn])
        elif t.accept_by is not None and t.accept_by <= (
            db_now := db_now or await conn.fetchval("SELECT clock_timestamp()")
        ):  # refused by the deadline (or late now): nothing was written, nor will be
            outcomes[t.id] = Expired("the database took it after its acceptance deadline")
        else:  # the conflicting row settled between our statements: try again
            vanished.append(t)
    if vanished:
        if attempts == 0:  # pragma: no cover - a conflict that vanishes three times in a row
            raise RuntimeError("could not settle the acceptance of a transaction")
        retried, _ = await write_batch(conn, vanished, [])
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


_SNAPSHOT = f"""
SELECT r.msisdn, c.purchases_today, c.purchases_month, c.spent_today, c.spent_month,
       l.last_at, x.codes
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS r(msisdn, day_start, month_start)
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE t.created_at >= r.day_start) AS purchases_today,
           count(*) AS purchases_month,
           COALESCE(sum(t.price) FILTER (WHERE t.created_at >= r.day_start), 0) AS spent_today,
           COALESCE(sum(t.price), 0) AS spent_month
    FROM transactions t
    WHERE t.msisdn = r.msisdn AND t.state = '{TxState.COMPLETED.value}'
      AND t.created_at >= r.month_start
) c ON true
LEFT JOIN LATERAL (
    SELECT max(t.created_at) AS last_at FROM transactions t
    WHERE t.msisdn = r.msisdn AND t.state = '{TxState.COMPLETED.value}'
) l ON true
LEFT JOIN LATERAL (
    SELECT array_agg(x.code ORDER BY x.code) AS codes FROM restrictions x
    WHERE x.msisdn = r.msisdn AND (x.until IS NULL OR x.until > $4)
) x ON true
"""


async def snapshot_batch(conn: Any, items: Sequence[SnapshotRequest]) -> list[SubscriberSnapshot]:
    """What each subscriber actor needs on activation, for many subscribers: one statement."""
    rows = await conn.fetch(
        _SNAPSHOT,
        [i.msisdn for i in items],
        [i.day_start for i in items],
        [i.month_start for i in items],
        max(i.now for i in items),
    )
    by_msisdn = {r["msisdn"]: r for r in rows}
    out = []
    for i in items:
        r = by_msisdn[i.msisdn]
        out.append(
            SubscriberSnapshot(
                counters=PurchaseCounters(
                    purchases_today=r["purchases_today"] or 0,
                    purchases_month=r["purchases_month"] or 0,
                    spent_today=int(r["spent_today"] or 0),
                    spent_month=int(r["spent_month"] or 0),
                    last_purchase_at=r["last_at"],
                ),
                restrictions=tuple(r["codes"] or ()),
            )
        )
    return out


async def list_for_msisdn(
    conn: Any, msisdn: str, states: Sequence[str] | None, limit: int
) -> list[Transaction]:
    if states:
        rows = await conn.fetch(
            "SELECT * FROM transactions WHERE msisdn = $1 AND state = ANY($2::text[])"
            " ORDER BY created_at DESC LIMIT $3",
            msisdn,
            list(states),
            limit,
        )
    else:
        rows = await conn.fetch(
            "SELECT * FROM transactions WHERE msisdn = $1 ORDER BY created_at DESC LIMIT $2",
            msisdn,
            limit,
        )
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
