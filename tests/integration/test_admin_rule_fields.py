"""Typed customer fields through the admin API: a rule set with a misspelt or mistyped field
of the data warehouse or the charging system is refused (422 INVALID_RULES naming the rule,
nothing stored), and a dry run's sample customer with such a field is a 422 naming it."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.integration.conftest import ADMIN_KEY
from tests.integration.test_api import MSISDN
from tests.ruletext import SEED

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TOML = {**ADMIN, "Content-Type": "application/toml"}


def with_rule(rule_id: str, when: str) -> str:
    return SEED + f"""
[[validation]]
id = "{rule_id}"
when = '{when}'
code = "X"
message = "x"
"""


@pytest.mark.parametrize(("when", "problem"), [
    ('customer.segmnt == "corporate"',  # dwh, misspelt
     "unknown customer field 'segmnt' (did you mean 'segment'?)"),
    ("customer.tenure_month < 3",  # dwh, misspelt
     "unknown customer field 'tenure_month' (did you mean 'tenure_months'?)"),
    ("customer.segment > 3",  # dwh, mistyped
     "found no matching overload for '_>_' applied to '(string, int)'"),
    ("customer.balanse > 0",  # ocs, misspelt
     "unknown customer field 'balanse' (did you mean 'balance'?)"),
    ('customer.balance == "x"',  # ocs, mistyped
     "found no matching overload for '_==_' applied to '(int, string)'"),
    ('customer.roaming == "yes"',  # ocs, mistyped
     "found no matching overload for '_==_' applied to '(bool, string)'"),
])
async def test_a_bad_customer_field_is_refused_naming_the_rule(
    client: Any, when: str, problem: str
) -> None:
    source = with_rule("typo_rule", when)
    with trio.fail_after(30):
        for path in ("/v1/admin/rules/validate", "/v1/admin/rules"):
            r = await client.post(path, data=source.encode(), headers=TOML)
            assert r.status_code == 422, await r.get_data()
            assert r.content_type == "application/problem+json"
            body = await r.get_json()
            assert (body["code"], body["field"]) == ("INVALID_RULES", "typo_rule")
            errors = [i for i in body["issues"] if i["severity"] == "error"]
            assert [(i["section"], i["rule_id"], i["field"]) for i in errors] == [
                ("validation", "typo_rule", "when")]
            assert problem in errors[0]["message"] and problem in body["detail"]
        r = await client.post("/v1/admin/rules/validate", json={"source": source}, headers=ADMIN)
        assert r.status_code == 422 and (await r.get_json())["field"] == "typo_rule"
        versions = await (await client.get("/v1/admin/rules", headers=ADMIN)).get_json()
        assert [v["version"] for v in versions["versions"]] == [1]  # nothing stored
        # The correct spelling is valid.
        fixed = with_rule("typo_rule", 'customer.segment == "corporate"')
        r = await client.post("/v1/admin/rules/validate", data=fixed.encode(), headers=TOML)
        assert r.status_code == 200 and (await r.get_json())["valid"] is True


@pytest.mark.parametrize(("customer", "field", "problem"), [
    ({"segmnt": "vip"}, "customers[0].segmnt", "unknown customer field 'segmnt'"),
    ({"segment": "vip", "balance": "10"}, "customers[0].balance",
     "customer.balance is int, got string"),
    ({"roaming": "no"}, "customers[0].roaming", "customer.roaming is bool, got string"),
])
async def test_a_dry_run_sample_customer_with_a_bad_field_is_refused(
    client: Any, customer: dict[str, Any], field: str, problem: str
) -> None:
    with trio.fail_after(30):
        r = await client.post("/v1/admin/rules/1/dry-run", headers=ADMIN,
                              json={"customers": [customer]})
        assert r.status_code == 422, await r.get_data()
        body = await r.get_json()
        assert (body["code"], body["field"]) == ("INVALID_FIELD", field)
        assert problem in body["detail"]


async def test_a_dry_run_sample_customer_may_leave_fields_out(client: Any) -> None:
    """An absent field is a run-time error of the rules reading it: visible, not a crash."""
    with trio.fail_after(30):
        r = await client.post("/v1/admin/rules/1/dry-run", headers=ADMIN, json={
            "msisdns": [MSISDN], "bono_id": "DATA_2GB_7D",
            "customers": [{"segment": "vip", "plan": "VIP_UNLIMITED"}]})
        assert r.status_code == 200, await r.get_data()
        real, sample = (await r.get_json())["results"]
        assert real["active"]["decision"]["approved"] is True
        assert sample["active"]["profile_id"] == "VIP"
        decision = sample["active"]["decision"]
        assert decision["approved"] is False
        assert any("rule error" in f["message"] for f in decision["failures"])
