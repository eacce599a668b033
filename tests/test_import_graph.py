"""The package's import graph has no cycle, counting imports inside functions (fast suite).

Dependencies point down: inference never imports a trainer, a search method never imports the
analysis that consumes it. A cycle here means a module moved to the wrong place.
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


def test_no_import_cycle_in_ttstrain():
    graph = import_graph()
    assert len(graph) > 40 and "ttstrain.scoring" in graph["ttstrain.trainers.reference_fit"]
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

    for inference in ("ttstrain.scoring", "ttstrain.reference_features", "ttstrain.search"):
        below = reaches(inference)
        assert not {m for m in below if m.startswith("ttstrain.trainers")}, inference
        assert "ttstrain.compute_optimal_analysis" not in below, inference
