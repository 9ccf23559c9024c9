"""Turning a run's raw material into numbers: merged HDR histograms, the Markdown summary, the
`--compare` table, the PNG plot and the py-spy profile summary."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from bench._load import new_histogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def merge(encoded: Iterable[bytes | str]) -> HdrHistogram:
    total = new_histogram()
    for blob in encoded:
        total.add(HdrHistogram.decode(blob))
    return total


def summary(h: HdrHistogram) -> dict[str, Any]:
    """Count, mean and percentiles in milliseconds."""
    n = h.get_total_count()
    if not n:
        return {"n": 0}
    out: dict[str, Any] = {"n": n, "mean_ms": round(h.get_mean_value() / 1000, 3)}
    for p in PERCENTILES:
        key = f"p{str(p).rstrip('0').rstrip('.').replace('.', '')}_ms"
        out[key] = round(h.get_value_at_percentile(p) / 1000, 3)
    out["max_ms"] = round(h.get_max_value() / 1000, 3)
    return out


def split_counts(counts: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """{"purchase 200 completed": n} → {"purchase": {"200 completed": n}}."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for key, n in counts.items():
        kind, _, rest = key.partition(" ")
        out[kind][rest.strip()] = out[kind].get(rest.strip(), 0) + n
    return dict(out)


def errors_of(counts: Mapping[str, int]) -> dict[str, int]:
    """Non-2xx answers and transport failures by `kind status code`."""
    out: Counter[str] = Counter()
    for key, n in counts.items():
        parts = key.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].lstrip("-").isdigit() else 0
        if not 200 <= status < 300:
            out[key.strip()] += n
    return dict(out.most_common())


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if 0 < abs(v) < 1:
            return f"{v:.3g}"
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ms(v: Any) -> str:
    return "-" if v is None else f"{fmt(v, 2)} ms"


# -- Markdown -----------------------------------------------------------------------------------
def markdown(r: Mapping[str, Any]) -> str:
    label = r.get("label", r["scenario"])
    name = f"`{r['scenario']}`" + (f" (`{label}`)" if label != r["scenario"] else "")
    lines = [f"## Gestor bench: {name}, {r['workers']} worker(s)", ""]
    lines.append(f"{r['started']} · {r['mode']} loop · load {fmt(r['duration_s'])} s "
                 f"(first {fmt(r['warmup_s'])} s warm-up, not in the figures) · "
                 f"{r['load']['describe']} · platform latency {r['platform_latency']}")
    lines.append("")
    lat = r["latency"]
    main = lat.get(r["main_kind"], {})
    # movements: the same figure over every kind's completed movements
    unit = "movement" if r["main_kind"] == "movement" else "purchase"
    lines += [
        "| figure | value |", "| --- | --- |",
        (f"| movements answered in a final state/s | "
         f"**{fmt((r.get('movements') or {}).get('movements_per_s'))}** |"
         if unit == "movement" else
         f"| {r['main_kind']} answers/s (all requests) | **{fmt(r['requests_per_s'])}** |"
         if r["main_kind"] != "purchase" else
         f"| purchase answers/s (final state) | **{fmt(r['purchases_per_s'])}** |"
         if r["load"]["wait"] else
         f"| purchases reaching a final state/s (database) | **{fmt(r['purchases_per_s'])}** |"),
        f"| completed purchases/s{' (bonos for oneself)' if unit == 'movement' else ''} | "
        f"{fmt(r['completed_per_s'])} |",
        f"| all requests answered/s | {fmt(r['requests_per_s'])} |",
        f"| latency p50 / p90 / p99 / p99.9 | {ms(main.get('p50_ms'))} / "
        f"{ms(main.get('p90_ms'))} / {ms(main.get('p99_ms'))} / {ms(main.get('p999_ms'))} |",
        f"| echo baseline req/s (same stack, {r['workers']} worker(s)) | "
        f"{fmt(r['echo_req_per_s'])} |",
        f"| ratio to echo | **{fmt(r['ratio_to_echo'], 3)}** |",
        f"| asyncpg insert+update tx/s (64 concurrent) | {fmt(r['storage_tx_per_s'])} |",
        f"| ratio to storage | {fmt(r['ratio_to_storage'], 3)} |",
        f"| server CPU per completed {unit} | {ms(r['cpu_per_purchase_ms'])} |",
        f"| server CPU per echo request | {ms(r['cpu_per_echo_ms'])} |",
        f"| CPU ratio {unit} / echo | **{fmt(r['cpu_ratio_purchase_to_echo'], 1)}x** |",
        f"| server CPU per answered request (any kind) | {ms(r.get('cpu_per_request_ms'))} "
        f"({fmt(r.get('cpu_ratio_request_to_echo'), 1)}x echo) |",
        f"| database commits per purchase | {fmt(r.get('db_commits_per_purchase'), 2)} |",
        f"| peak purchases in flight (db: accepted, not final) | "
        f"{fmt(r['in_flight']['peak_db_pending'])} |",
        f"| peak outstanding requests (client) | {fmt(r['in_flight']['peak_client'])} |",
        f"| server RSS peak | {fmt(r['rss_mb_peak'])} MB |",
        f"| invariants | {'**OK**' if r['invariants_ok'] else '**FAILED**'} |",
        "",
    ]
    half = r.get("half_rate")
    if half:
        lines += half_rate_section(half)
    if r.get("faults"):
        lines += faults_section(r["faults"], r)
    if r.get("history"):
        lines += history_section(r["history"])
    if r.get("movements"):
        from bench._movements import section
        lines += section(r["movements"], fmt)
    lines.append("### Latency by request kind and answer (ms)")
    lines += ["", "| kind | n | p50 | p90 | p99 | p99.9 | max |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in sorted(lat.items()):
        if s.get("n"):
            lines.append(f"| {name} | {fmt(s['n'])} | {fmt(s['p50_ms'], 2)} | "
                         f"{fmt(s['p90_ms'], 2)} | {fmt(s['p99_ms'], 2)} | "
                         f"{fmt(s['p999_ms'], 2)} | {fmt(s['max_ms'], 2)} |")
    lines += ["", "### Answers (measurement window)", ""]
    for kind, by in sorted(r["outcomes"].items()):
        parts = ", ".join(f"{k or '-'}: {fmt(v)}" for k, v in
                          sorted(by.items(), key=lambda kv: -kv[1]))
        lines.append(f"- **{kind}**: {parts}")
    if r["errors"]:
        lines += ["", "Non-2xx answers and failures (kind, status, problem code; status 0 = "
                  "no answer): " + ", ".join(
            f"`{k}` {fmt(v)}" for k, v in r["errors"].items())]
    else:
        lines += ["", "Non-2xx answers and failures: none."]
    cpu = r["cpu"]
    lines += ["", "### CPU (seconds over the load + drain window) and memory", "",
              "| process group | CPU s | share of wall | peak RSS MB |",
              "| --- | --- | --- | --- |"]
    for name, c in cpu.items():
        lines.append(f"| {name} | {fmt(c['cpu_s'], 2)} | {fmt(c['cpu_share'] * 100)}% | "
                     f"{fmt(c['peak_rss_mb'])} |")
    box = r.get("box") or {}
    if box.get("total_ms"):
        per = box["cpu_ms_per_purchase"]
        parts = " + ".join(f"{name} {fmt(ms_, 2)}" for name, ms_ in per.items())
        total = fmt(box["total_ms"], 2)
        lines += ["", f"Box CPU per completed purchase: {parts} = **{total} ms**; "
                  f"{box['cores']} cores give at most **{fmt(box['ceiling_per_s'])} purchases/s** "
                  "at that cost, whatever the worker count (the run reached "
                  f"{fmt(r.get('completed_per_s'))} completed/s)."]
    e = r["echo"]
    lines += ["", f"Echo baseline: {fmt(e.get('req_per_s'))} req/s, p50 {ms(e.get('p50_ms'))}, "
              f"p99 {ms(e.get('p99_ms'))}, server CPU {fmt(e.get('server_cpu_s'), 2)} s "
              f"({ms(e.get('cpu_per_request_ms'))} per request), load generator CPU "
              f"{fmt(e.get('loadgen_cpu_s'), 2)} s."]
    s = r["storage"]
    lines.append(f"Storage baseline: {fmt(s.get('tx_per_s'))} tx/s (BEGIN; INSERT; UPDATE; "
                 f"COMMIT, {s.get('concurrency')} concurrent), p50 {ms(s.get('p50_ms'))}, "
                 f"p99 {ms(s.get('p99_ms'))}, PostgreSQL CPU {fmt(s.get('pg_cpu_s'), 2)} s.")
    inv = r["invariants"]
    lines += ["", "### Invariants", ""]
    for check in inv["checks"]:
        mark = "ok" if check["ok"] else "FAILED"
        lines.append(f"- {mark}: {check['name']} — {check['detail']}")
    for note in inv.get("notes", []):
        lines.append(f"- note: {note}")
    if r.get("log_problems"):
        lines += ["", "Server log warnings/errors (first of each kind):"]
        for msg, n in list(r["log_problems"].items())[:8]:
            lines.append(f"- {n}x `{msg[:160]}`")
    prof = r.get("profile")
    if prof:
        lines += ["", f"### Profile of the Gestor worker(s) (py-spy, {fmt(prof['samples'])} "
                  "samples while busy; own time = the frame at the top of the stack)", "",
                  "| # | own % | function (file) |", "| --- | --- | --- |"]
        for i, (name, pct) in enumerate(prof["own"][:15], 1):
            lines.append(f"| {i} | {pct:.1f} | `{name}` |")
        lines += ["", "Own time by package: " + ", ".join(
            f"{k} {v:.0f}%" for k, v in prof["by_package"][:8])]
        lines += ["", "Inclusive (total) time, top 12: " + "; ".join(
            f"`{n}` {p:.0f}%" for n, p in prof["inclusive"][:12])]
    lines += ["", f"JSON: `{r.get('json_path')}`" + (f" · plot: `{r['png_path']}`"
                                                      if r.get("png_path") else "")]
    return "\n".join(lines) + "\n"


def half_rate_section(h: Mapping[str, Any]) -> list[str]:
    lines = ["### Half the saturation rate (open loop, same server)", ""]
    if h.get("skipped") or not h.get("n"):
        return [*lines, f"Skipped: {h.get('skipped', 'no answers')}.", ""]
    kind = h.get("kind", "purchase")
    what = "purchases" if kind == "purchase" else "listings"
    met = "met" if h.get("met") else "**missed**"
    lines += [
        f"{fmt(h['rate'])} {what}/s scheduled ({h['rate_basis']}; saturation "
        f"{fmt(h['saturation_per_s'])}/s) for {fmt(h['duration_s'])} s, first "
        f"{fmt(h['warmup_s'])} s left out; latency from the scheduled time.", "",
        "| figure | value |", "| --- | --- |",
        (f"| purchase answers/s (final state) | {fmt(h.get('purchases_per_s'))} |"
         if kind == "purchase" else
         f"| {kind} answers/s (2xx) | {fmt(h.get('requests_per_s'))} |"),
        f"| latency p50 / p90 / p99 / p99.9 / max | {ms(h.get('p50_ms'))} / "
        f"{ms(h.get('p90_ms'))} / **{ms(h.get('p99_ms'))}** / {ms(h.get('p999_ms'))} / "
        f"{ms(h.get('max_ms'))} |",
    ]
    if kind == "purchase":
        lines.append(f"| p99 target | ≤ {fmt(h.get('target_p99_ms'))} ms: {met} |")
    lines.append(
        f"| errors (non-2xx or unanswered) | {fmt(h.get('error_count', 0))}"
        + (f" ({', '.join(f'`{k}` {v}' for k, v in h['errors'].items())})"
           if h.get("errors") else "") + " |")
    if kind == "purchase":
        lines.append(f"| server CPU per completed purchase at this rate | "
                     f"{ms(h.get('cpu_per_purchase_ms'))} |")
    else:
        rss = h.get("rss") or {}
        lines += [
            f"| server CPU per {kind} request at this rate | "
            f"{ms(h.get('cpu_per_request_ms'))} |",
            f"| distinct mobiles listed in this phase | {fmt(h.get('mobiles'))} |",
            f"| server RSS start / peak / end | {fmt(rss.get('rss_start_mb'))} / "
            f"{fmt(rss.get('rss_peak_mb'))} / {fmt(rss.get('rss_end_mb'))} MB |",
            f"| RSS slope, second half of the phase | "
            f"{fmt(rss.get('kb_per_1000_mobiles'), 1)} kB per 1,000 new mobiles |",
            f"| RSS projected at 1,000,000 mobiles | {fmt(rss.get('projected_mb_at_million'))} "
            "MB |",
        ]
    lines += [f"| generator lag max | {fmt(h.get('lag_max_s'), 3)} s |", ""]
    return lines


def history_section(h: Mapping[str, Any]) -> list[str]:
    long = h.get("long_mobile_purchases") or {}
    return ["### History stored before the run", "",
            f"{fmt(h.get('rows'))} movements (one mobile with {fmt(h.get('long_rows'))}), "
            + ("reused from an earlier load" if h.get("reused") else
               f"loaded in {fmt(h.get('load_s'))} s")
            + "; this run's purchases on the long-history mobile: "
            + (", ".join(f"{k} {fmt(v)}" for k, v in long.items()) or "none") + ".", ""]


def faults_section(f: Mapping[str, Any], r: Mapping[str, Any]) -> list[str]:
    s = f["summary"]
    by_state = r.get("transactions_by_state", {})
    sim = r.get("simulator_stats", {})
    ops = f.get("simulator_requests_by_op", {})
    lines = ["### Faults and their resolution", "",
             f"Simulator knobs: {f['describe']}."]
    out = f.get("outage")
    if out:
        lines.append(f"Outage of `{out['scope']}` from t={fmt(out.get('start_s'))} s to "
                     f"t={fmt(out.get('end_s'))} s of the load.")
    cfg = f.get("config", {})
    if cfg:
        lines.append("Gestor config for this run: " + "; ".join(
            f"[{k}] " + ", ".join(f"{kk} = {vv}" for kk, vv in v.items())
            for k, v in cfg.items()) + ".")
    resolved = s["inconsistent_resolved_as"]
    rec = f.get("reconcile")
    lines += [
        "", "| figure | value |", "| --- | --- |",
        "| transactions by final state (database, after recovery) | " + ", ".join(
            f"{k} {fmt(v)}" for k, v in sorted(by_state.items(), key=lambda kv: -kv[1])) + " |",
        f"| debits / refunds / bundles (simulator) | {fmt(sim.get('debits'))} / "
        f"{fmt(sim.get('refunds'))} / {fmt(sim.get('provisioned'))} |",
        f"| debit calls / debit lookups (unknown outcomes settled) | "
        f"{fmt(ops.get('ocs.debit'))} / {fmt(ops.get('ocs.lookup_debit', 0))} |",
        f"| provisioning calls / refund calls (incl. recovery retries) | "
        f"{fmt(ops.get('prov.provision'))} / {fmt(ops.get('ocs.refund', 0))} |",
        f"| purchases that went `inconsistent` | {fmt(s['inconsistent_total'])} |",
        "| ... settled by the recoverer | " + (", ".join(
            f"{k} {fmt(v)}" for k, v in resolved.items()) or "none")
        + f"; still inconsistent {fmt(s['inconsistent_left'])} |",
        f"| ... time from inconsistent to settled p50 / max | "
        f"{fmt(s['resolve_s']['p50'], 2)} s / {fmt(s['resolve_s']['max'], 2)} s |",
        f"| wait for the server to go quiet after the load | {fmt(f.get('drain_s'), 1)} s |",
        f"| purchases failed for an unavailable platform (accepted from t= to t=) | "
        f"{fmt(s['unavailable_failures']['n'])}"
        + (f" ({fmt(s['unavailable_failures']['first_s'])} s to "
           f"{fmt(s['unavailable_failures']['last_s'])} s)"
           if s["unavailable_failures"]["n"] else "") + " |",
        "| failed / refunded / inconsistent by reason | " + (", ".join(
            f"{k} {fmt(v)}" for k, v in s["reasons"].items()) or "none") + " |",
        "| alarms by kind (severity) | " + (", ".join(
            f"{a['kind']} ({a['severity']}) {fmt(a['n'])}" for a in s["alarms"]) or "none")
        + " |",
    ]
    adm = f.get("admin_statistics", {})
    if adm.get("recovery"):
        lines.append(f"| recoverer ({adm['workers_seen']} worker(s), admin statistics) | "
                     + ", ".join(f"{k} {fmt(v)}" for k, v in adm["recovery"].items()) + " |")
    if rec is not None:
        verdict = "**OK**" if rec.get("ok") else "**NOT OK**"
        lines.append(f"| `gestor reconcile --strict` | {verdict} (exit {rec['exit_code']}, "
                     f"{fmt(rec.get('mismatches'))} mismatches, {fmt(rec.get('unsettled'))} "
                     f"unsettled, {fmt(rec.get('seconds'), 1)} s) |")
    return [*lines, ""]


# -- compare ------------------------------------------------------------------------------------
COMPARE_KEYS = (
    "purchases_per_s", "completed_per_s", "requests_per_s", "p50_ms", "p90_ms", "p99_ms",
    "p999_ms", "echo_req_per_s", "ratio_to_echo", "storage_tx_per_s", "ratio_to_storage",
    "cpu_per_purchase_ms", "cpu_per_echo_ms", "cpu_ratio_purchase_to_echo",
    "cpu_per_request_ms",
    "db_commits_per_purchase", "rss_mb_peak", "invariants_ok",
)


def _scalar_view(r: Mapping[str, Any]) -> dict[str, Any]:
    out = {"scenario": r.get("scenario"), "workers": r.get("workers"), "mode": r.get("mode")}
    out |= {k: r.get(k) for k in COMPARE_KEYS}
    inflight = r.get("in_flight", {})
    out["peak_db_pending"] = inflight.get("peak_db_pending")
    out["peak_client_outstanding"] = inflight.get("peak_client")
    half = r.get("half_rate") or {}
    if half:
        out["half_rate_per_s"] = half.get("rate")
        out["half_rate_p99_ms"] = half.get("p99_ms")
    return out


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    def table(o: Mapping[str, Any], n: Mapping[str, Any], title: str) -> list[str]:
        lines = [f"### Compared with {title}", "", "| key | old | new | change |",
                 "| --- | --- | --- | --- |"]
        ov, nv = _scalar_view(o), _scalar_view(n)
        for key in nv:
            a, b = ov.get(key), nv.get(key)
            if isinstance(a, bool | str) or isinstance(b, bool | str) or a is None or b is None:
                change = "" if a == b else "changed"
            elif isinstance(a, int | float) and isinstance(b, int | float) and a:
                change = f"{(b - a) / abs(a) * 100:+.1f}%"
            else:
                change = ""
            lines.append(f"| {key} | {fmt(a)} | {fmt(b)} | {change} |")
        return [*lines, ""]

    if new.get("scenario") in ("all", "goals") or old.get("scenario") in ("all", "goals"):
        out: list[str] = []
        olds = old.get("results", {old.get("scenario"): old})
        for name, res in new.get("results", {new.get("scenario"): new}).items():
            if name in olds:
                out += table(olds[name], res, f"{name} in the old run")
        old_goals = {g["goal"]: g for g in old.get("goals", [])}
        if old_goals and new.get("goals"):
            out += ["### Goals compared", "", "| goal | old | new | met (old → new) |",
                    "| --- | --- | --- | --- |"]
            verdict = {True: "yes", False: "miss", None: "-"}
            for g in new["goals"]:
                o = old_goals.get(g["goal"], {})
                out.append(f"| {g['goal']} | {fmt(o.get('value'))} | {fmt(g['value'])} | "
                           f"{verdict[o.get('met')]} → {verdict[g['met']]} |")
            out.append("")
        return "\n".join(out)
    note = "" if old.get("scenario") == new.get("scenario") else \
        f" (a `{old.get('scenario')}` run!)"
    return "\n".join(table(old, new, f"`{old.get('json_path', 'old')}`{note}"))


# -- plot ----------------------------------------------------------------------------------------
def plot(r: Mapping[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ts = r["timeseries"]
    t = ts["t"]
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    ax = axes[0]
    ax.plot(t, ts["final_per_s"], label=f"{r['main_kind']} answers/s (final)")
    ax.plot(t, ts["requests_per_s"], label="all answers/s", alpha=0.6)
    if any(ts["errors_per_s"]):
        ax.plot(t, ts["errors_per_s"], label="errors/s (non-2xx)", color="red", alpha=0.7)
    ax.axvspan(0, r["warmup_s"], color="grey", alpha=0.15, label="warm-up")
    ax.axvline(r["duration_s"], color="grey", ls="--", lw=1)
    ax.set_ylabel("per second")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"Gestor {r['scenario']} · {r['workers']} worker(s) · {r['mode']} loop · "
                 f"echo {fmt(r['echo_req_per_s'])} req/s")
    ax = axes[1]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        ax.plot(t, ts[key], label=f"{r['main_kind']} {label}")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, by completion second)")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[2]
    ax.plot(t, ts["server_cpu_pct"], label="server CPU % (all processes)")
    ax.plot(t, ts["pg_cpu_pct"], label="PostgreSQL CPU %", alpha=0.7)
    ax.plot(t, ts["sim_cpu_pct"], label="simulator CPU %", alpha=0.7)
    ax.plot(t, ts["loadgen_cpu_pct"], label="load generator CPU %", alpha=0.7)
    ax.set_ylabel("CPU % of one core")
    ax.set_xlabel("seconds since the load started")
    ax2 = ax.twinx()
    ax2.plot(t, ts["db_pending"], color="black", ls=":", label="purchases in flight (db)")
    ax2.plot(t, ts["client_outstanding"], color="purple", ls="--", alpha=0.6,
             label="outstanding requests (client)")
    ax2.set_ylabel("in flight")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- py-spy --------------------------------------------------------------------------------------
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[1]
            break
    return path


def _package(path: str) -> str:
    short = _short(path)
    if short.startswith("stdlib/"):
        parts = short.split("/")
        return "stdlib:" + (parts[1].removesuffix(".py") if len(parts) > 1 else "?")
    return short.split("/", 1)[0].removesuffix(".py")


def profile_summary(raw_files: Iterable[Path]) -> dict[str, Any] | None:
    """Aggregate py-spy `--format raw` (collapsed stacks) into own time per function (the top
    frame), own time per package, and inclusive time per function."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in raw_files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            total += n
            names = []
            for frame in frames:
                m = _FRAME.match(frame)
                names.append(f"{m['func']} ({_short(m['file'])})" if m else frame)
            own[names[-1]] += n
            m = _FRAME.match(frames[-1])
            packages[_package(m["file"]) if m else "?"] += n
            for name in set(names):
                inclusive[name] += n
    if not total:
        return None
    return {
        "samples": total,
        "own": [(k, v * 100 / total) for k, v in own.most_common(40)],
        "by_package": [(k, v * 100 / total) for k, v in packages.most_common(20)],
        "inclusive": [(k, v * 100 / total) for k, v in inclusive.most_common(40)],
    }
