"""The audit trail through the real API (hypercorn on a loopback socket, real PostgreSQL): each
admin action's entry (actor, action, subject, before, after), its listing and filters, alarm
acknowledgement; a refused action writes nothing; a change that fails leaves no entry, and an
entry that cannot be written leaves no change (one transaction); and `gestor audit` reads the
same trail."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio

from gestor.cli._audit import render_table
from gestor.keys import new_key
from gestor.model import Actor, Alarm, NewAlarm, Severity
from gestor.store import KeyStore, NewKey
from tests.e2e._proc import ROOT, clean_env
from tests.integration._served import ADMIN, PROBLEM, Served, served
from tests.ruletext import SEED

__all__ = ["served"]  # the fixture, imported for pytest

#: Operator keys (admin role) named alice and bob, minted for each test (`_operators`): the
#: audit trail names whoever's key made the change.
ALICE: dict[str, str] = {}
BOB: dict[str, str] = {}


@pytest.fixture
async def operators(served: Served) -> None:
    keys = KeyStore(served.app.runtime.store.bridge)
    for name, headers in (("alice", ALICE), ("bob", BOB)):
        key_id, raw, hashed = new_key()
        assert await keys.create(NewKey(key_id, name, "operator", hashed, role="admin"),
                                 Actor("test", "test")) is not None
        headers.clear()
        headers["Authorization"] = f"Bearer {raw}"
        _KEY_IDS[name] = key_id


_KEY_IDS: dict[str, str] = {}
TOML = {"Content-Type": "application/toml"}
MSISDN = "5491100000001"
RESTRICTION = f"/v1/admin/mobiles/{MSISDN}/restrictions/NO_DATA_BONOS"
SUBJECT = f"mobiles/{MSISDN}/restrictions/NO_DATA_BONOS"


async def trail(http: httpx.AsyncClient, query: str = "", *, minted: bool = False
                ) -> list[dict[str, Any]]:
    """The trail, without the minting of the test's own operator keys unless `minted`."""
    r = await http.get(f"/v1/admin/audit{query}", headers=ADMIN)
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["entries"]
    return [e for e in entries if minted or e["actor_id"] != "test"]


async def last_entry(http: httpx.AsyncClient) -> dict[str, Any]:
    return (await trail(http))[-1]


def by_alice(entry: dict[str, Any], action: str, subject: str) -> None:
    assert (entry["actor_id"], entry["actor"], entry["action"], entry["subject"]) == (
        _KEY_IDS["alice"], "alice", action, subject)
    assert abs(datetime.fromisoformat(entry["at"]) - datetime.now(UTC)) < timedelta(minutes=1)


async def open_alarm(served: Served, platform: str = "prov") -> Alarm:
    return await served.app.runtime.alarms.raise_alarm(NewAlarm(
        "platform_down", Severity.CRITICAL, f"{platform} down", details={"platform": platform}))


async def test_each_admin_action_is_in_the_trail(
    operators: None, served: Served) -> None:
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=served.url, timeout=20) as http:
            assert await trail(http) == []

            # rules.create: the new version, and its source's digest.
            r = await http.post("/v1/admin/rules", content=SEED, headers={**ALICE, **TOML})
            assert r.status_code == 201, r.text
            entry = await last_entry(http)
            by_alice(entry, "rules.create", "rules/2")
            assert entry["before"] is None
            assert entry["after"]["version"] == 2 and entry["after"]["status"] == "draft"
            assert entry["after"]["created_by"] == "alice"
            assert entry["after"]["source_sha256"] == hashlib.sha256(SEED.encode()).hexdigest()

            # rules.activate: the version's status and the active version, before and after.
            r = await http.post("/v1/admin/rules/2/activate", headers=ALICE)
            assert r.status_code == 200, r.text
            entry = await last_entry(http)
            by_alice(entry, "rules.activate", "rules/2")
            assert (entry["before"]["status"], entry["before"]["active_version"]) == ("draft", 1)
            assert (entry["after"]["status"], entry["after"]["active_version"]) == ("active", 2)
            assert entry["after"]["activated_by"] == "alice"
            count = len(await trail(http))
            r = await http.post("/v1/admin/rules/2/activate", headers=ALICE)
            assert r.status_code == 200  # already active: nothing changed, nothing recorded
            assert len(await trail(http)) == count

            # restriction.put, new then replaced; restriction.delete with what was deleted.
            r = await http.put(RESTRICTION, headers=ALICE,
                               json={"reason": "parental control", "until": "2030-01-01T00:00:00Z"})
            assert r.status_code == 200, r.text
            first = await last_entry(http)
            by_alice(first, "restriction.put", SUBJECT)
            assert first["before"] is None
            assert first["after"] == {"msisdn": MSISDN, **{k: r.json()[k] for k in (
                "code", "reason", "until", "created_at")}}
            assert first["after"]["reason"] == "parental control (by alice)"
            r = await http.put(RESTRICTION, headers=ALICE, json={"reason": "asked by the owner"})
            assert r.status_code == 200, r.text
            second = await last_entry(http)
            by_alice(second, "restriction.put", SUBJECT)
            assert second["before"] == first["after"]
            assert second["after"]["until"] is None
            assert second["after"]["reason"] == "asked by the owner (by alice)"
            r = await http.delete(RESTRICTION, headers=ALICE)
            assert r.status_code == 204
            deleted = await last_entry(http)
            by_alice(deleted, "restriction.delete", SUBJECT)
            assert deleted["before"] == second["after"] and deleted["after"] is None

            # alarm.acknowledge: who and when on the alarm; it stays open.
            down = await open_alarm(served)
            r = await http.post(f"/v1/admin/alarms/{down.id}/acknowledge", headers=ALICE,
                                json={"note": "looking at prov"})
            assert r.status_code == 200, r.text
            acked = r.json()
            assert acked["state"] == "open"
            assert acked["acknowledged"]["by"] == "alice"
            assert acked["acknowledged"]["note"] == "looking at prov"
            entry = await last_entry(http)
            by_alice(entry, "alarm.acknowledge", f"alarms/{down.id}")
            assert entry["before"] == {"id": down.id, "kind": "platform_down", "state": "open",
                                       "resolved_by": None, "resolved_at": None,
                                       "acknowledged": None}
            assert entry["after"] == {**entry["before"], "acknowledged": acked["acknowledged"]}

            # alarm.resolve: from open (acknowledged) to resolved, naming the resolution.
            r = await http.post(f"/v1/admin/alarms/{down.id}/resolve", headers=ALICE,
                                json={"note": "prov restarted"})
            assert r.status_code == 200, r.text
            resolution = r.json()
            entry = await last_entry(http)
            by_alice(entry, "alarm.resolve", f"alarms/{down.id}")
            assert entry["before"] == {"id": down.id, "kind": "platform_down", "state": "open",
                                       "resolved_by": None, "resolved_at": None,
                                       "acknowledged": acked["acknowledged"]}
            assert entry["after"]["state"] == "resolved"
            assert entry["after"]["resolved_by"] == resolution["id"]
            assert entry["after"]["acknowledged"] == acked["acknowledged"]

            # The whole trail, in order; filters; pages.
            everything = await trail(http)
            assert [e["action"] for e in everything] == [
                "rules.create", "rules.activate", "restriction.put", "restriction.put",
                "restriction.delete", "alarm.acknowledge", "alarm.resolve"]
            ids = [e["id"] for e in everything]
            assert ids == sorted(ids)
            assert [e["id"] for e in await trail(http, "?action=restriction.")] == ids[2:5]
            assert [e["id"] for e in await trail(http, "?action=restriction.put")] == ids[2:4]
            assert await trail(http, "?actor=alice") == everything
            assert await trail(http, f"?actor={_KEY_IDS['alice']}") == everything
            assert await trail(http, "?actor=bob") == []
            future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            assert await trail(http, "?" + str(httpx.QueryParams(since=future))) == []
            past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
            assert await trail(http, "?" + str(httpx.QueryParams(since=past))) == everything
            paged: list[dict[str, Any]] = []
            link: str | None = "/v1/admin/audit?limit=3"
            while link is not None:
                r = await http.get(link, headers=ADMIN)
                assert r.status_code == 200, r.text
                paged += r.json()["entries"]
                link = r.json()["next"]
            assert [e for e in paged if e["actor_id"] != "test"] == everything
            r = await http.get(f"/v1/admin/audit?action=rules.&after={ids[0]}", headers=ADMIN)
            assert [e["id"] for e in r.json()["entries"]] == [ids[1]]


async def test_acknowledged_alarms_are_listed_and_refused_twice(
    operators: None, served: Served) -> None:
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=served.url, timeout=20) as http:
            ocs, dwh = await open_alarm(served, "ocs"), await open_alarm(served, "dwh")
            r = await http.post(f"/v1/admin/alarms/{ocs.id}/acknowledge", headers=ALICE)
            assert r.status_code == 200, r.text
            assert r.json()["acknowledged"]["note"] == ""

            async def listed(state: str) -> list[int]:
                r = await http.get(f"/v1/admin/alarms?state={state}", headers=ADMIN)
                assert r.status_code == 200, r.text
                return [a["id"] for a in r.json()["alarms"]]

            assert await listed("acknowledged") == [ocs.id]
            assert await listed("unacknowledged") == [dwh.id]
            assert await listed("open") == [ocs.id, dwh.id]
            r = await http.post(f"/v1/admin/alarms/{ocs.id}/acknowledge", headers=ADMIN)
            assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
            problem = r.json()
            assert problem["code"] == "ALARM_ALREADY_ACKNOWLEDGED" and problem["field"] == "id"
            assert "alice" in problem["detail"]
            assert problem["acknowledged"]["by"] == "alice"
            r = await http.post(f"/v1/admin/alarms/{ocs.id}/resolve", headers=ADMIN)
            assert r.status_code == 200  # an acknowledged alarm is still open
            assert await listed("acknowledged") == []
            assert await listed("resolved") == [ocs.id]
            r = await http.get("/v1/admin/alarms?state=resolved", headers=ADMIN)
            assert r.json()["alarms"][0]["acknowledged"]["by"] == "alice"  # kept
            r = await http.post(f"/v1/admin/alarms/{ocs.id}/acknowledge", headers=ADMIN)
            assert r.status_code == 409 and r.json()["code"] == "ALARM_NOT_OPEN"
            r = await http.get("/v1/admin/alarms?state=later", headers=ADMIN)
            assert r.status_code == 422 and r.json()["field"] == "state"


async def test_a_refused_action_writes_nothing(
    operators: None, served: Served) -> None:
    with trio.fail_after(90):
        event = await served.app.runtime.alarms.raise_alarm(
            NewAlarm("platform_recovered", Severity.INFO, "ocs is back"))
        down = await open_alarm(served)
        async with httpx.AsyncClient(base_url=served.url, timeout=20) as http:
            r = await http.post(f"/v1/admin/alarms/{down.id}/resolve", headers=ADMIN)
            assert r.status_code == 200
            refused: list[tuple[str, str, dict[str, Any], Any, int, str]] = [
                ("POST", "/v1/admin/rules", {**ALICE, **TOML}, "[[profiling]\n", 422,
                 "INVALID_RULES"),
                ("POST", "/v1/admin/rules", TOML, SEED, 401, "UNAUTHORIZED"),
                ("POST", "/v1/admin/rules/99/activate", ALICE, None, 404, "RULES_NOT_FOUND"),
                ("POST", "/v1/admin/rules/1/activate", {}, None, 401, "UNAUTHORIZED"),
                ("PUT", RESTRICTION, ALICE, {"reason": 5}, 422, "INVALID_REASON"),
                ("PUT", RESTRICTION, ALICE, {"until": "soon"}, 422, "INVALID_TIME"),
                ("PUT", RESTRICTION.replace(MSISDN, "12"), ALICE, {}, 422, "INVALID_MSISDN"),
                ("PUT", RESTRICTION, {}, {}, 401, "UNAUTHORIZED"),
                ("DELETE", RESTRICTION, ALICE, None, 404, "RESTRICTION_NOT_FOUND"),
                ("POST", f"/v1/admin/alarms/{down.id}/acknowledge", ALICE, None, 409,
                 "ALARM_NOT_OPEN"),
                ("POST", f"/v1/admin/alarms/{event.id}/acknowledge", ALICE, None, 409,
                 "ALARM_NOT_OPEN"),
                ("POST", f"/v1/admin/alarms/{down.id}/resolve", ALICE, None, 409,
                 "ALARM_NOT_OPEN"),
                ("POST", "/v1/admin/alarms/999999/acknowledge", ALICE, None, 404,
                 "ALARM_NOT_FOUND"),
                ("POST", "/v1/admin/alarms/0/acknowledge", ALICE, None, 400, "INVALID_ALARM_ID"),
                ("POST", f"/v1/admin/alarms/{down.id}/acknowledge", ALICE, {"note": 1}, 422,
                 "INVALID_NOTE"),
                ("POST", f"/v1/admin/alarms/{down.id}/acknowledge", ALICE, {"who": "me"}, 422,
                 "UNKNOWN_FIELD"),
                ("POST", f"/v1/admin/alarms/{down.id}/acknowledge", {}, None, 401,
                 "UNAUTHORIZED"),
            ]
            for method, path, headers, body, status, code in refused:
                before = await served.counts()
                content = body if isinstance(body, str) else None
                r = await http.request(method, path, headers=headers, content=content,
                                       json=None if content is not None or body is None
                                       else body)
                assert (r.status_code, r.json()["code"]) == (status, code), (method, path, r.text)
                assert r.headers["content-type"] == PROBLEM
                assert await served.counts() == before, (method, path)
            assert [e["action"] for e in await trail(http)] == ["alarm.resolve"]


async def test_bad_audit_queries_name_the_field(
    operators: None, served: Served) -> None:
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=served.url, timeout=20) as http:
            for query, field in [("since=yesterday", "since"), ("since=0001-01-01", "since"),
                                 ("actor=a%00b", "actor"), ("actor=" + "x" * 129, "actor"),
                                 ("action=Rules", "action"), ("action=rules..create", "action"),
                                 ("after=-1", "after"), ("after=%C2%B2", "after"),
                                 ("after=" + "9" * 30, "after"), ("limit=0", "limit"),
                                 ("limit=501", "limit"), ("limit=x", "limit")]:
                r = await http.get(f"/v1/admin/audit?{query}", headers=ADMIN)
                assert r.status_code == 422, (query, r.text)
                assert r.headers["content-type"] == PROBLEM
                assert r.json()["field"] == field, query
            r = await http.get("/v1/admin/audit")
            assert r.status_code == 401 and r.json()["field"] == "Authorization"
            r = await http.get("/v1/admin/audit?action=keys.&actor=nobody&since=2020-01-01",
                               headers=ADMIN)
            assert r.status_code == 200 and r.json() == {"entries": [], "next": None}


async def test_concurrent_changes_make_one_consistent_history(
    operators: None, served: Served) -> None:
    """Changes racing on one subject: each entry's `before` is the previous entry's `after`,
    in id order; of acknowledgements racing on one alarm, one wins and is recorded."""
    with trio.fail_after(90):
        down = await open_alarm(served)
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            async def put(i: int) -> None:
                r = await http.put(RESTRICTION, headers=ALICE, json={"reason": f"r{i}"})
                statuses.append(r.status_code)

            async def acknowledge() -> None:
                r = await http.post(f"/v1/admin/alarms/{down.id}/acknowledge", headers=ALICE)
                statuses.append(r.status_code)

            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(put, i)
                for _ in range(5):
                    nursery.start_soon(acknowledge)
            assert sorted(statuses) == [200] * 9 + [409] * 4
            puts = await trail(http, "?action=restriction.put")
            assert len(puts) == 8 and puts[0]["before"] is None
            assert all(b["before"] == a["after"] for a, b in itertools.pairwise(puts))
            [ack] = await trail(http, "?action=alarm.acknowledge")
            assert ack["before"]["acknowledged"] is None and ack["after"]["acknowledged"]
            r = await http.get(f"/v1/admin/mobiles/{MSISDN}/restrictions", headers=ADMIN)
            assert r.json()["restrictions"][0]["reason"] == puts[-1]["after"]["reason"]


# -- one transaction: a failure on either side leaves neither ---------------------------------

async def refuse_commits_on(served: Served, table: str) -> None:
    """Make every transaction that writes `table` fail at COMMIT, after all its statements ran
    (a deferred constraint trigger): what else it wrote must be rolled back with it."""
    async def create(conn: Any) -> None:
        await conn.execute(
            "CREATE OR REPLACE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused at commit by the test'; END $$")
        await conn.execute(
            f"CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT OR UPDATE OR DELETE ON {table}"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()")

    await served.app.runtime.store.bridge.run(create)


async def allow_commits_on(served: Served, table: str) -> None:
    async def drop(conn: Any) -> None:
        await conn.execute(f"DROP TRIGGER refuse_commit ON {table}")

    await served.app.runtime.store.bridge.run(drop)


Action = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def _state(served: Served) -> dict[str, Any]:
    """What the actions below change, as the database has it."""
    store = served.app.runtime.store
    return {
        "counts": await served.counts(),
        "restrictions": [r.as_dict() for r in await store.restrictions(MSISDN)],
        "rules": [r.summary() for r in await store.rule_sets()],
        "alarms": [(a.id, a.lifecycle()) for a in await store.list_alarms()],
    }


@pytest.mark.parametrize("table", ["audit", "restrictions", "rule_sets", "alarms"])
async def test_a_failed_change_leaves_no_entry_and_a_failed_entry_no_change(
        operators: None, served: Served, table: str) -> None:
    with trio.fail_after(120):
        async with httpx.AsyncClient(base_url=served.url, timeout=20) as http:
            r = await http.post("/v1/admin/rules", content=SEED, headers={**ADMIN, **TOML})
            assert r.status_code == 201
            r = await http.put(RESTRICTION.replace("NO_DATA", "OLD"), headers=ADMIN, json={})
            assert r.status_code == 200
            down = await open_alarm(served)
            other = await open_alarm(served, "ocs")
            r = await http.post(f"/v1/admin/alarms/{other.id}/acknowledge", headers=ADMIN)
            assert r.status_code == 200
            actions: dict[str, tuple[str, Action]] = {
                "rules.create": ("rule_sets", lambda h: h.post(
                    "/v1/admin/rules", content=SEED, headers={**ALICE, **TOML})),
                "rules.activate": ("rule_sets", lambda h: h.post(
                    "/v1/admin/rules/2/activate", headers=ALICE)),
                "restriction.put": ("restrictions", lambda h: h.put(
                    RESTRICTION, headers=ALICE, json={"reason": "r"})),
                "restriction.delete": ("restrictions", lambda h: h.delete(
                    RESTRICTION.replace("NO_DATA", "OLD"), headers=ALICE)),
                "alarm.acknowledge": ("alarms", lambda h: h.post(
                    f"/v1/admin/alarms/{down.id}/acknowledge", headers=ALICE)),
                "alarm.resolve": ("alarms", lambda h: h.post(
                    f"/v1/admin/alarms/{other.id}/resolve", headers=ALICE)),
            }
            chosen = {name: act for name, (changes, act) in actions.items()
                      if table in {"audit", changes}}
            assert chosen
            await refuse_commits_on(served, table)
            for name, act in chosen.items():
                before = await _state(served)
                r = await act(http)
                assert r.status_code == 500, (name, r.text)
                assert r.json()["code"] == "INTERNAL_ERROR"
                assert await _state(served) == before, name
            assert served.app.runtime.rulebook.current.version == 1
            # The same actions go through once commits are allowed again, each in the trail.
            await allow_commits_on(served, table)
            for name, act in chosen.items():
                r = await act(http)
                assert r.status_code in (200, 201, 204), (name, r.text)
                assert (await last_entry(http))["action"] == name


# -- the command line -------------------------------------------------------------------------

async def gestor_audit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "gestor", "audit", *args], cwd=ROOT, env=env,
        capture_stdout=True, capture_stderr=True, check=False)


async def test_gestor_audit_reads_the_trail(
    operators: None, served: Served, database_url: str) -> None:
    env = clean_env(GESTOR_DATABASE_URL=database_url)
    with trio.fail_after(120):
        async with httpx.AsyncClient(base_url=served.url, timeout=20) as http:
            done = await gestor_audit("--actor", "alice", env=env)
            assert done.returncode == 0, done.stderr.decode()
            assert done.stdout.decode() == "no audit entries match\n"
            r = await http.put(RESTRICTION, headers=ALICE, json={"reason": "fraud check"})
            assert r.status_code == 200
            r = await http.delete(RESTRICTION, headers=BOB)
            assert r.status_code == 204
            r = await http.post("/v1/admin/rules", content=SEED, headers={**ALICE, **TOML})
            assert r.status_code == 201
            everything = await trail(http, minted=True)

        done = await gestor_audit("--json", env=env)
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout) == everything
        done = await gestor_audit("--json", "--action", "restriction.", "--actor", "bob",
                                  env=env)
        assert [e["action"] for e in json.loads(done.stdout)] == ["restriction.delete"]
        done = await gestor_audit("--since", (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                                  "--json", env=env)
        assert json.loads(done.stdout) == []

        done = await gestor_audit(env=env)
        assert done.returncode == 0, done.stderr.decode()
        lines = done.stdout.decode().splitlines()
        assert lines[0].split() == ["ID", "AT", "(UTC)", "ACTOR", "ACTION", "SUBJECT", "CHANGE"]
        assert lines[-1] == "5 entries"  # the 2 test keys' minting, then ours
        put, delete, create = lines[3:6]
        assert f"alice ({_KEY_IDS['alice']})" in put and "restriction.put" in put and SUBJECT in put
        assert "created: reason=fraud check (by alice), created_at=" in put
        assert f"bob ({_KEY_IDS['bob']})" in delete
        assert "deleted: reason=fraud check (by alice)" in delete
        assert "rules.create" in create and "rules/2" in create
        # In a terminal, the change is cut to its width.
        narrow = render_table(json.loads((await gestor_audit("--json", env=env)).stdout), 180)
        assert all(len(line) <= 180 for line in narrow.splitlines())
        assert narrow.splitlines()[1].endswith("…")

        for args, status, text in [
            (["--since", "yesterday"], 2, "gestor: --since is not an ISO 8601 time: 'yesterday'"
                                          " (command line)"),
            (["--action", "Rules"], 2, "gestor: --action must be"),
        ]:
            done = await gestor_audit(*args, env=env)
            assert done.returncode == status
            assert done.stderr.decode().startswith(text) and done.stderr.count(b"\n") == 1
        done = await gestor_audit(env=clean_env(GESTOR_DATABASE_URL="postgresql://127.0.0.1:1/x"))
        assert done.returncode == 1
        error = done.stderr.decode()
        assert error.startswith("gestor: cannot read the audit trail: cannot connect to the "
                                "database: ")
        assert error.endswith(" (postgresql://127.0.0.1:1/x)\n") and error.count("\n") == 1
