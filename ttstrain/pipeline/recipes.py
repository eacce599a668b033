"""A pipeline's settings, read from a recipe folder: one YAML per stage, an override set for --quick, then --set.

    from ttstrain.pipeline.recipes import load_stage_settings
    settings = load_stage_settings("recipes/default", quick=True, overrides=["label_mc.per_level=8"])
    settings["label_mc"]["per_level"]   # 8

`<recipe folder>/<stage>/config_pipeline.yaml` holds what `ttstrain pipeline <recipe folder>` (and
`ttstrain demo`, on recipes/default) runs for that stage, in the keys of the stage command's config class (so `ttstrain <stage> --config <that file>` runs it alone);
`quick.yaml` maps stage names to the values --quick replaces; an override `stage.field=value` is
parsed as YAML (`search.methods=[majority,beam_search]`). Unknown stages or fields are errors that
name the file or option, never silently ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from ttstrain.paths import repo_root
from ttstrain.parsing import renamed_hint

DEFAULT_RECIPES = repo_root() / "recipes" / "default"
QUICK_FILE = "quick.yaml"
STAGE_FILE = "config_pipeline.yaml"

# pipeline stage name -> recipe folder (under the recipes folder) holding config_pipeline.yaml
PIPELINE_STAGES = {
    "sample": "sample", "label_mc": "label_mc", "prm": "prm", "eval_prm": "eval_prm", "search": "search",
    "build_revisions": "build_revisions", "revision": "revision", "eval_revision": "eval_revision",
    "predict_bon": "predict_bon", "compute_optimal": "compute_optimal",
}
DEMO_RECIPES = PIPELINE_STAGES


def read_yaml_mapping(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, str, object]:
    """'label_mc.per_level=8' -> ('label_mc', 'per_level', 8)."""
    key, sep, value = text.partition("=")
    stage, dot, name = key.strip().partition(".")
    if not sep or not dot or not stage or not name:
        raise ValueError(f"--set {text!r}: expected stage.field=value, e.g. label_mc.per_level=8")
    return stage, name, yaml.safe_load(value)


def load_stage_settings(recipes: str | Path, quick: bool = False, overrides: list[str] = ()) -> dict[str, dict]:
    """Each stage's settings: its recipe, then quick.yaml (with `quick`), then `overrides`."""
    recipes = Path(recipes)
    if not recipes.is_dir():
        raise FileNotFoundError(f"recipe folder {recipes} does not exist (folders: {', '.join(recipe_folders())})")
    missing = [f"{folder}/{STAGE_FILE}" for folder in PIPELINE_STAGES.values()
               if not (recipes / folder / STAGE_FILE).is_file()]
    if missing:
        raise FileNotFoundError(f"recipe folder {recipes} lacks {', '.join(missing)}: a pipeline folder holds "
                                f"one for every stage ({', '.join(PIPELINE_STAGES)})")
    settings = {stage: read_yaml_mapping(recipes / folder / STAGE_FILE) for stage, folder in PIPELINE_STAGES.items()}
    layers = []
    if quick:
        quick_path = recipes / QUICK_FILE
        layers += [(f"{quick_path}: {stage}", stage, name, value)
                   for stage, values in read_yaml_mapping(quick_path).items() for name, value in (values or {}).items()]
    layers += [(f"--set {text}", *parse_override(text)) for text in overrides]
    for origin, stage, name, value in layers:
        if stage not in settings:
            raise ValueError(f"{origin}: no pipeline stage {stage!r} (stages: {', '.join(PIPELINE_STAGES)})")
        settings[stage][name] = value
    return settings


def recipe_folders() -> list[str]:
    """The shipped recipe folders that hold a whole pipeline."""
    root = repo_root() / "recipes"
    return sorted(str(p.relative_to(repo_root())) for p in root.iterdir()
                  if p.is_dir() and (p / "sample" / STAGE_FILE).is_file())


def check_fields(stage: str, cls, values: dict, recipes: str | Path) -> None:
    """Every key of a stage's settings must be a field of its config class."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{Path(recipes) / PIPELINE_STAGES[stage] / STAGE_FILE} (or its overrides): "
                         f"{', '.join(unknown)} {'is not a field' if len(unknown) == 1 else 'are not fields'} "
                         f"of {cls.__name__}{renamed_hint(' '.join(unknown), known)}")
