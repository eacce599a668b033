"""Configuration of the PRM trainer: `transformers.TrainingArguments` plus the PRM's own fields.

Parsed from a recipe YAML and the command line by `ttstrain.parsing.StageParser` (TRL's `TrlParser`; see `ttstrain.stages.train_prm`):

    ttstrain train-prm --config recipes/default/prm/config_pipeline.yaml --learning_rate 1e-4

The defaults are Snell et al.'s PRM settings (App. D: learning rate 3e-5, batch size 128, dropout
0.05, Adam betas (0.9, 0.95), early stopping on a held-out validation loss) with the effective
batch of 128 made of 16 rows x 8 accumulation steps on one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from ttstrain.prm.checkpoint import BOS_MODES, LABEL_PLACEMENTS, PRMLayout
from ttstrain.trainers.run_setup import no_master_weights

LABEL_MODES = ("soft", "hard", "orm")


def _several_processes_without_cuda() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


@dataclass
class PRMConfig(TrainingArguments):
    r"""
    Configuration of [`ttstrain.prm.trainer.PRMTrainer`].

    Only the fields specific to PRM training are declared here; every field of
    [`~transformers.TrainingArguments`] works as usual (`output_dir`, `num_train_epochs`, `max_steps`, `seed`,
    `resume_from_checkpoint`, `report_to`, `bf16`, ...).

    Parameters:
        model_name_or_path (`str`, defaults to `"default"`):
            Causal LM to start from: a hub id, a local folder, or an alias of `ttstrain.models.resolve_model`.
        random_init (`bool`, defaults to `False`):
            Build the same architecture with random weights instead of loading the checkpoint's weights.
        dtype (`str`, defaults to `"float32"`):
            Dtype the model is loaded in (`float32`, `bfloat16`, `float16` or `auto`). With `bf16`/`fp16` mixed
            precision keep `float32` (the master weights; `bfloat16`/`float16` is refused there outside DeepSpeed
            and LoRA: `ttstrain.trainers.run_setup.no_master_weights`); `--bf16 false` trains 16-bit weights
            purely.
        attn_implementation (`str` or `None`, defaults to `None`):
            Attention kernel (`sdpa`, `eager`, `flash_attention_2`, ...); `None` lets transformers choose.
        dataset_path (`str`, defaults to `"runs/default/label_mc_demo"`):
            A `ttstrain label-mc` output folder, a folder of parquet files, one parquet file or a glob.
        label_mode (`str`, defaults to `"soft"`):
            `soft`: the Monte Carlo values as they are; `hard`: 1 where the value exceeds `hard_threshold`;
            `orm`: one target per row, at the last step, equal to `final_correct`.
        hard_threshold (`float`, defaults to `0.0`):
            `label_mode="hard"`: a step's target is 1 when its soft label is above this (0 is Math-Shepherd's
            hard estimation: any rollout reached the answer).
        hard_labels_from_dataset (`bool`, defaults to `False`):
            `label_mode="hard"`: use the dataset's `hard_labels` column instead of thresholding `labels`.
        validation_fraction (`float`, defaults to `0.1`):
            Fraction of the *questions* (`problem_id`) held out for validation; 0 trains on everything and
            turns evaluation, early stopping and best-checkpoint selection off.
        early_stopping_patience (`int` or `None`, defaults to `3`):
            Stop after this many evaluations without a lower validation loss; `None` never stops early.
        max_length (`int` or `None`, defaults to `None`):
            Truncate prompt + solution to this many tokens; steps that end past it lose their label (the
            data summary counts them and warns). `None`: the model's context length.
        step_separator (`str`, defaults to `"auto"`), solution_end (`str`, defaults to `"auto"`):
            The step format of rows whose dataset records none (TRL-schema files): `auto` is LINE (`"\n"`, TRL's
            default); otherwise as the generating stages take them (`line`, `paragraph`, `'\n\n'`; `eos`,
            `blank_line`). Rows that record a step format are read in it, and a different one given here is
            refused. The checkpoint records it with the prompt format.
        label_placement (`str`, defaults to `"step_end"`):
            Where a step's value sits (`ttstrain.prm.checkpoint.prm_inputs`): `step_end`, the token that holds the
            step's last character, prompt + solution tokenized in one piece; `separator`, the last separator
            token after the step, the prompt and each step tokenized alone (TRL's `PRMTrainer`). Recorded in the
            checkpoint; the scorer reads it.
        bos (`str`, defaults to `"tokenizer"`):
            Special tokens as the tokenizer adds them (`tokenizer`), or as TRL's `PRMTrainer` does (`trl`: the
            tokenizer's BOS id in front when it has one). Recorded in the checkpoint.
        packing (`bool`, defaults to `True`):
            Pack the rows of a batch into shared sequences (restarted `position_ids`, per-sequence attention)
            instead of padding each row to the longest one.
        packing_length (`int` or `None`, defaults to `None`):
            Capacity of a packed sequence; `None` uses the longest row of the batch, so packing never computes
            more than padding would.
        head_dropout (`float`, defaults to `0.05`):
            Dropout before the value head.
        model_dropout (`float`, defaults to `0.05`):
            Attention / hidden dropout of the body, set on every dropout field the architecture's config has.
        use_lora (`bool`, defaults to `False`):
            Train LoRA adapters (and the value head) instead of all weights; the final save merges them.
        lora_r (`int`, defaults to `16`), lora_alpha (`int`, defaults to `32`), lora_dropout (`float`, defaults
        to `0.05`), lora_target_modules (`list[str]` or `None`, defaults to `None` = all linear layers):
            The LoRA adapter.
        dataset_num_proc (`int` or `None`, defaults to `None`):
            Processes for tokenising the dataset.
        reference_features (`bool`, defaults to `False`):
            After training, fit a 4-number combiner of the value head's logit with the frozen starting
            model's token log-probs of the solution so far (min and mean) on the training questions
            (`ttstrain.prm.reference_features`); the scorer then loads that model too. Needs a starting model
            whose tokenizer the PRM shares (not `random_init`).

    > [!NOTE]
    > These parameters have default values different from [`~transformers.TrainingArguments`]:
    > - `output_dir`: `"runs/prm"` instead of `"trainer_output"`.
    > - `learning_rate`: `3e-5` instead of `5e-5`.
    > - `adam_beta2`: `0.95` instead of `0.999`.
    > - `per_device_train_batch_size`: `16` instead of `8`; `per_device_eval_batch_size`: `16` instead of `8`.
    > - `gradient_accumulation_steps`: `8` instead of `1` (16 x 8 = 128 rows per optimizer step).
    > - `logging_steps`: `10` instead of `500`.
    > - `eval_strategy` / `save_strategy`: `"steps"`, `eval_steps` / `save_steps`: `50` instead of `500`.
    > - `save_total_limit`: `2` instead of `None` (the best checkpoint is always kept).
    > - `load_best_model_at_end`: `True` with `metric_for_best_model="eval_loss"`, `greater_is_better=False`.
    > - `remove_unused_columns`: `False` (the tokenised rows carry label positions the model does not take).
    > - `ddp_find_unused_parameters`: `False` instead of `None` (every parameter gets a gradient).
    > - several processes on a machine without CUDA (torchrun, accelerate): `ddp_backend="gloo"` instead of
    >   `None`, and `use_cpu=True` unless DeepSpeed is on, so DDP and DeepSpeed really run multi-process.
    > - with `validation_fraction=0`: `eval_strategy="no"` and `load_best_model_at_end=False`.
    """

    # Parameters whose default values are overridden from TrainingArguments
    output_dir: str | None = field(default="runs/prm", metadata={"help": "Where checkpoints and the final PRM go."})
    learning_rate: float = field(default=3e-5, metadata={"help": "Peak AdamW learning rate (paper: 3e-5)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1 (paper: 0.9)."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2 (paper: 0.95)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Rows per device per micro-batch."})
    per_device_eval_batch_size: int = field(default=16, metadata={"help": "Rows per device per evaluation batch."})
    gradient_accumulation_steps: int = field(
        default=8, metadata={"help": "Micro-batches per optimizer step (16 x 8 = the paper's batch of 128)."})
    logging_steps: float = field(default=10, metadata={"help": "Log every this many optimizer steps."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate: no, steps or epoch."})
    eval_steps: float | None = field(default=50, metadata={"help": "Evaluate every this many optimizer steps."})
    save_strategy: str = field(default="steps", metadata={"help": "When to checkpoint: no, steps, epoch or best."})
    save_steps: float = field(default=50, metadata={"help": "Checkpoint every this many optimizer steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best one always is)."})
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Finish with the checkpoint of lowest validation loss."})
    metric_for_best_model: str | None = field(default="eval_loss", metadata={"help": "Metric of the best checkpoint."})
    greater_is_better: bool | None = field(default=False, metadata={"help": "Whether a larger metric is better."})
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "DDP's find_unused_parameters (every PRM parameter gets a gradient)."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the tokenised columns (label positions) for the PRM collator."})

    # Model
    model_name_or_path: str = field(
        default="default", metadata={"help": "Causal LM to start from: hub id, folder or 'default' (world policy)."})
    random_init: bool = field(
        default=False, metadata={"help": "Same architecture, random weights (do not load the checkpoint's weights)."})
    dtype: str = field(default="float32", metadata={"help": "Model dtype: float32, bfloat16, float16 or auto."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel (sdpa, eager, flash_attention_2); None: default."})
    head_dropout: float = field(default=0.05, metadata={"help": "Dropout before the value head (paper: 0.05)."})
    model_dropout: float = field(
        default=0.05, metadata={"help": "Attention/hidden dropout of the body, where the architecture has it."})

    # Data
    dataset_path: str = field(
        default="runs/default/label_mc_demo",
        metadata={"help": "A label-mc output folder, a folder of parquet files, a parquet file or a glob."})
    label_mode: str = field(
        default="soft", metadata={"help": "Targets: soft (MC values), hard (thresholded) or orm (final step only).",
                                  "choices": list(LABEL_MODES)})
    hard_threshold: float = field(
        default=0.0, metadata={"help": "hard mode: target 1 where the soft label is above this (0: Math-Shepherd)."})
    hard_labels_from_dataset: bool = field(
        default=False, metadata={"help": "hard mode: use the dataset's hard_labels column instead of a threshold."})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Fraction of questions (problem_id) held out; 0 disables evaluation."})
    early_stopping_patience: int | None = field(
        default=3, metadata={"help": "Evaluations without a lower validation loss before stopping; None: never."})
    max_length: int | None = field(
        default=None, metadata={"help": "Truncate prompt + solution to this many tokens (later steps lose their labels; counted and reported in the data summary); None: the model's context length."})
    step_separator: str = field(
        default="auto", metadata={"help": "Step format of rows whose dataset records none: line, paragraph or a "
                                          "string with escapes ('\\n\\n'); auto: the recorded one, else line. "
                                          "Recorded in the checkpoint."})
    solution_end: str = field(
        default="auto", metadata={"help": "What ends a solution in rows whose dataset records none: eos or "
                                          "blank_line; auto: from the separator."})
    label_placement: str = field(
        default="step_end", metadata={"help": "Where a step's value sits: step_end (its last token, ttstrain) or "
                                              "separator (the last separator token after it, TRL's PRMTrainer).",
                                      "choices": list(LABEL_PLACEMENTS)})
    bos: str = field(
        default="tokenizer", metadata={"help": "Special tokens as the tokenizer adds them (tokenizer) or as TRL's "
                                               "PRMTrainer does (trl: the BOS id in front).",
                                       "choices": list(BOS_MODES)})
    packing: bool = field(
        default=True, metadata={"help": "Pack a batch's rows into shared sequences instead of padding them."})
    packing_length: int | None = field(
        default=None, metadata={"help": "Capacity of a packed sequence; None: the batch's longest row."})
    dataset_num_proc: int | None = field(default=None, metadata={"help": "Processes for tokenising the dataset."})
    reference_features: bool = field(
        default=False, metadata={"help": "After training, combine the value head with the starting model's token "
                                         "log-probs (fitted on the training questions); the scorer loads both."})
    drop_worked_examples: bool = field(
        default=False, metadata={"help": "Train on each question in the rows' prompt format without the policy's "
                                         "worked examples (rebuilt from the rows' `question`), as a Math-Shepherd PRM "
                                         "reads question and steps: a few-shot chat prompt costs the PRM its "
                                         "examples' tokens in every row it trains on and scores. The checkpoint "
                                         "records it; search and eval-prm read each policy prompt's question."})

    # LoRA
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters + the value head (merged at save)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules that get adapters; None: all linear layers."})

    def __post_init__(self):
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.reference_features and self.random_init:
            raise ValueError("reference_features=True reads the starting model's log-probs; with random_init=True "
                             "there is no trained starting model to read")
        PRMLayout(label_placement=self.label_placement, bos=self.bos)  # fails early on an unknown one
        if self.hard_labels_from_dataset and self.label_mode != "hard":
            raise ValueError("hard_labels_from_dataset=True needs label_mode='hard'")
        # LoRA's 16-bit base is frozen (the trainer casts adapters and head to float32); a full fine-tune is not
        problem = None if self.use_lora else no_master_weights(self.dtype, self)
        if problem:
            raise ValueError(problem)
        if _several_processes_without_cuda():
            # Without these, accelerate gives DeepSpeed no backend on CPU (it then runs as one process
            # and fails its batch-size check) and plain torchrun no DDP wrapper (the ranks drift apart).
            if self.ddp_backend is None:
                self.ddp_backend = "gloo"
            if not self.deepspeed and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
                self.use_cpu = True
        if self.validation_fraction == 0.0:
            # nothing to evaluate on: no evaluation, no best checkpoint, no early stopping
            self.eval_strategy = "no"
            self.load_best_model_at_end = False
        super().__post_init__()
