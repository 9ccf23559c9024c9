"""The `faults` scenario's own parts: the fault knobs it sets on the simulator, the config it
gives Gestor, and what it reads back once the server is quiet (fault paths and their resolution
from the database, alarms by kind, the recoverer's statistics, `gestor reconcile --strict`).

The knobs (`PUT /control/faults`, see gestor/simulator/README.md):

* `prov.provision` answers 500/503 without doing the work 15% of the time → the saga refunds;
* `ocs.debit` does the debit, then holds the answer past the client's timeout 10% of the time
  (a *late* answer) → the outcome is unknown and the saga settles it with `lookup_debit`;
* `ocs.refund` answers 500/503 without refunding 30% of the time → `inconsistent` and a
  `refund_failed` alarm; the recoverer retries the refund and says `resolved`;
* `dwh` is down (`outage`) for a short window in the middle of the load → profiles fail, the
  circuit opens (`platform_down`) and closes again (`platform_recovered`).

The load is an open loop at 100 purchases/s by default (`--rate`): in a closed loop the purchases
that fail fast during the outage come back at once and crowd out everything else.

Gestor gets `retries = 0` on ocs and prov, so every injected fault reaches the saga (with the
shipped two retries, 15% provisioning errors would be 0.3% refunds and refund failures would
almost never show), and `[recovery] interval = 1, stale_after = 4`, so the recoverer settles the
`inconsistent` purchases within seconds instead of the shipped 30 s.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

from bench._procs import child_env, python

DEFAULT_KNOBS: dict[str, Any] = {
    "seed": 6,
    "dwh": {"latency_ms": 5},
    "ocs": {"latency_ms": 20,
            "debit": {"late_rate": 0.10, "hang_ms": 2500},
            "refund": {"error_rate": 0.30}},
    "prov": {"latency_ms": 10, "provision": {"error_rate": 0.15}},
}

#: What Gestor's config gets for this scenario (on top of config/gestor.toml).
CONFIG: dict[str, dict[str, Any]] = {
    "platforms": {"ocs": {"retries": 0}, "prov": {"retries": 0}},
    "recovery": {"interval": 1.0, "stale_after": 4.0},
}

OUTAGE_SCOPE = "dwh"
DEFAULT_RATE = 100.0  # purchases/s offered (open loop)


def merge_knobs(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` merged into `base`, tables recursively (as `PUT /control/faults` does)."""
    out: dict[str, Any] = {k: (merge_knobs(v, {}) if isinstance(v, Mapping) else v)
                           for k, v in base.items()}
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_knobs(out[key], value)
        else:
            out[key] = value
    return out


def describe(knobs: Mapping[str, Any], prefix: str = "") -> str:
    """`{"ocs": {"latency_ms": 20, "debit": {"late_rate": 0.1}}}` → `ocs latency_ms=20, ocs.debit
    late_rate=0.1`."""
    parts: list[str] = []
    scalars = {k: v for k, v in knobs.items() if not isinstance(v, Mapping) and k != "seed"}
    if scalars and prefix:
        parts.append(prefix + " " + " ".join(f"{k}={v:g}" if isinstance(v, float) else
                                              f"{k}={v}" for k, v in scalars.items()))
    for key, value in knobs.items():
        if isinstance(value, Mapping):
            sub = describe(value, f"{prefix}.{key}" if prefix else key)
            if sub:
                parts.append(sub)
    return ", ".join(parts)


# -- reading back -------------------------------------------------------------------------------
_INCONSISTENT = '[{"state": "inconsistent"}]'


async def summary(dsn: str, t0: float) -> dict[str, Any]:
    """Fault paths, their resolution and the alarms, from Gestor's database (`t0`: when the
    load started, epoch seconds)."""
    conn = await asyncpg.connect(dsn)
    try:
        # purchases failed because a platform was unavailable (the outage, an open circuit):
        # when they were accepted, relative to the start of the load
        window = await conn.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM min(created_at)) AS first, "
            "extract(epoch FROM max(created_at)) AS last FROM transactions "
            "WHERE state = 'failed' AND reasons->0->>'code' = 'PLATFORM_UNAVAILABLE'")
        went = {r["state"]: int(r["n"]) for r in await conn.fetch(
            "SELECT state, count(*) AS n FROM transactions WHERE history @> $1::jsonb "
            "GROUP BY state", _INCONSISTENT)}
        # inconsistent → settled: from the inconsistent step to the last step
        resolve_s = [float(r["s"]) for r in await conn.fetch(
            "SELECT extract(epoch FROM (t.history->-1->>'at')::timestamptz "
            "                          - (h->>'at')::timestamptz) AS s "
            "FROM transactions t, jsonb_array_elements(t.history) h "
            "WHERE t.history @> $1::jsonb AND h->>'state' = 'inconsistent' "
            "AND t.state <> 'inconsistent'", _INCONSISTENT)]
        reasons = {f"{r['state']} {r['code']}": int(r["n"]) for r in await conn.fetch(
            "SELECT state, coalesce(reasons->0->>'code', '-') AS code, count(*) AS n "
            "FROM transactions WHERE state IN ('failed', 'refunded', 'inconsistent') "
            "GROUP BY 1, 2 ORDER BY 3 DESC")}
        alarms = [{"kind": r["kind"], "severity": r["severity"], "n": int(r["n"])}
                  for r in await conn.fetch(
                      "SELECT kind, severity, count(*) AS n FROM alarms GROUP BY 1, 2 "
                      "ORDER BY 3 DESC")]
        refund_failed_tx = int(await conn.fetchval(
            "SELECT count(DISTINCT transaction_id) FROM alarms WHERE kind = 'refund_failed'")
            or 0)
        # Resolutions of purchases' alarms (those of platform_down, when a circuit closes,
        # name no transaction).
        resolved_tx = int(await conn.fetchval(
            "SELECT count(DISTINCT transaction_id) FROM alarms WHERE kind = 'resolved'") or 0)
        resolved_alarms = int(await conn.fetchval(
            "SELECT count(*) FROM alarms WHERE kind = 'resolved'"
            " AND transaction_id IS NOT NULL") or 0)
    finally:
        await conn.close()
    resolve_s.sort()

    def pct(p: float) -> float | None:
        if not resolve_s:
            return None
        return round(resolve_s[min(len(resolve_s) - 1, int(p * len(resolve_s)))], 3)

    total_inconsistent = sum(went.values())
    return {
        "inconsistent_total": total_inconsistent,
        "inconsistent_resolved_as": {k: v for k, v in went.items() if k != "inconsistent"},
        "inconsistent_left": went.get("inconsistent", 0),
        "resolve_s": {"n": len(resolve_s), "p50": pct(0.5), "max": pct(1.0)},
        "reasons": reasons,
        "unavailable_failures": {
            "n": int(window["n"]),
            "first_s": round(float(window["first"]) - t0, 2) if window["n"] else None,
            "last_s": round(float(window["last"]) - t0, 2) if window["n"] else None},
        "alarms": alarms,
        "alarms_by_kind": dict(sum((Counter({a["kind"]: a["n"]}) for a in alarms),
                                   Counter())),
        "refund_failed_transactions": refund_failed_tx,
        "resolved_transactions": resolved_tx,
        "resolved_alarms": resolved_alarms,
    }


def admin_statistics(base: str, key: str, workers: int) -> dict[str, Any]:
    """`GET /v1/admin/statistics` of each worker (a new connection per call, so the kernel
    spreads them over the workers' sockets), keyed by the `Gestor-Worker` header."""
    seen: dict[str, Any] = {}
    for _ in range(max(1, workers) * 6):
        request = urllib.request.Request(f"{base}/v1/admin/statistics",
                                         headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                worker = response.headers.get("Gestor-Worker", "?")
                seen[worker] = json.loads(response.read())
        except (OSError, urllib.error.URLError, ValueError):
            continue
        if len(seen) >= workers:
            break
    recovery: Counter[str] = Counter()
    for stats in seen.values():
        recovery.update({k: v for k, v in stats.get("recovery", {}).items()
                         if isinstance(v, int)})
    return {"workers_seen": len(seen), "recovery": dict(recovery)}


def reconcile(dsn: str, sim_url: str, config_dir: Path, data_dir: Path) -> dict[str, Any]:
    """`gestor reconcile --strict --json` against the scenario's database and the simulator's
    ledger: its exit code (0 clean, 1 mismatches, 2/3 could not run) and the gist."""
    started = time.monotonic()
    out = subprocess.run(
        python("-m", "gestor", "reconcile", "--platforms", sim_url, "--strict", "--json",
               "--config", str(config_dir), "--data-dir", str(data_dir)),
        env=child_env(GESTOR_DATABASE_URL=dsn), capture_output=True, text=True, timeout=120,
        check=False)
    result: dict[str, Any] = {"exit_code": out.returncode,
                              "seconds": round(time.monotonic() - started, 2)}
    try:
        doc = json.loads(out.stdout)
    except ValueError:
        result["ok"] = False
        result["error"] = (out.stderr or out.stdout)[-500:]
        return result
    result["ok"] = bool(doc.get("ok")) and out.returncode == 0
    result["mismatches"] = len(doc.get("mismatches", []))
    result["mismatch_kinds"] = dict(Counter(m.get("kind") for m in doc.get("mismatches", [])))
    result["unsettled"] = len(doc.get("unsettled", []))
    result["totals"] = doc.get("totals", {})
    return result


def checks(faults: Mapping[str, Any]) -> list[tuple[str, bool, str]]:
    """The scenario's own invariants (name, ok, detail), on top of the common ones."""
    s = faults["summary"]
    out = [
        ("every purchase that went inconsistent raised one refund_failed alarm",
         s["refund_failed_transactions"] == s["inconsistent_total"],
         f"{s['inconsistent_total']} went inconsistent; refund_failed alarms name "
         f"{s['refund_failed_transactions']} transactions"),
        ("every inconsistent purchase was settled by the recoverer, with one resolved alarm",
         s["inconsistent_left"] == 0
         and s["resolved_alarms"] == sum(s["inconsistent_resolved_as"].values()),
         f"settled {sum(s['inconsistent_resolved_as'].values())} "
         f"({s['inconsistent_resolved_as'] or 'none'}), still inconsistent "
         f"{s['inconsistent_left']}, resolved alarms {s['resolved_alarms']}"),
    ]
    rec = faults.get("reconcile")
    if rec is not None:
        detail = (f"exit {rec['exit_code']}, {rec.get('mismatches', '?')} mismatches, "
                  f"{rec.get('unsettled', '?')} unsettled")
        if rec.get("error"):
            detail += f": {rec['error'][-200:]}"
        out.append(("gestor reconcile --strict agrees with the charging system's ledger",
                    bool(rec.get("ok")), detail))
    return out
