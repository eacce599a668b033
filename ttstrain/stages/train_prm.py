"""Train a process reward model on Monte Carlo step labels (a `ttstrain label-mc` output).

    ttstrain train-prm --config recipes/default/prm/config_pipeline.yaml
    ttstrain train-prm --config recipes/default/prm/config_pipeline.yaml --label_mode orm --output_dir runs/default/orm_demo
    accelerate launch --config_file accelerate_configs/single_process.yaml recipes/train_prm.py \\
        --config recipes/default/prm/config_pipeline.yaml
    accelerate launch --config_file accelerate_configs/multi_gpu_ddp.yaml --num_processes 2 \\
        recipes/train_prm.py --config recipes/default/prm/config_pipeline.yaml       # 2 processes (GPUs, or CPU + gloo)

Options are the fields of `ttstrain.prm.config.PRMConfig` (every
`transformers.TrainingArguments` field plus the PRM's own): the YAML sets them, the command line
overrides, unknown keys fail. `--resume_from_checkpoint last` continues from the newest
checkpoint in `output_dir` (or give a checkpoint folder).

Output folder (`output_dir`):
  model.safetensors, config.json, tokenizer*  the PRM (best validation checkpoint), loadable with
                                              `ttstrain.prm.scoring.PRMScorer.from_pretrained(output_dir)`;
                                              config.json's ttstrain_prm records the rows' prompt and
                                              step format, label placement and BOS
  README.md                                   model card: data, settings, validation losses
                                              (with --reference_features: the fitted combiner, also in
                                              config.json's ttstrain_prm.reference_features)
  ttstrain_config.json                        the resolved config, data summary and final metrics (the
                                              revision trainer's name too; PRMs saved before both used
                                              it have prm_train_config.json, which readers still take)
  trainer_state.json                          the Trainer's log history (losses, evaluations)
  checkpoint-<step>/                          Trainer checkpoints (resumable; the best one is kept)
"""

from __future__ import annotations

import torch
from transformers import set_seed

from ttstrain.parsing import StageParser
from ttstrain.prm.config import PRMConfig
from ttstrain.prm.data import load_prm_rows, split_by_question
from ttstrain.prm.reference_fit import fit_reference_features
from ttstrain.prm.trainer import PRMTrainer, load_prm_model
from ttstrain.runner.rows import recorded_prompt_format
from ttstrain.trainers.run_setup import cpu_attention_dropout_note, default_wandb_offline, resolve_resume
from ttstrain.trainers.run_skeleton import TRAIN_CONFIG, append_card_line, write_train_config, writes_output



def run_train_prm(cfg):
    """Split by question, train, keep the best checkpoint, save the PRM with its card and resolved config
    (`ttstrain.trainers.run_skeleton`). Returns the trainer."""
    default_wandb_offline(cfg.report_to)
    set_seed(cfg.seed)
    rows = load_prm_rows(cfg.dataset_path)
    train, val = split_by_question(rows, cfg.validation_fraction, cfg.seed)
    model, tokenizer = load_prm_model(cfg.model_name_or_path, label_mode=cfg.label_mode, dtype=cfg.dtype,
                                      random_init=cfg.random_init, head_dropout=cfg.head_dropout,
                                      model_dropout=cfg.model_dropout, attn_implementation=cfg.attn_implementation)
    # the rows' recorded prompt and step format: the trainer tokenizes with it and the checkpoint records it
    # (with the label placement and BOS), so every scorer reads solutions as the PRM was trained on them
    trainer = PRMTrainer(model=model, args=cfg, train_dataset=train, eval_dataset=val, processing_class=tokenizer,
                         prompt_format=recorded_prompt_format(cfg.dataset_path))
    note = cpu_attention_dropout_note(trainer.model, trainer.accelerator.device)
    if note and writes_output(trainer):
        print(f"[train-prm] note: {note}", flush=True)
    result = trainer.train(resume_from_checkpoint=resolve_resume(cfg.resume_from_checkpoint))
    metrics = dict(result.metrics)
    if val is not None:
        metrics.update(trainer.evaluate())
    trainer.log_metrics("all", metrics)
    trainer.save_prm(cfg.output_dir, extra_card={"final metrics": metrics})
    if cfg.reference_features:
        if torch.cuda.is_available():  # the fit loads the PRM and its reference model where the optimizer state sat
            trainer.accelerator.free_memory()
            trainer.optimizer = trainer.lr_scheduler = None

        # fitted on the training questions, so the validation questions stay held out for evaluation;
        # every process reads its share of the rows on its device (no rank idles at a barrier meanwhile)
        spec = fit_reference_features(cfg.output_dir, train, reference=cfg.model_name_or_path,
                                      label_mode=cfg.label_mode, batch_size=cfg.per_device_eval_batch_size,
                                      fitted_on="train", validation_rows=val, device=trainer.accelerator.device,
                                      accelerator=trainer.accelerator)
        metrics["reference_features"] = spec
    if cfg.reference_features and writes_output(trainer):
        held_out = spec.get("validation")
        print(f"[train-prm] reference features: BCE {spec['bce_value_head_only']} -> {spec['bce_combined']} on the "
              f"{spec['fitted_steps']} training steps they were fitted on"
              + (f", {held_out['bce_value_head_only']} -> {held_out['bce_combined']} on {held_out['steps']} held-out "
                 "validation steps" if held_out else " (no validation questions to check them on)"), flush=True)
        if spec.get("warning"):
            print(f"[train-prm] WARNING: reference features {spec['warning']}", flush=True)
        append_card_line(trainer, cfg.output_dir, f"reference features (scorer combines the value head with "
                                                  f"`{cfg.model_name_or_path}`'s token log-probs): {spec}")
    write_train_config(trainer, cfg.output_dir, cfg, data=trainer.data_summary, metrics=metrics)
    return trainer


def make_parser():
    return StageParser((PRMConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    trainer = run_train_prm(cfg)
    if writes_output(trainer):
        print(f"[train-prm] PRM written to {cfg.output_dir}")


if __name__ == "__main__":
    main()
