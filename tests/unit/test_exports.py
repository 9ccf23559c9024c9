"""The public surfaces, pinned (in the style of trio's ``_tests/test_exports.py``).

For every package of ``gestor/`` and ``actors/``:

* ``__all__`` is exactly what its ``__init__`` defines or re-exports, and each name resolves;
* every exported name is used outside the package, through the package (``from pkg import N``
  or ``pkg.N``) by a module of gestor/, actors/, bench/ or tests/;
* production code (gestor/, actors/, bench/) outside a package never imports its private
  ``_modules`` (tests may);
* ``actors/`` imports nothing of ``gestor``;
* no import circle between the modules of a package of gestor (module-level imports, those
  under ``if TYPE_CHECKING:`` included), nor between the packages of gestor. (``actors`` is left
  out: ``Actor``, ``ActorContext`` and ``ActorSystem`` name one another in their signatures.)

Read by ``ast`` from the source, so nothing is imported but the packages themselves.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("gestor", "actors")  # the shipped packages
SCANNED = ("gestor", "actors", "bench", "tests")  # where their exports may be used
PRODUCTION = ("gestor", "actors", "bench")


@attrs.frozen
class Module:
    name: str  # dotted
    path: Path
    is_package: bool  # an __init__
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package the module belongs to (itself for an ``__init__``)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _modules(tops: tuple[str, ...]) -> Iterator[Module]:
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            tree = ast.parse(path.read_text(), str(path))
            yield Module(".".join(parts), path, is_package, tree)


MODULES = list(_modules(SCANNED))
BY_NAME = {module.name: module for module in MODULES}
PACKAGES = [
    *sorted(m.name for m in MODULES if m.is_package and m.name.startswith("gestor.")),
    "actors",
]
# gestor itself is a folder of public modules (runtime, settings...), not a re-exporting package


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module name an ``ImportFrom`` reads from."""
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run at import: those of the module, inside ``if``/``try``/``with`` blocks
    (``if TYPE_CHECKING:`` included), not inside functions or classes."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.With):
            yield from _top_level(node.body)
            if isinstance(node, ast.If):
                yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _top_level(block)
            for handler in node.handlers:
                yield from _top_level(handler.body)


def _imported_modules(module: Module, *, everywhere: bool) -> Iterator[tuple[str, int]]:
    """(module name, line) of every module ``module`` imports: at import time only, or anywhere
    (in functions too). ``from pkg import name`` counts as ``pkg.name`` when that is a module,
    else as ``pkg``."""
    nodes = ast.walk(module.tree) if everywhere else _top_level(module.tree.body)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                child = f"{source}.{alias.name}"
                yield (child if child in BY_NAME else source), node.lineno


def _exports(package: str) -> list[str]:
    tree = BY_NAME[package].tree
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list | tuple)
            return [str(name) for name in value]
    return []


def _defined(package: str) -> set[str]:
    """The public names the ``__init__`` binds: imports, definitions, assignments."""
    names: set[str] = set()
    for node in _top_level(BY_NAME[package].tree.body):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    names.discard("annotations")  # from __future__
    return {name for name in names if not name.startswith("_")}


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _uses(package: str) -> set[str]:
    """Names of ``package`` used through it by modules outside it."""
    used: set[str] = set()
    parent, _, leaf = package.rpartition(".")
    for module in MODULES:
        if _inside(module.name, package):
            continue
        aliases: set[str] = set()  # local names bound to the package itself
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(module, node)
                if source == package:
                    used.update(a.name for a in node.names)
                elif parent and source == parent:
                    aliases.update(a.asname or a.name for a in node.names if a.name == leaf)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package and alias.asname:
                        aliases.add(alias.asname)
                    elif _inside(package, alias.name) and not alias.asname:
                        aliases.add(package)  # `import a.b` then `a.b.name`
        if not aliases:
            continue
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) in aliases:
                used.add(node.attr)
    return used


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_what_the_init_exports(package: str) -> None:
    exported = _exports(package)
    assert exported == sorted(set(exported), key=exported.index), "duplicates in __all__"
    assert set(exported) == _defined(package)
    module = importlib.import_module(package)
    assert [name for name in exported if not hasattr(module, name)] == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_export_is_used_outside_the_package(package: str) -> None:
    unused = sorted(set(_exports(package)) - _uses(package))
    assert unused == [], f"{package} exports names nothing outside it uses"


def _private_part(name: str) -> str | None:
    """The package whose private module ``name`` is (or is inside), if any."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i]) or None
    return None


def test_production_code_imports_no_private_module_of_another_package() -> None:
    found = []
    for module in MODULES:
        if module.name.split(".")[0] not in PRODUCTION:
            continue
        for name, line in _imported_modules(module, everywhere=True):
            owner = _private_part(name)
            if owner and owner.split(".")[0] in TOP and not _inside(module.name, owner):
                found.append(f"{module.path.relative_to(ROOT)}:{line} imports {name}")
    assert found == []


def test_actors_imports_nothing_of_gestor() -> None:
    found = [
        f"{module.path.relative_to(ROOT)}:{line} imports {name}"
        for module in MODULES
        if _inside(module.name, "actors")
        for name, line in _imported_modules(module, everywhere=True)
        if _inside(name, "gestor")
    ]
    assert found == []


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (or a node on itself): Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _import_graph(within: str) -> dict[str, set[str]]:
    """Module → modules of the same package it imports at import time (the ``__init__``
    importing its own modules is the re-export, not a circle: left out)."""
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        if module.package != within or module.is_package:
            continue
        graph[module.name] = {
            name
            for name, _ in _imported_modules(module, everywhere=False)
            if name in BY_NAME and BY_NAME[name].package == within and name != module.name
        }
    return graph


@pytest.mark.parametrize("package", [p for p in PACKAGES if _inside(p, "gestor")])
def test_no_import_circle_between_the_modules_of_a_package(package: str) -> None:
    assert _circles(_import_graph(package)) == []


def _owner(name: str) -> str | None:
    """The gestor package (``gestor.x``) or top-level module a module name belongs to."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "gestor" and len(parts) > 1 else None


def test_no_import_circle_between_the_packages_of_gestor() -> None:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        owner = _owner(module.name)
        if owner is None:
            continue
        targets = graph.setdefault(owner, set())
        for name, _ in _imported_modules(module, everywhere=False):
            target = _owner(name)
            if target is not None and target != owner:
                targets.add(target)
    assert _circles(graph) == []


def test_outbound_http_has_one_client_stack() -> None:
    """gestor's outbound HTTP goes through ``gestor.platforms.HTTPClient``: httpx, kept for the
    tests, is no runtime dependency."""
    found = [
        f"{module.path.relative_to(ROOT)}:{line}"
        for module in MODULES
        if module.name.split(".")[0] in TOP
        for name, line in _imported_modules(module, everywhere=True)
        if _inside(name, "httpx")
    ]
    assert found == []
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    runtime = project[project.index("dependencies = [") : project.index("[project.optional")]
    assert "httpx" not in runtime
