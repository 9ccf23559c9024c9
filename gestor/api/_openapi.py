"""The OpenAPI 3.1 document of a running app, built from its `url_map` and what each route
declares with `@documented` (`_registry`): bodies and answers are the msgspec Structs that
validate them (`_requests`, `_resources`), so the document cannot drift from the code.

For each call it lists its parameters and headers, its security (an operator key for
/v1/admin, a channel key or the open mode elsewhere, the role or scope it needs), its answers
with an example each, and every problem code it can answer, grouped by status, with an example
of each: the route's own codes, those of its request Struct's fields (`x-problem`), and those
of its kind (authentication, strict JSON, outages).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata
from typing import TYPE_CHECKING, Any

import msgspec

from gestor.api._auth import ROUTE_CALLS, ROUTE_ROLES, WEBSOCKET_ROLES
from gestor.api._problem_codes import PROBLEM_CODES
from gestor.api._problems import _TITLES, PROBLEM_TYPE
from gestor.api._registry import Operation, Param, operation_of
from gestor.api._resources import Problem

if TYPE_CHECKING:
    from quart import Quart
    from werkzeug.routing import Rule

REF = "#/components/schemas/{name}"
EXAMPLE_REF = "#/components/examples/{name}"
_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_HIDDEN_METHODS = frozenset({"HEAD", "OPTIONS"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STRICT_JSON = ("INVALID_ENCODING", "INVALID_JSON", "DUPLICATE_KEY", "JSON_TOO_DEEP",
                "INVALID_NUMBER", "INVALID_STRING", "REQUEST_TIMEOUT")
_OUTAGE = ("SERVICE_UNAVAILABLE", "DATABASE_UNAVAILABLE")
_RESPONSE_HEADERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Location": ("where the resource created or answered lives", {"type": "string"}),
    "Idempotent-Replayed": ("`true`: an earlier request with this Idempotency-Key",
                            {"type": "string", "enum": ["true"]}),
    "Cache-Control": ("`no-store`: the answer holds a secret", {"type": "string"}),
    "Retry-After": ("seconds to wait before retrying", {"type": "string"}),
    "WWW-Authenticate": ("`Bearer realm=\"gestor\"`", {"type": "string"}),
}
_STATUS_TEXT = {101: "Switching protocols", 200: "OK", 201: "Created", 202: "Accepted",
                204: "No content"}

DESCRIPTION = """\
Gestor sells mobile bundles (bonos) through the operator's platforms.

**Keys.** `Authorization: Bearer <key>`: a channel key (`gestor keys create`) for the channel
calls, an operator key (role `viewer`, `operator` or `admin`) for `/v1/admin`. On loopback with
no channel key configured, channel calls need no key (the open mode of a developer's machine).

**Errors** are `application/problem+json` (RFC 9457) with a stable `code` and, for bad input,
the `field` at fault: each call lists the codes it can answer, with an example. A `503` or
`429` means nothing was done (retry after `Retry-After`), except `OUTCOME_UNKNOWN`: ask again
with the same `Idempotency-Key`.

Bodies are JSON (`Content-Type: application/json`), read strictly; amounts are integer minor
units (cents), times ISO 8601.
"""


def undocumented(app: Quart) -> list[tuple[str, str]]:
    """(method, rule) of every route whose view declares no `Operation`."""
    return [(method, rule.rule) for rule, method, operation in _routes(app)
            if operation is None]


def _routes(app: Quart) -> Iterable[tuple[Rule, str, Operation | None]]:
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        operation = operation_of(view) if view is not None else None
        for method in sorted((rule.methods or set()) - _HIDDEN_METHODS):
            yield rule, method, operation


def openapi_document(app: Quart) -> dict[str, Any]:
    """The document (a JSON-ready dict). Raises ValueError naming any undocumented route."""
    missing = undocumented(app)
    if missing:
        raise ValueError(f"routes without @documented: {missing}")
    operations = [(rule, method, op) for rule, method, op in _routes(app) if op is not None]
    models: list[type[msgspec.Struct]] = [Problem]
    for _, _, op in operations:
        models.extend(m for m in (op.body, *(a.body for a in op.answers)) if m is not None)
    models = list(dict.fromkeys(models))
    refs, schemas = msgspec.json.schema_components(models, ref_template=REF)
    ref_of = dict(zip(models, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, op in operations:
        path, item = _operation(rule, method, op, ref_of, schemas)
        paths.setdefault(path, {})[method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gestor",
            "version": _version(),
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": _tags(op.tag for _, _, op in operations),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "examples": problem_examples(),
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "an API key: `Authorization: Bearer gk_<id>_<secret>` (or a "
                               "bootstrap key from GESTOR_API_KEYS / GESTOR_ADMIN_KEY)",
            }},
        },
    }


#: The tags in the order the reference shows them, with what each groups.
TAGS = {
    "Purchases": "buy bonos, list what a mobile may buy, follow transactions",
    "Movements": "airtime transfers, balance advances and top-ups (transactions too)",
    "Alarms": "the live feed and the persisted alarms' lifecycle",
    "Catalogue": "bono catalogue versions: check against the rules, store, activate",
    "Rules": "rule-set versions: check, store, dry-run, activate",
    "Restrictions": "per-subscriber restrictions the rules see",
    "Keys": "API keys and their scopes or roles",
    "Audit": "who changed what, and when",
    "Operations": "statistics, metrics and reconciliation",
    "Health": "liveness and readiness",
    "Reference": "this document and its page",
}


def _tags(used: Iterable[str]) -> list[dict[str, str]]:
    names = dict.fromkeys(used)
    ordered = [t for t in TAGS if t in names] + [t for t in names if t not in TAGS]
    return [{"name": t, **({"description": TAGS[t]} if t in TAGS else {})} for t in ordered]


def _version() -> str:
    try:
        return metadata.version("gestor")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"


def _path_of(rule: Rule, params: dict[str, Param]) -> str:
    def shown(match: re.Match[str]) -> str:
        param = params.get(match[1])
        if param is None:
            raise ValueError(f"{rule.rule}: path parameter {match[1]!r} is not declared")
        return "{" + (param.shown or param.name) + "}"

    return _VARIABLE.sub(shown, rule.rule)


def _operation(rule: Rule, method: str, op: Operation, ref_of: dict[type, dict[str, Any]],
               schemas: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    path_params = {p.name: p for p in op.params if p.where == "path"}
    path = _path_of(rule, path_params)
    key = (method, rule.rule)
    item: dict[str, Any] = {
        "operationId": rule.endpoint.rpartition(".")[2],
        "summary": op.summary,
        "tags": [op.tag],
    }
    notes = [op.description] if op.description else []
    if rule.rule.startswith("/v1/admin/"):
        role = ROUTE_ROLES.get(key, "admin")
        notes.append(f"Needs an operator key with role `{role}` or above.")
        item["security"] = [{"bearer": []}]
        item["x-gestor-role"] = role
    elif op.websocket:
        role = WEBSOCKET_ROLES.get(rule.rule, "admin")
        notes.append(f"A websocket: needs an operator key with role `{role}` or above (or the "
                     "open mode).")
        item["security"] = [{"bearer": []}, {}]
        item["x-gestor-role"] = role
    elif rule.rule.startswith("/v1/"):
        call = ROUTE_CALLS.get(key)
        reads = "" if call == "purchase" else ", an operator key (it may read)"
        notes.append(f"Needs a channel key whose scopes include `call:{call}`{reads}, or the "
                     "open mode.")
        item["security"] = [{"bearer": []}, {}]
        item["x-gestor-call"] = call
    elif key in ROUTE_ROLES:  # outside /v1 with a role (/metrics): open in the open mode
        role = ROUTE_ROLES[key]
        notes.append(f"Needs an operator key with role `{role}` or above (or the open mode).")
        item["security"] = [{"bearer": []}, {}]
        item["x-gestor-role"] = role
    else:
        item["security"] = []
    item["description"] = "\n\n".join(notes)
    parameters = [_parameter(p) for p in op.params]
    if parameters:
        item["parameters"] = parameters
    codes = [*op.problems, *_kind_codes(rule, method, op)]
    if op.body is not None:
        item["requestBody"] = _request_body(op, ref_of[op.body], schemas)
        codes.extend(_body_codes(op.body, schemas))
    responses: dict[str, Any] = {}
    for answer in op.answers:
        response: dict[str, Any] = {
            "description": answer.description,
            "headers": _headers(answer.headers),
        }
        if answer.body is not None:
            example = answer.example
            if example is None:
                example = example_of(ref_of[answer.body], schemas)
            response["content"] = {"application/json": {"schema": ref_of[answer.body],
                                                        "example": example}}
        if answer.media:  # instead of JSON, or beside it (a report's CSV)
            response.setdefault("content", {}).update({media: {"schema": {
                "type": "object" if media.startswith("application/json") else "string"}}
                for media in answer.media})
        responses[str(answer.status)] = response
    for status, found in _by_status(codes).items():
        _add_problems(responses.setdefault(str(status), {"description": "",
                                                         "headers": _headers(())}),
                      status, found)
    item["responses"] = dict(sorted(responses.items()))
    if op.websocket:
        item["x-websocket"] = True
    return path, item


def _parameter(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.shown or param.name, "in": param.where,
                           "required": param.required or param.where == "path",
                           "description": param.description, "schema": param.schema}
    if param.example is not None:
        out["example"] = param.example
    return out


def _request_body(op: Operation, ref: dict[str, Any], schemas: dict[str, Any]
                  ) -> dict[str, Any]:
    example = op.body_example if op.body_example is not None else example_of(ref, schemas)
    content: dict[str, Any] = {"application/json": {"schema": ref, "example": example}}
    if op.toml is not None:
        content["application/toml"] = {
            "schema": {"type": "string", "description": op.toml.description},
            "example": op.toml.example,
        }
    return {"required": op.body_required, "content": content}


def _kind_codes(rule: Rule, method: str, op: Operation) -> list[str]:
    """The codes every route of this kind can answer, whatever it does."""
    codes: list[str] = []
    if rule.rule.startswith("/v1/"):
        codes += ["UNAUTHORIZED", "KEY_REVOKED:401", "KEY_EXPIRED", *_OUTAGE]
        if rule.rule.startswith("/v1/admin/"):
            codes.append("FORBIDDEN_ROLE")
        else:
            codes.append("INVALID_CLIENT_ID")
            codes.append("FORBIDDEN_ROLE" if op.websocket else "FORBIDDEN_SCOPE")
    elif (method, rule.rule) in ROUTE_ROLES:  # /metrics
        codes += ["UNAUTHORIZED", "KEY_REVOKED:401", "KEY_EXPIRED", "FORBIDDEN_ROLE"]
    if rule.arguments:
        codes.append("NOT_FOUND")  # a segment that cannot be one (an encoded '/')
    if method in _BODY_METHODS:
        codes += ["REQUEST_TOO_LARGE", "REQUEST_ENTITY_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE"]
        if op.body is not None:
            codes.extend(_STRICT_JSON)
    return codes


def _body_codes(model: type[msgspec.Struct], schemas: dict[str, Any]) -> list[str]:
    """The codes a request Struct refuses its fields with: `x-problem` anywhere in it."""
    codes: list[str] = []
    if model.__struct_config__.forbid_unknown_fields:
        codes.append("UNKNOWN_FIELD")
    if any(f.required for f in msgspec.structs.fields(model)):
        codes.append("MISSING_FIELD")
    codes.append("INVALID_FIELD")  # a type no field's own code covers

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "x-problem" in node:
                codes.append(node["x-problem"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schemas[model.__name__])
    return codes


def _by_status(codes: Iterable[str]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for entry in codes:
        code, _, only = entry.partition(":")
        known = PROBLEM_CODES.get(code)
        if known is None:
            raise ValueError(f"problem code {code!r} is not in _problem_codes.PROBLEM_CODES")
        for status in (int(only),) if only else known.statuses:
            if code not in found.setdefault(status, []):
                found[status].append(code)
    return dict(sorted(found.items()))


def _add_problems(response: dict[str, Any], status: int, codes: list[str]) -> None:
    listed = ", ".join(f"`{c}`" for c in codes)
    response["description"] = (f"{response['description']}; or a problem: {listed}"
                               if response["description"] else f"A problem: {listed}")
    if status in (429, 503):
        response["headers"].update(_headers(("Retry-After",)))
    if status == 401:
        response["headers"].update(_headers(("WWW-Authenticate",)))
    examples = {code: {"$ref": EXAMPLE_REF.format(name=_example_name(code, status))}
                for code in codes}
    response.setdefault("content", {})["application/problem+json"] = {
        "schema": {"$ref": REF.format(name="Problem")}, "examples": examples,
    }


def _example_name(code: str, status: int) -> str:
    """`CODE`, or `CODE_409` for a code answered with more than one status."""
    return code if len(PROBLEM_CODES[code].statuses) == 1 else f"{code}_{status}"


def problem_examples() -> dict[str, Any]:
    """An example of each problem code, once (the calls' answers refer to them)."""
    return {_example_name(c.code, status): {"summary": c.meaning,
                                            "value": problem_example(status, c.code)}
            for c in PROBLEM_CODES.values() for status in c.statuses}


def problem_example(status: int, code: str) -> dict[str, Any]:
    return {"type": PROBLEM_TYPE + code.lower().replace("_", "-"),
            "title": _TITLES.get(status, "Error"), "status": status, "code": code,
            "detail": PROBLEM_CODES[code].meaning}


def _headers(names: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Gestor-Worker": {"description": "the process id of the worker that answered",
                          "schema": {"type": "string"}},
        "Request-Id": {"description": "this request's id (the client's `X-Request-Id` or "
                       "`Request-Id` if sane, else generated), also in its log lines and as "
                       "`request_id` in a problem body", "schema": {"type": "string"}}}
    for name in names:
        description, schema = _RESPONSE_HEADERS[name]
        out[name] = {"description": description, "schema": schema}
    return out


# -- examples from the schemas ------------------------------------------------------------------

def example_of(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> Any:
    """A value of `schema`: its fields' own examples where they give one."""
    if "$ref" in schema:
        return example_of(schemas[schema["$ref"].rpartition("/")[2]], schemas, depth + 1)
    if "examples" in schema:
        return schema["examples"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        return example_of(options[0], schemas, depth) if options else None
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: example_of(sub, schemas, depth + 1) for name, sub in properties.items()
                if name in schema.get("required", ()) or depth < 3}
    if kind == "array":
        return [example_of(schema.get("items", {}), schemas, depth + 1)] if depth < 4 else []
    return {"string": "text", "integer": 1, "number": 1.0, "boolean": True,
            "null": None}.get(kind) if isinstance(kind, str) else None
