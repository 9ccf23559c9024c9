"""The contract test: schemathesis reads /openapi.json from the app served on a real socket
(tests/integration/_served.py, with the platform simulator and a real database) and sends
each documented call examples generated from the document (valid ones, with keys minted for
it); every answer must be no 5xx and conform to the document: a documented status, content
type, headers and body schema.

Before the run, the test makes what the calls can find: a completed purchase and an
inconsistent one (with its open alarm); then each call with path parameters is also sent a
few examples on those (`KNOWN`), so that real transactions and alarms are held to the document
too. The websocket (`x-websocket`) is left to its own tests. Hypothesis drives from a worker thread
with `derandomize=True` (the same examples every run); the server runs on the test's trio loop.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import trio
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.errors import SerializationNotPossible
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gestor.store import KeyStore
from tests.integration._keys import bearer, mint
from tests.integration._served import Served, served
from tests.integration.conftest import set_faults

__all__ = ["served"]  # the fixture, imported for pytest

#: Examples per call and mode (valid input, then invalid input). Measured on the 2-core box:
#: see README "API reference".
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
KNOWN_EXAMPLES = 5
COMPLETED, INCONSISTENT = "5491100000081", "5491100000082"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture
def platform_settings() -> dict[str, Any]:
    return {}


async def buy(http: httpx.AsyncClient, key: str, msisdn: str) -> dict[str, Any]:
    response = await http.post(
        "/v1/purchases", json={"msisdn": msisdn, "bono_id": "DATA_2GB_7D"},
        headers={**bearer(key), "Idempotency-Key": f"contract-{msisdn}", "Prefer": "wait=10"})
    assert response.status_code in (200, 202), response.text
    tx: dict[str, Any] = response.json()
    return tx


async def test_every_answer_conforms_to_the_document(served: Served,
                                                     control: httpx.AsyncClient) -> None:
    keys = KeyStore(served.app.runtime.store.bridge)
    with trio.fail_after(600):
        _, admin = await mint(keys, "contract-admin", role="admin")
        _, channel = await mint(keys, "contract-channel", read_all=True)
        revoked, _ = await mint(keys, "contract-to-revoke")
        rotated, _ = await mint(keys, "contract-to-rotate")
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            document = (await http.get("/openapi.json")).json()
            completed = await buy(http, channel, COMPLETED)
            assert completed["state"] == "completed"
            await set_faults(control, {"prov": {"error_rate": 1.0},
                                       "ocs.refund": {"error_rate": 1.0}})
            inconsistent = await buy(http, channel, INCONSISTENT)
            assert inconsistent["state"] == "inconsistent"
            await set_faults(control, {"prov": {"error_rate": 0.0},
                                       "ocs.refund": {"error_rate": 0.0}})
            alarms = (await http.get("/v1/admin/alarms?state=open",
                                     headers=bearer(admin))).json()["alarms"]
            assert alarms, "the inconsistent purchase raised no alarm"
        known = {"id": completed["id"], "msisdn": INCONSISTENT, "version": 1,
                 "code": "NO_DATA_BONOS", "day": "2001-01-01"}
        known_by_path = {"/v1/admin/alarms/{id}/": {**known, "id": str(alarms[0]["id"])},
                         "/v1/admin/keys/{id}/revoke": {**known, "id": revoked},
                         "/v1/admin/keys/{id}/rotate": {**known, "id": rotated}}
        schema = schemathesis.openapi.from_dict(document)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == sum(len(item) for item in document["paths"].values())
        statuses: Counter[tuple[str, int]] = Counter()
        started = time.monotonic()

        def run(operation: Any, mode: GenerationMode, examples: int, key: str,
                session: requests.Session, path: dict[str, Any] | None = None,
                strategy: Any = None) -> None:
            if strategy is None:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path)

            @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                      print_blob=True, phases=(Phase.explicit, Phase.generate),
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def call(case: Any) -> None:
                response = case.call_and_validate(
                    base_url=served.url, session=session, headers=bearer(key), checks=CHECKS,
                    timeout=30)
                statuses[f"{operation.label} {mode.value}", response.status_code] += 1

            call()

        def run_all() -> None:
            session = requests.Session()
            for operation in operations:
                if operation.definition.raw.get("x-websocket"):
                    continue
                # An admin call, or one outside /v1 that needs a role (/metrics).
                key = (admin if operation.path.startswith("/v1/admin/")
                       or operation.definition.raw.get("x-gestor-role") else channel)
                # The document's own examples first (its body and parameters' `example`s):
                # each is a request that succeeds, whatever the generated ones hit.
                for strategy in operation.get_strategies_from_examples():
                    # (the TOML example of a rule set cannot be sent: it is generated)
                    with contextlib.suppress(SerializationNotPossible):
                        run(operation, GenerationMode.POSITIVE, 1, key, session,
                            strategy=strategy)
                for mode, examples in EXAMPLES.items():
                    if mode is GenerationMode.POSITIVE or _can_be_wrong(operation):
                        run(operation, mode, examples, key, session)
                names = [p["name"] for p in operation.definition.raw.get("parameters", ())
                         if p["in"] == "path"]
                if names and operation.path not in ("/docs/{asset}",
                                                    "/console/static/{asset}"):
                    values = next((v for prefix, v in known_by_path.items()
                                   if operation.path.startswith(prefix)), known)
                    run(operation, GenerationMode.POSITIVE, KNOWN_EXAMPLES, key, session,
                        {name: values[name] for name in names})

        await trio.to_thread.run_sync(run_all)
        elapsed = time.monotonic() - started
    print(f"contract: {sum(statuses.values())} calls in {elapsed:.1f} s")
    for (label, status), count in sorted(statuses.items()):
        print(f"  {label}: {status} x{count}")
    # The examples reached every call, and each documented success was seen for most.
    labels = {label.rpartition(" ")[0] for label, _ in statuses}
    assert len(labels) == len(operations) - 1
    succeeded = {label.rpartition(" ")[0] for label, status in statuses if status < 300}
    assert sorted(labels - succeeded) == []


def _can_be_wrong(operation: Any) -> bool:
    """Whether a call takes anything (parameters or a body) that can be generated invalid."""
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))
