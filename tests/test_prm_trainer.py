"""PRM trainer: soft labels reach the loss unchanged, label placement, packing, splits, modes, smoke trains.

The multi-process tests launch real processes: DDP with gloo via torchrun (2 CPU processes) and,
marked slow, DeepSpeed ZeRO-2 via `accelerate launch` (compiles its CPU ops on first use).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ttstrain.io import write_parquet
from ttstrain.prompts import format_prompt
from ttstrain.steps import split_steps, step_end_positions
from ttstrain.prm.config import PRMConfig
from ttstrain.prm.batching import build_batch, pack_rows
from ttstrain.prm.data import load_prm_rows, row_targets, split_by_question, tokenize_dataset, tokenize_row
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY
from ttstrain.prm.trainer import IGNORE_INDEX, PRMDataCollator, PRMTrainer, load_prm_model
from ttstrain.world.task import problems_split

REPO = Path(__file__).resolve().parents[1]
PROMPT = format_prompt("Start with 2.\n1. Add 3.\n2. Multiply by 2.\nWhat is the result?")
STEPS = ["2 + 3 = 5", "5 * 2 = 10", "The answer is \\boxed{10}."]


def synthetic_rows(per_level: int = 4, seed: int = 0) -> list[dict]:
    """Two rows per problem in label-mc's schema: the right solution (soft 0.625 labels, then 1) and one
    with a wrong step (0.5 before it, 0 from it on)."""
    rows = []
    for p in problems_split("train", per_level, seed=seed):
        steps = split_steps(p["solution"])
        n = len(steps)
        k = random.Random(p["id"]).randrange(max(1, n - 1))
        bad = list(steps)
        bad[k] = bad[k].rsplit("=", 1)[0] + "= 0"
        for j, (sol, labels, ok) in enumerate([(steps, [0.625] * (n - 1) + [1.0], True),
                                               (bad, [0.5] * k + [0.0] * (n - k), False)]):
            rows.append(dict(prompt=format_prompt(p["question"]), completions=sol, labels=labels,
                             problem_id=p["id"], sample_index=j, final_correct=ok,
                             rollouts_per_step=[8] * (n - 1) + [0], hard_labels=[float(x > 0) for x in labels],
                             question=p["question"], gold=p["answer"], level=p["level"]))
    return rows


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("prm_data")
    write_parquet(path / "data" / "train-00000-of-00001.parquet", synthetic_rows(per_level=6))
    return path


def train_prm_cli(base_dir, data_dir, out, **flags):
    """`ttstrain train-prm`'s parsed config for a small CPU run of the tiny model; `flags` add or override options."""
    from ttstrain.stages.train_prm import make_parser

    options = {"model_name_or_path": base_dir, "dataset_path": data_dir, "output_dir": out, "learning_rate": "3e-3",
               "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "validation_fraction": 0.2,
               "disable_tqdm": "true", "dataloader_pin_memory": "false", "use_cpu": "true", "seed": 0, **flags}
    (cfg,) = make_parser().parse_args_and_config([a for k, v in options.items() for a in (f"--{k}", str(v))])
    return cfg


def _row(labels, final_correct=True, hard=None):
    return {"prompt": PROMPT, "completions": STEPS, "labels": labels, "final_correct": final_correct,
            "hard_labels": hard if hard is not None else [float(x > 0) for x in labels], "problem_id": "p0"}


def _config(tmp_path, **kw) -> PRMConfig:
    base = dict(output_dir=str(tmp_path / "prm"), learning_rate=3e-3, per_device_train_batch_size=4,
                gradient_accumulation_steps=1, logging_steps=1, report_to="none", seed=0, disable_tqdm=True,
                dataloader_pin_memory=False, use_cpu=True)
    base.update(kw)
    return PRMConfig(**base)


# ----------------------------------------------------------------------------------- labels

def test_soft_label_reaches_the_loss_unchanged(tmp_path, base_dir, char_tokenizer):
    model, tok = load_prm_model(str(base_dir), head_dropout=0.0, model_dropout=0.0)
    args = _config(tmp_path, validation_fraction=0.0)
    rows = [_row([0.625, 0.625, 1.0]), _row([0.5, 0.0, 0.0], final_correct=False)]
    feats = [tokenize_row(r, tok) for r in rows]
    assert feats[0]["label_values"] == [0.625, 0.625, 1.0]
    batch = PRMDataCollator(tok.pad_token_id)(feats)
    labels = batch["labels"]
    assert sorted(labels[labels != IGNORE_INDEX].tolist()) == sorted([0.625, 0.625, 1.0, 0.5, 0.0, 0.0])

    from datasets import Dataset

    trainer = PRMTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        # by hand: one forward per row, unpacked, BCE at the step ends against the stored floats
        terms = []
        for row in rows:
            st = step_end_positions(tok, row["prompt"], row["completions"])
            logits = model(input_ids=torch.tensor([st.input_ids])).logits[0, :, 0]
            for pos, y in zip(st.step_end_positions, row["labels"]):
                p = torch.sigmoid(logits[pos])
                terms.append(-(y * torch.log(p) + (1 - y) * torch.log(1 - p)))
        by_hand = torch.stack(terms).mean()
        rounded = labels.clone()
        rounded[(rounded != IGNORE_INDEX)] = rounded[(rounded != IGNORE_INDEX)].trunc()  # what int(label) would do
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "num_tokens")}).logits[..., 0]
        mask = rounded != IGNORE_INDEX
        loss_if_rounded = F.binary_cross_entropy_with_logits(logits[mask], rounded[mask])
    assert torch.allclose(loss, by_hand, atol=1e-5), (loss, by_hand)
    assert abs(loss.item() - loss_if_rounded.item()) > 1e-3


def test_label_positions_are_the_step_ends(char_tokenizer, merging_tokenizer):
    for tok in (char_tokenizer, merging_tokenizer):
        for p in problems_split("test", 2, seed=3):
            prompt, steps = format_prompt(p["question"]), split_steps(p["solution"])
            row = {"prompt": prompt, "completions": steps, "labels": [0.25] * len(steps)}
            feat = tokenize_row(row, tok)
            st = step_end_positions(tok, prompt, steps)
            assert feat["input_ids"] == st.input_ids
            assert feat["label_positions"] == st.step_end_positions
            # and the collator puts the targets there, packed with another row at an offset
            other = tokenize_row({"prompt": PROMPT, "completions": STEPS, "labels": [1.0, 1.0, 1.0]}, tok)
            batch = PRMDataCollator(tok.pad_token_id, packing=True, packing_length=10_000)([other, feat])
            r, c = torch.nonzero(batch["labels"] == 0.25, as_tuple=True)
            offset = len(other["input_ids"]) if len(other["input_ids"]) >= len(feat["input_ids"]) else 0
            assert r.unique().numel() == 1
            assert (c - offset).tolist() == st.step_end_positions


def test_modes_orm_hard_and_truncation(char_tokenizer):
    row = _row([0.625, 0.0, 0.0], final_correct=False, hard=[1.0, 0.0, 0.0])
    assert row_targets(row, "soft") == ([0, 1, 2], [0.625, 0.0, 0.0])
    assert row_targets(row, "hard") == ([0, 1, 2], [1.0, 0.0, 0.0])
    assert row_targets(row, "hard", hard_threshold=0.7) == ([0, 1, 2], [0.0, 0.0, 0.0])
    assert row_targets(row, "hard", hard_labels_from_dataset=True) == ([0, 1, 2], [1.0, 0.0, 0.0])
    st = step_end_positions(char_tokenizer, PROMPT, STEPS)
    for r, target in ((row, 0.0), (_row([0.625, 0.625, 1.0]), 1.0)):
        feat = tokenize_row(r, char_tokenizer, label_mode="orm")
        assert feat["label_positions"] == [st.step_end_positions[-1]] and feat["label_values"] == [target]
    from datasets import Dataset

    ds = tokenize_dataset(Dataset.from_list(synthetic_rows(per_level=2)), char_tokenizer, label_mode="orm")
    assert all(len(p) == 1 for p in ds["label_positions"]), "orm: exactly one target per row"
    # truncation keeps the steps that end inside max_length and drops a row left without any
    cut = st.step_end_positions[1] + 1
    feat = tokenize_row(row, char_tokenizer, max_length=cut)
    assert len(feat["input_ids"]) == cut and feat["label_positions"] == st.step_end_positions[:2]
    ds = tokenize_dataset(Dataset.from_list([row, row]), char_tokenizer, max_length=st.prompt_length + 1)
    assert len(ds) == 0
    with pytest.raises(ValueError, match="label_mode"):
        PRMConfig(output_dir="x", label_mode="binary")


def test_question_level_split_has_no_overlap():
    from datasets import Dataset

    ds = Dataset.from_list(synthetic_rows(per_level=6))
    train, val = split_by_question(ds, 0.2, seed=0)
    assert set(train["problem_id"]).isdisjoint(val["problem_id"])
    assert len(train) + len(val) == len(ds)
    assert len(set(val["problem_id"])) == round(0.2 * len(set(ds["problem_id"])))
    # deterministic from the seed, independent of row order; another seed holds out other questions
    again = split_by_question(ds.shuffle(seed=1), 0.2, seed=0)[1]
    assert set(again["problem_id"]) == set(val["problem_id"])
    assert set(split_by_question(ds, 0.2, seed=1)[1]["problem_id"]) != set(val["problem_id"])
    assert split_by_question(ds, 0.0, seed=0) == (ds, None)


def test_recipes_parse_and_unknown_keys_fail(tmp_path, capsys):
    from ttstrain.stages.train_prm import make_parser

    for name in ("config_pipeline.yaml", "config_paper.yaml"):
        (cfg,) = make_parser().parse_args_and_config(["--config", str(REPO / "recipes/default/prm" / name)])
        assert cfg.model_name_or_path == "default" and cfg.label_mode == "soft" and cfg.load_best_model_at_end
    (paper,) = make_parser().parse_args_and_config(["--config", str(REPO / "recipes/default/prm/config_paper.yaml")])
    assert (paper.learning_rate, paper.adam_beta1, paper.adam_beta2, paper.head_dropout) == (3e-5, 0.9, 0.95, 0.05)
    assert paper.per_device_train_batch_size * paper.gradient_accumulation_steps == 128
    bad = tmp_path / "bad.yaml"
    bad.write_text("label_mode: soft\nlabel_mod: hard\n")
    with pytest.raises(SystemExit):
        make_parser().parse_args_and_config(["--config", str(bad)])
    assert "unrecognized arguments in the --config file: ['--label_mod', 'hard']" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- packing

def test_pack_rows_first_fit_decreasing():
    groups = pack_rows([5, 3, 4, 2, 6], capacity=6)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]
    assert all(sum([5, 3, 4, 2, 6][i] for i in g) <= 6 for g in groups)
    assert len(groups) == 4  # 6 | 5 | 4+2 | 3


def test_packed_forward_gives_the_unpacked_step_logits(base_dir, char_tokenizer):
    model, tok = load_prm_model(str(base_dir))
    model.eval()
    seqs = [step_end_positions(tok, format_prompt(p["question"]), split_steps(p["solution"])).input_ids
            for p in problems_split("test", 2, seed=5)]
    with torch.no_grad():
        packed, where_p = build_batch(seqs, tok.pad_token_id, packing=True)
        padded, where_u = build_batch(seqs, tok.pad_token_id, packing=False)
        assert packed["input_ids"].shape[0] < len(seqs) and padded["input_ids"].shape[0] == len(seqs)
        lp = model(**packed, use_cache=False).logits[..., 0]
        lu = model(**padded, use_cache=False).logits[..., 0]
        for s, (rp, op), (ru, ou) in zip(seqs, where_p, where_u):
            alone = model(input_ids=torch.tensor([s]), use_cache=False).logits[0, :, 0]
            torch.testing.assert_close(lp[rp, op:op + len(s)], alone, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(lu[ru, ou:ou + len(s)], alone, atol=2e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------- training

def test_gradient_accumulation_matches_a_larger_batch(tmp_path, base_dir):
    """The loss is normalised over every labelled step of the optimizer step, whatever the micro-batching."""
    from datasets import Dataset

    rows = Dataset.from_list(synthetic_rows(per_level=1))  # rows of 2 to 6 steps: micro-batch means would differ
    deltas = []
    for bs, ga in ((4, 1), (2, 2), (1, 4)):
        model, tok = load_prm_model(str(base_dir), head_dropout=0.0, model_dropout=0.0)
        torch.manual_seed(0)
        model.score.reset_parameters()
        args = _config(tmp_path / f"{bs}x{ga}", validation_fraction=0.0, per_device_train_batch_size=bs,
                       gradient_accumulation_steps=ga, max_steps=1, save_strategy="no", optim="sgd",
                       learning_rate=1.0, train_sampling_strategy="sequential", max_grad_norm=0.0)
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        trainer = PRMTrainer(model=model, args=args, train_dataset=rows, processing_class=tok)
        trainer.train()
        deltas.append(torch.cat([p.detach().flatten() for p in model.parameters()]) - before)  # = -gradient
    assert deltas[0].abs().max() > 1e-3
    torch.testing.assert_close(deltas[1], deltas[0], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(deltas[2], deltas[0], atol=1e-6, rtol=1e-4)


def test_smoke_train_lowers_validation_loss_and_saves_a_loadable_prm(tmp_path, base_dir, data_dir):
    from safetensors.torch import load_file

    from ttstrain.prm.scoring import PRMScorer
    from ttstrain.stages.train_prm import run_train_prm
    from ttstrain.trainers.run_skeleton import TRAIN_CONFIG

    out = tmp_path / "prm"
    cfg = train_prm_cli(base_dir, data_dir, out, max_steps=24, eval_steps=8, save_steps=8, logging_steps=4,
                        eval_on_start="true")
    trainer = run_train_prm(cfg)
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert evals[0] > min(evals) + 0.01, evals
    assert all(h["train_tokens_per_second_per_process"] > 0 for h in trainer.state.log_history if "loss" in h)
    # parameters of the body changed (not only the new head)
    before = load_file(str(base_dir / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before[name], after[name])
    # the final folder is plain HF format, knows what it is, has a card and the resolved config
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForTokenClassification"]
    assert config[PRM_CONFIG_KEY]["step_separator"] == "\n" and config[PRM_CONFIG_KEY]["label_mode"] == "soft"
    assert "# Process reward model" in (out / "README.md").read_text()
    resolved = json.loads((out / TRAIN_CONFIG).read_text())
    assert resolved["data"]["validation"]["questions"] == 6 and resolved["metrics"]["eval_loss"] == min(evals)
    assert sorted(p.name for p in out.glob("checkpoint-*"))  # resumable checkpoints, best one kept
    prm = PRMScorer.from_pretrained(out)
    scores = prm.score([PROMPT], [STEPS])
    assert len(scores[0]) == 3 and all(0.0 < s < 1.0 for s in scores[0])


def test_lora_trains_and_saves_merged_weights(tmp_path, base_dir, data_dir):
    from ttstrain.prm.scoring import PRMScorer

    model, tok = load_prm_model(str(base_dir))
    train, val = split_by_question(load_prm_rows(data_dir), 0.2, seed=0)
    args = _config(tmp_path, use_lora=True, lora_r=4, lora_alpha=8, max_steps=3, eval_strategy="no",
                   save_strategy="no", load_best_model_at_end=False)
    trainer = PRMTrainer(model=model, args=args, train_dataset=train, processing_class=tok)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any("score" in n for n in trainable)
    assert not any("embed_tokens" in n for n in trainable)
    trainer.train()
    out = trainer.save_prm(str(tmp_path / "lora_prm"))
    assert not (Path(out) / "adapter_config.json").exists()
    assert len(PRMScorer.from_pretrained(out).score([PROMPT], [STEPS])[0]) == 3


def test_resume_from_checkpoint_gives_the_uninterrupted_weights(tmp_path, base_dir, data_dir):
    from datasets import Dataset
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        """An interrupt after step 4 (its checkpoint is saved first), as a kill would leave the folder."""

        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise KeyboardInterrupt("interrupted after step 4")

    rows = Dataset.from_list(synthetic_rows(per_level=2))

    def trainer_for(out, callbacks=()):
        torch.manual_seed(0)  # the same value head to start from
        model, tok = load_prm_model(str(base_dir))
        args = _config(tmp_path, output_dir=str(tmp_path / out), validation_fraction=0.0, max_steps=6, save_steps=2,
                       save_strategy="steps")
        return PRMTrainer(model=model, args=args, train_dataset=rows, processing_class=tok, callbacks=list(callbacks))

    whole = trainer_for("whole")
    whole.train()
    interrupted = trainer_for("resumed", [StopAfter()])
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    assert sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    resumed = trainer_for("resumed")
    resumed.train(resume_from_checkpoint=True)
    steps = [h["step"] for h in resumed.state.log_history if "loss" in h]
    assert resumed.state.global_step == 6 and steps[0] == 1 and 5 in steps
    start = dict(load_prm_model(str(base_dir))[0].named_parameters())
    for (name, a), (_, b) in zip(whole.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), f"{name} differs from the uninterrupted run's"
    assert any(not torch.equal(p, start[n]) for n, p in whole.model.named_parameters()), "training changed weights"


# ----------------------------------------------------------------------------------- several processes

WORKER = textwrap.dedent("""
    import hashlib, json, os, sys
    import torch
    from ttstrain.stages.train_prm import make_parser, run_train_prm
    (cfg,) = make_parser().parse_args_and_config(sys.argv[1:])
    trainer = run_train_prm(cfg)
    model = trainer.accelerator.unwrap_model(trainer.model)
    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):  # ZeRO-3: each rank holds a shard; gather them to compare
        import deepspeed

        with deepspeed.zero.GatheredParameters(params):
            flat = torch.cat([p.detach().float().flatten().cpu() for p in params])
    else:
        flat = torch.cat([p.detach().float().flatten().cpu() for p in params])
    with open(os.path.join(cfg.output_dir, f"rank-{trainer.args.process_index}.json"), "w") as f:
        json.dump({"world_size": trainer.args.world_size, "global_step": trainer.state.global_step,
                   "tokens_seen": trainer._tokens_seen, "distributed_type": str(trainer.accelerator.distributed_type),
                   "params": hashlib.sha256(flat.numpy().tobytes()).hexdigest()}, f)
""")


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _launch(launcher: list[str], tmp_path, base_dir, data_dir, timeout: int) -> Path:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / "out"
    args = ["--model_name_or_path", str(base_dir), "--dataset_path", str(data_dir), "--output_dir", str(out),
            "--learning_rate", "3e-3", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2",
            "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "2",
            "--validation_fraction", "0.2", "--disable_tqdm", "true", "--dataloader_pin_memory", "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run(launcher + [str(worker)] + args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


def _check_two_ranks(out: Path, distributed_type: str):
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["global_step"] == 4 for r in ranks)
    assert all(r["tokens_seen"] > 0 for r in ranks), "both ranks trained"
    assert all(r["distributed_type"] == distributed_type for r in ranks)
    assert ranks[0]["params"] == ranks[1]["params"], "ranks ended with different parameters"
    assert len(list(out.glob("model.safetensors"))) == 1 and len(list(out.glob("checkpoint-*"))) >= 1
    assert not list(out.glob("**/rank*model*"))
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")
    assert "score.weight" in weights and all(t.numel() > 0 for t in weights.values()), "full weights, not shards"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_two_process_ddp_with_gloo(tmp_path, base_dir, data_dir):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _free_port()]
    out = _launch(launcher, tmp_path, base_dir, data_dir, timeout=240)
    _check_two_ranks(out, "DistributedType.MULTI_CPU")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed is not installed (pip install -e '.[deepspeed]'; make install does)")
@pytest.mark.parametrize("config", ["deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "deepspeed_zero3_offload.yaml"])
def test_two_process_deepspeed_on_cpu(tmp_path, base_dir, data_dir, config):
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(REPO / "accelerate_configs" / config), "--num_processes", "2",
                "--main_process_port", _free_port()]
    out = _launch(launcher, tmp_path, base_dir, data_dir, timeout=900)
    _check_two_ranks(out, "DistributedType.DEEPSPEED")


def test_truncation_is_counted_and_max_length_defaults_to_the_context(tmp_path, base_dir, char_tokenizer, caplog):
    from datasets import Dataset

    from ttstrain.prm.data import truncation_warning
    from ttstrain.prm.trainer import context_length

    row = _row([1.0, 0.5, 0.0])
    st = step_end_positions(char_tokenizer, PROMPT, STEPS)
    cut = st.step_end_positions[1] + 1
    ds, summary = tokenize_dataset(Dataset.from_list([row, row, row]), char_tokenizer, max_length=cut,
                                   return_summary=True)
    assert summary == {"rows_truncated": 3, "labels_truncated": 3, "rows_without_label": 0} and len(ds) == 3
    assert "truncated 3 rows, dropping 3 step labels" in truncation_warning(summary, cut)
    assert truncation_warning({"labels_truncated": 0}, cut) is None
    # a trainer with max_length unset reads the model's context, and its data summary says what truncation cost
    model, tok = load_prm_model(str(base_dir))
    assert PRMConfig(output_dir=str(tmp_path)).max_length is None and context_length(model) == 512
    args = PRMConfig(output_dir=str(tmp_path / "o"), max_length=cut, report_to=[], use_cpu=True,
                     validation_fraction=0.0, eval_strategy="no", load_best_model_at_end=False)
    trainer = PRMTrainer(model=model, args=args, train_dataset=Dataset.from_list([row, row]), processing_class=tok)
    assert trainer.data_summary["train"]["labels_truncated"] == 2 and "max_length" in trainer.data_summary["train"]["warning"]
    whole = PRMTrainer(model=model, args=PRMConfig(output_dir=str(tmp_path / "w"), report_to=[], use_cpu=True,
                                                   eval_strategy="no", load_best_model_at_end=False),
                       train_dataset=Dataset.from_list([row]), processing_class=tok)
    assert whole.data_summary["train"]["max_length"] == 512 and whole.data_summary["train"]["labels_truncated"] == 0
