"""What each route says about itself for the OpenAPI document: `@documented(...)` under the
route's own decorator records an `Operation` on the view function; `_openapi` walks the app's
`url_map` and finds it there. A route without one makes the document incomplete, and
tests/unit/test_openapi.py fails (`undocumented`).

A route names its request body Struct (`_requests`), its answers' Structs (`_resources`), its
parameters and the problem codes it raises itself; the document adds the codes every route of
its kind can answer (authentication, strict JSON, a body's own fields' `x-problem`s...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import attrs
import msgspec

from gestor.api._requests import INTEGER_MAX, RULES_TOML_EXAMPLE

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__gestor_openapi__"


@attrs.frozen
class Param:
    """A path, query or header parameter. A path parameter's `name` is the rule's variable
    (`raw_msisdn`); `shown` what the document calls it (`msisdn`)."""

    name: str
    where: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str
    required: bool = False
    example: Any = None
    shown: str | None = None


@attrs.frozen
class Answer:
    """A success answer: its status, body Struct (None: no JSON body of a Struct), response
    headers, and for a body that is not a Struct's, its media types."""

    status: int
    body: type[msgspec.Struct] | None
    description: str
    headers: tuple[str, ...] = ()
    example: Any = None
    media: tuple[str, ...] = ()


@attrs.frozen
class Toml:
    """A request body that may also be a TOML document (`Content-Type: application/toml`):
    what the document is, and an example of one."""

    description: str
    example: str


@attrs.frozen
class Operation:
    summary: str
    tag: str
    answers: tuple[Answer, ...]
    body: type[msgspec.Struct] | None = None
    body_required: bool = True
    #: Also takes the TOML document itself (`application/toml`).
    toml: Toml | None = None
    params: tuple[Param, ...] = ()
    #: Codes this route raises itself (`_problem_codes`).
    problems: tuple[str, ...] = ()
    description: str = ""
    body_example: Any = None
    websocket: bool = False


def documented(summary: str, tag: str, answers: tuple[Answer, ...] | Answer,
               **details: Any) -> Callable[[F], F]:
    """Record the route's `Operation` on its view function (put it under `@app.get(...)`)."""
    if isinstance(answers, Answer):
        answers = (answers,)

    def mark(view: F) -> F:
        description = details.pop("description", None) or (view.__doc__ or "").strip()
        setattr(view, ATTRIBUTE, Operation(summary, tag, answers, description=" ".join(
            description.split()), **details))
        return view

    return mark


def operation_of(view: Callable[..., Any]) -> Operation | None:
    found: Operation | None = getattr(view, ATTRIBUTE, None)
    return found


# -- parameters many routes share ---------------------------------------------------------------

MSISDN = Param("raw_msisdn", "path", {"type": "string", "pattern": r"^\+?[1-9][0-9]{7,14}$"},
               "the mobile: an E.164 number, 8 to 15 digits", True, "5491100000001", "msisdn")
TRANSACTION_ID = Param("tx_id", "path", {"type": "string", "format": "uuid"},
                       "the transaction's id (a UUID)", True,
                       "6f1c8f7e-3b9a-4c57-9f0e-2b8b8a1d2e3f", "id")
RULES_VERSION = Param("raw", "path", {"type": "integer", "minimum": 1, "maximum": INTEGER_MAX},
                      "the rule-set version", True, 1, "version")
CATALOGUE_VERSION = Param("raw", "path",
                          {"type": "integer", "minimum": 1, "maximum": INTEGER_MAX},
                          "the catalogue version", True, 1, "version")
RULES_TOML = Toml("the rule set's TOML document", RULES_TOML_EXAMPLE)
RESTRICTION_CODE = Param("code", "path", {"type": "string", "pattern": "^[A-Z0-9_]{1,40}$"},
                         "the restriction code", True, "NO_DATA_BONOS")
IDEMPOTENCY_KEY = Param(
    "Idempotency-Key", "header",
    {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$", "minLength": 1, "maxLength": 200},
    "required: a retry with the same key returns the original transaction "
    "(`Idempotent-Replayed: true`) and never charges twice; scoped by the calling client",
    True, "7f1d0c52")
PREFER_WAIT = Param(
    "Prefer", "header", {"type": "string", "pattern": "^wait=[0-9]{1,2}(\\.[0-9]{1,3})?$"},
    "`wait=N` (RFC 7240): wait up to N seconds (capped at `[server] max_wait`, 30) for the "
    "final state; the answer is then 200, or 202 if still running", False, "wait=5")
CLIENT_ID = Param(
    "X-Client-Id", "header", {"type": "string", "pattern": "^[\\x21-\\x7e]{1,64}$"},
    "open mode only (loopback, no channel keys configured): names the client, the scope of "
    "its Idempotency-Keys", False, "web-shop")


def query(name: str, schema: dict[str, Any], description: str, example: Any = None) -> Param:
    return Param(name, "query", schema, description, False, example)


def limit(default: int, high: int) -> Param:
    return query("limit", {"type": "integer", "minimum": 1, "maximum": high,
                           "default": default},
                 f"at most this many (1..{high}, default {default})", default)
