"""Process reward model trainer: a causal LM body with a scalar value head on every token.

The model is `AutoModelForTokenClassification(num_labels=1)` on top of any causal-LM checkpoint
(hub id, folder, or `"default"`, the world policy): transformers builds the same body
(`LlamaModel`, `Qwen2Model`, ...) and loads the causal LM's weights into it; only the value head
`score` is new. The checkpoint it writes is therefore plain Hugging Face format (safetensors,
config, tokenizer) that reloads by path with no code of ours, and its config records how it was
trained under `config.ttstrain_prm` (`ttstrain.prm.checkpoint`: the rows' prompt and step format,
label placement, BOS, label mode, head type).

Labels sit where `ttstrain.prm.checkpoint.prm_inputs` places them for the run's layout, the same
function the scorer (`ttstrain.prm.scoring`) reads them with: by default on each step's last token
(`ttstrain.steps.step_end_positions`), with `label_placement="separator"`, `bos="trl"` exactly
where TRL's `PRMTrainer.tokenize_row` puts them. The step format is the rows' recorded one (pass
`prompt_format=`, the record of the stage that wrote them), else `args.step_separator`. The loss
is binary cross-entropy with logits between the head's logit at each labelled position and the
target *as stored in the dataset*: a soft Monte Carlo value 0.625 is the target 0.625 (TRL's
`PRMTrainer` does `int(label)`, which makes it 0). Every other position is ignored. The loss is
summed over all labelled steps of the optimizer step (all micro-batches, all processes) and
divided by their number, so a step counts the same whatever row, micro-batch or process it lands in.

Where this departs from Snell et al. (App. D): they fine-tune PaLM-2-S* with soft Monte Carlo
targets; we train any Hugging Face causal LM the same way, and add `hard` (Math-Shepherd's
estimation) and `orm` (final-answer correctness at the last step) modes for ablations.

Batches are packed (`ttstrain.prm.batching`, the batching the scorer uses too); the data
(reading, split by question, targets, tokenisation) is `ttstrain.prm.data`. The final save
(`save_prm`: weights, model card) is the run skeleton the revision trainer ends with too
(`ttstrain.trainers.run_skeleton`).

    from ttstrain.prm.config import PRMConfig
    from ttstrain.prm.data import load_prm_rows, split_by_question
    from ttstrain.runner.rows import recorded_prompt_format
    from ttstrain.prm.trainer import PRMTrainer, load_prm_model
    args = PRMConfig(output_dir="runs/prm", model_name_or_path="default", dataset_path="runs/default/label_mc_demo")
    train, val = split_by_question(load_prm_rows(args.dataset_path), args.validation_fraction, args.seed)
    model, tok = load_prm_model(args.model_name_or_path, label_mode=args.label_mode)
    trainer = PRMTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok,
                         prompt_format=recorded_prompt_format(args.dataset_path))
    trainer.train(); trainer.save_prm()

Usually run through `ttstrain train-prm --config recipes/default/prm/config_pipeline.yaml`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoConfig, AutoModelForTokenClassification, EarlyStoppingCallback, Trainer

from ttstrain import __version__
from ttstrain.models import _torch_dtype, load_tokenizer, resolve_model
from ttstrain.prm.batching import build_batch
from ttstrain.prm.data import rows_prompt_format, tokenize_dataset, truncation_warning, without_worked_examples
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY, PRMLayout, layout_metadata, prm_metadata
from ttstrain.steps import StepFormat
from ttstrain.trainers.run_setup import float32_trainable, set_dropout
from ttstrain.trainers.run_skeleton import model_card, save_final_model

IGNORE_INDEX = -100
logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# collator and loss
# ---------------------------------------------------------------------------------------------


class PRMDataCollator:
    """Tokenised rows -> input_ids, position_ids (packed) or attention_mask (padded), float labels.

    `labels` is a float tensor shaped like `input_ids`: the target at each labelled step end and
    -100 elsewhere. `num_tokens` (the real, unpadded token count) is for throughput logging.
    """

    def __init__(self, pad_token_id: int, packing: bool = True, packing_length: int | None = None):
        self.pad_token_id = pad_token_id
        self.packing = packing
        self.packing_length = packing_length

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs = [f["input_ids"] for f in features]
        batch, where = build_batch(seqs, self.pad_token_id, self.packing, self.packing_length)
        labels = torch.full(batch["input_ids"].shape, float(IGNORE_INDEX), dtype=torch.float32)
        for f, (r, o) in zip(features, where):
            pos = torch.as_tensor(f["label_positions"], dtype=torch.long) + o
            labels[r, pos] = torch.as_tensor(f["label_values"], dtype=torch.float32)
        batch["labels"] = labels
        batch["num_tokens"] = torch.tensor([sum(len(s) for s in seqs)], dtype=torch.long)
        return batch


def context_length(model) -> int | None:
    """The longest sequence the model's positions cover (`max_position_embeddings`), None if it does not say."""
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def step_bce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of BCE-with-logits over labelled positions, their number); labels -100 are ignored.

    logits: (..., T) one value per token; labels: same shape, float targets in [0, 1] or -100.
    """
    mask = labels != IGNORE_INDEX
    x = logits[mask].float()
    y = labels[mask].to(torch.float32)
    return F.binary_cross_entropy_with_logits(x, y, reduction="sum"), mask.sum()


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------


def load_prm_model(model_name_or_path: str = "default", *, label_mode: str = "soft", dtype: str = "float32",
                   random_init: bool = False, head_dropout: float = 0.05, model_dropout: float = 0.05,
                   attn_implementation: str | None = None, trust_remote_code: bool = False):
    """(model, tokenizer): a token-value PRM on the body of a causal LM, ready to train.

    Works for every architecture transformers has a `...ForTokenClassification` for (Llama,
    Qwen2, Mistral, Gemma, GPT-2, ...). The head is new; with `random_init` the body is too.
    """
    path = resolve_model(model_name_or_path)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    config = AutoConfig.from_pretrained(path, num_labels=1, trust_remote_code=trust_remote_code)
    config.classifier_dropout = head_dropout
    set_dropout(config, model_dropout)
    config.id2label, config.label2id = {0: "step_value"}, {"step_value": 0}
    config.problem_type = None
    config.use_cache = False
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    setattr(config, PRM_CONFIG_KEY, prm_metadata(label_mode, base_model=str(model_name_or_path)))
    kw = {"trust_remote_code": trust_remote_code}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    torch_dtype = _torch_dtype(dtype)
    if random_init:
        model = AutoModelForTokenClassification.from_config(config, **kw)
        if torch_dtype != "auto":
            model = model.to(torch_dtype)
    else:
        model = AutoModelForTokenClassification.from_pretrained(path, config=config, dtype=torch_dtype, **kw)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# trainer
# ---------------------------------------------------------------------------------------------

class PRMTrainer(Trainer):
    """`transformers.Trainer` with the PRM data path and loss; checkpointing, resume, logging as usual.

    Pass raw rows (TRL stepwise schema) or rows already through `tokenize_dataset` (with the same
    layout). `args` is a `PRMConfig`; `prompt_format` is the prompt format record of the rows
    (`ttstrain.runner.rows.recorded_prompt_format`; None: they record none). The layout the rows are
    tokenized with (`self.layout`) is written into the model's `config.ttstrain_prm`, so the saved
    checkpoint is scored as it was trained. `peft_config` (or `args.use_lora`) wraps the model with
    LoRA adapters and keeps the value head fully trainable.
    """

    _tag_names = ["ttstrain", "prm"]

    def __init__(self, model=None, args=None, train_dataset=None, eval_dataset=None, processing_class=None,
                 data_collator=None, callbacks=None, peft_config=None, prompt_format: dict | None = None, **kwargs):
        if args is None:
            raise ValueError("PRMTrainer needs args (a PRMConfig)")
        if processing_class is None:
            raise ValueError("PRMTrainer needs processing_class (the tokenizer), to place the step ends")
        # the rows' prompt and step format, and where values sit: what the checkpoint records and the scorer reads
        record = rows_prompt_format(prompt_format, args.step_separator, args.solution_end)
        if getattr(args, "drop_worked_examples", False):
            record, train_dataset, eval_dataset = without_worked_examples(record, processing_class, train_dataset,
                                                                          eval_dataset)
        self.layout = PRMLayout(StepFormat.from_record(record["step_format"]), args.label_placement, args.bos)
        if getattr(model.config, PRM_CONFIG_KEY, None) is None:
            setattr(model.config, PRM_CONFIG_KEY, prm_metadata(args.label_mode))
        getattr(model.config, PRM_CONFIG_KEY).update(layout_metadata(record, args.label_placement, args.bos))
        if peft_config is None and getattr(args, "use_lora", False):
            peft_config = lora_config(args)
        if peft_config is not None:
            model = get_peft_model(model, peft_config)
        float32_trainable(model, args, lora=peft_config is not None)
        self.data_summary = {}
        max_length = args.max_length or context_length(model)
        train_dataset = self._tokenized(train_dataset, processing_class, args, "train", max_length)
        if eval_dataset is not None:
            eval_dataset = self._tokenized(eval_dataset, processing_class, args, "validation", max_length)
        if data_collator is None:
            data_collator = PRMDataCollator(processing_class.pad_token_id, packing=args.packing,
                                            packing_length=args.packing_length)
        callbacks = list(callbacks or [])
        if (eval_dataset is not None and args.load_best_model_at_end and args.early_stopping_patience
                and not any(type(c).__name__ == "EarlyStoppingCallback" for c in callbacks)):
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, data_collator=data_collator, callbacks=callbacks,
                         **kwargs)
        # our compute_loss normalises by the labelled steps of the whole optimizer step (all
        # micro-batches, all processes); this makes the Trainer count them and not rescale
        self.model_accepts_loss_kwargs = True
        self._tokens_seen = 0
        self._tokens_at_last_log = (0, time.perf_counter())

    def _tokenized(self, dataset, tokenizer, args, name: str, max_length: int | None):
        if dataset is None or "label_positions" in dataset.column_names:
            return dataset
        rows = len(dataset)
        out, truncated = tokenize_dataset(dataset, tokenizer, label_mode=args.label_mode,
                                          hard_threshold=args.hard_threshold,
                                          hard_labels_from_dataset=args.hard_labels_from_dataset,
                                          max_length=max_length, num_proc=args.dataset_num_proc,
                                          desc=f"tokenizing {name}", return_summary=True, layout=self.layout)
        labels = [v for vals in out["label_values"] for v in vals]
        summary = {"rows": rows, "rows_kept": len(out), "labelled_steps": len(labels),
                   "tokens": int(sum(out["length"])), "mean_target": round(sum(labels) / max(1, len(labels)), 4),
                   "max_length": max_length, **truncated}
        warning = truncation_warning(truncated, max_length)
        if warning:
            summary["warning"] = warning
            logger.warning("%s: %s", name, warning)
        if "problem_id" in dataset.column_names:
            summary["questions"] = len(set(dataset["problem_id"]))
        self.data_summary[name] = summary
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        num_tokens = inputs.pop("num_tokens", None)
        outputs = model(**inputs, use_cache=False)
        loss_sum, count = step_bce(outputs.logits[..., 0], labels)
        if model.training and num_items_in_batch is not None:
            loss = loss_sum / num_items_in_batch
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                loss = loss * self.accelerator.num_processes  # DDP / DeepSpeed average gradients over processes
        else:
            loss = loss_sum / count.clamp(min=1)
        if model.training and num_tokens is not None:
            self._tokens_seen += int(num_tokens.sum())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # training logs: real (unpadded) tokens per second of this process
            tokens0, t0 = self._tokens_at_last_log
            now = time.perf_counter()
            logs["train_tokens_per_second_per_process"] = round((self._tokens_seen - tokens0) / max(now - t0, 1e-9), 1)
            self._tokens_at_last_log = (self._tokens_seen, now)
        super().log(logs, start_time)

    def save_prm(self, output_dir: str | None = None, extra_card: dict | None = None) -> str:
        """The final PRM (call on every process): full weights (LoRA merged), config, tokenizer and a model
        card README.md, through the run skeleton both trainers end with (`save_final_model`)."""
        output_dir = output_dir or self.args.output_dir
        card = prm_model_card(output_dir, self.args, self.data_summary, self.state, extra_card, self.layout)
        return save_final_model(self, output_dir, card=card)


def lora_config(args):
    return LoraConfig(task_type=TaskType.TOKEN_CLS, r=args.lora_r, lora_alpha=args.lora_alpha,
                      lora_dropout=args.lora_dropout, target_modules=args.lora_target_modules or "all-linear",
                      modules_to_save=["score"])


def prm_model_card(output_dir: str | os.PathLike, args, data_summary: dict, state=None, extra: dict | None = None,
                   layout: PRMLayout | None = None) -> str:
    """The PRM's model card (`save_prm` writes it as README.md): what data and config made it, how to load it,
    its best validation loss."""
    best = getattr(state, "best_metric", None) if state is not None else None
    evals = [h["eval_loss"] for h in (state.log_history if state is not None else []) if "eval_loss" in h]
    keys = ("model_name_or_path", "random_init", "dataset_path", "label_mode", "hard_threshold",
            "hard_labels_from_dataset", "validation_fraction", "learning_rate", "adam_beta1", "adam_beta2",
            "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
            "head_dropout", "model_dropout", "max_length", "packing", "use_lora", "seed", "dtype", "label_placement",
            "bos")
    layout = layout or PRMLayout()
    settings = {k: getattr(args, k, None) for k in keys}
    settings["world_size"] = getattr(args, "world_size", 1)
    intro = [
        f"Trained with `ttstrain train-prm` (ttstrain {__version__}) from `{args.model_name_or_path}` on "
        f"`{args.dataset_path}`. The value head's sigmoid at the "
        + ("last token of each step" if layout.label_placement == "step_end" else
           "last separator token after each step") +
        " is the probability that the solution, continued from there, reaches the right answer.", "",
        "```python",
        "from ttstrain.prm.scoring import PRMScorer",
        f"prm = PRMScorer.from_pretrained({str(output_dir)!r})",
        "scores = prm.score([prompt], [steps])          # one probability per step",
        "```", "",
        ("Plain transformers: `AutoModelForTokenClassification.from_pretrained(path)`; read the logit at "
         "each step's last token (`ttstrain.steps.step_end_positions`), separator "
         f"{json.dumps(layout.steps.separator)}." if (layout.label_placement, layout.bos) == ("step_end", "tokenizer")
         else "Plain transformers: `AutoModelForTokenClassification.from_pretrained(path)`; read the logit where "
         f"`ttstrain.prm.checkpoint.prm_inputs` places it: {layout.describe()}."),
    ]
    bullets = [f"optimizer steps: {getattr(state, 'global_step', None)}",
               f"validation losses: {[round(x, 5) for x in evals]}",
               f"best validation loss: {best}",
               f"best checkpoint: {getattr(state, 'best_model_checkpoint', None)}",
               *(f"{k}: {v}" for k, v in (extra or {}).items())]
    return model_card(f"Process reward model ({args.label_mode} labels)", intro,
                      tags=["prm", "process-reward-model"], sections={"Data": data_summary, "Training": settings},
                      bullets=bullets)


__all__ = ["IGNORE_INDEX", "PRMDataCollator", "PRMTrainer", "load_prm_model", "lora_config", "prm_model_card",
           "step_bce"]
