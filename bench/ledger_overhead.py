"""What the ledger's posting triggers (migration 0012) cost each purchase, in database time:

    python -m bench.ledger_overhead [--dsn DSN] [--purchases 6000] [--batch 1 --batch 64]

Runs a purchase's three durable writes as the store batches them (the INSERT of the
acceptance, the UPDATE to `charged` with the verdict and the debit done, the UPDATE to
`completed`), each a statement over a batch of purchases committed on its own, on a migrated
database (an embedded one of its own without --dsn), with the ledger triggers enabled and then
disabled, alternating rounds; prints the database time per purchase of each (without the
commits' fsync wait, the same either way: `synchronous_commit = off`) and the difference as
JSON. The triggers post 4 entries per completed purchase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

_INSERT = """
INSERT INTO transactions (id, msisdn, kind, bono_id, channel, client, idempotency_key,
                          request_hash, state, created_at, updated_at)
SELECT r.id, r.msisdn, 'purchase', 'DATA_2GB_7D', 'ussd', 'bench', r.id::text, 'h',
       'received', clock_timestamp(), clock_timestamp()
FROM unnest($1::uuid[], $2::text[]) AS r(id, msisdn)
"""
_CHARGED = """
UPDATE transactions t SET state = 'charged', price = 60000, currency = 'ARS',
       operation = 'debit_and_provision', steps = '{debit:refund,provision}', step = 1,
       updated_at = clock_timestamp()
FROM unnest($1::uuid[]) AS u(id) WHERE t.id = u.id AND t.state = 'received'
"""
_COMPLETED = """
UPDATE transactions t SET state = 'completed', step = 2, updated_at = clock_timestamp()
FROM unnest($1::uuid[]) AS u(id) WHERE t.id = u.id AND t.state = 'charged'
"""
_TRIGGERS = ("ledger_post_insert", "ledger_post_update")


async def _round(conn: Any, purchases: int, batch: int, round_no: int) -> float:
    """Seconds of database time for `purchases` purchases, `batch` per statement."""
    spent = 0.0
    for start in range(0, purchases, batch):
        ids = [uuid.uuid4() for _ in range(min(batch, purchases - start))]
        msisdns = [f"549{round_no:03d}{start + i:07d}" for i in range(len(ids))]
        for sql, args in ((_INSERT, (ids, msisdns)), (_CHARGED, (ids,)), (_COMPLETED, (ids,))):
            began = time.perf_counter()
            async with conn.transaction():
                await conn.execute(sql, *args)
            spent += time.perf_counter() - began
    return spent


async def measure(dsn: str, purchases: int, batches: list[int], rounds: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    # The commit's fsync is the same with or without the ledger, and on a shared disk its wait
    # is noise that hides the difference: left out (the entries' WAL is still written).
    await conn.execute("SET synchronous_commit = off")
    out: dict[str, Any] = {"purchases_per_round": purchases, "rounds": rounds, "batches": {}}
    try:
        round_no = 0
        for batch in batches:
            times: dict[str, list[float]] = {"with_ledger": [], "without_ledger": []}
            for _ in range(rounds):
                for mode in ("with_ledger", "without_ledger"):
                    action = "ENABLE" if mode == "with_ledger" else "DISABLE"
                    for trigger in _TRIGGERS:
                        await conn.execute(f"ALTER TABLE transactions {action} TRIGGER {trigger}")
                    round_no += 1
                    spent = await _round(conn, purchases, batch, round_no)
                    times[mode].append(spent / purchases * 1e6)
            with_, without = (statistics.median(times[m]) for m in ("with_ledger",
                                                                    "without_ledger"))
            out["batches"][str(batch)] = {
                "us_per_purchase_with_ledger": round(with_, 1),
                "us_per_purchase_without_ledger": round(without, 1),
                "ledger_us_per_purchase": round(with_ - without, 1),
                "ledger_share": round((with_ - without) / without, 3),
            }
        for trigger in _TRIGGERS:
            await conn.execute(f"ALTER TABLE transactions ENABLE TRIGGER {trigger}")
        out["entries_per_purchase"] = await conn.fetchval(
            "SELECT count(*)::float / count(DISTINCT transaction_id) FROM ledger_entries")
    finally:
        await conn.close()
    out["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_overhead",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="a migrated database (default: an embedded one)")
    parser.add_argument("--purchases", type=int, default=6000)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    batches = args.batch or [1, 64]
    if args.dsn:
        result = asyncio.run(measure(args.dsn, args.purchases, batches, args.rounds))
    else:
        import trio

        from gestor.store import migrate, open_bridge, start_embedded

        root = Path(tempfile.mkdtemp(prefix="gestor-ledger-bench-"))
        server = start_embedded(root / "data")
        try:
            server.psql("CREATE DATABASE ledger_bench;")
            dsn = server.dsn_for("ledger_bench")

            async def migrated() -> None:
                async with open_bridge(dsn) as bridge:
                    await migrate(bridge)

            trio.run(migrated)
            result = asyncio.run(measure(dsn, args.purchases, batches, args.rounds))
        finally:
            server.stop()
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
