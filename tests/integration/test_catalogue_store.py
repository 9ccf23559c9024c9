"""Catalogue versions in PostgreSQL: the seed, drafts, one active version at a time, roll back,
the audit rows written with each change, NOTIFY, and activation guarded by the rules version
it was checked against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trio

from gestor.model import Actor
from gestor.store import PartnerMoved, open_store

ALICE = Actor("key_alice", "alice")
SEED = (Path(__file__).parents[2] / "config" / "bonos.toml").read_text(encoding="utf-8")
CHEAPER = SEED.replace("price = 60000", "price = 45000")


async def _statuses(store: Any) -> dict[int, str]:
    return {r.version: r.status for r in await store.catalogue_versions.listing()}


async def test_seed_draft_activate_and_roll_back_with_audit_rows(database_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(database_url) as store:
            versions = store.catalogue_versions
            seeded = await versions.seed(SEED, "seed from config/bonos.toml")
            assert (seeded.version, seeded.status, seeded.created_by) == (1, "active", "seed")
            again = await versions.seed(CHEAPER, "a second start")
            assert again.version == 1 and again.source == SEED  # the seed only seeds once

            draft = await versions.create(CHEAPER, "2 GB cheaper", ALICE, 1)
            assert (draft.version, draft.status, draft.based_on) == (2, "draft", 1)
            assert draft.source == CHEAPER  # stored as submitted
            assert await _statuses(store) == {1: "active", 2: "draft"}

            activated = await versions.activate(2, ALICE)
            assert activated is not None and not isinstance(activated, PartnerMoved)
            assert (activated.status, activated.activated_by) == ("active", "alice")
            assert await _statuses(store) == {1: "retired", 2: "active"}

            rolled_back = await versions.activate(1, ALICE)  # roll back: an earlier version
            assert rolled_back is not None and not isinstance(rolled_back, PartnerMoved)
            assert await _statuses(store) == {1: "active", 2: "retired"}
            same = await versions.activate(1, ALICE)  # already active: changes nothing
            assert same is not None and not isinstance(same, PartnerMoved)
            assert await versions.activate(99, ALICE) is None

            trail = await store.audit_trail(action="catalogue.")
            assert [(r.action, r.subject, r.actor) for r in trail] == [
                ("catalogue.create", "catalogue/2", "alice"),
                ("catalogue.activate", "catalogue/2", "alice"),
                ("catalogue.activate", "catalogue/1", "alice"),
            ]
            assert trail[0].before is None and len(trail[0].after["source_sha256"]) == 64
            assert trail[1].before["active_version"] == 1
            assert trail[1].after["active_version"] == 2
            assert trail[2].after["active_version"] == 1
            history = [(a.version, a.action) for a in await versions.audit()]
            assert history == [(1, "seed"), (2, "create"), (2, "activate"), (1, "activate")]
            assert [a.action for a in await versions.audit(2)] == ["create", "activate"]
            # The rule sets' versions are apart: nothing of this is in theirs.
            assert await store.rule_sets() == []


async def test_one_active_version_is_enforced_by_the_database(database_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(database_url) as store:
            await store.catalogue_versions.seed(SEED, "seed")
            await store.catalogue_versions.create(CHEAPER, "", ALICE, None)

            async def second_active(conn: Any) -> None:
                await conn.execute(
                    "UPDATE catalogue_versions SET status = 'active' WHERE version = 2")

            with pytest.raises(asyncpg.UniqueViolationError):
                await store.bridge.run(second_active)
            assert await _statuses(store) == {1: "active", 2: "draft"}


async def test_activation_checked_against_a_rules_version_that_moved_writes_nothing(
        database_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(database_url) as store:
            await store.catalogue_versions.seed(SEED, "seed")
            rules = await store.seed_rules("description = 'r1'\n", "seed")
            await store.catalogue_versions.create(CHEAPER, "", ALICE, None)
            before = await store.audit_trail()

            moved = await store.catalogue_versions.activate(2, ALICE, rules.version + 1)
            assert moved == PartnerMoved(rules.version + 1, rules.version)
            assert await _statuses(store) == {1: "active", 2: "draft"}
            assert await store.audit_trail() == before

            done = await store.catalogue_versions.activate(2, ALICE, rules.version)
            assert done is not None and not isinstance(done, PartnerMoved)
            assert await _statuses(store) == {1: "retired", 2: "active"}
            # And the other way round: rules checked against catalogue 1 are refused now.
            draft = await store.create_rules("description = 'r2'\n", "", ALICE, None)
            assert isinstance(await store.activate_rules(draft.version, ALICE, 1), PartnerMoved)
            assert (await store.active_rules()) == rules


async def test_activation_notifies_every_listener(database_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(database_url) as store, open_store(database_url) as other:
            await store.catalogue_versions.seed(SEED, "seed")
            await store.catalogue_versions.create(CHEAPER, "", ALICE, None)
            heard: list[int] = []
            got = trio.Event()

            def on_version(version: int) -> None:
                heard.append(version)
                got.set()

            await other.catalogue_versions.listen(on_version)
            await store.catalogue_versions.activate(2, ALICE)
            await got.wait()
            assert heard == [2]
