"""The package's import graph has no cycle, counting imports inside functions (fast suite).

Two graphs are checked: modules, and folders (a subpackage such as `ttstrain.prm`, or a root
module, counts as one node). Dependencies point down: inference never imports a trainer, a search
method never imports the analysis that consumes it. A cycle here means a module moved to the wrong
place. The package root keeps at most 15 modules; the rest live in the package of their stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ttstrain

PACKAGE = Path(ttstrain.__file__).parent


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """ttstrain modules a file imports anywhere in it (a `from pkg import name` of a submodule counts)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def folder_of(module: str) -> str:
    """`ttstrain.prm.scoring` -> `ttstrain.prm`; a root module is its own folder node."""
    return ".".join(module.split(".")[:2])


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    folders: dict[str, set[str]] = {}
    for module, imported in graph.items():
        edges = folders.setdefault(folder_of(module), set())
        edges |= {folder_of(m) for m in imported} - {folder_of(module)}
    return folders


def test_folder_graph_counts_a_subpackage_as_one_node():
    graph = {"ttstrain.a.x": {"ttstrain.b.y"}, "ttstrain.b.z": {"ttstrain.a.w"}, "ttstrain.a.w": set(),
             "ttstrain.b.y": set()}
    folders = folder_graph(graph)
    assert folders["ttstrain.a"] == {"ttstrain.b"}
    assert find_cycle(folders) == ["ttstrain.a", "ttstrain.b", "ttstrain.a"]


def test_no_import_cycle_between_folders():
    folders = folder_graph(import_graph())
    assert {"ttstrain.prm", "ttstrain.analysis", "ttstrain.search", "ttstrain.runner"} <= set(folders)
    assert find_cycle(folders) is None, " -> ".join(find_cycle(folders))


def test_at_most_15_modules_at_the_package_root():
    root_modules = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(root_modules) <= 15, root_modules


def test_no_import_cycle_in_ttstrain():
    graph = import_graph()
    assert len(graph) > 40 and "ttstrain.prm.scoring" in graph["ttstrain.prm.reference_fit"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_inference_and_search_do_not_import_training_or_analysis():
    graph = import_graph()

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    for inference in ("ttstrain.prm.scoring", "ttstrain.prm.reference_features", "ttstrain.search"):
        below = reaches(inference)
        training = {"ttstrain.prm.trainer", "ttstrain.prm.reference_fit", "ttstrain.prm.config"}
        assert not {m for m in below if m.startswith("ttstrain.trainers") or m in training}, inference
        assert not {m for m in below if m.startswith("ttstrain.analysis.compute_optimal")}, inference
