"""The one chunked-stage runner (`ttstrain.runner.chunked`) behind sample, label-mc, search,
build-revisions and eval-revision: `--shard i/n` on each, shards that merge to the single run's
rows, and one rule for which config fields a resume must match (fast suite; scripted policy)."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
from transformers import HfArgumentParser
from trl import TrlParser

from test_kill_resume import STAGES, output_rows, policy
from ttstrain.cli import COMMANDS
from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.io import read_parquet
from ttstrain.runner.chunked import stage_fingerprint
from ttstrain.search import ScriptedScorer
from ttstrain.stages.build_revisions import BuildRevisionsConfig, run_build_revisions
from ttstrain.stages.eval_revision import EvalRevisionConfig, run_eval_revision
from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc
from ttstrain.stages.run_search import SearchStageConfig, run_search_stage
from ttstrain.stages.sample import SampleConfig, run_sample

RUNS = {"sample": (SampleConfig, run_sample), "label-mc": (LabelMCConfig, run_label_mc),
        "build-revisions": (BuildRevisionsConfig, run_build_revisions),
        "eval-revision": (EvalRevisionConfig, run_eval_revision)}
CHUNKED = ["sample", "label-mc", "search", "build-revisions", "eval-revision"]


def _run(stage: str, out, **options):
    config, run = RUNS[stage]
    return run(config(**{**STAGES[stage], "output_dir": str(out), **options}), generator=ScriptedGenerator(policy),
               progress=False)


@pytest.mark.parametrize("command", CHUNKED)
def test_every_chunked_stage_takes_shard_and_merge_only(command):
    module = importlib.import_module(COMMANDS[command][0])
    (cfg,) = module.make_parser().parse_args_and_config(["--shard", "1/3", "--merge_only", "true"])
    assert cfg.shard == "1/3" and cfg.merge_only is True


@pytest.mark.parametrize("stage", list(RUNS))
def test_shards_merge_to_the_rows_of_one_run(tmp_path, stage):
    _run(stage, tmp_path / "single")
    assert _run(stage, tmp_path / "sharded", shard="0/2") is None  # the other shard's chunks are still to do
    assert (tmp_path / "sharded" / "config.shard-0-of-2.json").exists()
    assert _run(stage, tmp_path / "sharded", shard="1/2") is not None  # the last shard merges
    rows = output_rows(stage, tmp_path / "sharded")
    assert rows and rows == output_rows(stage, tmp_path / "single")
    merged = json.loads((tmp_path / "sharded" / "config.json").read_text())
    assert merged["shard_configs"] == ["config.shard-0-of-2.json", "config.shard-1-of-2.json"]


def test_merge_only_merges_what_the_shards_wrote(tmp_path):
    _run("sample", tmp_path / "single")
    for i in range(2):
        assert _run("sample", tmp_path / "s", shard=f"{i}/3") is None
    assert _run("sample", tmp_path / "s", merge_only=True) is None  # chunk 2 of 3 is missing: nothing merged
    assert not (tmp_path / "s" / "samples.parquet").exists()
    _run("sample", tmp_path / "s", shard="2/3")
    assert read_parquet(tmp_path / "s" / "samples.parquet") == read_parquet(tmp_path / "single" / "samples.parquet")


def test_search_shards_merge_results_and_candidates(tmp_path):
    def search(out, **options):
        cfg = SearchStageConfig(output_dir=str(out), problems="arith", split="test", per_level=1, max_budget=2,
                                methods=["majority", "best_of_n_weighted", "beam_search"], beam_width="2",
                                resamples=2, problems_per_chunk=2, seed=3, **options)
        scorer = ScriptedScorer(lambda prompt, steps: 0.1 * len(steps), num_parameters=10)
        return run_search_stage(cfg, generator=ScriptedGenerator(policy), scorer=scorer, progress=False)

    single = search(tmp_path / "single")
    assert search(tmp_path / "sharded", shard="1/2") is None
    assert (tmp_path / "sharded" / "chunks" / "chunk-000002-000004.candidates.parquet").exists()
    sharded = search(tmp_path / "sharded", shard="0/2")
    assert sharded["methods"] == single["methods"]
    for name in ("results.parquet", "candidates.parquet"):
        assert read_parquet(tmp_path / "sharded" / name) == read_parquet(tmp_path / "single" / name)


@pytest.mark.parametrize("config", [SampleConfig, LabelMCConfig, SearchStageConfig, BuildRevisionsConfig,
                                    EvalRevisionConfig])
def test_a_new_field_counts_for_resume_unless_declared_otherwise(config):
    @dataclass
    class Extended(config):
        runtime_fields: ClassVar[tuple[str, ...]] = ("where_it_runs",)
        new_knob: int = 1
        where_it_runs: int = 2

    counted = stage_fingerprint(Extended())
    assert "new_knob" in counted and "where_it_runs" not in counted
    assert not {"output_dir", "shard", "merge_only", "device", "max_batch_rows", "gpu_memory_utilization"} & set(counted)
    assert {"seed", "model_name_or_path", "levels", "max_new_tokens"} <= set(counted)


def test_eval_revision_resumes_with_other_verifiers_but_not_other_chains(tmp_path):
    """Its verifiers score the chains after the chunks: a resume may name others (the old keep-list left
    out `levels` too, which changes the problems)."""
    _run("eval-revision", tmp_path / "e")
    assert _run("eval-revision", tmp_path / "e", prm_format="trl", prm_dtype="float32") is not None
    with pytest.raises(ValueError, match=r"differs in \['levels'\]"):
        _run("eval-revision", tmp_path / "e", levels=[1])


def test_a_fingerprint_recorded_before_a_field_existed_stands_for_its_default(tmp_path):
    _run("sample", tmp_path / "s")
    recorded = tmp_path / "s" / "run_fingerprint.json"
    older = {k: v for k, v in json.loads(recorded.read_text()).items() if k != "top_p"}
    recorded.write_text(json.dumps(older))
    assert _run("sample", tmp_path / "s") is not None  # top_p at its default: the run it was
    with pytest.raises(ValueError, match=r"differs in \['top_p'\]"):
        _run("sample", tmp_path / "s", top_p=0.5)


def test_a_field_counted_since_a_folder_was_recorded_does_not_refuse_it(tmp_path):
    """eval-revision's fingerprint left `levels` out before the one runner: such a folder, made with
    --levels, resumes; one recorded with its levels is held to them."""
    _run("eval-revision", tmp_path / "e", levels=[1, 2])
    recorded = tmp_path / "e" / "run_fingerprint.json"
    recorded.write_text(json.dumps({k: v for k, v in json.loads(recorded.read_text()).items() if k != "levels"}))
    next((tmp_path / "e" / "chunks").glob("chunk-*[0-9].parquet")).unlink()
    assert _run("eval-revision", tmp_path / "e", levels=[1, 2]) is not None


def test_a_field_no_longer_counted_is_not_compared(tmp_path):
    """A recorded value of a field now declared a runtime field (where it runs) never refuses a resume."""
    _run("sample", tmp_path / "s")
    recorded = tmp_path / "s" / "run_fingerprint.json"
    recorded.write_text(json.dumps({**json.loads(recorded.read_text()), "max_batch_rows": 7, "device": "cuda:3"}))
    assert _run("sample", tmp_path / "s") is not None


@pytest.mark.parametrize("config", [SampleConfig, LabelMCConfig, SearchStageConfig, BuildRevisionsConfig,
                                    EvalRevisionConfig])
def test_trl_and_transformers_parsers_take_the_stage_configs(config):
    """Users compose these configs with TRL's own parser; what the runner reads of a field is not argparse's."""
    (cfg,) = TrlParser((config,)).parse_args_and_config(["--seed", "7", "--shard", "0/2"])
    (again,) = HfArgumentParser((config,)).parse_args_into_dataclasses(["--seed", "7"])
    assert (cfg.seed, cfg.shard, again.seed) == (7, "0/2", 7)
