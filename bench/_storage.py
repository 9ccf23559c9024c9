"""PostgreSQL for the bench: the raw asyncpg baseline, the audit trigger, the samplers and the
correctness checks. All asyncio (asyncpg's home); the orchestrator calls in through
`asyncio.run` or the `DbThread` below, and the baseline runs as its own process:

    python -m bench._storage --dsn DSN [--duration 5] [--concurrency 64]

prints one JSON object: insert+update transactions per second, 64 concurrent, on a copy of the
`transactions` table (same columns, constraints and indexes), the storage ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")

PENDING = ("received", "profiled", "validated", "charged", "inconsistent")
TERMINAL = ("completed", "rejected", "failed", "refunded")

def arun(coro: Awaitable[T]) -> T:
    """`asyncio.run` on a plain selector loop (whatever event loop policy is installed)."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


# -- the storage ceiling ----------------------------------------------------------------------
_INSERT = """
INSERT INTO bench_storage (id, msisdn, bono_id, channel, client, idempotency_key, request_hash,
                           state, history, created_at, updated_at)
VALUES ($1, $2, 'SMS_200_30D', 'ussd', 'bench', $3, 'h', 'received', $4::jsonb, $5, $5)
"""
_UPDATE = """
UPDATE bench_storage SET state = 'completed', history = history || $2::jsonb, updated_at = $3,
       price = 20000, currency = 'ARS', operation = 'debit_and_provision'
WHERE id = $1 AND state = 'received'
"""


async def storage_baseline(dsn: str, duration: float, concurrency: int, warmup: float = 0.5
                           ) -> dict[str, Any]:
    """Back-to-back `BEGIN; INSERT; UPDATE; COMMIT` from `concurrency` tasks, each on its own
    pooled connection, against `bench_storage` (LIKE transactions INCLUDING ALL)."""
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute("DROP TABLE IF EXISTS bench_storage; "
                            "CREATE TABLE bench_storage (LIKE transactions INCLUDING ALL)")
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    end = measure_from + duration
    history = json.dumps([{"state": "received", "at": "2025-01-01T00:00:00+00:00"}])
    done_history = json.dumps([{"state": "completed", "at": "2025-01-01T00:00:00+00:00",
                                "note": "bundle provisioned"}])

    async def worker(index: int) -> None:
        n = 0
        async with pool.acquire() as conn:
            while (t := loop.time()) < end:
                tx_id = uuid.uuid4()
                now = datetime.now(UTC)
                async with conn.transaction():
                    await conn.execute(_INSERT, tx_id, f"5499{index:03d}{n:06d}", str(tx_id),
                                       history, now)
                    await conn.execute(_UPDATE, tx_id, done_history, now)
                n += 1
                if t >= measure_from:
                    latencies.append(loop.time() - t)

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        await pool.close()
    elapsed = duration
    cleanup = await asyncpg.connect(dsn)
    try:
        await cleanup.execute("DROP TABLE IF EXISTS bench_storage")
    finally:
        await cleanup.close()
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return math.nan
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "tx_per_s": len(latencies) / elapsed,
        "transactions": len(latencies),
        "seconds": elapsed,
        "concurrency": concurrency,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


# -- setup for a Gestor run -------------------------------------------------------------------
AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS bench_audit (
    seq    bigserial PRIMARY KEY,
    id     uuid NOT NULL,
    msisdn text NOT NULL,
    state  text NOT NULL,
    at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- the mobile a movement gives to (movements: the guard holds across both roles)
ALTER TABLE bench_audit ADD COLUMN IF NOT EXISTS beneficiary text;
CREATE OR REPLACE FUNCTION bench_audit_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_audit (id, msisdn, beneficiary, state)
        SELECT n.id, n.msisdn, n.beneficiary, n.state FROM new_rows n;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS bench_audit_insert ON transactions;
DROP TRIGGER IF EXISTS bench_audit_update ON transactions;
CREATE TRIGGER bench_audit_insert AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_audit_rows();
CREATE TRIGGER bench_audit_update AFTER UPDATE ON transactions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_audit_rows();
"""


async def install_audit(dsn: str) -> None:
    """A statement-level trigger that logs every committed state of every transaction row with
    a global sequence number. A row's INSERT runs its unique-index check (and waits for any
    conflicting writer to commit) before its statement's trigger takes a number, so replaying
    the log in `seq` order shows exactly which purchases of a mobile were pending together."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(AUDIT_SQL)
    finally:
        await conn.close()


async def create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def server_settings(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            ["fsync", "synchronous_commit", "shared_buffers", "max_connections",
             "server_version", "wal_level"],
        )
    finally:
        await conn.close()
    return {r["name"]: r["setting"] for r in rows}


_PENDING_COUNT = ("SELECT count(*) FROM transactions WHERE state IN ("
                  + ", ".join(f"'{state}'" for state in PENDING) + ")")


# -- sampling during a run --------------------------------------------------------------------
class DbThread:
    """One asyncpg connection on an asyncio loop in a background thread, for the synchronous
    orchestrator to query once a second without paying a connection each time."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.SelectorEventLoop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="bench-db")
        self._thread.start()
        self._conn: Any = self.call(lambda: asyncpg.connect(dsn))

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(_wrap(fn), self._loop).result(timeout)

    def fetchval(self, sql: str, *args: Any) -> Any:
        return self.call(lambda: self._conn.fetchval(sql, *args))

    def pending(self) -> int:
        # the states spelled out, so that the partial index of pending rows answers (a parameter
        # array would scan the table: seconds on the history scenario's 10 million rows)
        return int(self.call(lambda: self._conn.fetchval(_PENDING_COUNT)))

    def close(self) -> None:
        try:
            self.call(lambda: self._conn.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


async def _wrap(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


# -- correctness ------------------------------------------------------------------------------
async def check_database(dsn: str, answers: list[tuple[str, str, str, int, float, float]],
                         since: datetime | None = None) -> dict[str, Any]:
    """Everything the invariants need from the database (see `bench._invariants`), about the
    transactions created from `since` on (all of them by default: the history scenario's
    database holds millions written before the run)."""
    since = since or datetime(1970, 1, 1, tzinfo=UTC)
    conn = await asyncpg.connect(dsn)
    try:
        by_state = {r["state"]: (r["n"], int(r["total"] or 0)) for r in await conn.fetch(
            "SELECT state, count(*) AS n, sum(price) AS total FROM transactions "
            "WHERE created_at >= $1 GROUP BY state", since)}
        charged_ops = await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE operation = 'debit_and_provision' "
            "AND state IN ('completed', 'refunded', 'inconsistent') AND created_at >= $1",
            since)
        index_ok = await conn.fetchval(
            "SELECT bool_and(i.indisvalid AND i.indisunique) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'transactions_one_pending_per_msisdn'")
        pending_now = await conn.fetch(
            "SELECT msisdn, count(*) AS n FROM (" + _PENDING_COUNT.replace("count(*)", "msisdn")
            + ") p GROUP BY msisdn HAVING count(*) > 1")
        # exact overlap check: replay the audit log in commit-serialised order
        has_audit = await conn.fetchval("SELECT to_regclass('bench_audit') IS NOT NULL")
        overlaps: list[dict[str, Any]] = []
        overlap_count = 0
        audit_events = 0
        saga_ms: list[float] = []
        if has_audit:
            rows = await conn.fetch("SELECT id, msisdn, state, at FROM bench_audit ORDER BY seq")
            audit_events = len(rows)
            open_by_msisdn: dict[str, set[uuid.UUID]] = defaultdict(set)
            first_at: dict[uuid.UUID, datetime] = {}
            for r in rows:
                tx, msisdn, state = r["id"], r["msisdn"], r["state"]
                held = open_by_msisdn[msisdn]
                if tx not in first_at:
                    first_at[tx] = r["at"]
                    others = held - {tx}
                    if state in PENDING and others:
                        overlap_count += 1
                        if len(overlaps) < 10:
                            overlaps.append({"msisdn": msisdn, "transaction": str(tx),
                                             "while_pending": sorted(str(o) for o in others)})
                if state in PENDING:
                    held.add(tx)
                else:
                    held.discard(tx)
                    if state in TERMINAL:
                        saga_ms.append((r["at"] - first_at[tx]).total_seconds() * 1000)
        # the records' own check, [created_at, updated_at] per msisdn: both are the database's
        # clock (acceptance, last commit), so a mobile's records never overlap
        ts_overlaps = await conn.fetchval("""
            SELECT count(*) FROM (
              SELECT created_at, lag(updated_at) OVER w AS prev_end FROM transactions
              WHERE created_at >= $1
              WINDOW w AS (PARTITION BY msisdn ORDER BY created_at, updated_at)) s
            WHERE prev_end IS NOT NULL AND created_at < prev_end""", since)
        # the server's answers against the database
        final_answers = [(a[0], a[2]) for a in answers if a[3] == 200]
        ids = list({a[0] for a in answers})
        db_states = {}
        for i in range(0, len(ids), 5000):
            chunk = [uuid.UUID(x) for x in ids[i:i + 5000]]
            for r in await conn.fetch(
                    "SELECT id, state FROM transactions WHERE id = ANY($1::uuid[])", chunk):
                db_states[str(r["id"])] = r["state"]
        missing = [i for i in ids if i not in db_states]
        mismatched = [(i, s, db_states.get(i)) for i, s in final_answers
                      if i in db_states and db_states[i] != s]
    finally:
        await conn.close()
    saga_ms.sort()

    def pct(p: float) -> float | None:
        return saga_ms[min(len(saga_ms) - 1, int(p * len(saga_ms)))] if saga_ms else None

    return {
        "by_state": {k: v[0] for k, v in by_state.items()},
        "price_by_state": {k: v[1] for k, v in by_state.items()},
        "charged_transactions": int(charged_ops or 0),
        "pending_index_ok": bool(index_ok),
        "msisdns_with_two_pending_now": len(pending_now),
        "audit": bool(has_audit),
        "audit_events": audit_events,
        "overlaps": overlaps,
        "overlap_count": overlap_count,
        "timestamp_overlaps": int(ts_overlaps or 0),
        "answers_checked": len(final_answers),
        "answers_missing_in_db": len(missing),
        "answers_state_mismatch": len(mismatched),
        "answers_mismatch_examples": mismatched[:5],
        "saga_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0),
                    "n": len(saga_ms)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._storage", description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = arun(storage_baseline(args.dsn, args.duration, args.concurrency))
    result["wall_s"] = time.perf_counter() - started
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
