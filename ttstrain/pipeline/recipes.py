"""The demo's settings, read from recipes: one YAML per stage, an override set for --quick, then --set.

    from ttstrain.pipeline.recipes import load_stage_settings
    settings = load_stage_settings("recipes/default", quick=True, overrides=["label_mc.per_level=8"])
    settings["label_mc"]["per_level"]   # 8

`recipes/default/<stage>/config_demo.yaml` holds what `ttstrain demo` runs for that stage, in the
keys of the stage command's config class (so `ttstrain <stage> --config <that file>` runs it alone);
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

# demo stage name -> recipe folder (under the recipes folder) holding config_demo.yaml
DEMO_RECIPES = {
    "sample": "sample", "label_mc": "label_mc", "prm": "prm", "eval_prm": "eval_prm", "search": "search",
    "build_revisions": "build_revisions", "revision": "revision", "eval_revision": "eval_revision",
    "predict_bon": "predict_bon", "compute_optimal": "compute_optimal",
}


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
    """Each demo stage's settings: its recipe, then quick.yaml (with `quick`), then `overrides`."""
    recipes = Path(recipes)
    settings = {stage: read_yaml_mapping(recipes / folder / "config_demo.yaml") for stage, folder in DEMO_RECIPES.items()}
    layers = []
    if quick:
        quick_path = recipes / QUICK_FILE
        layers += [(f"{quick_path}: {stage}", stage, name, value)
                   for stage, values in read_yaml_mapping(quick_path).items() for name, value in (values or {}).items()]
    layers += [(f"--set {text}", *parse_override(text)) for text in overrides]
    for origin, stage, name, value in layers:
        if stage not in settings:
            raise ValueError(f"{origin}: no demo stage {stage!r} (stages: {', '.join(DEMO_RECIPES)})")
        settings[stage][name] = value
    return settings


def check_fields(stage: str, cls, values: dict, recipes: str | Path) -> None:
    """Every key of a stage's settings must be a field of its config class."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{Path(recipes) / DEMO_RECIPES[stage] / 'config_demo.yaml'} (or its overrides): "
                         f"{', '.join(unknown)} {'is not a field' if len(unknown) == 1 else 'are not fields'} "
                         f"of {cls.__name__}{renamed_hint(' '.join(unknown), known)}")
