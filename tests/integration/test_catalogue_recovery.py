"""A purchase resumed by the recoverer is provisioned from the catalogue version it was sold
from, even once that bono is changed or retired in the active catalogue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import trio

from gestor.api import GestorApp
from gestor.model import Actor, HistoryEntry, NewTransaction, Transition, TxState
from gestor.purchase._recovery import resume
from gestor.store import Accepted, SnapshotRequest

SEED = (Path(__file__).parents[2] / "config" / "bonos.toml").read_text(encoding="utf-8")
ALICE = Actor("key_alice", "alice")
MSISDN = "5491100000041"


async def test_recovery_provisions_the_bono_of_the_transactions_catalogue_version(
        app: GestorApp, control: httpx.AsyncClient) -> None:
    rt = app.runtime
    store, book = rt.store, rt.rulebook
    with trio.fail_after(60):
        now = datetime.now(UTC)
        new = NewTransaction(uuid.uuid4(), MSISDN, "SMS_200_30D", "app", "public", "k1", "h1",
                             now)
        accepted = await store.accept(new, SnapshotRequest(MSISDN, now - timedelta(days=1),
                                                           now - timedelta(days=30), now))
        assert isinstance(accepted, Accepted)
        tx = accepted.transaction
        at = datetime.now(UTC)
        moved = await store.transition(Transition(
            tx.id, TxState.RECEIVED, TxState.CHARGED, at,
            (HistoryEntry(TxState.CHARGED, at, "debited 20000 ARS"),), price=20000,
            currency="ARS", operation="debit_and_provision", rules_version=1,
            catalogue_version=1))
        assert moved is not None
        charged = await store.get(tx.id)
        assert charged is not None and charged.catalogue_version == 1

        # Version 2 retires SMS_200_30D (no rule names it) and is activated meanwhile.
        retiring = SEED.replace('id = "SMS_200_30D"', 'id = "SMS_250_30D"').replace(
            "sms = 200", "sms = 250")
        draft = await rt.store.catalogue_versions.create(retiring, "", ALICE, None)
        await book.activate_catalogue(draft.version, ALICE)
        assert "SMS_200_30D" not in rt.catalogue and rt.catalogue.version == 2

        done = await resume(rt.purchases.deps, charged)
        assert done.state is TxState.COMPLETED
        bundle: dict[str, Any] = (await control.get(f"/prov/bundles/{tx.id}")).json()
        assert (bundle["bono_id"], bundle["sms"], bundle["validity_days"]) == (
            "SMS_200_30D", 200, 30)
        stored = await store.get(tx.id)
        assert stored is not None and stored.catalogue_version == 1
