"""A small lexical scan of CEL source, for what the CEL library does not offer: which
top-level names an expression references, how deeply its comprehension macros (`all`,
`exists`, `exists_one`, `map`, `filter`) nest, and the substitution of `bono.<field>`
selections by literals (used by the batched plans, see `_plan`). String literals and
comments are skipped, so names inside them do not count."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

COMPREHENSION_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+[uU]?|\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?"
    r"|\d+[uU]?"
)
_STRING_PREFIX = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?(?:'''|\"\"\"|'|\")")


@attrs.frozen
class Token:
    kind: str  # "ident", "lit" or "punct"
    text: str
    start: int
    end: int


@attrs.frozen
class SourceInfo:
    """What `scan` found: top-level identifiers and comprehension statistics."""

    names: frozenset[str]
    comprehension_depth: int
    comprehensions: int


def _skip_string(src: str, m: re.Match[str]) -> int:
    token = m.group(0)
    raw = token[0] not in "'\"" and "r" in token[:2].lower()
    quote = token.lstrip("rRbB")
    j, n = m.end(), len(src)
    while j < n:
        if not raw and src[j] == "\\":
            j += 2
            continue
        if src.startswith(quote, j):
            return j + len(quote)
        if len(quote) == 1 and src[j] == "\n":
            return j
        j += 1
    return n


def tokenize(src: str) -> list[Token]:
    """Identifiers, literals and punctuation (one character each). Never fails: malformed
    input yields some tokens, and the CEL compiler reports the syntax error."""
    tokens: list[Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if src.startswith("//", i):
            nl = src.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        m = _STRING_PREFIX.match(src, i)
        if m:
            end = _skip_string(src, m)
            tokens.append(Token("lit", src[i:end], i, end))
            i = end
            continue
        after_ident = bool(tokens) and tokens[-1].kind == "ident"
        if c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit() and not after_ident):
            m = _NUMBER.match(src, i)
            end = m.end() if m else i + 1
            tokens.append(Token("lit", src[i:end], i, end))
            i = end
            continue
        m = _IDENT.match(src, i)
        if m:
            tokens.append(Token("ident", m.group(0), i, m.end()))
            i = m.end()
            continue
        tokens.append(Token("punct", c, i, i + 1))
        i += 1
    return tokens


def _selected(tokens: list[Token], k: int) -> bool:
    """Whether token k is a member name: preceded by a `.` that follows an operand (a
    leading `.`, as in `.customer.plan`, names a variable from the root scope)."""
    if k < 2 or tokens[k - 1].text != ".":
        return False
    before = tokens[k - 2]
    return before.kind != "punct" or before.text in ")]}"


def scan(src: str) -> SourceInfo:
    """Top-level names and comprehension nesting of CEL source."""
    tokens = tokenize(src)
    names: set[str] = set()
    stack: list[bool] = []  # one entry per open bracket: True if it opens a comprehension
    depth = max_depth = count = 0
    for k, tok in enumerate(tokens):
        if tok.kind == "ident" and not _selected(tokens, k):
            names.add(tok.text)
        elif tok.text in "([{" and tok.kind == "punct":
            opens = (
                tok.text == "("
                and k > 0
                and tokens[k - 1].kind == "ident"
                and tokens[k - 1].text in COMPREHENSION_MACROS
                and _selected(tokens, k - 1)
            )
            stack.append(opens)
            if opens:
                depth += 1
                count += 1
                max_depth = max(max_depth, depth)
        elif tok.text in ")]}" and tok.kind == "punct" and stack and stack.pop():
            depth -= 1
    return SourceInfo(frozenset(names), max_depth, count)


def _root(tokens: list[Token], k: int, var: str) -> bool:
    """Whether token k is the variable `var` itself (not a member named like it)."""
    tok = tokens[k]
    return tok.kind == "ident" and tok.text == var and not _selected(tokens, k)


def selected_fields(src: str, var: str) -> frozenset[str]:
    """The field names selected from `var` (`var.field`) in CEL source."""
    tokens = tokenize(src)
    return frozenset(
        tokens[k + 2].text
        for k in range(len(tokens) - 2)
        if _root(tokens, k, var) and tokens[k + 1].text == "." and tokens[k + 2].kind == "ident"
    )


def tests_presence(src: str, var: str) -> bool:
    """Whether CEL source applies `has()` to a field of `var`: `has(var.f)`, `has(.var.f)`."""
    tokens = tokenize(src)
    for k in range(len(tokens)):
        if not _root(tokens, k, var):
            continue
        j = k - 1
        if j >= 0 and tokens[j].text == ".":
            j -= 1
        if j >= 1 and tokens[j].text == "(" and tokens[j - 1].text == "has":
            return True
    return False


def cel_literal(value: Any) -> str:
    """CEL source for a bool, int or str value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value >= 0 else f"({value})"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a CEL string
    raise TypeError(f"no CEL literal for {type(value).__name__}")


def substitute(src: str, var: str, fields: Mapping[str, Any]) -> str | None:
    """`src` with every `var.<field>` replaced by the field's literal value, or None when
    `var` is used any other way (bare, indexed, in `has()`, as a comprehension variable)
    or selects a field not in `fields`."""
    tokens = tokenize(src)
    out: list[str] = []
    pos = 0
    k = 0
    while k < len(tokens):
        tok = tokens[k]
        if tok.kind == "ident" and tok.text == var and not _selected(tokens, k):
            is_field = (
                k + 2 < len(tokens)
                and tokens[k + 1].text == "."
                and tokens[k + 2].kind == "ident"
                and tokens[k + 2].text in fields
            )
            in_has = k >= 2 and tokens[k - 1].text == "(" and tokens[k - 2].text == "has"
            if not is_field or in_has:
                return None
            root_dot = k > 0 and tokens[k - 1].text == "."  # `.bono.kind`
            out.append(src[pos : tokens[k - 1].start if root_dot else tok.start])
            out.append(cel_literal(fields[tokens[k + 2].text]))
            pos = tokens[k + 2].end
            k += 3
            continue
        k += 1
    out.append(src[pos:])
    return "".join(out)


def conjuncts(src: str) -> list[str] | None:
    """The operands of a top-level `a && b && ...` chain, or None when the expression is
    not such a chain (a top-level `||` or `?:` would make splitting change its meaning)."""
    tokens = tokenize(src)
    parts: list[str] = []
    depth = 0
    start = 0
    k = 0
    while k < len(tokens):
        tok = tokens[k]
        if tok.kind == "punct":
            if tok.text in "([{":
                depth += 1
            elif tok.text in ")]}":
                depth -= 1
            elif depth == 0 and tok.text == "?":
                return None
            elif depth == 0 and tok.text in "&|" and k + 1 < len(tokens):
                nxt = tokens[k + 1]
                if nxt.text == tok.text and nxt.start == tok.end:
                    if tok.text == "|":
                        return None
                    parts.append(src[start : tok.start].strip())
                    start = nxt.end
                    k += 2
                    continue
        k += 1
    parts.append(src[start:].strip())
    return parts if len(parts) > 1 else None
