"""Config of revision SFT: TRL's SFTConfig with the paper's revision-model defaults (Snell et al. App. H).

Changed defaults: learning_rate 1e-5, adam_beta2 0.95 (betas (0.9, 0.95)), effective batch 128
(per_device_train_batch_size 16 x gradient_accumulation_steps 8), model_dropout 0, loss on the
completion (the target answer) only, checkpoints every `save_steps` and none deleted (the paper
found validation loss a poor stopping signal and picked a checkpoint past the point of
overfitting: keep them and choose with eval/eval_revision.py), report_to "none", no gradient
checkpointing (turn it on for models that need it), and bf16 only where a GPU trains: TRL's
SFTConfig resolves bf16 to True everywhere, and bf16 autocast on a CPU made revision SFT of the
default world ~10x slower (measured: 18 s per batch of 16 instead of under 2 s). Mixed precision
keeps float32 weights: `dtype` bfloat16/float16 under bf16/fp16 is refused outside DeepSpeed
(`ttstrain.trainers.run_setup.no_master_weights`).

The model options have the PRM trainer's names (`ttstrain.prm.config.PRMConfig`): `dtype` and
`model_dropout`; the old `--model_dtype` / `--dropout` (flag or YAML key) are refused with the new
name (`ttstrain.parsing.RENAMED_OPTIONS`).

    ttstrain train-revision --config recipes/default/revision/config_pipeline.yaml --dtype float32
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import SFTConfig

from ttstrain.trainers.run_setup import no_master_weights


@dataclass
class RevisionConfig(SFTConfig):
    model_name_or_path: str = field(default="default", metadata={"help": "Policy to fine-tune: 'default', a path or a hub id."})
    dataset_path: str = field(default="runs/default/revisions", metadata={"help": "Output folder of `ttstrain build-revisions`."})
    max_attempts: int = field(default=4, metadata={"help": "Previous attempts kept in context (the most recent ones)."})
    model_dropout: float = field(default=0.0, metadata={"help": "Attention/hidden dropout of the model, set on every dropout field the architecture's config has."})
    dtype: str = field(default="float32", metadata={"help": "dtype to load the model in: float32 (the master weights under bf16/fp16 mixed precision), bfloat16, float16 or auto."})
    output_dir: str = field(default="runs/revision_model", metadata={"help": "Where checkpoints and the final model go."})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate (paper: 1e-5)."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2 (paper: 0.95)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Batch per device."})
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "16 x 8 = the paper's batch of 128."})
    completion_only_loss: bool | None = field(default=True, metadata={"help": "Loss on the target answer only."})
    save_strategy: str = field(default="steps", metadata={"help": "Save periodic checkpoints."})
    save_steps: float = field(default=50, metadata={"help": "Checkpoint every this many steps."})
    logging_steps: float = field(default=10, metadata={"help": "Log every this many steps."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Loggers (wandb runs offline unless configured)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in backward (saves memory, costs time)."})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; None: on when training on a GPU, off on CPU."})

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = bool(torch.cuda.is_available() and not self.use_cpu and not self.fp16)
        problem = no_master_weights(self.dtype, self)
        if problem:
            raise ValueError(problem)
        super().__post_init__()
