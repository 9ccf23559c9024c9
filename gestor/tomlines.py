"""Where a key sits in TOML text: the line numbers that `tomllib` does not give, for error
messages about configuration files ("unknown key 'biind' in [server] (gestor.toml, line 4)").

A light line scan, not a parser: table headers (`[a.b]`, `[[a]]`, counted per array), `key =`
lines (bare, quoted or dotted keys) and multi-line strings (skipped). It only ever runs on text
`tomllib` has already accepted, and answers None when it cannot tell.
"""

from __future__ import annotations

import re

__all__ = ["Path", "line_of", "syntax_location"]

#: A position in a TOML document: table and key names, with the index of an array-of-tables
#: entry after its name (`("bono", 2, "price")` is `price` in the third `[[bono]]`).
Path = tuple[str | int, ...]

_HEADER = re.compile(r"\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_NAME = r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'"""
_KEY = re.compile(rf"\s*((?:{_NAME})(?:\s*\.\s*(?:{_NAME}))*)\s*=")
_PART = re.compile(_NAME)
_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|(end of document))\)\s*$")


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


def _depth(text: str) -> int:
    """Brackets opened minus closed, outside strings and comments."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", text).split("#", 1)[0]
    return text.count("[") + text.count("{") - text.count("]") - text.count("}")


def _lines(text: str) -> list[tuple[int, Path]]:
    """(line number, path) of every table header and key line, in order."""
    found: list[tuple[int, Path]] = []
    table: Path = ()
    arrays: dict[tuple[str, ...], int] = {}
    in_string: str | None = None
    depth = 0  # open brackets of a multi-line array or inline table value
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        if depth > 0:
            depth += _depth(line)
            continue
        header = _HEADER.match(line)
        if header:
            names = tuple(_parts(header.group(2)))
            if header.group(1) == "[[":
                index = arrays.get(names, -1) + 1
                arrays[names] = index
                table = (*names, index)
            else:
                # a sub-table of the latest entry of an array of tables: [[bono]] then [bono.x]
                table = ()
                for name in names:
                    table = (*table, name)
                    names_so_far = tuple(p for p in table if isinstance(p, str))
                    if names_so_far in arrays:
                        table = (*table, arrays[names_so_far])
            found.append((number, table))
            continue
        key = _KEY.match(line)
        if key:
            found.append((number, (*table, *_parts(key.group(1)))))
            rest = line[key.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_string = quote
            if in_string is None:
                depth = max(0, _depth(rest))
    return found


def line_of(text: str, path: Path) -> int | None:
    """The line of `path` in `text`; failing that, of its nearest enclosing table or key that
    appears in the text; None when nothing of it does."""
    lines = _lines(text)
    for length in range(len(path), 0, -1):
        prefix = path[:length]
        for number, found in lines:
            if found == prefix:
                return number
    return None


def syntax_location(message: str) -> tuple[str, str]:
    """Split a `tomllib.TOMLDecodeError` message into what and where: ("Invalid value",
    "line 3, column 7")."""
    match = _AT.search(message)
    if match is None:
        return message, ""
    if match.group(3):
        return message[: match.start()], "at the end"
    return message[: match.start()], f"line {match.group(1)}, column {match.group(2)}"
