"""Strict JSON bodies and media types (gestor.api._body), without a server."""

from __future__ import annotations

from typing import Any

import pytest

from gestor.api import ApiProblem
from gestor.api._body import MAX_DEPTH, check_media_type, json_object, json_value


def refusal(raw: bytes) -> tuple[int, str, str | None]:
    with pytest.raises(ApiProblem) as info:
        json_value(raw)
    return info.value.status, info.value.code, info.value.field


@pytest.mark.parametrize(("raw", "code", "field"), [
    (b'{"msisdn": "\xff"}', "INVALID_ENCODING", "body"),
    (b"\xef\xbb\xbf{}", "INVALID_JSON", "body"),  # a BOM is not JSON
    (b'{"a": 1, "a": 1}', "DUPLICATE_KEY", "a"),
    (b'{"x": [{"b": 1, "b": 2}]}', "DUPLICATE_KEY", "b"),
    (b'{"a": NaN}', "INVALID_JSON", "body"),
    (b'{"a": -Infinity}', "INVALID_JSON", "body"),
    (b'{"a": 1e999}', "INVALID_NUMBER", "body"),
    (b'{"a": 9223372036854775808}', "INVALID_NUMBER", "body"),
    (b'{"a": -9223372036854775809}', "INVALID_NUMBER", "body"),
    (b'{"a": ' + b"9" * 5000 + b"}", "INVALID_NUMBER", "body"),
    (b'{"a": "\\ud800"}', "INVALID_STRING", "body.a"),
    (b'{"\\udc00": 1}', "INVALID_STRING", "body"),
    (b'{"a": ["ok", "\\u0000"]}', "INVALID_STRING", "body.a[1]"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "JSON_TOO_DEEP", "body"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON_TOO_DEEP", "body"),
    (b'{"a": {"a": ' * 5000 + b"1" + b"}}" * 5000, "JSON_TOO_DEEP", "body"),
    (b"{} {}", "INVALID_JSON", "body"),
    (b"", "INVALID_JSON", "body"),
])
def test_refusals_are_400s_naming_the_field(raw: bytes, code: str, field: str) -> None:
    assert refusal(raw) == (400, code, field)


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(("raw", "value"), [
    (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, nested(MAX_DEPTH)),
    (b'{"a": 9223372036854775807, "b": -9223372036854775808, "c": 1.5e300}',
     {"a": 2**63 - 1, "b": -(2**63), "c": 1.5e300}),
    ('{"m": "ñandú \U0001f600", "n": null, "t": true}'.encode(),
     {"m": "ñandú \U0001f600", "n": None, "t": True}),
    (b'{"a": {"b": 1}, "c": {"b": 2}}', {"a": {"b": 1}, "c": {"b": 2}}),  # same key, two objects
])
def test_what_is_well_formed_is_read(raw: bytes, value: Any) -> None:
    assert json_value(raw) == value


def test_an_object_is_required_where_one_is_expected() -> None:
    with pytest.raises(ApiProblem) as info:
        json_object(b"[1]")
    assert (info.value.status, info.value.code) == (400, "INVALID_JSON")


@pytest.mark.parametrize(("mimetype", "params", "ok"), [
    ("application/json", {}, True),
    ("application/json", {"charset": "UTF-8"}, True),
    ("application/json", {"charset": "latin-1"}, False),
    ("text/plain", {}, False),
    ("", {}, False),
    ("application/x-www-form-urlencoded", {}, False),
    ("application/toml", {}, False),
])
def test_media_types(mimetype: str, params: dict[str, str], ok: bool) -> None:
    if ok:
        check_media_type(mimetype, params)
        return
    with pytest.raises(ApiProblem) as info:
        check_media_type(mimetype, params)
    assert (info.value.status, info.value.field) == (415, "Content-Type")
