"""Micro-benchmark of the seed rule set: µs per purchase decision and per bono listing.

    python -m bench.rules_bench [--n 20000]

Reports the batched plans (the default), the per-rule path (`explain`'s evaluation) for
comparison, and a fresh customer dict + context per call (no object reuse at all)."""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from gestor.rules import PurchaseContext
from tests.rules.support import NOW, context, customer
from tests.rules.test_seed import SEED


def measure(label: str, fn: Callable[[], Any], n: int) -> float:
    fn()
    best = min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6
    print(f"{best:8.1f} µs  {label}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    n = parser.parse_args().n
    history = {"purchases_today": 1, "spent_month": 90000, "last_purchase_at": NOW - timedelta(1)}
    ctx = context(history=history, restrictions=("OTHER",))
    bono = "DATA_2GB_7D"
    slow_decide = SEED._slow_decide  # the per-rule path, for comparison
    bind = SEED._bind

    def fresh() -> PurchaseContext:
        return PurchaseContext(customer(), "app", NOW, ["OTHER"], dict(history))

    print(f"seed rules, {len(SEED.catalogue)} bonos, plans: {SEED.fast_path_note}")
    measure("decide()                      (plans)", lambda: SEED.decide(ctx, bono), n)
    measure("offers(), 7 bonos             (plans)", lambda: SEED.offers(ctx), n)
    measure("profile()                     (plans)", lambda: SEED.profile(ctx), n)
    measure("decide() + fresh context      (plans)", lambda: SEED.decide(fresh(), bono), n)
    measure("offers() + fresh context      (plans)", lambda: SEED.offers(fresh()), n)
    measure("  fresh context alone", fresh, n)
    measure("decide()                   (per rule)", lambda: slow_decide(bind(ctx), 1, None), n)
    measure("explain()                  (per rule)", lambda: SEED.explain(ctx, bono), n // 4)


if __name__ == "__main__":
    main()
