"""Every recipe parses with its stage's own parser, and each real model has the whole chain (fast suite)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from ttstrain.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent
STAGE_OF_FOLDER = {"sample": "sample", "label_mc": "label-mc", "prm": "train-prm", "search": "search",
                   "revision": "train-revision", "build_revisions": "build-revisions", "eval_prm": "eval-prm",
                   "eval_revision": "eval-revision", "predict_bon": "predict-bon", "compute_optimal": "compute-optimal",
                   "world": "build-world"}
RECIPES = sorted(p for p in (REPO / "recipes").glob("*/*/*.yaml"))
REAL_MODELS = ("smollm2-135m", "qwen2.5-math-1.5b-instruct", "llama-3.2-1b-instruct")


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(REPO / "recipes")) for p in RECIPES])
def test_recipe_parses(recipe):
    command = STAGE_OF_FOLDER[recipe.parent.name]
    args = ["--config", str(recipe)]
    if command in ("train-prm", "train-revision"):
        args += ["--bf16", "false"]  # TrainingArguments refuses bf16 on a machine without a GPU that has it
    (cfg,) = importlib.import_module(COMMANDS[command][0]).make_parser().parse_args_and_config(args)
    assert cfg is not None
    assert recipe.read_text().startswith("#"), "a recipe opens with a comment saying what it is for"


@pytest.mark.parametrize("model", REAL_MODELS)
def test_each_real_model_has_the_whole_chain(model):
    folders = {p.parent.name for p in (REPO / "recipes" / model).glob("*/*.yaml")}
    assert {"sample", "label_mc", "prm", "search", "revision"} <= folders
    text = (REPO / "recipes" / "README.md").read_text()
    assert f"recipes/{model}/" in text
