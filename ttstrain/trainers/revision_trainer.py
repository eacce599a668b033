"""Revision SFT on TRL's SFTTrainer: previous attempts and question as context, loss on the target only.

    accelerate launch recipes/train_revision.py --config recipes/default/revision/config_pipeline.yaml
    ttstrain train-revision --config recipes/default/revision/config_pipeline.yaml

Each row of `ttstrain build-revisions` becomes a prompt-completion pair: the prompt is
`format_revision_prompt(question, previous_attempts)` (the function revision inference uses too),
the completion is the correct answer; TRL masks the prompt out of the loss.

The run ends as the PRM trainer's does (`ttstrain.trainers.run_skeleton`): the main process
writes the model, README.md and `ttstrain_config.json` (the resolved config and the revision
prompt format, which eval-revision reads) into output_dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq
from datasets import Dataset
from trl import SFTTrainer

from ttstrain.models import load_causal_lm, load_tokenizer, resolve_model
from ttstrain.revisions.pairs import fit_revision_prompt, revision_prompt_record
from ttstrain.runner.rows import recorded_prompt_format
from ttstrain.runner.shards import load_dataset_dir
from ttstrain.steps import StepFormat
from ttstrain.trainers.run_setup import default_wandb_offline, float32_trainable, resolve_resume, set_dropout
from ttstrain.trainers.run_skeleton import model_card, save_final_model, write_train_config
from ttstrain.validation import check_revision_rows


def revision_sft_rows(rows: Sequence[dict], tokenizer=None, max_attempts: int = 4,
                      max_length: int | None = None) -> list[dict]:
    """Prompt-completion pairs; with a tokenizer and `max_length`, the oldest attempts of a row are
    dropped until question, attempts and target fit (truncation would otherwise cut the target)."""
    out = []
    for r in rows:
        budget = None
        if tokenizer is not None and max_length:
            budget = max_length - len(tokenizer(r["target"], add_special_tokens=False)["input_ids"]) - 2  # BOS, EOS
        prompt = fit_revision_prompt(r["question"], r["previous_attempts"], tokenizer, max_attempts, max_tokens=budget)
        out.append({"prompt": prompt, "completion": r["target"]})
    return out


def build_revision_trainer(cfg, model=None, tokenizer=None, train_rows: Sequence[dict] | None = None):
    if model is None:
        path = resolve_model(cfg.model_name_or_path)
        tokenizer = tokenizer or load_tokenizer(path)
        model = load_causal_lm(path, dtype=cfg.dtype)
    set_dropout(model.config, cfg.model_dropout)
    float32_trainable(model, cfg, lora=False)  # a checkpoint loaded in 16 bits ("auto")
    model.train()
    if train_rows is None:
        if not any(pq.ParquetFile(f).metadata.num_rows for f in Path(cfg.dataset_path).glob("data/train-*.parquet")):
            raise ValueError(f"{cfg.dataset_path}: no revision rows to train on (build-revisions pairs each correct "
                             "answer with wrong ones of its question, and found none: sample more problems or answers; "
                             "its summary.json counts them)")
        train_rows = load_dataset_dir(cfg.dataset_path).to_list()
        check_revision_rows(train_rows, f"{cfg.dataset_path} (data/train-*.parquet)")
    dataset = Dataset.from_list(revision_sft_rows(train_rows, tokenizer, cfg.max_attempts, cfg.max_length))
    return SFTTrainer(model=model, args=cfg, train_dataset=dataset, processing_class=tokenizer)


def revision_model_card(cfg, rows: int) -> str:
    """The revision model's card (README.md): what it was fine-tuned from, on what, with which settings."""
    return model_card("Revision model (ttstrain)", [
        f"Fine-tuned from `{cfg.model_name_or_path}` on revision trajectories from `{cfg.dataset_path}`",
        f"({rows} rows): previous attempts (at most {cfg.max_attempts}) and the question as",
        "context, loss on the correct answer only (TRL SFTTrainer, completion-only loss).",
        f"learning_rate {cfg.learning_rate}, betas ({cfg.adam_beta1}, {cfg.adam_beta2}), effective batch "
        f"{cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * max(1, cfg.world_size)}, "
        f"model_dropout {cfg.model_dropout}, epochs {cfg.num_train_epochs}, max_steps {cfg.max_steps}.",
        "Prompt format: `ttstrain.revisions.pairs.format_revision_prompt`."], tags=["revision"])


def train_revision(cfg) -> Path:
    """Train, then save the model, its card and its resolved config (call on every process); returns output_dir."""
    default_wandb_offline(cfg.report_to)
    trainer = build_revision_trainer(cfg)
    trainer.train(resume_from_checkpoint=resolve_resume(cfg.resume_from_checkpoint))
    out = Path(cfg.output_dir)
    save_final_model(trainer, out, card=revision_model_card(cfg, len(trainer.train_dataset)))
    # the attempts' step format, as build-revisions sampled them: revision chains end an attempt where they ended
    sampled = recorded_prompt_format(cfg.dataset_path) if Path(cfg.dataset_path).is_dir() else None
    steps = StepFormat.from_record(sampled.get("step_format") if isinstance(sampled, dict) else None)
    write_train_config(trainer, out, cfg, prompt_format=revision_prompt_record(trainer.processing_class, steps))
    return out
