"""Every verifier class of the package has every member `ttstrain.prm.verifiers.Verifier` declares (fast suite).

Search, eval-prm and revision selection call `prompt_for`, `prompt_format`, `reads_questions`, `describe()`,
`clear_prefix_caches()` and the rest without probing for them, so a verifier class that lacks one fails here,
not in the middle of a run. Verifier classes are found, not listed: every class in ttstrain/ with a
`score(self, prompts, steps)` method.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from pathlib import Path

import pytest

import ttstrain
from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.prm.verifiers import Verifier

PACKAGE = Path(ttstrain.__file__).parent


def declared_members(protocol) -> set[str]:
    """The data members (annotations), methods and properties a protocol declares."""
    defined = {name for name, value in vars(protocol).items()
               if not name.startswith("_") and (callable(value) or isinstance(value, property))}
    return set(protocol.__annotations__) | defined


def assigned_on_self(cls) -> set[str]:
    """Attributes that the methods of `cls` and of its bases assign on `self` (the instance members)."""
    names = set()
    for klass in cls.__mro__[:-1]:  # not object
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(klass)))):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
            for target in targets:
                for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        names.add(t.attr)
    return names


def missing_members(cls, protocol=Verifier) -> list[str]:
    instance = assigned_on_self(cls)
    return sorted(m for m in declared_members(protocol) if not hasattr(cls, m) and m not in instance)


def is_score_method(node: ast.stmt) -> bool:
    return isinstance(node, ast.FunctionDef) and node.name == "score" and \
        [a.arg for a in node.args.args[1:3]] == ["prompts", "steps"]


def verifier_classes() -> list[type]:
    """The classes of ttstrain/ with a `score(self, prompts, steps, ...)` method, protocols left out."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        classes = [node.name for node in ast.parse(path.read_text()).body
                   if isinstance(node, ast.ClassDef) and any(is_score_method(f) for f in node.body)]
        if classes:
            rel = path.relative_to(PACKAGE.parent).with_suffix("")
            module = importlib.import_module(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
            found += [c for c in (getattr(module, name) for name in classes) if not getattr(c, "_is_protocol", False)]
    return found


VERIFIERS = verifier_classes()


def test_the_protocol_declares_what_callers_use():
    assert {"score", "score_solutions", "prompt_for", "prompt_format", "reads_questions", "describe",
            "clear_prefix_caches", "num_parameters", "stats", "last_scored_tokens", "progress_hook"} \
        <= declared_members(Verifier)


def test_every_verifier_class_is_found():
    assert {"PRMScorer", "LikelihoodScorer", "ConventionScorer", "VLLMPoolingScorer", "ScriptedScorer"} \
        <= {c.__name__ for c in VERIFIERS}


@pytest.mark.parametrize("cls", VERIFIERS, ids=lambda c: c.__name__)
def test_verifier_class_has_every_declared_member(cls):
    assert not missing_members(cls), f"{cls.__module__}.{cls.__name__} lacks {missing_members(cls)}"


def test_a_verifier_without_a_member_is_caught():
    class NoDescribe:
        reads_questions = False

        def __init__(self):
            self.stats, self.last_scored_tokens = {"tokens": 0}, []
            self.prompt_format = self.progress_hook = None

        @property
        def num_parameters(self):
            return 0

        def score(self, prompts, steps):
            return [[0.5] * len(s) for s in steps]

        def score_solutions(self, prompts, steps, how="last"):
            return [0.5] * len(prompts)

        def prompt_for(self, question):
            return question

        def clear_prefix_caches(self):
            pass

    class ScoreOnly:
        def score(self, prompts, steps):
            return [[0.5] * len(s) for s in steps]

    assert missing_members(NoDescribe) == ["describe"]
    assert missing_members(ScoreOnly) == sorted(declared_members(Verifier) - {"score"})


def test_every_generator_can_be_closed_and_given_a_fresh_prefix_cache():
    """Callers close a generator and open a fresh prefix cache on it without asking whether it has one."""
    gen = ScriptedGenerator(lambda prompt, j, params: "x")
    with gen.fresh_prefix_cache(1 << 20) as cache:
        assert cache is None
    gen.close()
