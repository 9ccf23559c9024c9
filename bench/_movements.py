"""The `movements` scenario once its server is quiet: every movement it made (bonos for oneself
and for another mobile, transfers, advances, top-ups) read back from the database, matched one by
one with the simulator's ledger, the guard across payer and beneficiary replayed from the audit
log; its invariants, and its CPU per movement beside the purchase scenario's CPU per purchase."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import asyncpg

from bench import _storage as storage
from bench._procs import http_json
from gestor.purchase import refund_id, step_id

#: the kinds the report tells apart: a `gift` is a purchase with a beneficiary
KINDS = ("purchase", "gift", "transfer", "advance", "topup")
TERMINAL = frozenset(storage.TERMINAL)


def kind_of(row: Mapping[str, Any]) -> str:
    kind = str(row["kind"])
    return "gift" if kind == "purchase" and row.get("beneficiary") else kind


async def _read(dsn: str, since: Any) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, kind, msisdn, beneficiary, state, price, amount, fee, owed, collected, "
            "reference, steps, step, extract(epoch FROM created_at) AS created, "
            "extract(epoch FROM updated_at) AS updated FROM transactions "
            "WHERE created_at >= $1", since)
        has_audit = await conn.fetchval("SELECT to_regclass('bench_audit') IS NOT NULL")
        audit = [] if not has_audit else await conn.fetch(
            "SELECT id, msisdn, beneficiary, state FROM bench_audit ORDER BY seq")
        guards = int(await conn.fetchval("SELECT count(*) FROM mobile_guards") or 0)
    finally:
        await conn.close()
    return {
        "transactions": [
            {**dict(r), "id": str(r["id"]), "steps": list(r["steps"] or []),
             "created": float(r["created"]), "updated": float(r["updated"])} for r in rows],
        "audit": [(str(r["id"]), r["msisdn"], r["beneficiary"], r["state"]) for r in audit],
        "audit_installed": bool(has_audit),
        "guards_left": guards,
    }


def read_back(dsn: str, sim: str, since: Any,
              reconcile: Callable[[], dict[str, Any]] | None) -> dict[str, Any]:
    """What the checks need, read once the server is quiet (`analyse`), and reconcile's
    verdict (`gestor reconcile --strict`, bench/_faults.py) unless skipped."""
    db = storage.arun(_read(dsn, since))
    ledger = http_json("GET", f"{sim}/control/ledger", timeout=60)
    out = analyse(db["transactions"], db["audit"] if db["audit_installed"] else None,
                  db["guards_left"], ledger)
    if reconcile is not None:
        out["reconcile"] = reconcile()
    return out


# -- what the ledger must hold ----------------------------------------------------------------
def _done_steps(tx: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The steps of `tx`'s operation that happened: all of them when completed; those before
    the one that failed when refunded (then undone); none otherwise."""
    steps = [(s.split(":", 1)[0], (s.split(":", 1)[1] or None) if ":" in s else None)
             for s in tx["steps"]]
    if tx["state"] == "completed":
        return steps
    if tx["state"] == "refunded":
        return steps[:int(tx["step"] or 0)]
    return []


def expected_entries(tx: Mapping[str, Any]) -> list[tuple[str, str, str, int, str]]:
    """The simulator ledger entries a final movement must have made, as (ledger kind, id,
    msisdn, amount, what): its debit, credits, advance, recovery debit, and when refunded the
    refund or reversing debit of each step undone (ids: gestor.purchase.step_id)."""
    tx_id = uuid.UUID(tx["id"])
    payer = tx["msisdn"]
    receiver = tx["beneficiary"] or payer
    out: list[tuple[str, str, str, int, str]] = []
    for do, undo in _done_steps(tx):
        if do == "debit":
            out.append(("debit", step_id(tx_id, "debit"), payer, int(tx["price"]), "debit"))
        elif do == "credit":
            out.append(("credit", step_id(tx_id, "credit"), receiver, int(tx["amount"]),
                        "credit"))
        elif do == "advance":
            out.append(("credit", step_id(tx_id, "advance"), payer, int(tx["amount"]),
                        "advance"))
        elif do == "recover" and tx["collected"]:
            out.append(("debit", step_id(tx_id, "recover"), payer, int(tx["collected"]),
                        "recovery"))
        if tx["state"] == "refunded" and undo == "refund":
            out.append(("refund", refund_id(tx_id), payer, int(tx["price"]), "refund"))
        elif tx["state"] == "refunded" and undo == "reverse":
            whose = receiver if do == "credit" else payer
            out.append(("debit", step_id(tx_id, f"reverse:{do}"), whose, int(tx["amount"]),
                        "reversal"))
    return out


def _replay(audit: Iterable[tuple[str, str, str | None, str]]
            ) -> tuple[int, int, list[dict[str, Any]]]:
    """The audit log in commit order, per mobile in either role: how many movements were
    accepted while another one touching one of their mobiles was in flight."""
    held: dict[str, set[str]] = defaultdict(set)
    seen: set[str] = set()
    overlaps: list[dict[str, Any]] = []
    n = events = 0
    for tx, msisdn, beneficiary, state in audit:
        events += 1
        mobiles = {msisdn} | ({beneficiary} if beneficiary else set())
        pending = state in storage.PENDING
        if tx not in seen:
            seen.add(tx)
            for mobile in sorted(mobiles):
                others = held[mobile] - {tx}
                if pending and others:
                    n += 1
                    if len(overlaps) < 5:
                        overlaps.append({"mobile": mobile, "transaction": tx,
                                         "while_pending": sorted(others)})
        for mobile in mobiles:
            if pending:
                held[mobile].add(tx)
            else:
                held[mobile].discard(tx)
    return n, events, overlaps


def _time_overlaps(txs: Sequence[Mapping[str, Any]]) -> int:
    """[created_at, updated_at] of the movements touching each mobile, in either role: the next
    one starts after the previous one ended (both stamps are the database's clock)."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for tx in txs:
        for mobile in {tx["msisdn"], tx["beneficiary"] or tx["msisdn"]}:
            spans[mobile].append((tx["created"], tx["updated"]))
    n = 0
    for mobile_spans in spans.values():
        mobile_spans.sort()
        for (_, prev_end), (start, _) in pairwise(mobile_spans):
            if start < prev_end:
                n += 1
    return n


def analyse(txs: Sequence[Mapping[str, Any]],
            audit: Sequence[tuple[str, str, str | None, str]] | None, guards_left: int,
            ledger: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The movements' states by kind, their money matched entry by entry with the ledger (per
    kind), the top-ups with the recharges, the debts, the guard."""
    by_kind: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    expected: dict[tuple[str, str], tuple[str, int, str, str]] = {}
    for tx in txs:
        kind = kind_of(tx)
        by_kind.setdefault(kind, Counter())[str(tx["state"])] += 1
        for entry_kind, entry_id, msisdn, amount, what in expected_entries(tx):
            expected[(entry_kind, entry_id)] = (msisdn, amount, what, kind)
    money: dict[str, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: {"n": 0, "total": 0}))
    matched: set[tuple[str, str]] = set()
    unexpected: list[dict[str, Any]] = []
    wrong: list[dict[str, Any]] = []
    recharges: dict[str, int] = {}
    for entry in ledger:
        if entry["kind"] == "topup":
            recharges[str(entry["id"])] = int(entry["amount"])
            continue
        key = (str(entry["kind"]), str(entry["id"]))
        want = expected.get(key)
        if want is None or key in matched:
            unexpected.append(dict(entry))
            continue
        matched.add(key)
        msisdn, amount, what, kind = want
        if entry["msisdn"] != msisdn or int(entry["amount"]) != amount:
            wrong.append({**entry, "expected_msisdn": msisdn, "expected_amount": amount})
        cell = money[kind][what]
        cell["n"] += 1
        cell["total"] += int(entry["amount"])
    missing = [{"kind": k, "id": i, "what": v[2], "of": v[3]}
               for (k, i), v in expected.items() if (k, i) not in matched]
    expected_money: dict[str, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: {"n": 0, "total": 0}))
    for _msisdn, amount, what, kind in expected.values():
        expected_money[kind][what]["n"] += 1
        expected_money[kind][what]["total"] += amount
    # top-ups: every recharge made at the simulator notified once, and recorded with its amount
    notices = {str(t["reference"]): int(t["amount"]) for t in txs if t["kind"] == "topup"}
    topups_unnotified = sorted(set(recharges) - set(notices))
    topups_unknown = sorted(set(notices) - set(recharges))
    topups_amount_differs = sorted(r for r in set(recharges) & set(notices)
                                   if recharges[r] != notices[r])
    # debts: what a mobile's top-ups collected never exceeds what its advances owed, nor a
    # top-up's own amount
    owed: Counter[str] = Counter()
    collected: Counter[str] = Counter()
    over_topup = 0
    for tx in txs:
        if tx["state"] != "completed":
            continue
        if tx["owed"]:
            owed[tx["msisdn"]] += int(tx["owed"])
        if tx["collected"]:
            collected[tx["msisdn"]] += int(tx["collected"])
            over_topup += int(tx["collected"]) > int(tx["amount"] or 0)
    over_collected = sorted(m for m in collected if collected[m] > owed[m])
    overlap_n, audit_events, overlaps = _replay(audit) if audit is not None else (0, 0, [])
    return {
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "not_final": sum(1 for t in txs if t["state"] not in TERMINAL),
        "completed_purchases": by_kind["purchase"]["completed"] + by_kind["gift"]["completed"],
        "money": {k: {w: dict(c) for w, c in v.items()} for k, v in money.items()},
        "expected_money": {k: {w: dict(c) for w, c in v.items()}
                           for k, v in expected_money.items()},
        "ledger_entries": len(ledger),
        "ledger_missing": len(missing), "ledger_missing_examples": missing[:5],
        "ledger_unexpected": len(unexpected), "ledger_unexpected_examples": unexpected[:5],
        "ledger_wrong": len(wrong), "ledger_wrong_examples": wrong[:5],
        "recharges": len(recharges), "topups_unnotified": len(topups_unnotified),
        "topups_unknown": len(topups_unknown), "topups_amount_differs": len(topups_amount_differs),
        "debts": {"owed": sum(owed.values()), "collected": sum(collected.values()),
                  "outstanding": sum(owed.values()) - sum(collected.values()),
                  "mobiles_over_collected": len(over_collected),
                  "topups_collecting_more_than_their_amount": over_topup},
        "audit": audit is not None, "audit_events": audit_events,
        "overlap_count": overlap_n, "overlaps": overlaps,
        "timestamp_overlaps": _time_overlaps(txs),
        "guards_left": guards_left,
    }


def invariants(checks: Mapping[str, Any], mv: Mapping[str, Any], sim_stats: Mapping[str, Any],
               pending_left: int, exit_code: int | None, unfinished: int) -> dict[str, Any]:
    """The movements' checks (bench/README.md, `movements`), in `bench._invariants`' form."""
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append({"name": name, "ok": bool(ok), "detail": detail})

    if mv["audit"]:
        add("no mobile had two movements in flight at once, as payer or beneficiary (audit "
            "log, commit order)", mv["overlap_count"] == 0,
            f"{mv['audit_events']:,} state changes replayed; {mv['overlap_count']} overlaps"
            + (f", e.g. {mv['overlaps'][:2]}" if mv["overlap_count"] else ""))
    add("no two movements touching one mobile overlap in time (either role)",
        mv["timestamp_overlaps"] == 0, f"{mv['timestamp_overlaps']} overlaps")
    add("mobile_guards is empty after the drain", mv["guards_left"] == 0,
        f"{mv['guards_left']} guards left")
    add("every movement is final after the drain", mv["not_final"] == 0 and pending_left == 0,
        f"{mv['not_final']} not final")
    add("the one-pending-per-mobile unique index is in place and valid",
        checks["pending_index_ok"], "transactions_one_pending_per_msisdn")
    add("money: every ledger entry a final movement implies is at the simulator, once, with "
        "its mobile and amount", mv["ledger_missing"] == 0 and mv["ledger_wrong"] == 0,
        f"{mv['ledger_missing']} missing, {mv['ledger_wrong']} with another mobile or amount"
        + (f" {mv['ledger_missing_examples'][:2]}" if mv["ledger_missing"] else ""))
    add("money: no debit, credit or refund at the simulator that no final movement explains",
        mv["ledger_unexpected"] == 0,
        f"{mv['ledger_entries']:,} ledger entries, {mv['ledger_unexpected']} unexplained"
        + (f" {mv['ledger_unexpected_examples'][:2]}" if mv["ledger_unexpected"] else ""))
    money = mv["money"]

    def total(what: str) -> int:
        return sum(c.get(what, {}).get("total", 0) for c in money.values())

    debited = total("debit") + total("recovery") + total("reversal")
    add("money: simulator totals = the movements' (debits incl. recoveries, refunds, credits "
        "incl. advances)",
        sim_stats.get("debited_total") == debited
        and sim_stats.get("refunded_total") == total("refund")
        and sim_stats.get("credited_total") == total("credit") + total("advance"),
        f"debited {sim_stats.get('debited_total'):,} / {debited:,}, refunded "
        f"{sim_stats.get('refunded_total'):,} / {total('refund'):,}, credited "
        f"{sim_stats.get('credited_total'):,} / {total('credit') + total('advance'):,}")
    add("every completed bono (own or gift) was provisioned once",
        sim_stats.get("provisioned") == mv["completed_purchases"],
        f"simulator bundles {sim_stats.get('provisioned'):,}, completed "
        f"{mv['completed_purchases']:,}")
    add("every recharge at the simulator was notified and recorded once, with its amount",
        mv["topups_unnotified"] == 0 and mv["topups_unknown"] == 0
        and mv["topups_amount_differs"] == 0,
        f"{mv['recharges']:,} recharges; {mv['topups_unnotified']} not recorded, "
        f"{mv['topups_unknown']} recorded without a recharge, {mv['topups_amount_differs']} "
        "with another amount")
    d = mv["debts"]
    add("top-ups never collect more than advances owed (per mobile) nor than their amount",
        d["mobiles_over_collected"] == 0 and d["topups_collecting_more_than_their_amount"] == 0,
        f"owed {d['owed']:,}, collected {d['collected']:,}, outstanding {d['outstanding']:,}")
    add("the server's final answers match the database",
        checks["answers_missing_in_db"] == 0 and checks["answers_state_mismatch"] == 0,
        f"{checks['answers_checked']:,} final answers; {checks['answers_missing_in_db']} not in "
        f"the database, {checks['answers_state_mismatch']} with another state")
    rec = mv.get("reconcile")
    if rec is not None:
        add("gestor reconcile --strict exits 0", bool(rec.get("ok")),
            f"exit {rec.get('exit_code')}, {rec.get('mismatches', '?')} mismatches "
            f"{rec.get('mismatch_kinds', {})}, {rec.get('seconds')} s")
    add("gestor serve stopped cleanly on SIGTERM", exit_code == 0, f"exit code {exit_code}")
    notes = []
    if unfinished:
        notes.append(f"{unfinished} requests were still unanswered when the load generator gave"
                     " up (counted as errors)")
    return {"ok": all(c["ok"] for c in out), "checks": out, "notes": notes}


def figures(mv: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """Movements by kind, their answers per second and latency, and the server's CPU per
    movement (the CPU of the whole mixed load over its final or completed movements: one
    load shares it, so there is no CPU per kind)."""
    window = result["duration_s"] - result["warmup_s"]
    outcomes = result["outcomes"]
    finals = {k: sum(n for a, n in outcomes.get(k, {}).items()
                     if a.split(" ")[0] == "200" and a.split(" ", 1)[-1] in TERMINAL)
              for k in KINDS}
    cpu_s = result["cpu"]["gestor"]["cpu_s"]
    by_kind = mv["by_kind"]
    final_db = {k: sum(n for s, n in by_kind.get(k, {}).items() if s in TERMINAL)
                for k in KINDS}
    completed_db = {k: by_kind.get(k, {}).get("completed", 0) for k in KINDS}
    n_final, n_completed = sum(final_db.values()), sum(completed_db.values())
    lat = result["latency"]
    return {
        "movements_per_s": sum(finals.values()) / window,
        "per_s_by_kind": {k: v / window for k, v in finals.items()},
        "final_by_kind": final_db, "completed_by_kind": completed_db,
        "states_by_kind": by_kind,
        "latency_by_kind": {k: lat.get(k, {}) for k in ("movement", *KINDS)},
        "cpu_per_movement_ms": cpu_s * 1000 / n_final if n_final else None,
        "cpu_per_completed_movement_ms": cpu_s * 1000 / n_completed if n_completed else None,
        "money": mv["money"], "debts": mv["debts"], "reconcile": mv.get("reconcile"),
        "guard_conflicts": sum(n for k in KINDS for a, n in outcomes.get(k, {}).items()
                               if a.startswith("409")),
    }


def beside_purchase(result: dict[str, Any], purchase: Mapping[str, Any]) -> None:
    """The purchase run of the same invocation next to the movements' figures."""
    m = result["movements"]
    base = {"label": purchase.get("label"), "purchases_per_s": purchase.get("purchases_per_s"),
            "cpu_per_purchase_ms": purchase.get("cpu_per_purchase_ms"),
            "cpu_per_final_purchase_ms": purchase.get("cpu_per_final_purchase_ms"),
            "json_path": purchase.get("json_path")}
    m["purchase_baseline"] = base
    per, per_final = base["cpu_per_purchase_ms"], base["cpu_per_final_purchase_ms"]
    m["cpu_ratio_to_purchase"] = (m["cpu_per_completed_movement_ms"] / per
                                  if per and m["cpu_per_completed_movement_ms"] else None)
    m["cpu_ratio_final_to_purchase"] = (m["cpu_per_movement_ms"] / per_final
                                        if per_final and m["cpu_per_movement_ms"] else None)


def section(m: Mapping[str, Any], fmt: Callable[..., str]) -> list[str]:
    """The report's movements section."""
    lines = ["### Movements", "",
             f"{fmt(m['movements_per_s'])} movements/s answered in a final state; "
             f"{fmt(m['guard_conflicts'])} answers were `409` (a mobile busy with another "
             "movement, as payer or beneficiary).", "",
             "| kind | final/s (answers) | final (db) | completed (db) | states | p50 ms | "
             "p99 ms |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for k in KINDS:
        lat = m["latency_by_kind"].get(k, {})
        states = ", ".join(f"{s} {n}" for s, n in sorted(m["states_by_kind"].get(k, {}).items()))
        lines.append(f"| {k} | {fmt(m['per_s_by_kind'][k])} | {fmt(m['final_by_kind'][k])} | "
                     f"{fmt(m['completed_by_kind'][k])} | {states} | "
                     f"{fmt(lat.get('p50_ms'), 2)} | {fmt(lat.get('p99_ms'), 2)} |")
    base = m.get("purchase_baseline")
    lines += ["", "| server CPU | per movement (final) | per completed movement |",
              "| --- | --- | --- |",
              f"| movements (this run, all kinds) | {fmt(m['cpu_per_movement_ms'], 2)} ms | "
              f"{fmt(m['cpu_per_completed_movement_ms'], 2)} ms |"]
    if base:
        lines.append(f"| purchases (`{base['label']}`, same invocation) | "
                     f"{fmt(base['cpu_per_final_purchase_ms'], 2)} ms | "
                     f"{fmt(base['cpu_per_purchase_ms'], 2)} ms |")
        lines.append(f"| ratio movement / purchase | "
                     f"{fmt(m.get('cpu_ratio_final_to_purchase'), 2)}x | "
                     f"{fmt(m.get('cpu_ratio_to_purchase'), 2)}x |")
    money = m["money"]
    parts = []
    for k in KINDS:
        cells = money.get(k, {})
        if cells:
            parts.append(f"{k}: " + ", ".join(f"{w} {c['n']} ({c['total']:,})"
                                              for w, c in sorted(cells.items())))
    d = m["debts"]
    lines += ["", "Money at the simulator, by kind (entries matched to their movement): "
              + ("; ".join(parts) or "none") + f". Advances owed {d['owed']:,}, collected "
              f"{d['collected']:,}, outstanding {d['outstanding']:,}.", ""]
    return lines
