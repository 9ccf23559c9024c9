"""Request bodies: which media types a route takes, and JSON decoded strictly.

A body must say what it is: `application/json` (charset, if given, `utf-8`), or
`application/toml` where a route documents it (rule sets). Anything else, a missing
`Content-Type` included, is `415`: a browser page may post `text/plain` (or an untyped blob)
cross-site without a preflight, so only a declared JSON body is ever read.

JSON is decoded strictly, so that what the API stores is what the client meant: UTF-8 only,
no duplicate keys (`{"a": 1, "a": 2}` is not "last wins"), at most `MAX_DEPTH` levels of
nesting, integers within 64 bits, finite numbers, no NUL or lone surrogate in any string.
Every refusal is a `400` naming the field at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from typing import Any

from werkzeug.datastructures import Headers

from gestor.api._problems import ApiProblem

JSON = "application/json"
TOML = "application/toml"
#: Deepest nesting of objects and arrays a JSON body may have (the API's own bodies need 3).
MAX_DEPTH = 16
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class _Refused(Exception):
    """Raised inside the decoder's hooks; turned into a 400 by `json_value`."""

    def __init__(self, code: str, detail: str, field: str = "body") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused("DUPLICATE_KEY", f"the key {key[:64]!r} appears twice in one object",
                           key[:64] if _printable(key) else "body")
        out[key] = value
    return out


def _int(text: str) -> int:
    value = int(text) if len(text) <= 20 else _INT_MAX + 1
    if not _INT_MIN <= value <= _INT_MAX:
        raise _Refused("INVALID_NUMBER", "integers must fit in 64 bits")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("INVALID_NUMBER", "numbers must be finite")
    return value


def _constant(text: str) -> Any:
    raise _Refused("INVALID_JSON", f"{text} is not JSON")


def _printable(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _check_string(text: str, where: str) -> None:
    if text.isascii():
        if "\x00" in text:
            raise _Refused("INVALID_STRING", f"{where}: a string may not contain NUL", where)
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused("INVALID_STRING", f"{where}: a string holds a lone surrogate "
                       "(\\ud800-\\udfff escape)", where) from None
    if "\x00" in text:
        raise _Refused("INVALID_STRING", f"{where}: a string may not contain NUL", where)


def _check_tree(value: Any) -> None:
    """Depth and strings of a decoded document, iteratively (no recursion to exhaust)."""
    stack: list[tuple[Any, str, int]] = [(value, "body", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item, where)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise _Refused("JSON_TOO_DEEP", f"the body nests deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_string(key, where)
                    name = f"{where}.{key}" if _printable(key) and len(key) <= 64 else where
                    stack.append((child, name, depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))


def json_value(raw: bytes | str) -> Any:
    """The JSON document in `raw`, or a 400 problem naming what is wrong with it."""
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiProblem(400, "INVALID_ENCODING",
                         f"the body is not valid UTF-8 (byte {exc.start})", field="body") from None
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_float=_float,
                           parse_constant=_constant)
        _check_tree(value)
    except _Refused as exc:
        raise ApiProblem(400, exc.code, exc.detail, field=exc.field) from None
    except RecursionError:
        raise ApiProblem(400, "JSON_TOO_DEEP",
                         f"the body nests deeper than {MAX_DEPTH} levels", field="body") from None
    except ValueError as exc:  # JSONDecodeError, and int()'s digit limit
        raise ApiProblem(400, "INVALID_JSON", f"the body is not valid JSON: {exc}",
                         field="body") from None
    return value


def json_object(raw: bytes | str) -> dict[str, Any]:
    """A JSON object body (see `json_value`)."""
    body = json_value(raw)
    if not isinstance(body, dict):
        raise ApiProblem(400, "INVALID_JSON", "the body must be a JSON object", field="body")
    return body


def has_body(headers: Headers) -> bool:
    """Whether a request carries a body, from its head (before reading it)."""
    length = headers.get("Content-Length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "Transfer-Encoding" in headers


def check_media_type(mimetype: str, options: Mapping[str, str],
                     accepted: Collection[str] = (JSON,)) -> None:
    """A 415 problem unless the body's media type is one of `accepted`, in UTF-8."""
    if mimetype not in accepted:
        got = f"Content-Type {mimetype!r}" if mimetype else "no Content-Type"
        raise ApiProblem(
            415, "UNSUPPORTED_MEDIA_TYPE",
            f"this call takes a body of type {' or '.join(sorted(accepted))} ({got} was sent)",
            field="Content-Type",
        )
    charset = options.get("charset")
    if charset is not None and charset.strip().lower() not in ("utf-8", "utf8"):
        raise ApiProblem(415, "UNSUPPORTED_MEDIA_TYPE", "bodies are UTF-8 (charset=utf-8)",
                         field="Content-Type")
