"""What the orchestrator measures once a second during a scenario's main load: CPU and RSS of
each process group, purchases pending in the database, calls in flight at the simulator; it
also switches the `faults` outage on and off and starts py-spy after the warm-up."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import _faults as faults
from bench import _storage as storage
from bench._plan import Plan
from bench._procs import ProcessGroup, http_json, progress


@dataclass
class RunSampler:
    """The `sampler` of `drive` for one scenario run (call it with the second since t0)."""

    plan: Plan
    server: ProcessGroup
    groups: list[ProcessGroup]
    db: storage.DbThread
    sim_url: str
    t0: float
    profile_to: Path | None = None          # --profile: py-spy output directory
    worker_pids: list[int] = field(default_factory=list)
    sim_peak: int = 0                       # the simulator's peak calls in flight
    outage_at: dict[str, float] = field(default_factory=dict)  # "start"/"end": s since t0
    spies: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _spy_started: bool = False

    def __call__(self, second: int) -> dict[str, float]:
        plan = self.plan
        if plan.outage is not None and second >= plan.outage[0]:
            self.set_outage(second < plan.outage[1])
        out = {f"{g.name}_cpu": g.sample() for g in self.groups}
        out["server_rss"] = self.server.rss
        try:
            out["db_pending"] = self.db.pending()
        except Exception:
            out["db_pending"] = math.nan
        try:
            stats = http_json("GET", f"{self.sim_url}/control/stats", timeout=2)
            out["sim_in_flight"] = stats.get("in_flight", 0)
            self.sim_peak = max(self.sim_peak, stats.get("peak_in_flight", 0))
        except OSError:
            out["sim_in_flight"] = math.nan
        if self.profile_to is not None and not self._spy_started and second >= plan.warmup:
            self._spy_started = True
            self.spies.extend(start_py_spy(self.profile_to, plan.name, self.worker_pids,
                                           plan.duration - second))
        return out

    def set_outage(self, on: bool) -> None:
        """`faults`: the dwh outage on (once) or off (once, after it was on)."""
        key = "start" if on else "end"
        if (self.plan.outage is None or key in self.outage_at
                or (not on and "start" not in self.outage_at)):
            return
        http_json("PUT", f"{self.sim_url}/control/faults",
                  {faults.OUTAGE_SCOPE: {"outage": True if on else None}})
        self.outage_at[key] = time.time() - self.t0

    def wait_spies(self) -> None:
        for spy in self.spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()


def start_py_spy(tmp: Path, scenario: str, pids: list[int], seconds: float
                 ) -> list[subprocess.Popen[bytes]]:
    """`py-spy record` on each worker for `seconds`, raw output in `tmp`."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        progress("py-spy not found: pip install py-spy (no profile)", final=True)
        return []
    spies = []
    for pid in pids:
        out = tmp / f"pyspy-{scenario}-{pid}.txt"
        spies.append(subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
             "--rate", "100", "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies
