"""The correctness checks of a run, from the database, the simulator's ledger and the exit code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def invariants(checks: Mapping[str, Any], sim_stats: Mapping[str, Any], pending_left: int,
               exit_code: int | None, unfinished: int, *,
               extra: Iterable[tuple[str, bool, str]] = (), scope: str = "") -> dict[str, Any]:
    """The checks (name, ok, detail) and notes of a run once its server went quiet: the
    one-pending guard held, the money balances with the simulator's ledger, the answers match
    the database, the server stopped cleanly."""
    by_state = checks["by_state"]
    price = checks["price_by_state"]
    net = sim_stats.get("debited_total", 0) - sim_stats.get("refunded_total", 0)
    completed_sum = price.get("completed", 0)
    limbo = price.get("inconsistent", 0)
    out = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append({"name": name, "ok": bool(ok), "detail": detail})

    if checks["audit"]:
        n = checks["overlap_count"]
        add("no mobile had two purchases in flight at once (audit log, commit order)", n == 0,
            f"{checks['audit_events']:,} state changes replayed; {n} overlaps"
            + (f", e.g. {checks['overlaps'][:2]}" if n else ""))
    add("the one-pending-per-mobile unique index is in place and valid",
        checks["pending_index_ok"], "transactions_one_pending_per_msisdn")
    add("no mobile has two pending transactions now", checks["msisdns_with_two_pending_now"] == 0,
        f"{checks['msisdns_with_two_pending_now']} mobiles")
    add("the server went quiet (nothing pending after the drain)", pending_left == 0,
        f"{pending_left} transactions still pending")
    unsettled = "" if pending_left == 0 else \
        f" (not quiet: {pending_left} purchases pending, their money may be in flight)"
    add("money: simulator debits - refunds = sum of prices of completed purchases",
        net == completed_sum + limbo,
        f"simulator {net:,} = {sim_stats.get('debited_total', 0):,} - "
        f"{sim_stats.get('refunded_total', 0):,}; database completed {completed_sum:,}"
        + (f" + inconsistent {limbo:,}" if limbo else "") + unsettled)
    charged = checks["charged_transactions"]
    add("every charged purchase has exactly one debit", sim_stats.get("debits") == charged,
        f"simulator debits {sim_stats.get('debits'):,}, charged transactions {charged:,}"
        + unsettled)
    refunded = by_state.get("refunded", 0)
    add("every refunded purchase has exactly one refund", sim_stats.get("refunds") == refunded,
        f"simulator refunds {sim_stats.get('refunds'):,}, refunded transactions {refunded:,}")
    add("every completed purchase was provisioned once",
        sim_stats.get("provisioned") == by_state.get("completed", 0),
        f"simulator bundles {sim_stats.get('provisioned'):,}, completed "
        f"{by_state.get('completed', 0):,}")
    add("the server's final answers match the database",
        checks["answers_missing_in_db"] == 0 and checks["answers_state_mismatch"] == 0,
        f"{checks['answers_checked']:,} final answers; {checks['answers_missing_in_db']} not in "
        f"the database, {checks['answers_state_mismatch']} with another state"
        + (f" {checks['answers_mismatch_examples']}" if checks["answers_state_mismatch"] else ""))
    for name, ok, detail in extra:
        add(name, ok, detail)
    add("gestor serve stopped cleanly on SIGTERM", exit_code == 0, f"exit code {exit_code}")
    add("a mobile's records never overlap in time (previous updated_at <= next created_at)",
        checks["timestamp_overlaps"] == 0, f"{checks['timestamp_overlaps']} overlaps")
    notes = []
    if scope:
        notes.append(f"checked once the server was quiet after the {scope}")
    if unfinished:
        notes.append(f"{unfinished} requests were still unanswered when the load generator gave"
                     " up (counted as errors)")
    return {"ok": all(c["ok"] for c in out), "checks": out, "notes": notes}


