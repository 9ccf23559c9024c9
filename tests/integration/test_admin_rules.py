"""Rules editable in production through the admin API: refusals that name the rule, drafts,
dry runs, atomic activation that changes listings and purchases without a restart, rollback,
audit, and the admin key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from gestor.api import GestorApp, create_app
from gestor.settings import load_settings
from gestor.simulator import SimulatorHandle
from tests.integration.conftest import ADMIN_KEY, set_faults
from tests.integration.test_api import MSISDN
from tests.ruletext import SEED, promo, with_first_operation

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Operator": "alice"}
CHANNEL_KEY = "channel-key-0123456789"
USSD_LIMIT = '''
[[validation]]
id = "ussd_small_only"
applies_to = 'channel == "ussd"'
when = "price <= 100000"
code = "USSD_LIMIT"
message = "Over USSD only bonos up to 1,000.00 can be bought"
'''


def new_rules() -> str:
    return with_first_operation(promo("DATA_2GB_7D", 50000)) + USSD_LIMIT


@pytest.fixture
async def app(database_url: str, simulator: SimulatorHandle, config_dir: Path,
              tmp_path: Path) -> Any:
    settings = attrs.evolve(load_settings(config_dir, environ={}, data_dir=tmp_path),
                            admin_key=ADMIN_KEY, api_keys={"ussd-gw": CHANNEL_KEY})
    application = create_app(settings, database_url, simulator.url)
    async with application.test_app():
        yield application


@pytest.fixture
def client(app: GestorApp) -> Any:
    return app.test_client()


CHANNEL = {"Authorization": f"Bearer {CHANNEL_KEY}"}


async def price_of(client: Any, bono: str, channel: str = "app") -> Any:
    r = await client.get(f"/v1/mobiles/{MSISDN}/bonos?channel={channel}", headers=CHANNEL)
    body = await r.get_json()
    return body["rules_version"], {b["id"]: b for b in body["bonos"]}[bono]


async def test_admin_calls_need_the_admin_key(client: Any) -> None:
    with trio.fail_after(20):
        r = await client.get("/v1/admin/rules")
        assert r.status_code == 401 and (await r.get_json())["code"] == "UNAUTHORIZED"
        r = await client.get("/v1/admin/rules", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        r = await client.get("/v1/admin/rules", headers=CHANNEL)
        assert r.status_code == 403 and (await r.get_json())["code"] == "FORBIDDEN_ROLE"
        r = await client.get("/v1/admin/rules", headers=ADMIN)
        assert r.status_code == 200
        body = await r.get_json()
        assert body["active_version"] == 1
        assert body["versions"][0]["status"] == "active"
        # Channel calls need a channel key once keys are configured.
        r = await client.get(f"/v1/mobiles/{MSISDN}/bonos")
        assert r.status_code == 401


@pytest.mark.parametrize(("broken", "rule"), [  # syntax, unknown variable, type errors
    ("when = 'customer.balance >'", "syntax_error"),
    ("when = 'nosuchvar > 1'", "unknown_variable"),
    ("when = 'channel > 3'", "type_error"),
    ("when = '\"text\"'", "not_boolean"),
])
async def test_invalid_rule_sets_are_refused_naming_the_rule(
    client: Any, broken: str, rule: str
) -> None:
    bad = SEED + f'''
[[validation]]
id = "{rule}"
{broken}
code = "X"
message = "x"
'''
    with trio.fail_after(20):
        for path in ("/v1/admin/rules/validate", "/v1/admin/rules"):
            r = await client.post(path, data=bad.encode(),
                                  headers={**ADMIN, "Content-Type": "application/toml"})
            assert r.status_code == 422, await r.get_data()
            problem = await r.get_json()
            assert problem["code"] == "INVALID_RULES" and problem["field"] == rule
            assert any(i["rule_id"] == rule for i in problem["issues"])
        versions = (await (await client.get("/v1/admin/rules", headers=ADMIN)).get_json())
        assert len(versions["versions"]) == 1  # nothing was stored


async def test_draft_dry_run_activate_and_roll_back(client: Any) -> None:
    with trio.fail_after(60):
        version, bono = await price_of(client, "DATA_2GB_7D")
        assert (version, bono["price"]) == (1, 60000)
        r = await client.post("/v1/admin/rules", headers=ADMIN,
                              json={"source": new_rules(), "description": "2GB promo"})
        assert r.status_code == 201
        draft = await r.get_json()
        assert draft["version"] == 2 and draft["status"] == "draft"
        assert draft["created_by"] == "admin"  # the key names the operator; X-Operator is ignored
        # A draft changes nothing yet.
        assert (await price_of(client, "DATA_2GB_7D"))[1]["price"] == 60000
        # Dry run: the same subscriber under the draft and under the active version.
        r = await client.post("/v1/admin/rules/2/dry-run", headers=ADMIN, json={
            "msisdns": [MSISDN], "channel": "ussd", "bono_id": "DATA_10GB_30D",
            "customers": [{"msisdn": "5491199999999", "segment": "vip", "plan": "VIP_UNLIMITED",
                           "balance": 10, "line_status": "active", "roaming": False,
                           "credit_limit": 2000000, "currency": "ARS", "tenure_months": 40,
                           "region": "AMBA", "device": "smartphone", "birthday_month": 1,
                           "language": "es"}]})
        assert r.status_code == 200, await r.get_data()
        dry = await r.get_json()
        first = dry["results"][0]
        assert first["changed"] is True
        assert first["active"]["decision"]["approved"] is True
        assert [f["code"] for f in first["draft"]["decision"]["failures"]] == ["USSD_LIMIT"]
        assert dry["results"][1]["active"]["profile_id"] == "VIP"
        # Activate: listing and purchase validation change at once, no restart.
        r = await client.post("/v1/admin/rules/2/activate", headers=ADMIN)
        assert r.status_code == 200 and (await r.get_json())["status"] == "active"
        version, bono = await price_of(client, "DATA_2GB_7D")
        assert (version, bono["price"]) == (2, 50000)
        r = await client.post("/v1/purchases", json={
            "msisdn": MSISDN, "bono_id": "DATA_10GB_30D", "channel": "ussd"},
            headers={**CHANNEL, "Idempotency-Key": "after-activation", "Prefer": "wait=5"})
        tx = await r.get_json()
        assert tx["state"] == "rejected" and tx["rules_version"] == 2
        assert [x["code"] for x in tx["reasons"]] == ["USSD_LIMIT"]
        # Roll back to version 1: the old behaviour is back.
        r = await client.post("/v1/admin/rules/1/activate", headers=ADMIN)
        assert r.status_code == 200
        version, bono = await price_of(client, "DATA_2GB_7D")
        assert (version, bono["price"]) == (1, 60000)
        listing = await (await client.get("/v1/admin/rules", headers=ADMIN)).get_json()
        assert [(v["version"], v["status"]) for v in listing["versions"]] == [
            (1, "active"), (2, "retired")]
        detail = await (await client.get("/v1/admin/rules/2", headers=ADMIN)).get_json()
        assert detail["source"] == new_rules()
        assert [(a["action"], a["actor"]) for a in detail["audit"]] == [
            ("create", "admin"), ("activate", "admin")]  # named by the key, not X-Operator
        r = await client.post("/v1/admin/rules/9/activate", headers=ADMIN)
        assert r.status_code == 404


async def test_a_purchase_in_flight_completes_under_one_version(
    client: Any, control: Any
) -> None:
    with trio.fail_after(60):
        await set_faults(control, {"ocs.debit": {"latency_ms": 800}})
        r = await client.post("/v1/admin/rules", headers=ADMIN, json={"source": new_rules()})
        assert r.status_code == 201
        result: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            async def purchase() -> None:
                r = await client.post("/v1/purchases", json={
                    "msisdn": MSISDN, "bono_id": "DATA_2GB_7D", "channel": "app"},
                    headers={**CHANNEL, "Idempotency-Key": "in-flight", "Prefer": "wait=10"})
                result["tx"] = await r.get_json()

            nursery.start_soon(purchase)
            while True:  # until the purchase is in flight (charging is slow)
                r = await client.get(f"/v1/mobiles/{MSISDN}/transactions?state=pending",
                                     headers=CHANNEL)
                if (await r.get_json())["transactions"]:
                    break
                await trio.sleep(0.02)
            r = await client.post("/v1/admin/rules/2/activate", headers=ADMIN)
            assert r.status_code == 200
        tx = result["tx"]
        assert tx["state"] == "completed"
        assert tx["rules_version"] == 1 and tx["price"] == 60000  # decided wholly under v1


async def test_restrictions_change_what_a_mobile_may_buy(client: Any) -> None:
    base = f"/v1/admin/mobiles/{MSISDN}/restrictions"
    with trio.fail_after(30):
        assert (await client.put(f"{base}/NO_DATA_BONOS", headers=CHANNEL)).status_code == 403
        _, bono = await price_of(client, "DATA_2GB_7D")  # the actor is live from here on
        assert bono["eligible"] is True
        r = await client.put(f"{base}/NO_DATA_BONOS", headers=ADMIN,
                             json={"reason": "parental control"})
        assert r.status_code == 200 and (await r.get_json())["code"] == "NO_DATA_BONOS"
        r = await client.put(f"{base}/bad code", headers=ADMIN)
        assert r.status_code == 422 and (await r.get_json())["field"] == "code"
        listed = await (await client.get(base, headers=ADMIN)).get_json()
        assert [x["code"] for x in listed["restrictions"]] == ["NO_DATA_BONOS"]
        assert "parental control" in listed["restrictions"][0]["reason"]

        async def eligibility() -> tuple[bool, bool]:
            _, data = await price_of(client, "DATA_2GB_7D")
            _, sms = await price_of(client, "SMS_200_30D")
            return data["eligible"], sms["eligible"]

        assert await eligibility() == (False, True)  # read your writes: no restart, no wait
        r = await client.post("/v1/purchases", json={"msisdn": MSISDN, "bono_id": "DATA_2GB_7D"},
                              headers={**CHANNEL, "Idempotency-Key": "restricted",
                                       "Prefer": "wait=5"})
        tx = await r.get_json()
        assert tx["state"] == "rejected"
        assert [x["code"] for x in tx["reasons"]] == ["DATA_BONOS_RESTRICTED"]
        assert (await client.delete(f"{base}/NO_DATA_BONOS", headers=ADMIN)).status_code == 204
        assert (await client.delete(f"{base}/NO_DATA_BONOS", headers=ADMIN)).status_code == 404
        assert await eligibility() == (True, True)
