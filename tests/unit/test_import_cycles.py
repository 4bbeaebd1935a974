"""No import cycle between the project's modules, counting imports inside functions.

import-linter's layers keep the packages apart; a cycle inside a package (two modules that import
each other, however lazily) escapes them. grimp, which import-linter builds its graph with, reads
every import statement of a module: at the top, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("animegan", "api", "worker", "jobstore", "telemetry", "inference", "imaging", "video", "loadtest")

# Run in a fresh interpreter from the package's root: under pytest, sys.path and sys.modules may
# resolve a name such as ``worker`` to a test folder instead of the project's package.
_GRAPH_SCRIPT = """
import json, sys
import grimp
graph = grimp.build_graph(*sys.argv[1:], cache_dir=None)
edges = {}
for module in graph.modules:
    edges[module] = {}
    for imported in graph.find_modules_directly_imported_by(module):
        details = graph.get_import_details(importer=module, imported=imported)
        edges[module][imported] = [f"line {d['line_number']}: {d['line_contents']}" for d in details]
print(json.dumps(edges))
"""

Graph = Mapping[str, Mapping[str, list[str]]]


def import_graph(packages: Iterable[str], root: Path) -> Graph:
    """Every module of ``packages`` (under ``root``) -> the modules it imports -> where (grimp)."""
    result = subprocess.run(
        [sys.executable, "-c", _GRAPH_SCRIPT, *packages], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    graph: Graph = json.loads(result.stdout)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def enter(module: str) -> tuple[str, Iterator[str]]:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        return module, iter(sorted(graph[module]))

    for root in sorted(graph):
        if root in index:
            continue
        work = [enter(root)]
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    work.append(enter(child))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                component: list[str] = []
                while not component or component[-1] != module:
                    component.append(stack.pop())
                    on_stack.discard(component[-1])
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def loop_through(graph: Graph, component: list[str]) -> str:
    """One loop through ``component`` from its first module, each import with its line."""
    members = set(component)
    start = component[0]
    # Breadth-first within the component, back to the start: the shortest loop through it.
    came_from: dict[str, str] = {}
    frontier = [start]
    while start not in came_from:
        nxt = []
        for module in frontier:
            for imported in sorted(set(graph[module]) & members):
                if imported not in came_from:
                    came_from[imported] = module
                    nxt.append(imported)
        frontier = nxt
    path = [start]
    while len(path) == 1 or path[-1] != start:
        path.append(came_from[path[-1]])
    path.reverse()
    steps = [f"{a} -> {b} ({'; '.join(graph[a][b])})" for a, b in itertools.pairwise(path)]
    return ", ".join(steps)


def test_the_project_packages_are_every_package_of_the_repository() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(PROJECT_PACKAGES)


def test_the_graph_holds_every_module_of_the_project() -> None:
    graph = import_graph(PROJECT_PACKAGES, ROOT)
    files = {
        p.relative_to(ROOT).with_suffix("") for package in PROJECT_PACKAGES for p in (ROOT / package).rglob("*.py")
    }
    names = {".".join(f.parts[:-1] if f.name == "__init__" else f.parts) for f in files}
    assert set(graph) == names


def test_no_import_cycle_between_project_modules() -> None:
    graph = import_graph(PROJECT_PACKAGES, ROOT)
    found = cycles(graph)
    assert not found, "import cycles: " + " | ".join(loop_through(graph, c) for c in found)


def test_a_cycle_made_only_of_imports_inside_functions_is_found(tmp_path: Path) -> None:
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "first.py").write_text("def go():\n    from cyclic import second\n    return second\n")
    (package / "second.py").write_text("def back():\n    from cyclic.first import go\n    return go\n")
    (package / "third.py").write_text("from cyclic import first\n")
    graph = import_graph(["cyclic"], tmp_path)
    found = cycles(graph)
    assert found == [["cyclic.first", "cyclic.second"]]
    assert loop_through(graph, found[0]) == (
        "cyclic.first -> cyclic.second (line 2: from cyclic import second), "
        "cyclic.second -> cyclic.first (line 2: from cyclic.first import go)"
    )
