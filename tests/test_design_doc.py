"""docs/design.md stays true to the code (fast suite).

Its "Layers" table places every folder of the package (a subpackage, or a root module) in one
layer, top to bottom; here the table is read back and checked against the import graph of
`tests/test_import_graph.py`: every folder is listed exactly once, every entry exists, and no import
goes from a layer to one above it (`ttstrain/cli.py`'s dispatch by module name counts as an import).
Its "Where each stage lives" table names each command's modules, and every `ttstrain/...` path or
`ttstrain.x.y` module named in the docs exists.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from test_import_graph import PACKAGE, folder_graph, folder_of, import_graph

REPO = PACKAGE.parent
DESIGN = REPO / "docs" / "design.md"
DOCS = [REPO / "README.md", REPO / "recipes" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def section(text: str, heading: str) -> str:
    """The body of a `## heading` section, up to the next `## `."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def table_rows(body: str) -> list[list[str]]:
    """The cells of every row of the first markdown table in `body`, header and rule left out."""
    rows = [line for line in body.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in rows[2:]]


@functools.lru_cache(maxsize=1)
def graph() -> dict[str, set[str]]:
    """The module import graph, parsed once for this file's tests."""
    return import_graph()


def node_of(entry: str) -> str:
    """`ttstrain/prm/` -> `ttstrain.prm`; `ttstrain/cli.py` -> `ttstrain.cli`; `ttstrain/__init__.py` -> `ttstrain`."""
    path = entry.strip("`")
    assert path.startswith("ttstrain/"), entry
    if path == "ttstrain/__init__.py":
        return "ttstrain"
    return path.rstrip("/").removesuffix(".py").replace("/", ".")


def doc_layers() -> tuple[dict[str, int], list[str]]:
    """(folder node -> layer index, 0 at the top; the nodes in the table's order, repeats kept)."""
    rows = table_rows(section(DESIGN.read_text(), "Layers"))
    assert rows, "docs/design.md has no layer table"
    names: list[str] = []
    layer_of, listed = {}, []
    for layer, entry, what in rows:
        assert what, f"{entry}: no 'what it holds'"
        if not names or names[-1] != layer:
            assert layer not in names, f"layer {layer!r} is split in two parts of the table"
            names.append(layer)
        node = node_of(entry)
        listed.append(node)
        layer_of[node] = len(names) - 1
    return layer_of, listed


def dispatch_edges() -> set[tuple[str, str]]:
    """`ttstrain <command>` imports its module by name: cli -> that module's folder."""
    from ttstrain.cli import COMMANDS

    return {("ttstrain.cli", folder_of(module)) for module, _ in COMMANDS.values()}


def test_table_parser_reads_layers_in_order():
    body = ("## Layers\n\n| layer | folder | what |\n|---|---|---|\n| top | `ttstrain/cli.py` | a |\n"
            "| low | `ttstrain/prm/` | b |\n| low | `ttstrain/__init__.py` | c |\n")
    rows = table_rows(section(body, "Layers"))
    assert [node_of(r[1]) for r in rows] == ["ttstrain.cli", "ttstrain.prm", "ttstrain"]


def test_every_folder_is_in_the_layer_table_exactly_once():
    layer_of, listed = doc_layers()
    folders = set(folder_graph(graph()))
    twice = sorted({n for n in listed if listed.count(n) > 1})
    assert not twice, f"listed more than once in docs/design.md's layer table: {twice}"
    assert not folders - set(layer_of), f"missing from docs/design.md's layer table: {sorted(folders - set(layer_of))}"
    assert not set(layer_of) - folders, f"in docs/design.md's layer table but not in the package: {sorted(set(layer_of) - folders)}"


def test_no_import_goes_up_a_layer():
    layer_of, _ = doc_layers()
    edges = {(m, t) for m, targets in graph().items() for t in targets} | dispatch_edges()
    listed = {(m, t) for m, t in edges if folder_of(m) in layer_of and folder_of(t) in layer_of}  # a folder left out fails the test above
    upward = sorted(f"{m} -> {t}" for m, t in listed if layer_of[folder_of(t)] < layer_of[folder_of(m)])
    assert not upward, ("imports from a lower layer to a higher one of docs/design.md's table "
                        "(move the module, or the folder in the table if the layering was wrong): " + "; ".join(upward))


def test_the_runner_sits_below_the_stages_and_reports():
    layer_of, _ = doc_layers()
    runner = layer_of["ttstrain.runner"]
    for above in ("ttstrain.stages", "ttstrain.reporting", "ttstrain.pipeline"):
        assert layer_of[above] < runner, above


def test_each_command_names_the_module_it_dispatches_to():
    from ttstrain.cli import COMMANDS

    rows = table_rows(section(DESIGN.read_text(), "Where each stage lives"))
    by_command = {re.fullmatch(r"`ttstrain ([\w-]+)`", r[1]).group(1): r[2] for r in rows}
    assert set(by_command) == set(COMMANDS), set(by_command) ^ set(COMMANDS)
    for command, (module, _) in COMMANDS.items():
        assert f"`{module.replace('.', '/')}.py`" in by_command[command], (command, module)


def top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_file(parts: list[str]) -> Path | None:
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_every_ttstrain_path_and_module_named_in_the_docs_exists():
    missing = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for path in re.findall(r"\bttstrain/[\w/.*-]*[\w/]", line):
                if "*" in path:
                    path = path.split("*")[0]
                if not (REPO / path).exists():
                    missing.append(f"{doc.relative_to(REPO)}:{n}: {path}")
            for dotted in re.findall(r"\bttstrain(?:\.\w+)+", line):
                parts = dotted.split(".")
                k = next(k for k in range(len(parts), 0, -1) if module_file(parts[:k]))
                rest = parts[k:]
                # a module, or a module and one name defined in it (a class's attribute after that is not checked)
                if rest and (k == 1 or rest[0] not in top_level_names(module_file(parts[:k]))):
                    missing.append(f"{doc.relative_to(REPO)}:{n}: {dotted}")
    assert not missing, "named in the docs but not in the package: " + "; ".join(missing)


def test_every_repository_file_named_in_the_docs_exists():
    roots = r"(?:docs|recipes|bench|tests|data_gen|eval|accelerate_configs)"
    missing = [f"{doc.relative_to(REPO)}:{n}: {path}"
               for doc in DOCS for n, line in enumerate(doc.read_text().splitlines(), 1)
               for path in re.findall(rf"(?<![\w/.-]){roots}/[\w./-]+\.(?:py|yaml|sh|md)\b", line)
               if not (REPO / path).exists()]
    assert not missing, "named in the docs but not in the repository: " + "; ".join(missing)
