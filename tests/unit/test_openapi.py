"""The OpenAPI document, built from an app that is not started: valid OpenAPI 3.1, complete
(every route of the url_map, every path variable, every problem code the API raises), its
examples valid against their own schemas; and request bodies refused by their Structs with the
problem naming the field (gestor/api/_decode.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource

import gestor.api
from gestor.api import GestorApp, create_app
from gestor.api._decode import body_as
from gestor.api._openapi import openapi_document, undocumented
from gestor.api._problem_codes import PROBLEM_CODES
from gestor.api._problems import ApiProblem
from gestor.api._registry import Answer, documented
from gestor.api._requests import (
    CATALOGUE_EXAMPLE,
    CATALOGUE_TOML_EXAMPLE,
    AdvanceRequest,
    CatalogueRequest,
    DryRunRequest,
    KeyRequest,
    NoteRequest,
    PurchaseRequest,
    RotateRequest,
    RulesRequest,
    TopupRequest,
    TransferRequest,
)
from gestor.api._resources import (
    CATALOGUE_CHECK_EXAMPLE,
    CATALOGUE_CREATED_EXAMPLE,
    OFFERS_EXAMPLE,
    TRANSACTION_EXAMPLE,
    TRANSFER_EXAMPLE,
    CatalogueCheck,
    CatalogueCreated,
    Offers,
    Transaction,
)
from gestor.api._sources import catalogue_source
from gestor.catalogue import parse_source
from gestor.settings import Settings, load_settings

API = Path(gestor.api.__file__).parent


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    config = Path(__file__).resolve().parents[2] / "config"
    return load_settings(config, environ={}, data_dir=tmp_path_factory.mktemp("data"))


def new_app(settings: Settings) -> GestorApp:
    """The app as `gestor serve` makes it (not started: no database, no platforms needed)."""
    return create_app(settings, "postgresql://127.0.0.1:1/none", "http://127.0.0.1:1")


@pytest.fixture(scope="module")
def app(settings: Settings) -> GestorApp:
    return new_app(settings)


@pytest.fixture(scope="module")
def document(app: GestorApp) -> dict[str, Any]:
    return openapi_document(app)


def _validator(document: dict[str, Any], ref: str) -> jsonschema.Validator:
    """A validator of the document's schema at `ref` (`#/components/schemas/...`)."""
    root = Resource.from_contents(
        {**document, "$schema": "https://json-schema.org/draft/2020-12/schema"})
    registry: Registry[Any] = Registry().with_resource("urn:doc", root)
    return jsonschema.Draft202012Validator({"$ref": "urn:doc" + ref}, registry=registry)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate_spec(document)  # raises on an invalid document


def test_every_route_of_the_app_is_in_the_document(app: GestorApp,
                                                   document: dict[str, Any]) -> None:
    assert undocumented(app) == []
    documented_ops = {(method.upper(), item["operationId"])
                      for item_path in document["paths"].values()
                      for method, item in item_path.items()}
    for rule in app.url_map.iter_rules():
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (method, rule.endpoint.rpartition(".")[2]) in documented_ops, rule.rule
        shown = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "{x}", rule.rule)
        assert shown in {re.sub(r"\{[^}]+\}", "{x}", p) for p in document["paths"]}
    assert len(documented_ops) >= 27


def test_a_route_without_documented_fails_the_document(settings: Settings) -> None:
    """What the registry is for: a route added without saying what it takes is caught, and
    so is a problem code that is not catalogued."""
    app = new_app(settings)

    @app.get("/v1/undocumented")
    async def undocumented_route() -> str:
        return "x"

    assert undocumented(app) == [("GET", "/v1/undocumented")]
    with pytest.raises(ValueError, match="undocumented"):
        openapi_document(app)

    app = new_app(settings)

    @app.get("/v1/bad-code")
    @documented("x", "x", Answer(200, None, "x"), problems=("NO_SUCH_CODE",))
    async def bad_code() -> str:
        return "x"

    with pytest.raises(ValueError, match="NO_SUCH_CODE"):
        openapi_document(app)


def test_every_problem_code_raised_by_the_api_is_catalogued() -> None:
    """Each code literal given to ApiProblem/problem (or _unauthorized) in gestor/api."""
    raised: set[str] = set()
    for source in API.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name not in ("ApiProblem", "problem", "_unauthorized", "whole_number"):
                continue
            for arg in node.args:
                if (isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                        and re.fullmatch(r"[A-Z][A-Z0-9_]+", arg.value)):
                    raised.add(arg.value)
    assert len(raised) >= 50
    assert raised - set(PROBLEM_CODES) == set()
    # INVALID_SINCE and INVALID_LIMIT are raised as f"INVALID_{field}" in _admin_alarms.
    assert {"INVALID_SINCE", "INVALID_LIMIT"} <= set(PROBLEM_CODES)


def test_every_call_lists_problems_with_an_example_each(document: dict[str, Any]) -> None:
    examples = document["components"]["examples"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                problem = response.get("content", {}).get("application/problem+json")
                if problem is None:
                    continue
                refs = problem["examples"]
                assert refs, (path, method, status)
                for code, ref in refs.items():
                    example = examples[ref["$ref"].rpartition("/")[2]]["value"]
                    assert (example["code"], example["status"]) == (code, int(status))
    purchase = document["paths"]["/v1/purchases"]["post"]
    codes = {c for r in purchase["responses"].values()
             for c in r.get("content", {}).get("application/problem+json", {})
             .get("examples", {})}
    assert {"INVALID_MSISDN", "INVALID_CHANNEL", "INVALID_BONO_ID", "UNKNOWN_FIELD",
            "MISSING_FIELD", "IDEMPOTENCY_KEY_REQUIRED", "PURCHASE_PENDING", "OUTCOME_UNKNOWN",
            "UNSUPPORTED_MEDIA_TYPE", "DUPLICATE_KEY", "RATE_LIMITED", "UNAUTHORIZED",
            "FORBIDDEN_SCOPE", "BUSY"} <= codes
    headers = {p["name"] for p in purchase["parameters"] if p["in"] == "header"}
    assert {"Idempotency-Key", "Prefer"} <= headers
    assert purchase["security"] == [{"bearer": []}, {}]
    admin = document["paths"]["/v1/admin/keys"]["post"]
    assert admin["security"] == [{"bearer": []}] and admin["x-gestor-role"] == "admin"


def test_every_example_is_valid_against_its_schema(document: dict[str, Any]) -> None:
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            bodies = [operation.get("requestBody", {}).get("content", {})]
            bodies += [r.get("content", {}) for r in operation["responses"].values()]
            for content in bodies:
                for media, entry in content.items():
                    if "example" not in entry or "$ref" not in entry["schema"]:
                        continue
                    errors = list(_validator(document, entry["schema"]["$ref"])
                                  .iter_errors(entry["example"]))
                    assert errors == [], (path, method, media, errors[0].message)
                    checked += 1
    for example in document["components"]["examples"].values():
        errors = list(_validator(document, "#/components/schemas/Problem")
                      .iter_errors(example["value"]))
        assert errors == []
    assert checked >= 30
    # The hand-written whole examples decode as their Structs.
    msgspec.convert(TRANSACTION_EXAMPLE, Transaction)
    msgspec.convert(OFFERS_EXAMPLE, Offers)
    msgspec.convert(CATALOGUE_CHECK_EXAMPLE, CatalogueCheck)
    msgspec.convert(CATALOGUE_CREATED_EXAMPLE, CatalogueCreated)


# -- request bodies through their Structs ---------------------------------------------------


def refused(model: type[msgspec.Struct], body: dict[str, Any]) -> tuple[int, str, str | None]:
    with pytest.raises(ApiProblem) as info:
        body_as(model, body)
    return info.value.status, info.value.code, info.value.field


@pytest.mark.parametrize(("model", "body", "code", "field"), [
    (PurchaseRequest, {"msisdn": "5491100000001", "bono_id": "X", "extra": 1},
     "UNKNOWN_FIELD", "extra"),
    (PurchaseRequest, {"bono_id": "X"}, "MISSING_FIELD", "msisdn"),
    (PurchaseRequest, {"msisdn": "5491100000001"}, "MISSING_FIELD", "bono_id"),
    (PurchaseRequest, {"msisdn": 5491100000001, "bono_id": "X"}, "INVALID_MSISDN", "msisdn"),
    (PurchaseRequest, {"msisdn": "0123", "bono_id": "X"}, "INVALID_MSISDN", "msisdn"),
    (PurchaseRequest, {"msisdn": "5491100000001", "bono_id": ""}, "INVALID_BONO_ID",
     "bono_id"),
    (PurchaseRequest, {"msisdn": "5491100000001", "bono_id": "X" * 65}, "INVALID_BONO_ID",
     "bono_id"),
    (PurchaseRequest, {"msisdn": "5491100000001", "bono_id": "X", "channel": "fax"},
     "INVALID_CHANNEL", "channel"),
    (DryRunRequest, {"msisdns": ["5491100000001", "12"]}, "INVALID_MSISDN", "msisdns[1]"),
    (DryRunRequest, {"msisdns": "5491100000001"}, "INVALID_FIELD", "msisdns"),
    (DryRunRequest, {"customers": [{"a": 1}, 3]}, "INVALID_FIELD", "customers[1]"),
    (NoteRequest, {"note": "x" * 501}, "INVALID_NOTE", "note"),
    (KeyRequest, {"name": 3}, "INVALID_FIELD", "name"),
    (KeyRequest, {"name": "k", "channels": ["x" * 65]}, "INVALID_FIELD", "channels[0]"),
    (RotateRequest, {"grace": None}, "INVALID_FIELD", "grace"),
    (RotateRequest, {"grace": True}, "INVALID_FIELD", "grace"),
    (RotateRequest, {"grace": -1}, "INVALID_FIELD", "grace"),
    (RulesRequest, {}, "MISSING_FIELD", "source"),
    (RulesRequest, {"source": " \n\t"}, "MISSING_FIELD", "source"),
    (RulesRequest, {"source": 7}, "MISSING_FIELD", "source"),
    (RulesRequest, {"source": "x", "description": "d" * 501}, "INVALID_DESCRIPTION",
     "description"),
    (RulesRequest, {"source": "x", "based_on": True}, "INVALID_BASED_ON", "based_on"),
    (RulesRequest, {"source": "x", "based_on": 2**31}, "INVALID_BASED_ON", "based_on"),
    (CatalogueRequest, {"source": ""}, "MISSING_FIELD", "source"),
    (CatalogueRequest, {"source": "  "}, "MISSING_FIELD", "source"),
    (CatalogueRequest, {"catalogue": [1]}, "INVALID_FIELD", "catalogue"),
    (CatalogueRequest, {"catalogue": "currency = 'ARS'"}, "INVALID_FIELD", "catalogue"),
    (CatalogueRequest, {"source": "x", "description": 7}, "INVALID_DESCRIPTION",
     "description"),
    (CatalogueRequest, {"source": "x", "based_on": 0}, "INVALID_BASED_ON", "based_on"),
    (CatalogueRequest, {"source": "x", "catalog": {}}, "UNKNOWN_FIELD", "catalog"),
])
def test_a_body_is_refused_naming_the_field(model: type[msgspec.Struct], body: dict[str, Any],
                                            code: str, field: str) -> None:
    assert refused(model, body) == (422, code, field)


def test_the_detail_is_the_schema_description() -> None:
    with pytest.raises(ApiProblem) as info:
        body_as(PurchaseRequest, {"msisdn": "12", "bono_id": "X"})
    assert info.value.detail.startswith("msisdn must be an E.164 number")
    schema = msgspec.json.schema(PurchaseRequest)["$defs"]["PurchaseRequest"]
    assert schema["properties"]["msisdn"]["x-problem"] == "INVALID_MSISDN"
    assert info.value.detail == f"msisdn must be {schema['properties']['msisdn']['description']}"


def test_a_valid_body_decodes() -> None:
    wanted = body_as(PurchaseRequest, {"msisdn": "+5491100000001", "bono_id": "X"})
    assert (wanted.msisdn, wanted.bono_id, wanted.channel) == ("+5491100000001", "X", None)
    assert body_as(RotateRequest, {}).grace == 86400


def test_a_catalogue_is_given_once_as_source_or_as_a_document() -> None:
    """`source` or `catalogue`: neither is a missing source, both is refused naming
    `catalogue`; a document is stored as its JSON text, which parses to the same catalogue."""
    for body, code, field in (({}, "MISSING_FIELD", "source"),
                              ({"description": "x"}, "MISSING_FIELD", "source"),
                              ({"source": "x", "catalogue": {}}, "INVALID_FIELD", "catalogue")):
        with pytest.raises(ApiProblem) as info:
            catalogue_source(body_as(CatalogueRequest, body))
        assert (info.value.status, info.value.code, info.value.field) == (422, code, field)
    assert catalogue_source(body_as(CatalogueRequest, {"source": "a = 1"})) == "a = 1"
    stored = catalogue_source(body_as(CatalogueRequest, {"catalogue": CATALOGUE_EXAMPLE}))
    assert parse_source(stored) == parse_source(CATALOGUE_TOML_EXAMPLE)
    assert len(parse_source(stored)) == 7


def test_the_catalogue_calls_are_documented(document: dict[str, Any]) -> None:
    """Each catalogue call: its version parameter, bodies (JSON and TOML) with an example,
    and its own problem codes under their statuses."""
    paths = document["paths"]
    assert set(paths["/v1/admin/catalogue"]) == {"get", "post"}
    for path in ("/v1/admin/catalogue/{version}", "/v1/admin/catalogue/{version}/activate"):
        (operation,) = paths[path].values()
        assert [(p["name"], p["in"], p["schema"]["minimum"]) for p in operation["parameters"]
                ] == [("version", "path", 1)]
        assert "CATALOGUE_NOT_FOUND" in _codes(operation, "404")
        assert "INVALID_VERSION" in _codes(operation, "400")
    for method, path in (("post", "/v1/admin/catalogue"),
                         ("post", "/v1/admin/catalogue/validate")):
        operation = paths[path][method]
        content = operation["requestBody"]["content"]
        assert content["application/json"]["schema"]["$ref"].endswith("/CatalogueRequest")
        assert content["application/json"]["example"]["source"] == CATALOGUE_TOML_EXAMPLE
        assert content["application/toml"]["example"] == CATALOGUE_TOML_EXAMPLE
        assert {"INVALID_CATALOGUE", "CATALOGUE_BREAKS_RULES", "MISSING_FIELD",
                "INVALID_FIELD", "UNKNOWN_FIELD", "INVALID_DESCRIPTION",
                "INVALID_BASED_ON"} <= _codes(operation, "422")
        assert operation["tags"] == ["Catalogue"]
    activate = paths["/v1/admin/catalogue/{version}/activate"]["post"]
    assert "VERSION_CONFLICT" in _codes(activate, "409")
    assert "CATALOGUE_BREAKS_RULES" in _codes(activate, "422")
    assert paths["/v1/admin/catalogue"]["post"]["x-gestor-role"] == "admin"
    assert paths["/v1/admin/catalogue/validate"]["post"]["x-gestor-role"] == "viewer"
    rules = paths["/v1/admin/rules"]["post"]["requestBody"]["content"]
    assert rules["application/toml"]["example"] == "description = 'weekend promo'\n"


def _codes(operation: dict[str, Any], status: str) -> set[str]:
    return set(operation["responses"][status]["content"]["application/problem+json"]
               ["examples"])
A, B = "5491100000011", "5491100000012"


@pytest.mark.parametrize(("model", "body", "code", "field"), [
    (TransferRequest, {"msisdn": A, "amount": 10}, "MISSING_FIELD", "beneficiary"),
    (TransferRequest, {"msisdn": A, "beneficiary": "12", "amount": 10}, "INVALID_MSISDN",
     "beneficiary"),
    (TransferRequest, {"msisdn": A, "beneficiary": B, "amount": 0}, "INVALID_AMOUNT",
     "amount"),
    (TransferRequest, {"msisdn": A, "beneficiary": B, "amount": 2**62 + 1}, "INVALID_AMOUNT",
     "amount"),
    (AdvanceRequest, {"msisdn": A, "amount": 1.5}, "INVALID_AMOUNT", "amount"),
    (AdvanceRequest, {"msisdn": A, "amount": True}, "INVALID_AMOUNT", "amount"),
    (AdvanceRequest, {"msisdn": A, "amount": "10"}, "INVALID_AMOUNT", "amount"),
    (AdvanceRequest, {"msisdn": A, "amount": 10, "beneficiary": B}, "UNKNOWN_FIELD",
     "beneficiary"),
    (TopupRequest, {"msisdn": A, "amount": 10}, "MISSING_FIELD", "reference"),
    (TopupRequest, {"msisdn": A, "amount": 10, "reference": ""}, "INVALID_REFERENCE",
     "reference"),
    (TopupRequest, {"msisdn": A, "amount": 10, "reference": "a b"}, "INVALID_REFERENCE",
     "reference"),
    (TopupRequest, {"msisdn": A, "amount": 10, "reference": "x" * 101}, "INVALID_REFERENCE",
     "reference"),
    (TopupRequest, {"msisdn": A, "amount": 10, "reference": "R1", "channel": "fax"},
     "INVALID_CHANNEL", "channel"),
    (PurchaseRequest, {"msisdn": A, "bono_id": "X", "beneficiary": "0123"}, "INVALID_MSISDN",
     "beneficiary"),
])
def test_a_movement_body_is_refused_naming_the_field(
        model: type[msgspec.Struct], body: dict[str, Any], code: str, field: str) -> None:
    assert refused(model, body) == (422, code, field)


def test_the_movements_are_documented(document: dict[str, Any]) -> None:
    """Each movement POST: its body Struct, its own codes and its body's, a body example
    valid against its schema, and the transaction's movement members in the answers."""
    for path, model in (("/v1/transfers", TransferRequest), ("/v1/advances", AdvanceRequest),
                        ("/v1/topups", TopupRequest)):
        post = document["paths"][path]["post"]
        body = post["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"].endswith("/" + model.__name__)
        msgspec.convert(body["example"], model)  # the example is a body the call takes
        codes = {c for r in post["responses"].values()
                 for c in r.get("content", {}).get("application/problem+json", {})
                 .get("examples", {})}
        assert {"MISSING_FIELD", "UNKNOWN_FIELD", "INVALID_MSISDN", "INVALID_AMOUNT",
                "INVALID_CHANNEL", "MOVEMENT_PENDING", "IDEMPOTENCY_KEY_REQUIRED",
                "IDEMPOTENCY_KEY_REUSED", "OUTCOME_UNKNOWN"} <= codes
        assert ("INVALID_BENEFICIARY" in codes) == (model is TransferRequest)
        assert ("INVALID_REFERENCE" in codes) == (model is TopupRequest)
        assert post["x-gestor-call"] == path.rpartition("/")[2]
        assert post["responses"]["200"]["content"]["application/json"]["schema"][
            "$ref"].endswith("/Transaction")
    keys = {document["paths"][p]["post"]["parameters"][0]["example"]
            for p in ("/v1/purchases", "/v1/transfers", "/v1/advances", "/v1/topups")}
    assert len(keys) == 4  # each call's example is a request of its own
    purchase = document["paths"]["/v1/purchases"]["post"]
    assert "beneficiary" in document["components"]["schemas"]["PurchaseRequest"]["properties"]
    assert {"INVALID_BENEFICIARY", "MOVEMENT_PENDING"} <= set(
        purchase["responses"]["422"]["content"]["application/problem+json"]["examples"]) | set(
        purchase["responses"]["409"]["content"]["application/problem+json"]["examples"])
    transaction = document["components"]["schemas"]["Transaction"]["properties"]
    assert {"kind", "beneficiary", "amount", "fee", "collected", "owed", "step", "reference",
            "catalogue_version", "role"} <= set(transaction)
    listing = document["paths"]["/v1/mobiles/{msisdn}/transactions"]["get"]
    assert "kind" in {p["name"] for p in listing["parameters"]}
    msgspec.convert(TRANSFER_EXAMPLE, Transaction)


def test_the_channels_of_the_schema_are_the_rules_channels() -> None:
    from gestor.api import _validate
    from gestor.rules import CHANNELS

    assert _validate.CHANNELS == CHANNELS
