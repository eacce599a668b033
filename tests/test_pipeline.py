"""`ttstrain pipeline <recipe folder>`: every shipped folder resolves and agrees; disagreeing stages are
refused by name; stage records resume what is unchanged and clear what is not (fast suite: no stage runs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ttstrain.cli import main as cli_main
from ttstrain.paths import repo_root
from ttstrain.pipeline.recipes import PIPELINE_STAGES, STAGE_FILE, recipe_folders
from ttstrain.pipeline.records import StageRecords, config_key
from ttstrain.pipeline.run import PipelineConfig, pipeline_stage_configs, recipe_folder_first

FOLDERS = ["recipes/default", "recipes/smollm2-135m", "recipes/qwen2.5-math-1.5b-instruct",
           "recipes/llama-3.2-1b-instruct"]


def test_the_shipped_pipeline_folders_are_the_four_named():
    assert recipe_folders() == sorted(FOLDERS)


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_folder_prints_its_checked_plan_on_cpu(folder, capsys, tmp_path):
    """The GPU folders too: their bf16 trainers are planned, not built for this machine."""
    cli_main(["pipeline", str(repo_root() / folder), "--output_dir", str(tmp_path / "run"), "--print_config", "true"])
    plan = json.loads(capsys.readouterr().out)
    assert set(PIPELINE_STAGES) | {"greedy"} <= set(plan)
    assert not (tmp_path / "run").exists()  # printing runs nothing
    # the wiring: each stage reads what the one before it writes
    assert plan["prm"]["dataset_path"] == plan["label_mc"]["output_dir"] == plan["eval_prm"]["labels"]
    assert plan["search"]["prm_path"] == plan["prm"]["output_dir"] == plan["eval_revision"]["prm_path"]
    assert plan["revision"]["dataset_path"] == plan["build_revisions"]["output_dir"]
    assert plan["eval_revision"]["model_name_or_path"] == plan["revision"]["output_dir"]
    assert plan["compute_optimal"]["search_dirs"] == [plan["search"]["output_dir"]]
    policy = plan["sample"]["model_name_or_path"]
    assert all(plan[s]["model_name_or_path"] == policy for s in ("label_mc", "search", "build_revisions", "prm", "revision"))
    if "qwen" in folder or "llama" in folder:
        assert plan["prm"]["bf16"] is True and plan["sample"]["backend"] == "vllm"


def test_the_recipe_folder_is_the_first_word():
    assert recipe_folder_first(["recipes/x", "--quick", "true"]) == ["--recipes", "recipes/x", "--quick", "true"]
    assert recipe_folder_first(["--quick", "true"]) == ["--quick", "true"]
    assert PipelineConfig(recipes="recipes/smollm2-135m").out() == Path("runs/smollm2-135m")


@pytest.fixture
def folder(tmp_path) -> Path:
    copy = tmp_path / "recipes"
    shutil.copytree(repo_root() / "recipes" / "smollm2-135m", copy)
    return copy


def _edit(path: Path, **values) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(values)
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("stage, values, named", [
    ("label_mc", {"step_separator": "paragraph"}, "step separator: sample"),
    ("search", {"prompt_format": "plain", "few_shot": 0}, "prompt format: sample"),
    ("build_revisions", {"model_name_or_path": "default"}, "model: sample"),
    ("prm", {"model_name_or_path": "default"}, "the model trained: model: sample"),
    ("search", {"levels": [1, 2]}, "the test problems: levels: sample"),
    ("label_mc", {"dtype": "bfloat16"}, "dtype: sample"),
])
def test_stages_that_disagree_are_refused_by_name(folder, tmp_path, stage, values, named):
    _edit(folder / stage / STAGE_FILE, **values)
    with pytest.raises(ValueError) as err:
        pipeline_stage_configs(PipelineConfig(recipes=str(folder), output_dir=str(tmp_path / "o")))
    message = str(err.value)
    assert named in message and f"{stage} ({folder / stage / STAGE_FILE})" in message


def test_one_model_for_all_on_the_command_line_settles_it(folder, tmp_path):
    _edit(folder / "build_revisions" / STAGE_FILE, model_name_or_path="default")
    configs = pipeline_stage_configs(PipelineConfig(recipes=str(folder), output_dir=str(tmp_path / "o"),
                                                    model_name_or_path="smollm2-135m"))
    assert {configs[s].model_name_or_path for s in ("sample", "build_revisions", "prm", "revision")} == {"smollm2-135m"}


def test_a_folder_missing_a_stage_is_named(folder, tmp_path):
    (folder / "predict_bon" / STAGE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks predict_bon/config_pipeline.yaml"):
        pipeline_stage_configs(PipelineConfig(recipes=str(folder), output_dir=str(tmp_path / "o")))


def test_a_malformed_targets_file_stops_the_plan(folder, tmp_path):
    (folder / "targets.yaml").write_text("weighted_minus_majority_at_16: {standard_error: 2}\n")
    with pytest.raises(ValueError, match=r"targets.yaml: weighted_minus_majority_at_16: unknown condition"):
        pipeline_stage_configs(PipelineConfig(recipes=str(folder), output_dir=str(tmp_path / "o")))


def test_a_record_resumes_its_own_key_and_clears_another(tmp_path):
    records = StageRecords(tmp_path / "pipeline")
    out = tmp_path / "stage_out"
    key = records.key("label_mc", {"per_level": 4})
    assert not records.start("label_mc", key, [out])
    (out / "chunks").mkdir(parents=True)
    (out / "chunks" / "0.parquet").write_text("a chunk")
    # stopped before it finished: the same settings resume, keeping the chunks
    assert not records.done("label_mc", key)
    assert records.start("label_mc", key, [out]) and (out / "chunks" / "0.parquet").exists()
    # other settings: what is there was written by them, so it goes
    other = StageRecords(tmp_path / "pipeline").key("label_mc", {"per_level": 5})
    assert not records.start("label_mc", other, [out]) and not out.exists()


def test_a_finished_stage_is_skipped_with_its_summary_as_returned(tmp_path):
    records = StageRecords(tmp_path / "pipeline")
    key = records.key("eval_prm", {"budgets": [1, 2]})
    records.start("eval_prm", key, [])
    summary = {"weighted_at": {1: 0.5, 2: 0.75}, "levels": (1, 2)}
    records.finish("eval_prm", key, summary, seconds=3.21, generation={"generated_tokens": 7})
    again = StageRecords(tmp_path / "pipeline")
    key_again = again.key("eval_prm", {"budgets": [1, 2]})
    assert again.done("eval_prm", key_again) and again.summary("eval_prm") == summary  # int keys and tuples kept
    record = again.record("eval_prm")
    assert record["seconds"] == 3.2 and record["generation"] == {"generated_tokens": 7}


def test_a_key_follows_its_upstream_stages_and_not_where_it_runs(tmp_path):
    records = StageRecords(tmp_path)
    records.key("label_mc", {"per_level": 4})
    prm = records.key("prm", {"learning_rate": 1e-4}, upstream=["label_mc"])
    records.key("label_mc", {"per_level": 5})
    assert records.key("prm", {"learning_rate": 1e-4}, upstream=["label_mc"]) != prm
    assert config_key({"per_level": 4, "shard": "0/2", "report_to": ["none"]}, {}) == config_key({"per_level": 4}, {})
    with pytest.raises(RuntimeError, match="reads search, which has no key yet"):
        records.key("compute_optimal", {}, upstream=["search"])
