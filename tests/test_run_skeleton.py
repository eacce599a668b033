"""Both trainers end through one run skeleton (`ttstrain.trainers.run_skeleton`), and share option names.

A process that is not the main one writes nothing into output_dir (for either trainer) but still
takes part in the save (under ZeRO-3 the save gathers every process's shards); the main process
writes the model, README.md and the same config file, `ttstrain_config.json`, with the resolved
config. PRM folders saved before carry `prm_train_config.json`, which is still read. The revision
trainer's `--model_dtype` / `--dropout` are refused (flag or YAML key) with the new names.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainingArguments

from ttstrain.io import write_parquet
from ttstrain.stages.train_prm import run_train_prm
from ttstrain.stages.train_revision import make_parser as revision_parser
from ttstrain.trainers.revision_config import RevisionConfig
from ttstrain.trainers.revision_trainer import build_revision_trainer, train_revision
from ttstrain.trainers.run_skeleton import (LEGACY_TRAIN_CONFIGS, TRAIN_CONFIG, read_train_config,
                                            save_final_model, write_train_config)

from test_prm_trainer import data_dir, train_prm_cli  # noqa: F401  (the fixture)
from test_revision_training import ROWS


@pytest.fixture(scope="module")
def revision_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("revisions")
    write_parquet(path / "data" / "train-00000-of-00001.parquet", ROWS)
    return path


def prm_run(base_dir, data_dir, out, **flags):
    cfg = train_prm_cli(base_dir, data_dir, out, max_steps=2, validation_fraction=0.2, eval_strategy="no",
                        save_strategy="no", load_best_model_at_end="false", report_to="none", **flags)
    return run_train_prm(cfg)


def revision_run(base_dir, revision_data, out):
    (cfg,) = revision_parser().parse_args_and_config([
        "--model_name_or_path", str(base_dir), "--dataset_path", str(revision_data), "--output_dir", str(out),
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
        "--save_strategy", "no", "--max_length", "512", "--use_cpu", "true", "--report_to", "none",
        "--learning_rate", "1e-3", "--model_dropout", "0.0"])
    return train_revision(cfg)


def not_main(monkeypatch):
    """This process becomes one that is not the main one (rank 1 of a run)."""
    monkeypatch.setattr(TrainingArguments, "should_save", property(lambda self: False))


@pytest.mark.parametrize("use_lora", ["false", "true"])
def test_no_process_but_the_main_one_writes_the_prm_folder(tmp_path, base_dir, data_dir, monkeypatch, use_lora):
    not_main(monkeypatch)
    prm_run(base_dir, data_dir, tmp_path / "prm", use_lora=use_lora, lora_r=4, lora_alpha=8)
    assert not (tmp_path / "prm").exists() or not any((tmp_path / "prm").iterdir())


def test_no_process_but_the_main_one_writes_the_revision_folder(tmp_path, base_dir, revision_data, monkeypatch):
    not_main(monkeypatch)
    out = revision_run(base_dir, revision_data, tmp_path / "rev")
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


def test_both_trainers_write_the_same_files_with_the_resolved_config(tmp_path, base_dir, data_dir, revision_data):
    prm = tmp_path / "prm"
    prm_run(base_dir, data_dir, prm, learning_rate="2e-3")
    rev = revision_run(base_dir, revision_data, tmp_path / "rev")
    for out, kind in ((prm, "prm"), (rev, "revision")):
        names = {p.name for p in out.iterdir()}
        assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", TRAIN_CONFIG,
                "trainer_state.json"} <= names, (kind, names)
        assert not names & set(LEGACY_TRAIN_CONFIGS), kind
        card = (out / "README.md").read_text()
        assert card.startswith("---\nlibrary_name: transformers\ntags: [ttstrain, ") and f", {kind}" in card
        resolved = json.loads((out / TRAIN_CONFIG).read_text())
        assert resolved["output_dir"] == str(out) and resolved["world_size"] == 1 and resolved["ttstrain_version"]
        assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    prm_config = json.loads((prm / TRAIN_CONFIG).read_text())
    assert prm_config["learning_rate"] == 2e-3 and prm_config["data"]["train"]["rows"] > 0
    assert "train_loss" in prm_config["metrics"] and "# Process reward model" in (prm / "README.md").read_text()
    rev_config = json.loads((rev / TRAIN_CONFIG).read_text())
    assert rev_config["learning_rate"] == 1e-3 and rev_config["model_dropout"] == 0.0 and rev_config["dtype"] == "float32"
    assert rev_config["prompt_format"]["step_format"] and "# Revision model" in (rev / "README.md").read_text()
    assert read_train_config(rev) == (rev / TRAIN_CONFIG, rev_config)


class FakeTrainer:
    """What the skeleton calls on a trainer, recorded."""

    def __init__(self, main: bool):
        self.calls = []
        self.model = torch.nn.Linear(2, 2)
        self.args = SimpleNamespace(should_save=main, world_size=2)
        self.state = SimpleNamespace(save_to_json=lambda path: self.calls.append(("state", path)))
        self.accelerator = SimpleNamespace(wait_for_everyone=lambda: self.calls.append("wait"))

    def save_model(self, output_dir):
        self.calls.append(("save_model", output_dir))


@pytest.mark.parametrize("main", [True, False])
def test_every_process_takes_part_in_the_save_and_waits(tmp_path, main):
    trainer = FakeTrainer(main)
    cfg = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    save_final_model(trainer, tmp_path, card="# card\n")
    write_train_config(trainer, tmp_path, cfg, extra={"a": 1})
    # save_model gathers ZeRO-3 shards: a process that skipped it would leave the others waiting forever
    assert trainer.calls[0] == ("save_model", str(tmp_path)) and trainer.calls[1] == "wait"
    assert trainer.calls[-1] == "wait"
    assert ((tmp_path / "README.md").exists(), (tmp_path / TRAIN_CONFIG).exists()) == (main, main)
    if main:
        assert json.loads((tmp_path / TRAIN_CONFIG).read_text())["world_size"] == 2


def test_the_old_prm_config_name_is_still_read(tmp_path):
    assert read_train_config(tmp_path) == (tmp_path / TRAIN_CONFIG, {})
    (tmp_path / "prm_train_config.json").write_text(json.dumps({"seed": 1}))
    assert read_train_config(tmp_path) == (tmp_path / "prm_train_config.json", {"seed": 1})
    (tmp_path / TRAIN_CONFIG).write_text(json.dumps({"seed": 2}))
    assert read_train_config(tmp_path) == (tmp_path / TRAIN_CONFIG, {"seed": 2})


RENAMED = [("model_dtype", "dtype", "float32"), ("dropout", "model_dropout", "0.1")]


@pytest.mark.parametrize("old,new,value", RENAMED)
def test_old_revision_option_names_are_refused_with_the_new_one(capsys, old, new, value):
    with pytest.raises(SystemExit):
        revision_parser().parse_args_and_config([f"--{old}", value, "--use_cpu", "true"])
    assert f"--{old} is now --{new}" in capsys.readouterr().err
    (cfg,) = revision_parser().parse_args_and_config([f"--{new}", value, "--use_cpu", "true"])
    assert str(getattr(cfg, new)) == value


@pytest.mark.parametrize("old,new,value", RENAMED)
def test_old_revision_option_names_in_a_recipe_are_refused_with_the_new_one(tmp_path, capsys, old, new, value):
    recipe = tmp_path / "old.yaml"
    recipe.write_text(f"use_cpu: true\n{old}: {value}\n")
    with pytest.raises(SystemExit):
        revision_parser().parse_args_and_config(["--config", str(recipe)])
    assert f"--{old} is now --{new}" in capsys.readouterr().err
    recipe.write_text(f"use_cpu: true\n{new}: {value}\n")
    (cfg,) = revision_parser().parse_args_and_config(["--config", str(recipe)])
    assert str(getattr(cfg, new)) == value


def test_revision_model_options_reach_the_model(tmp_path, tiny_llama, char_tokenizer):
    cfg = RevisionConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", model_dropout=0.25,
                         dtype="bfloat16", bf16=False, max_length=512)
    trainer = build_revision_trainer(cfg, model=copy.deepcopy(tiny_llama).to(torch.bfloat16),
                                     tokenizer=char_tokenizer, train_rows=ROWS)
    assert trainer.model.config.attention_dropout == 0.25
    with pytest.raises(ValueError, match="--dtype float32"):  # 16-bit weights under bf16 autocast name the option
        build_revision_trainer(RevisionConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", bf16=True,
                                              dtype="auto", max_length=512),
                               model=copy.deepcopy(tiny_llama).to(torch.bfloat16), tokenizer=char_tokenizer,
                               train_rows=ROWS)
