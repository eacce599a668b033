"""The demo runs what its recipes say: recipes/default/<stage>/config_pipeline.yaml, quick.yaml, --set.

These build the demo's stage configs without running a stage (fast suite).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import ttstrain.pipeline.run as run_module
from ttstrain.io import write_parquet
from ttstrain.pipeline.demo import DemoConfig, demo_stage_configs, main
from ttstrain.pipeline.recipes import DEFAULT_RECIPES, DEMO_RECIPES, load_stage_settings, parse_override


@pytest.fixture
def recipes(tmp_path) -> Path:
    copy = tmp_path / "recipes"
    shutil.copytree(DEFAULT_RECIPES, copy)
    return copy


def _edit(path: Path, **values) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(values)
    path.write_text(yaml.safe_dump(data))


def test_a_recipe_value_changes_the_demo_config(recipes, tmp_path):
    before = demo_stage_configs(DemoConfig(output_dir=str(tmp_path / "d"), recipes=str(recipes)))
    assert before["label_mc"].num_rollouts == 8 and before["prm"].learning_rate == 1e-4
    _edit(recipes / "label_mc" / "config_pipeline.yaml", num_rollouts=3)
    _edit(recipes / "prm" / "config_pipeline.yaml", learning_rate=2e-4, early_stopping_patience=5)
    after = demo_stage_configs(DemoConfig(output_dir=str(tmp_path / "d"), recipes=str(recipes)))
    assert after["label_mc"].num_rollouts == 3 and after["label_mc"].output_dir.endswith("label_mc-24x8x3-seed0")
    assert after["prm"].learning_rate == 2e-4 and after["prm"].early_stopping_patience == 5
    # the PRM trains on the labels the label stage writes, wherever they go
    assert after["prm"].dataset_path == after["label_mc"].output_dir == after["eval_prm"].labels


def test_quick_and_set_override_in_that_order(recipes, tmp_path):
    quick = demo_stage_configs(DemoConfig(output_dir=str(tmp_path), quick=True, recipes=str(recipes)))
    assert (quick["sample"].per_level, quick["search"].max_budget, quick["eval_revision"].num_chains) == (10, 4, 2)
    assert quick["eval_prm"].budgets == [1, 2, 4, 8, 16]  # from the quick sample count
    both = demo_stage_configs(DemoConfig(output_dir=str(tmp_path), quick=True, recipes=str(recipes),
                                         set=["search.max_budget=8", "search.methods=[majority,beam_search]"]))
    assert both["search"].max_budget == 8 and both["search"].methods == ["majority", "beam_search"]
    # revision chains run on the searched problems
    assert both["eval_revision"].per_level == both["search"].per_level == 2


def test_unknown_stage_field_and_malformed_override_fail_by_name(recipes, tmp_path):
    with pytest.raises(ValueError, match=r"--set labl_mc.per_level=2: no pipeline stage 'labl_mc'"):
        load_stage_settings(recipes, overrides=["labl_mc.per_level=2"])
    with pytest.raises(ValueError, match="expected stage.field=value"):
        parse_override("per_level=2")
    _edit(recipes / "search" / "config_pipeline.yaml", max_budgt=8)
    with pytest.raises(ValueError, match=r"search/config_pipeline.yaml .*max_budgt is not a field of SearchStageConfig"):
        demo_stage_configs(DemoConfig(output_dir=str(tmp_path), recipes=str(recipes)))


def test_every_demo_recipe_runs_alone_through_its_stage_parser():
    import importlib

    from ttstrain.cli import COMMANDS

    commands = {"sample": "sample", "label_mc": "label-mc", "prm": "train-prm", "eval_prm": "eval-prm",
                "search": "search", "build_revisions": "build-revisions", "eval_revision": "eval-revision",
                "predict_bon": "predict-bon", "compute_optimal": "compute-optimal"}
    for stage, command in commands.items():
        module = importlib.import_module(COMMANDS[command][0])
        (cfg,) = module.make_parser().parse_args_and_config(
            ["--config", str(DEFAULT_RECIPES / DEMO_RECIPES[stage] / "config_pipeline.yaml")])
        assert cfg is not None, stage


def test_print_config_shows_the_resolved_stages(capsys, tmp_path):
    main(["--output_dir", str(tmp_path / "d"), "--quick", "true", "--print_config", "true",
          "--set", "label_mc.num_samples=3"])
    printed = json.loads(capsys.readouterr().out)
    # the demo PRM has reference features, so the search runs again scored by its value head alone
    assert set(printed) == set(DEMO_RECIPES) | {"greedy", "search_value_head", "compute_optimal_value_head"}
    search, again = printed["search"], printed["search_value_head"]
    assert again["verifier"] == "value_head" and search["verifier"] == "prm"
    assert again["output_dir"] == search["output_dir"] + "-value_head"
    assert {k: v for k, v in again.items() if k not in ("verifier", "output_dir")} == \
        {k: v for k, v in search.items() if k not in ("verifier", "output_dir")}
    co = printed["compute_optimal_value_head"]
    assert co["search_dirs"] == [again["output_dir"]] and co["revisions"] is None
    printed_without = json.loads(_print_config(capsys, tmp_path, "prm.reference_features=false"))
    assert set(printed_without) == set(DEMO_RECIPES) | {"greedy"}
    assert printed["label_mc"]["num_samples"] == 3 and printed["prm"]["num_train_epochs"] == 3
    assert not (tmp_path / "d").exists()  # printing runs nothing


def _print_config(capsys, tmp_path, *overrides) -> str:
    main(["--output_dir", str(tmp_path / "d"), "--quick", "true", "--print_config", "true", "--set", *overrides])
    return capsys.readouterr().out


class _Stop(Exception):
    pass


def test_the_demo_samples_through_the_sample_stage_with_every_recipe_value(monkeypatch, tmp_path):
    """The demo called the sampler itself, so the sample recipe's top_p, prompt format, few-shot examples,
    limit and levels never reached its samples; it now runs the sample stage's own entry on that config."""
    seen = []

    def run_sample(cfg, generator=None, progress=True):
        seen.append(cfg)
        if len(seen) == 2:
            raise _Stop
        write_parquet(Path(cfg.output_dir) / "samples.parquet", [{"problem_id": "p", "correct": True}])
        return {"generated_tokens_per_s": 1.0}

    monkeypatch.setattr(run_module, "run_sample", run_sample)
    # the stages must agree on the prompt and the test problems, so few_shot and levels go to every one
    agree = [f"{stage}.few_shot=2" for stage in ("label_mc", "search", "build_revisions")] + ["search.levels=[1, 2]"]
    with pytest.raises(_Stop):
        main(["--output_dir", str(tmp_path / "d"), "--quick", "true", "--set", "sample.top_p=0.5",
              "sample.few_shot=2", "sample.levels=[1, 2]", "sample.limit=7", *agree])
    greedy, sample = seen
    for cfg in (greedy, sample):
        assert (cfg.top_p, cfg.few_shot, cfg.levels, cfg.limit) == (0.5, 2, [1, 2], 7)
    assert (greedy.num_samples, greedy.temperature) == (1, 0.0)
    assert sample.num_samples > 1 and sample.temperature == 1.0
