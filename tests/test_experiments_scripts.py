"""The scripts in docs/experiments/ stay importable against the package as it is (fast suite).

Each is imported as a module, which runs nothing but its imports and definitions: the experiment
itself sits in `main(argv=None)` behind an `if __name__ == "__main__":` guard. A script whose
import breaks (a module moved, a name renamed) fails here; one that builds its options with
argparse also parses `--help`.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "docs" / "experiments"
SCRIPTS = sorted(EXPERIMENTS.glob("*.py"))


def is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators))


def test_there_are_experiment_scripts():
    assert len(SCRIPTS) >= 10, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_runs_nothing_at_import(script: Path):
    """Module level holds only the docstring, imports, definitions, constants and the main guard."""
    body = ast.parse(script.read_text()).body
    assert any(is_main_guard(node) for node in body), f"{script.name}: no `if __name__ == \"__main__\":`"
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    for node in body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        assert docstring or is_main_guard(node) or isinstance(node, allowed), \
            f"{script.name}:{node.lineno}: code at module level runs on import; move it into main()"
        if isinstance(node, (ast.Assign, ast.AnnAssign)):  # constants only, no calls
            assert not any(isinstance(n, ast.Call) for n in ast.walk(node)), \
                f"{script.name}:{node.lineno}: a call at module level runs on import; move it into main()"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_imports_and_exposes_main(script: Path, capsys):
    spec = importlib.util.spec_from_file_location(f"experiments_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
    if "parse_args(argv)" in script.read_text():
        with pytest.raises(SystemExit) as done:
            module.main(["--help"])
        assert done.value.code == 0
        assert "usage:" in capsys.readouterr().out
