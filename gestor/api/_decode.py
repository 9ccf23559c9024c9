"""A JSON body (already decoded strictly by `_body`) checked against its request Struct
(`_requests`), each refusal a 422 problem naming the field.

An unknown field is `UNKNOWN_FIELD`, a missing one `MISSING_FIELD`; any other refusal takes its
`code` (`x-problem`) and wording (`description`) from the JSON Schema of the Struct, the same
schema the OpenAPI document publishes: the innermost one found along the path at fault.
"""

from __future__ import annotations

import functools
import re
from typing import Any, TypeVar

import msgspec

from gestor.api._problems import ApiProblem

T = TypeVar("T", bound=msgspec.Struct)

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


@functools.cache
def _schema(model: type[msgspec.Struct]) -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(model)
    return schema


@functools.cache
def _shape(model: type[msgspec.Struct]) -> tuple[frozenset[str] | None, tuple[str, ...]]:
    """(the fields a body may have, None if any; those it must have), in declaration order."""
    fields = msgspec.structs.fields(model)
    allowed = (frozenset(f.encode_name for f in fields)
               if model.__struct_config__.forbid_unknown_fields else None)
    return allowed, tuple(f.encode_name for f in fields if f.required)


def body_as(model: type[T], body: dict[str, Any]) -> T:
    """`body` as a `model`, or the 422 problem that names what is wrong with it."""
    allowed, required = _shape(model)
    if allowed is not None and not allowed.issuperset(body):
        unknown = sorted(set(body) - allowed)
        raise ApiProblem(422, "UNKNOWN_FIELD", f"unknown field {unknown[0]!r}",
                         field=unknown[0])
    for name in required:
        if name not in body:
            raise ApiProblem(422, "MISSING_FIELD", f"{name} is required", field=name)
    try:
        return msgspec.convert(body, model)
    except msgspec.ValidationError as exc:
        raise refusal(model, str(exc)) from None


def refusal(model: type[msgspec.Struct], error: str) -> ApiProblem:
    """The problem for msgspec's `error` (`Expected ... - at `$.msisdns[0]``)."""
    match = _AT.match(error)
    assert match is not None  # the pattern matches any text
    message, path = match["message"], match["path"] or ""
    steps = [(m[1], m[2]) for m in _STEP.finditer(path)]
    field = path.lstrip(".") or "body"
    root = _schema(model)
    defs = root.get("$defs", {})
    code, description = "INVALID_FIELD", None
    node: dict[str, Any] | None = root
    for name, index in steps:
        node = _step(_resolve(node, defs), name, index, defs)
        if node is None:
            break
        for option in _options(node, defs):
            extra = option.get("x-problem")
            if extra is not None:
                code, description = extra, option.get("description")
    detail = f"{field} must be {description}" if description else f"{field}: {message}"
    return ApiProblem(422, code, detail, field=field)


def _resolve(node: dict[str, Any] | None, defs: dict[str, Any]) -> dict[str, Any] | None:
    while node is not None and "$ref" in node:
        node = defs.get(node["$ref"].rpartition("/")[2])
    return node


def _options(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """A schema and, for `X | None`, its non-null alternatives."""
    options = [node]
    for option in node.get("anyOf", []):
        resolved = _resolve(option, defs)
        if resolved is not None and resolved.get("type") != "null":
            options.append(resolved)
    return options


def _step(node: dict[str, Any] | None, name: str | None, index: str | None,
          defs: dict[str, Any]) -> dict[str, Any] | None:
    if node is None:
        return None
    for option in _options(node, defs):
        if name is not None and name in option.get("properties", {}):
            found: dict[str, Any] = option["properties"][name]
            return _resolve(found, defs)
        if index is not None and "items" in option:
            items: dict[str, Any] = option["items"]
            return _resolve(items, defs)
    return None
