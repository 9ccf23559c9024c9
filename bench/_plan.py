"""What one scenario does to Gestor: the `Plan`, built from the command line, and the sequence of
plans `goals` and `all` run."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench import _faults as faults

SCENARIOS = ("purchase", "mix", "hot-mobile", "slow-platforms", "faults", "in-flight",
             "many-mobiles", "history", "movements")


# -- plans --------------------------------------------------------------------------------------
#: slow-platforms' offered rate without --rate: per worker when run alone; in `goals`/`all`, this
#: share of the purchase saturation rate just measured (a 2 s platform costs more CPU per
#: purchase than a 20 ms one: thousands of connections and live sagas). Purchases in flight =
#: rate x saga time (3 calls of 2 s), so the rate the box sustains sets the peak in flight.
SLOW_RATE_PER_WORKER = 250.0
SLOW_SHARE_OF_SATURATION = 0.6

#: in-flight: 20 s on each platform, so a saga lasts 60 s and rate x 60 s purchases are in flight
#: at once: 180/s gives ~10,800, a rate this box sustains (a 2 s platform needed ~1,700/s).
IN_FLIGHT_LATENCY_MS = 20_000
IN_FLIGHT_RATE = 180.0
IN_FLIGHT_DURATION = 70.0
#: Each allowed platform call keeps 2 descriptors out of a worker's client connections
#: (gestor/serving/_descriptors.py) under this box's 20,000 open-files limit: 2000 calls per
#: platform leave a worker ~7,800 client connections. 180/s x 20 s = 3,600 calls per platform
#: in flight, so the scenario runs 2 workers (4,000 calls per platform between them).
IN_FLIGHT_WORKERS = 2

#: many-mobiles: the closed-loop phase that measures the listing saturation rate, then the open
#: loop at half that rate until `--mobiles` distinct msisdns were listed.
MANY_MOBILES_SATURATION_S = 8.0
MANY_MOBILES_DEFAULT = 12_000
MILLION = 1_000_000

#: movements: what --kinds may name (`advance`: advance cycles, an advance and its top-ups)
MOVEMENT_CHOICES = ("purchase", "gift", "transfer", "advance")

#: history: the purchases' own mobile with a long history, among the distinct ones.
LONG_MSISDN = "5491100000077"


@dataclass(frozen=True)
class Plan:
    """What one scenario does to Gestor."""

    scenario: str
    mode: str                       # closed | open
    connections: int                # closed: clients; open: connection cap
    rate: float                     # open: arrivals/s (all load processes together)
    wait: float                     # Prefer: wait=N on purchases; 0 → 202 at once
    latency: Mapping[str, Any]      # simulator fault knobs (PUT /control/faults)
    duration: float = 20.0          # seconds of load
    warmup: float = 2.0             # first seconds left out of the figures
    platforms: Mapping[str, Any] = field(default_factory=dict)  # [platforms] overrides
    hot: tuple[str, ...] = ()
    drain: float = 30.0             # max seconds to wait for the server to go quiet
    ratio_basis: str = "purchases_per_s"
    workers: int = 1
    label: str = ""                 # the run's name in `all` and in file names (default scenario)
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # other sections
    outage: tuple[float, float] | None = None  # faults: [start, end) s of the dwh outage
    half_rate: bool = False         # then an open-loop phase at half the saturation rate
    main_kind: str = "purchase"     # the request kind the headline latency is about
    mobiles: int = 0                # many-mobiles: distinct msisdns listed in the half-rate phase
    long_msisdn: str = ""           # history: one client buys on this mobile (long history)
    history_rows: int = 0           # history: movements stored before the run
    advance_clients: int = 0        # movements: clients running advance cycles
    kinds: tuple[str, ...] = ()     # movements: what the other clients do (purchase, gift,
    #                                 transfer)
    beneficiaries: int = 0          # movements: the pool gifts and transfers go to
    half_rate_at: float = 0.0       # the half-rate phase at this rate rather than half the
    #                                 saturation (history in goals: the empty database's rate)

    @property
    def name(self) -> str:
        return self.label or self.scenario

    def config_overrides(self) -> dict[str, dict[str, Any]]:
        out = {k: dict(v) for k, v in self.config.items()}
        if self.platforms:
            out.setdefault("platforms", {}).update(self.platforms)
        return out


DEFAULT_LATENCY = {"dwh": {"latency_ms": 5}, "ocs": {"latency_ms": 20},
                   "prov": {"latency_ms": 10}}


def parse_latency(text: str) -> dict[str, Any]:
    """`ocs=20,dwh=5,prov=10` → fault knobs; `none` → {}."""
    if text.strip().lower() in ("", "none", "0"):
        return {}
    out: dict[str, Any] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        out[name.strip()] = {"latency_ms": float(value)}
    return out


def describe_latency(latency: Mapping[str, Any]) -> str:
    if not latency:
        return "none"
    return ", ".join(f"{k} {v.get('latency_ms', 0):g} ms" for k, v in latency.items()
                     if isinstance(v, Mapping))


def _timing(args: argparse.Namespace, default_duration: float) -> dict[str, float]:
    duration = args.duration if args.duration is not None else default_duration
    warmup = args.warmup if args.warmup is not None else min(2.0, duration * 0.1)
    if warmup >= duration:
        raise SystemExit("--warmup must be shorter than --duration")
    return {"duration": duration, "warmup": warmup}


def make_plan(scenario: str, args: argparse.Namespace, *, workers: int | None = None,
              label: str = "", half_rate: bool | None = None) -> Plan:
    latency = parse_latency(args.latency) if args.latency is not None else DEFAULT_LATENCY
    mode = "open" if args.rate else "closed"
    conns = args.connections or 64
    wait = 10.0 if args.wait is None else args.wait
    chosen = args.workers or 1
    workers = chosen if workers is None else workers
    common: dict[str, Any] = {"workers": workers, "label": label, **_timing(args, 20.0)}
    # half the saturation rate only makes sense after a closed-loop (saturation) run
    half = (not args.no_half_rate and mode == "closed") if half_rate is None else half_rate
    if scenario == "purchase":
        return Plan(scenario, mode, conns, args.rate or 0, wait, latency,
                    half_rate=half and mode == "closed", **common)
    if scenario == "history":
        # the per-msisdn purchase limit off: one client buys on the long-history mobile back to
        # back (the limit would answer 429 RATE_LIMITED; the cost of the rules' history read is
        # what this scenario measures)
        return Plan(scenario, mode, conns, args.rate or 0, wait, latency,
                    half_rate=half and mode == "closed", long_msisdn=LONG_MSISDN,
                    history_rows=args.history_rows,
                    config={"limits": {"msisdn": {"purchase": {"rate": 0.0}}}}, **common)
    if scenario == "movements":
        # every kind of movement in one closed loop (bench/_load.py `movements_client`); the
        # rate limits off: the advance cycles move one mobile back to back, and one client
        # sends every kind
        if mode != "closed":
            raise SystemExit("movements runs a closed loop (no --rate)")
        chosen_kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
        unknown = set(chosen_kinds) - set(MOVEMENT_CHOICES)
        if unknown or not chosen_kinds:
            raise SystemExit(f"--kinds: a comma-separated subset of {','.join(MOVEMENT_CHOICES)}")
        # advance cycles alone: every client (up to the 100 well-known mobiles) runs one
        advances = (0 if "advance" not in chosen_kinds else min(conns, 100)
                    if chosen_kinds == ("advance",) else min(args.advance_clients, conns, 100))
        return Plan(scenario, mode, conns, 0, wait, latency, ratio_basis="requests_per_s",
                    main_kind="movement", advance_clients=advances,
                    kinds=tuple(k for k in chosen_kinds if k != "advance"),
                    beneficiaries=args.beneficiaries,
                    config={"limits": {"enabled": False}}, **common)
    if scenario == "mix":
        return Plan(scenario, mode, conns, args.rate or 0, wait, latency,
                    ratio_basis="requests_per_s", **common)
    if scenario == "many-mobiles":
        # a listing per distinct msisdn: the per-key list limit off (one client lists for all)
        common |= _timing(args, MANY_MOBILES_SATURATION_S)
        return Plan(scenario, mode, conns, args.rate or 0, wait, latency,
                    ratio_basis="requests_per_s", main_kind="bonos",
                    half_rate=half and mode == "closed", mobiles=args.mobiles,
                    config={"limits": {"key": {"list": {"rate": 0.0}}}}, **common)
    if scenario == "hot-mobile":
        hot = tuple(f"54911000000{i:02d}" for i in range(1, args.hot_msisdns + 1))
        # the per-msisdn purchase limit off: this scenario is about the one-pending guard
        # (409 PURCHASE_PENDING), not about 429 RATE_LIMITED
        return Plan(scenario, mode, conns, args.rate or 0, wait, latency, hot=hot,
                    ratio_basis="requests_per_s",
                    config={"limits": {"msisdn": {"purchase": {"rate": 0.0}}}}, **common)
    if scenario == "slow-platforms":
        latency = parse_latency(args.latency) if args.latency is not None else {
            "dwh": {"latency_ms": 2000}, "ocs": {"latency_ms": 2000},
            "prov": {"latency_ms": 2000}}
        return Plan(
            scenario, "open", args.connections or 2000,
            args.rate or SLOW_RATE_PER_WORKER * workers,
            0.0 if args.wait is None else args.wait, latency,
            platforms={"timeout": 10.0, "max_concurrency": args.platform_concurrency},
            # one client offering more than the per-key purchase limit (1,000/s) may need
            config={"limits": {"key": {"purchase": {"rate": 0.0}}}},
            drain=60.0, **common,
        )
    if scenario == "in-flight":
        common |= _timing(args, IN_FLIGHT_DURATION)
        if args.workers is None:
            common["workers"] = IN_FLIGHT_WORKERS
        latency = parse_latency(args.latency) if args.latency is not None else {
            name: {"latency_ms": IN_FLIGHT_LATENCY_MS} for name in ("dwh", "ocs", "prov")}
        slowest = max((float(v.get("latency_ms", 0)) for v in latency.values()), default=0.0)
        return Plan(
            scenario, "open", args.connections or 2000, args.rate or IN_FLIGHT_RATE,
            0.0 if args.wait is None else args.wait, latency,
            platforms={"timeout": slowest / 1000 + 10.0,
                       "max_concurrency": args.platform_concurrency},
            # the recoverer must not take a saga whose platform call is merely slow for stale
            config={"limits": {"key": {"purchase": {"rate": 0.0}}},
                    "recovery": {"stale_after": 3 * slowest / 1000 + 30.0}},
            drain=3 * slowest / 1000 + 90.0, **common,
        )
    if scenario == "faults":
        knobs = faults.merge_knobs(faults.DEFAULT_KNOBS, {})
        if args.latency is not None:
            for platform, value in parse_latency(args.latency).items():
                knobs.setdefault(platform, {}).update(value)
        if args.fault_knobs:
            knobs = faults.merge_knobs(knobs, json.loads(args.fault_knobs))
        outage = None
        duration, warmup = common["duration"], common["warmup"]
        if args.outage > 0:
            start = max(warmup, round(duration * 0.4))
            outage = (start, min(duration, start + args.outage))
        # open loop by default: in a closed loop the purchases that fail fast (outage, open
        # circuit) come back at once and crowd out everything else
        rate = faults.DEFAULT_RATE if args.rate is None else args.rate
        return Plan(scenario, "open" if rate else "closed", conns, rate, wait, knobs,
                    config=faults.CONFIG, outage=outage, drain=max(60.0, duration * 3),
                    **common)
    raise SystemExit(f"unknown scenario {scenario!r}")


#: The scenarios `goals` runs after purchase at 1 and 2 workers, in this order.
GOALS_SCENARIOS = ("in-flight", "many-mobiles", "history")


def runs_of(scenario: str, args: argparse.Namespace) -> list[Plan]:
    """The plans one invocation runs: one scenario, or the `goals`/`all` sequence (purchase at
    1 worker with its half-rate phase, purchase at 2 workers, then the others at --workers)."""
    if scenario == "movements" and not args.no_purchase_baseline:
        # CPU per movement beside CPU per purchase, measured in the same invocation
        return [make_plan("purchase", args, half_rate=False), make_plan(scenario, args)]
    if scenario not in ("goals", "all"):
        return [make_plan(scenario, args)]
    plans = [make_plan("purchase", args, workers=1),
             make_plan("purchase", args, workers=2, label="purchase-2w", half_rate=False)]
    others = GOALS_SCENARIOS if scenario == "goals" else (
        "mix", "hot-mobile", "slow-platforms", "faults", *GOALS_SCENARIOS)
    return plans + [make_plan(name, args) for name in others]
