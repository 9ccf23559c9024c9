"""The `movements` scenario of the load test: a short run must pass its invariants with every
kind of movement made; its checks must catch what they are for (made-up movements and ledgers)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hdrh", reason="the bench needs the `bench` extra (hdrhistogram)")

from bench import _movements as movements
from gestor.purchase import refund_id, step_id
from tests.bench.test_bench_smoke import _run

A, B, C = "5491100000001", "5491100000002", "5491100000003"


@pytest.mark.bench
@pytest.mark.e2e
def test_movements_scenario_smoke(tmp_path: Path) -> None:
    out = tmp_path / "movements.json"
    proc = _run(["movements", "--duration", "4", "--warmup", "0.5", "--connections", "12",
                 "--advance-clients", "3", "--baseline-duration", "1", "--no-plot",
                 "--json", str(out)], 240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["scenario"] == "movements"
    assert result["invariants_ok"] is True, result["invariants"]
    names = " ".join(c["name"] for c in result["invariants"]["checks"])
    for check in ("as payer or beneficiary", "mobile_guards is empty", "every movement is final",
                  "every ledger entry", "reconcile --strict"):
        assert check in names
    m = result["movements"]
    # every kind was made, and completed at least once, each with its money at the simulator
    for kind in movements.KINDS:
        assert m["completed_by_kind"][kind] > 0, (kind, m["states_by_kind"],
                                                  result["outcomes"].get(kind))
    assert set(m["money"]["purchase"]) == {"debit"}
    assert set(m["money"]["gift"]) == {"debit"}
    assert {"debit", "credit"} <= set(m["money"]["transfer"])
    assert set(m["money"]["advance"]) == {"advance"}
    assert set(m["money"]["topup"]) == {"recovery"}
    assert m["debts"]["collected"] > 0
    # CPU per movement beside the purchase run of the same invocation
    assert m["cpu_per_movement_ms"] > 0
    base = m["purchase_baseline"]
    assert base["label"] == "purchase" and base["cpu_per_purchase_ms"] > 0
    assert m["cpu_ratio_to_purchase"] > 0
    assert Path(base["json_path"]).parent == tmp_path
    assert "### Movements" in proc.stdout and "ratio movement / purchase" in proc.stdout


# -- the checks on made-up movements ----------------------------------------------------------
def _tx(kind: str, state: str, *, msisdn: str = A, beneficiary: str | None = None,
        price: int | None = None, amount: int | None = None, steps: tuple[str, ...] = (),
        step: int = 0, owed: int | None = None, collected: int | None = None,
        reference: str | None = None, created: float = 0.0, updated: float = 1.0
        ) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "kind": kind, "msisdn": msisdn, "beneficiary": beneficiary,
            "state": state, "price": price, "amount": amount, "fee": None, "owed": owed,
            "collected": collected, "reference": reference, "steps": list(steps),
            "step": step, "created": created, "updated": updated}


def _entry(kind: str, id_: str, msisdn: str, amount: int) -> dict[str, Any]:
    return {"kind": kind, "id": id_, "msisdn": msisdn, "amount": amount}


def test_each_final_movement_is_matched_with_its_ledger_entries_per_kind() -> None:
    gift = _tx("purchase", "completed", beneficiary=B, price=2000,
               steps=("debit:refund", "provision"), created=0, updated=1)
    refunded = _tx("transfer", "refunded", beneficiary=C, price=10500, amount=10000,
                   steps=("debit:refund", "credit"), step=1, created=2, updated=3)
    advance = _tx("advance", "completed", msisdn=B, amount=50000, owed=55000,
                  steps=("advance",), created=4, updated=5)
    topup = _tx("topup", "completed", msisdn=B, amount=30000, collected=30000,
                steps=("recover",), reference="r1", created=6, updated=7)
    rejected = _tx("transfer", "rejected", beneficiary=C, amount=10000, created=8, updated=9)
    txs = [gift, refunded, advance, topup, rejected]

    def uid(tx: dict[str, Any]) -> uuid.UUID:
        return uuid.UUID(tx["id"])

    ledger = [
        _entry("debit", gift["id"], A, 2000),
        _entry("debit", refunded["id"], A, 10500),
        _entry("refund", refund_id(uid(refunded)), A, 10500),
        _entry("credit", step_id(uid(advance), "advance"), B, 50000),
        _entry("topup", "r1", B, 30000),
        _entry("debit", step_id(uid(topup), "recover"), B, 30000),
    ]
    audit = [(t["id"], t["msisdn"], t["beneficiary"], s) for t in txs
             for s in ("received", t["state"])]
    mv = movements.analyse(txs, audit, 0, ledger)
    assert (mv["ledger_missing"], mv["ledger_unexpected"], mv["ledger_wrong"]) == (0, 0, 0)
    assert mv["money"] == {
        "gift": {"debit": {"n": 1, "total": 2000}},
        "transfer": {"debit": {"n": 1, "total": 10500}, "refund": {"n": 1, "total": 10500}},
        "advance": {"advance": {"n": 1, "total": 50000}},
        "topup": {"recovery": {"n": 1, "total": 30000}},
    }
    assert mv["debts"]["outstanding"] == 25000 and mv["debts"]["mobiles_over_collected"] == 0
    assert (mv["overlap_count"], mv["timestamp_overlaps"], mv["not_final"]) == (0, 0, 0)
    assert mv["topups_unnotified"] == 0 and mv["by_kind"]["transfer"] == {"refunded": 1,
                                                                          "rejected": 1}
    # a debit twice, a credit nobody explains, a recharge Gestor never heard of, a wrong amount
    bad = [*ledger[:-1], _entry("debit", step_id(uid(topup), "recover"), B, 31000),
           _entry("debit", gift["id"], A, 2000), _entry("credit", "stray", C, 1),
           _entry("topup", "r2", B, 30000)]
    mv = movements.analyse(txs, audit, 2, bad)
    assert (mv["ledger_unexpected"], mv["ledger_wrong"], mv["topups_unnotified"]) == (2, 1, 1)
    stats = {"debited_total": 0, "refunded_total": 0, "credited_total": 0, "provisioned": 1}
    checks = {"pending_index_ok": True, "answers_missing_in_db": 0, "answers_state_mismatch": 0,
              "answers_checked": 0}
    failed = {c["name"] for c in movements.invariants(checks, mv, stats, 0, 0, 0)["checks"]
              if not c["ok"]}
    assert any("mobile_guards" in n for n in failed)
    assert any("no debit, credit or refund" in n for n in failed)
    assert any("recharge" in n for n in failed)


def test_the_guard_is_replayed_across_payer_and_beneficiary() -> None:
    # a transfer A -> B accepted while a gift C -> B (B the beneficiary of both) is in flight
    gift, transfer = str(uuid.uuid4()), str(uuid.uuid4())
    audit = [(gift, C, B, "received"), (transfer, A, B, "received"),
             (gift, C, B, "completed"), (transfer, A, B, "completed")]
    txs = [_tx("purchase", "completed", msisdn=C, beneficiary=B, created=0, updated=2),
           _tx("transfer", "completed", msisdn=A, beneficiary=B, created=1, updated=3)]
    mv = movements.analyse(txs, audit, 0, [])
    assert mv["overlap_count"] == 1 and mv["overlaps"][0]["mobile"] == B
    assert mv["timestamp_overlaps"] == 1
    # one after the other: nothing
    audit = [audit[0], audit[2], audit[1], audit[3]]
    txs[1] |= {"created": 2, "updated": 3}
    mv = movements.analyse(txs, audit, 0, [])
    assert (mv["overlap_count"], mv["timestamp_overlaps"]) == (0, 0)


def test_kinds_choose_what_the_movements_load_makes() -> None:
    from bench._plan import make_plan, runs_of
    from bench.cli import build_parser

    def plan(*argv: str) -> Any:
        return make_plan("movements", build_parser().parse_args(["movements", *argv]))

    mixed = plan()
    assert (mixed.kinds, mixed.advance_clients) == (("purchase", "gift", "transfer"), 16)
    assert mixed.config["limits"] == {"enabled": False}
    assert (plan("--kinds", "transfer").kinds, plan("--kinds", "transfer").advance_clients) == (
        ("transfer",), 0)
    alone = plan("--kinds", "advance", "--connections", "150")
    assert (alone.kinds, alone.advance_clients) == ((), 100)
    with pytest.raises(SystemExit):
        plan("--kinds", "topup")
    with pytest.raises(SystemExit):
        plan("--rate", "50")
    # the purchase run first, for CPU per purchase, unless told not to
    args = build_parser().parse_args(["movements"])
    assert [p.name for p in runs_of("movements", args)] == ["purchase", "movements"]
    args = build_parser().parse_args(["movements", "--no-purchase-baseline"])
    assert [p.name for p in runs_of("movements", args)] == ["movements"]
