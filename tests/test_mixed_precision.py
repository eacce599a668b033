"""bf16 mixed precision keeps float32 trainable weights (issue #35.7).

Weights loaded in bf16 and trained under `bf16: true` have no float32 master copy outside
DeepSpeed: an AdamW step of lr 3e-5 on a weight near 1 is below bf16's resolution there (2^-8)
and rounds away. The real-model PRM recipes, parsed as `recipes/train_prm.py` parses them and
pointed at the tiny model, train float32 weights that move under that step; 16-bit weights under
mixed precision are refused with the option that fixes them, unless only LoRA adapters and the
head train (they are cast to float32) or the user turns autocast off to train in bf16 on purpose.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from ttstrain.prm.config import PRMConfig
from ttstrain.prm.trainer import PRMTrainer, load_prm_model
from ttstrain.trainers.revision_config import RevisionConfig

from test_prm_trainer import REPO, synthetic_rows

REAL_PRM_RECIPES = ["qwen2.5-math-1.5b-instruct/prm/config_math_train.yaml",
                    "llama-3.2-1b-instruct/prm/config_gsm8k.yaml"]
REAL_REVISION_RECIPES = ["qwen2.5-math-1.5b-instruct/revision/config_math_train.yaml",
                         "llama-3.2-1b-instruct/revision/config_gsm8k.yaml"]


def recipe_trainer(recipe: str, base_dir, tmp_path, *flags: str) -> PRMTrainer:
    """The recipe as `recipes/train_prm.py` parses it, on the tiny model and rows, one optimizer step, on CPU."""
    from ttstrain.stages.train_prm import make_parser

    (cfg,) = make_parser().parse_args_and_config(
        ["--config", str(REPO / "recipes" / recipe), "--model_name_or_path", str(base_dir), "--output_dir",
         str(tmp_path / "prm"), "--use_cpu", "true", "--max_steps", "1", "--per_device_train_batch_size", "4",
         "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
         "--validation_fraction", "0", "--disable_tqdm", "true", "--dataloader_pin_memory", "false",
         "--lr_scheduler_type", "constant", *flags])
    torch.manual_seed(0)
    model, tok = load_prm_model(cfg.model_name_or_path, dtype=cfg.dtype, head_dropout=cfg.head_dropout,
                                model_dropout=cfg.model_dropout)
    return PRMTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(synthetic_rows(per_level=1)),
                      processing_class=tok)


def norm_weights(trainer) -> torch.Tensor:
    """The RMSNorm weights, which start at exactly 1.0."""
    return torch.cat([p.detach().float().flatten() for n, p in trainer.model.named_parameters() if "norm" in n])


@pytest.mark.parametrize("recipe", REAL_PRM_RECIPES)
def test_real_model_prm_recipes_train_float32_weights_under_bf16(recipe, base_dir, tmp_path):
    trainer = recipe_trainer(recipe, base_dir, tmp_path)
    assert trainer.args.bf16, "the recipe trains in bf16 mixed precision"
    trainable = {n: p.dtype for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and set(trainable.values()) == {torch.float32}, trainable


def test_a_3e_5_step_moves_the_recipe_weights_and_not_pure_bf16_ones(base_dir, tmp_path):
    recipe = REAL_PRM_RECIPES[0]  # full fine-tuning at Snell et al.'s lr 3e-5
    fixed = recipe_trainer(recipe, base_dir, tmp_path)
    assert fixed.args.learning_rate == 3e-5 and torch.equal(norm_weights(fixed), torch.ones_like(norm_weights(fixed)))
    fixed.train()
    assert (norm_weights(fixed) != 1.0).float().mean() > 0.9, "a 3e-5 AdamW step moves float32 weights near 1"

    pure = recipe_trainer(recipe, base_dir, tmp_path, "--dtype", "bfloat16", "--bf16", "false")  # pure bf16, on purpose
    assert {p.dtype for p in pure.model.parameters()} == {torch.bfloat16}
    pure.train()
    assert pure.state.global_step == 1
    assert torch.equal(norm_weights(pure), torch.ones_like(norm_weights(pure))), "bf16 weights near 1 do not move"


def test_16_bit_weights_under_mixed_precision_are_refused_with_the_fix(base_dir, tmp_path):
    kw = dict(output_dir=str(tmp_path / "prm"), use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="--dtype float32"):
        PRMConfig(dtype="bfloat16", bf16=True, **kw)
    with pytest.raises(ValueError, match="--dtype float32"):
        RevisionConfig(dtype="bfloat16", bf16=True, **kw)
    assert PRMConfig(dtype="bfloat16", bf16=False, **kw).dtype == "bfloat16"  # pure bf16, asked for
    # a model loaded in bf16 by other means (`dtype: auto` on a bf16 checkpoint) is refused by the trainer too
    model, tok = load_prm_model(str(base_dir), dtype="bfloat16")
    rows = Dataset.from_list(synthetic_rows(per_level=1))
    with pytest.raises(ValueError, match="--dtype float32"):
        PRMTrainer(model=model, args=PRMConfig(dtype="auto", bf16=True, validation_fraction=0.0, **kw),
                   train_dataset=rows, processing_class=tok)


def test_lora_keeps_a_bf16_base_and_float32_trainable_weights(base_dir, tmp_path):
    trainer = recipe_trainer(REAL_PRM_RECIPES[1], base_dir, tmp_path, "--dtype", "bfloat16")
    assert trainer.args.use_lora and trainer.args.bf16
    dtypes = {n: p.dtype for n, p in trainer.model.named_parameters()}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("score" in n for n in trainable) and all(dtypes[n] == torch.float32 for n in trainable)
    assert {dtypes[n] for n in dtypes if n not in trainable} == {torch.bfloat16}, "the frozen base stays bf16"


@pytest.mark.parametrize("recipe", REAL_REVISION_RECIPES)
def test_real_model_revision_recipes_load_float32_weights_under_bf16(recipe):
    from ttstrain.stages.train_revision import make_parser

    (cfg,) = make_parser().parse_args_and_config(["--config", str(REPO / "recipes" / recipe), "--use_cpu", "true"])
    assert cfg.bf16 and cfg.dtype == "float32"
