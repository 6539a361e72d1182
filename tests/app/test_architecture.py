"""The architecture rules, read from the source with `ast` (nothing is imported):

- `bot/` may import `d1/` and `storage/`; `storage/` imports nothing of `bot/` and of `d1/` only
  its pure domain modules (`d1.models*`, `d1.semantics`, `d1.carddata`), which import only each
  other; `d1/` imports neither `bot/` nor `storage/`;
- no import cycles between modules;
- no product module over 400 lines (migration revisions aside);
- at most 8 modules at `bot/`'s top level.

Every import counts: module level, inside functions, under `if TYPE_CHECKING:`, in `try:`
blocks, and `importlib.import_module("...")` / `__import__("...")` with a literal name. A lazy or
type-only import still ties two modules together, so it cannot hide a dependency or a cycle.
`from package import name` is an import of `package.name` when that is a module, else of
`package`. A submodule does not count as importing its package's `__init__`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "d1", "storage")
MAX_LINES = 400
MAX_BOT_TOP_LEVEL_MODULES = 8
D1_PURE = ("d1.models", "d1.semantics", "d1.carddata")  # and d1.models.* submodules
LONG_MODULES_ALLOWED = ("storage/migrations/versions/",)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (one of ours)
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({path_of(self.source)}:{self.line})"


@cache
def modules() -> dict[str, Path]:
    """Every module of the product packages: dotted name -> file."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def path_of(module: str) -> str:
    return str(modules()[module].relative_to(ROOT))


def is_package(module: str) -> bool:
    return modules()[module].name == "__init__.py"


def _ours(name: str) -> str | None:
    """The longest known module that `name` names or lies in; None if not one of ours."""
    known = modules()
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _imported_names(module: str, node: ast.AST) -> Iterator[str]:
    """The dotted names one AST node imports (possibly not ours)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module if is_package(module) else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = ".".join(p for p in (package, node.module or "") if p)
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            yield submodule if submodule in modules() else base
    elif (
        isinstance(node, ast.Call)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and (
            (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
        )
    ):
        yield node.args[0].value


@cache
def imports() -> tuple[Import, ...]:
    """Every import of one of our modules by another, wherever in the file it is written."""
    found: set[Import] = set()
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for name in _imported_names(module, node):
                target = _ours(name)
                if target is not None and target != module:
                    found.add(Import(module, target, getattr(node, "lineno", 0)))
    return tuple(sorted(found, key=lambda i: (i.source, i.target, i.line)))


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _pure_d1(module: str) -> bool:
    return any(_in(module, pure) if pure == "d1.models" else module == pure for pure in D1_PURE)


def _listing(found: list[Import]) -> str:
    return "\n  " + "\n  ".join(str(i) for i in found)


# --------------------------------------------------------------------------- the reader itself


def test_the_reader_sees_every_kind_of_import() -> None:
    """Guards the rules below: lazy, type-only and relative imports are all edges."""
    edges = {(i.source, i.target) for i in imports()}
    assert len(modules()) > 50 and len(edges) > 100
    assert ("bot.scheduled.reconcile", "d1.models") in edges  # from d1.models import ...
    assert ("d1.sandbox.service", "d1.sandbox.lifecycle") in edges  # from d1.sandbox import mod
    sample = "from d1 import models\nif TYPE_CHECKING:\n    from .x import y\n"
    tree = ast.parse("def f():\n    import storage.tables\n" + sample)
    names = {n for node in ast.walk(tree) for n in _imported_names("d1.sandbox.app", node)}
    assert names == {"storage.tables", "d1.models", "d1.sandbox.x"}


# --------------------------------------------------------------------------- layers


def test_d1_imports_neither_bot_nor_storage() -> None:
    found = [
        i
        for i in imports()
        if _in(i.source, "d1") and (_in(i.target, "bot") or _in(i.target, "storage"))
    ]
    assert not found, "d1/ must not import bot/ or storage/:" + _listing(found)


def test_storage_imports_no_bot_and_only_pure_d1() -> None:
    found = [
        i
        for i in imports()
        if _in(i.source, "storage")
        and (_in(i.target, "bot") or (_in(i.target, "d1") and not _pure_d1(i.target)))
    ]
    assert not found, (
        "storage/ may import, of the rest, only d1's pure domain modules "
        f"({', '.join(D1_PURE)}):" + _listing(found)
    )


def test_d1_pure_modules_import_only_each_other() -> None:
    """What storage/ may import must not drag the client, the sandbox or httpx in behind it."""
    found = [i for i in imports() if _pure_d1(i.source) and not _pure_d1(i.target)]
    assert not found, "d1's pure modules import only each other:" + _listing(found)


# --------------------------------------------------------------------------- cycles


def _cycles(edges: tuple[Import, ...]) -> list[list[Import]]:
    """Concrete cycles (as their imports) covering every module that lies on one."""
    graph: dict[str, list[Import]] = {}
    for i in edges:
        graph.setdefault(i.source, []).append(i)
        graph.setdefault(i.target, [])

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(module: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for edge in graph[module]:
            if edge.target not in index:
                connect(edge.target)
                low[module] = min(low[module], low[edge.target])
            elif edge.target in on_stack:
                low[module] = min(low[module], index[edge.target])
        if low[module] == index[module]:
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in sorted(graph):
        if module not in index:
            connect(module)

    cycles = []
    for group in groups:
        uncovered = set(group)
        while uncovered:  # a shortest cycle through each module of the group not yet shown
            cycle = _shortest_cycle(graph, group, min(uncovered))
            uncovered -= {i.source for i in cycle}
            cycles.append(cycle)
    return sorted(cycles, key=lambda c: c[0].source)


def _shortest_cycle(graph: dict[str, list[Import]], group: set[str], start: str) -> list[Import]:
    """The shortest way from `start` back to itself inside a strongly connected group."""
    came_by: dict[str, Import] = {}
    frontier = [start]
    while start not in came_by:
        following = []
        for module in frontier:
            for edge in graph[module]:
                if edge.target in group and edge.target not in came_by:
                    came_by[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    path: list[Import] = []
    module = start
    while True:
        edge = came_by[module]
        path.append(edge)
        module = edge.source
        if module == start:
            return path[::-1]


def test_the_cycle_finder_finds_every_cycle() -> None:
    edges = tuple(
        Import(a, b, n)
        for n, (a, b) in enumerate(
            [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("c", "d"), ("d", "e"), ("e", "f")]
        )
    )
    found = [[i.source for i in cycle] for cycle in _cycles(edges)]
    assert found == [["a", "b"], ["c", "b"]]
    assert _cycles(edges[2:3] + edges[4:]) == []


def test_no_import_cycles() -> None:
    cycles = _cycles(imports())
    message = "\n".join(
        f"cycle {n}: " + " -> ".join([c[0].source, *(i.target for i in c)]) + _listing(c)
        for n, c in enumerate(cycles, 1)
    )
    assert not cycles, f"{len(cycles)} import cycle(s):\n{message}"


# --------------------------------------------------------------------------- size


def test_no_module_over_400_lines() -> None:
    too_long = {}
    for path in modules().values():
        relative = str(path.relative_to(ROOT))
        if relative.startswith(LONG_MODULES_ALLOWED):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long[relative] = lines
    assert not too_long, f"modules over {MAX_LINES} lines: " + ", ".join(
        f"{path} ({lines})" for path, lines in sorted(too_long.items())
    )


def test_bot_top_level_holds_at_most_8_modules() -> None:
    top = sorted(p.name for p in (ROOT / "bot").glob("*.py"))
    assert len(top) <= MAX_BOT_TOP_LEVEL_MODULES, (
        f"bot/ holds {len(top)} modules at its top level "
        f"(at most {MAX_BOT_TOP_LEVEL_MODULES}): {', '.join(top)}"
    )
