"""The project's import graph keeps the rules of ARCHITECTURE.md (section 1).

Every module of the project's packages (each top-level folder with an ``__init__.py``, but
``tests`` and ``benchmarks``) is parsed with ``ast``; its imports are collected at module level
and inside functions and classes alike (a function-level import is still a dependency: it only
runs later), except under ``if TYPE_CHECKING:``. Then:

- no import cycle between modules;
- Prefect is imported only in ``tasks/`` and ``flows/``;
- a package imports only packages of its own layer or earlier ones (:data:`LAYERS`);
- nothing outside ``flows/cli/`` imports the CLI (flows never import it);
- every import of a project module names a module that exists;
- no module imports a private name (``_x``) from a module of another package.

To add a package, put it in :data:`LAYERS` at its place in the dependency order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS: list[tuple[str, ...]] = [
    ("config",),
    ("market",),
    ("storage",),
    ("providers",),
    ("expectations",),
    ("features",),
    ("ingestion",),
    ("envs", "models"),
    ("backtest",),
    ("serving", "execution"),
    ("tasks",),
    ("flows",),
]
"""The dependency order, earliest first: a package may import its own layer and earlier ones."""

NOT_PACKAGES = {"tests", "benchmarks"}
PREFECT_ALLOWED = {"tasks", "flows"}
CLI = "flows.cli"

LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}


@dataclass(frozen=True)
class Import:
    """One import statement's target in one module: ``target`` is a dotted module name, or the
    module a name was imported from; ``names`` are what ``from ... import`` took from it."""

    module: str
    target: str
    line: int
    names: tuple[str, ...] = ()

    def where(self) -> str:
        """``module:line`` for messages."""
        return f"{self.module}:{self.line}"


@dataclass
class Project:
    """The project's modules (dotted name -> file) and their imports."""

    modules: dict[str, Path] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)

    def internal(self) -> Iterator[Import]:
        """The imports of the project's own packages."""
        tops = {name.split(".")[0] for name in self.modules}
        return (i for i in self.imports if i.target.split(".")[0] in tops)

    def graph(self) -> dict[str, dict[str, Import]]:
        """module -> {imported module: the first import of it}, for imports that resolve to a module."""
        edges: dict[str, dict[str, Import]] = {m: {} for m in self.modules}
        for imp in self.internal():
            if imp.target in self.modules and imp.target != imp.module:
                edges[imp.module].setdefault(imp.target, imp)
        return edges


def _packages() -> list[str]:
    return sorted(
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").is_file() and p.name not in NOT_PACKAGES
    )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import under ``node``, at any depth, but those in the body of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                if isinstance(other, ast.Import | ast.ImportFrom):
                    yield other
                else:
                    yield from _statements(other)
        else:
            yield from _statements(child)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of ``from ... import``, relative imports included."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@cache
def _project() -> Project:
    project = Project()
    files = [f for package in _packages() for f in sorted((ROOT / package).rglob("*.py"))]
    project.modules = {_module_name(f): f for f in files}
    for name, path in project.modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _statements(tree):
            if isinstance(node, ast.Import):
                project.imports += [Import(name, alias.name, node.lineno) for alias in node.names]
                continue
            source = _resolve(name, is_package, node)
            taken: list[str] = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in project.modules:  # from package import module
                    project.imports.append(Import(name, submodule, node.lineno))
                else:
                    taken.append(alias.name)
            if taken:
                project.imports.append(Import(name, source, node.lineno, tuple(taken)))
    return project


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_path(graph: dict[str, dict[str, Import]], component: list[str]) -> str:
    """The shortest cycle through the component's first module, each step with the importing line."""
    start, members = component[0], set(component)
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w, imp in sorted(graph[v].items()):
            if w == start:
                steps = [*paths[v], imp]
                return " -> ".join([start, *(f"{s.target} ({s.where()})" for s in steps)])
            if w in members and w not in paths:
                paths[w] = [*paths[v], imp]
                queue.append(w)
    return " <-> ".join(component)


def test_every_package_has_a_layer() -> None:
    unplaced = [p for p in _packages() if p not in LAYER_OF]
    assert not unplaced, f"put these packages in LAYERS (tests/unit/test_import_graph.py): {unplaced}"
    assert "flows.cli" in _project().modules, "the CLI package flows/cli/ was not found"


def test_no_import_cycle() -> None:
    graph = _project().graph()
    cycles = [
        f"{len(component)} modules: {', '.join(component)}; e.g. {_cycle_path(graph, component)}"
        for component in _cycles(graph)
    ]
    assert not cycles, "import cycles (module-level and function-level imports):\n" + "\n".join(cycles)


def test_prefect_only_in_tasks_and_flows() -> None:
    found = [
        f"{i.where()} imports {i.target}"
        for i in _project().imports
        if i.target.split(".")[0] == "prefect" and i.module.split(".")[0] not in PREFECT_ALLOWED
    ]
    assert not found, "Prefect outside tasks/ and flows/:\n" + "\n".join(found)


def test_packages_import_only_their_layer_and_earlier_ones() -> None:
    order = " -> ".join("/".join(layer) for layer in LAYERS)
    found = [
        f"{i.where()} imports {i.target}"
        for i in _project().internal()
        if LAYER_OF.get(i.target.split(".")[0], -1) > LAYER_OF.get(i.module.split(".")[0], len(LAYERS))
    ]
    assert not found, f"imports against the dependency order {order}:\n" + "\n".join(found)


def _is_cli(name: str) -> bool:
    # flows.cli_* were the CLI's modules before it became the package flows/cli/
    return name == CLI or name.startswith((f"{CLI}.", f"{CLI}_"))


def test_only_the_cli_imports_the_cli() -> None:
    found = [
        f"{i.where()} imports {i.target}"
        for i in _project().imports
        if _is_cli(i.target) and not _is_cli(i.module)
    ]
    assert not found, "modules outside flows/cli/ that import the CLI:\n" + "\n".join(found)


def test_project_imports_resolve() -> None:
    modules = _project().modules
    found = [f"{i.where()} imports {i.target}" for i in _project().internal() if i.target not in modules]
    assert not found, "imports of project modules that do not exist:\n" + "\n".join(found)


def test_no_private_name_imported_across_packages() -> None:
    def package(module: str) -> str:
        modules = _project().modules
        return module if modules[module].name == "__init__.py" else module.rpartition(".")[0]

    found = [
        f"{i.where()} imports {', '.join(n for n in i.names if n.startswith('_'))} from {i.target}"
        for i in _project().internal()
        if i.target in _project().modules
        and package(i.target) != package(i.module)
        and any(n.startswith("_") for n in i.names)
    ]
    assert not found, "private names imported from another package:\n" + "\n".join(found)
