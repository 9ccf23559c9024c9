"""Two workers' rule books on one database: an activation checked against a version of the other
kind that another worker replaced meanwhile is checked again against the new one (never stored
unchecked), and a worker swaps in the pair of versions active when it refreshes."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gestor.model import Actor
from gestor.rulebook import RuleBook
from gestor.rules import RuleSetError
from gestor.store import open_store

CONFIG = Path(__file__).parents[2] / "config"
BONOS = (CONFIG / "bonos.toml").read_text(encoding="utf-8")
RULES = (CONFIG / "rules.toml").read_text(encoding="utf-8")
TZ = "America/Argentina/Buenos_Aires"
ALICE = Actor("key_alice", "alice")
#: The seed rules with their welcome gift on SMS_200_30D instead of DATA_500MB_1D.
GIFT_SMS = RULES.replace('bono.id == "DATA_500MB_1D"', 'bono.id == "SMS_200_30D"')
#: The seed catalogue without SMS_200_30D (renamed SMS_250_30D).
NO_SMS_200 = BONOS.replace('id = "SMS_200_30D"', 'id = "SMS_250_30D"')


async def test_a_stale_worker_checks_again_against_what_another_activated(
        database_url: str) -> None:
    with trio.fail_after(90):
        async with open_store(database_url) as one, open_store(database_url) as two:
            first, second = RuleBook(one, TZ), RuleBook(two, TZ)
            await first.load(RULES, BONOS)
            await second.load(RULES, BONOS)
            assert (second.current.version, second.catalogue.version) == (1, 1)
            retiring = await two.catalogue_versions.create(NO_SMS_200, "", ALICE, None)

            # The first worker activates rules naming SMS_200_30D; the second, not following
            # activations (no `run`), still has rules version 1 in use.
            rules = await one.create_rules(GIFT_SMS, "", ALICE, None)
            assert await first.activate(rules.version, ALICE) is not None
            assert second.current.version == 1

            # Checked against rules 1 the catalogue is fine, but rules 2 name the bono it
            # retires: the store refuses the stale pair, the worker refreshes and checks again.
            with pytest.raises(RuleSetError) as refused:
                await second.activate_catalogue(retiring.version, ALICE)
            assert [i.rule_id for i in refused.value.issues if i.severity == "error"] == [
                "welcome_gift"]
            assert (second.current.version, second.catalogue.version) == (2, 1)
            assert (await two.catalogue_versions.active()).version == 1  # type: ignore[union-attr]

            # A catalogue that is fine with rules 2 goes through; the first worker swaps it in
            # when it refreshes (on the NOTIFY: tests/e2e/test_catalogue_workers.py).
            cheaper = await two.catalogue_versions.create(
                BONOS.replace("price = 60000", "price = 50000"), "", ALICE, None)
            assert await second.activate_catalogue(cheaper.version, ALICE) is not None
            assert first.catalogue.version == 1
            await first.refresh()
            assert (first.current.version, first.catalogue.version) == (2, cheaper.version)
            assert first.catalogue["DATA_2GB_7D"].price == 50000
            assert first.statistics().catalogue_version == cheaper.version
