"""How a training run ends, the same for the PRM and the revision trainer: what goes into output_dir, and who writes it.

Every process of the run calls these functions, in this order; only the main process
(`writes_output`: `args.should_save`, one process per node with `save_on_each_node`) writes.

1. `save_final_model(trainer, output_dir, card)`: the trained weights (LoRA adapters merged),
   model config, tokenizer, and the model card README.md (`model_card` formats it). Every process
   takes part, because under DeepSpeed ZeRO-3 each holds a shard of every weight and the save
   gathers them. All processes wait at the end, so each can read the saved model afterwards.
2. `append_card_line(trainer, output_dir, line)`: one more bullet on the card (for what is
   computed from the saved model, such as the PRM's reference-feature fit).
3. `write_train_config(trainer, output_dir, cfg, **record)`: `ttstrain_config.json`, the resolved
   training config plus what the run records beside it, and trainer_state.json (the loss
   history). All processes wait at the end, so each returns with the folder complete.

`read_train_config(model_dir)` reads the config back; PRM folders written before both trainers
used one name carry it as `prm_train_config.json`, which is read too.

    from ttstrain.trainers.run_skeleton import model_card, save_final_model, write_train_config
    trainer.train()
    save_final_model(trainer, cfg.output_dir, card=model_card("My model", ["Trained by ..."], tags=["sft"]))
    write_train_config(trainer, cfg.output_dir, cfg, data={"rows": 12})
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterable, Mapping

from peft import PeftModel

from ttstrain.io import write_resolved_config, write_text

# revision models have always carried this name (eval-revision reads their prompt format from it)
TRAIN_CONFIG = "ttstrain_config.json"
LEGACY_TRAIN_CONFIGS = ("prm_train_config.json",)  # PRMs trained before both trainers used one name
MODEL_CARD = "README.md"
TRAINER_STATE = "trainer_state.json"


def writes_output(trainer) -> bool:
    """Whether this process writes the run's output folder (the main process)."""
    return trainer.args.should_save


def save_final_model(trainer, output_dir: str | Path, card: str | None = None) -> str:
    """Weights (LoRA merged), config, tokenizer and `card` as README.md in output_dir; call on every process.

    Without LoRA, `Trainer.save_model` (it gathers ZeRO-3 shards on every process and writes on the
    main one). With LoRA every process merges the adapters into its model, so the processes keep
    one model. Under ZeRO-3 a process holds only a shard of each weight and peft's merge gathers
    nothing, so the merge runs with all parameters gathered, and the shards keep rank 0's merged
    values afterwards.
    """
    output_dir = str(output_dir)
    if isinstance(trainer.model, PeftModel):
        with _gathered(trainer.model):
            merged = trainer.model.merge_and_unload()
            if writes_output(trainer):
                merged.save_pretrained(output_dir, state_dict={k: v.detach().cpu().contiguous()
                                                               for k, v in merged.state_dict().items()})
                trainer.processing_class.save_pretrained(output_dir)
    else:
        trainer.save_model(output_dir)
    if card is not None and writes_output(trainer):
        write_text(Path(output_dir) / MODEL_CARD, card)
    trainer.accelerator.wait_for_everyone()
    return output_dir


def _gathered(model):
    """A context in which every parameter of a ZeRO-3 model is whole on every rank, rank 0's values
    kept on exit; no context for any other model."""
    params = list(model.parameters())
    if not any(hasattr(p, "ds_id") for p in params):  # not partitioned by DeepSpeed ZeRO-3
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


def model_card(title: str, intro: Iterable[str], *, tags: Iterable[str] = (),
               sections: Mapping[str, object] | None = None, bullets: Iterable[str] = ()) -> str:
    """A Hugging Face model card: front matter (library, tags), `# title`, the intro lines, one JSON
    block per section (`## name`), then one bullet per line of `bullets`."""
    lines = ["---", "library_name: transformers", f"tags: [{', '.join(['ttstrain', *tags])}]", "---", "",
             f"# {title}", "", *intro, ""]
    for heading, value in (sections or {}).items():
        lines += [f"## {heading}", "", "```json", json.dumps(value, indent=2, default=str), "```", ""]
    lines += [f"- {b}" for b in bullets]
    return "".join(f"{line}\n" for line in lines).rstrip() + "\n"


def append_card_line(trainer, output_dir: str | Path, line: str) -> None:
    """One more bullet at the end of the model card (main process only)."""
    if writes_output(trainer):
        card = Path(output_dir) / MODEL_CARD
        write_text(card, card.read_text(encoding="utf-8") + f"- {line}\n")


def write_train_config(trainer, output_dir: str | Path, cfg, **record) -> Path:
    """TRAIN_CONFIG (cfg resolved, `record` and the world size beside it) and trainer_state.json in
    output_dir; call on every process."""
    path = Path(output_dir) / TRAIN_CONFIG
    if writes_output(trainer):
        trainer.state.save_to_json(str(Path(output_dir) / TRAINER_STATE))
        write_resolved_config(output_dir, cfg.to_dict(), name=TRAIN_CONFIG,
                              **{"world_size": trainer.args.world_size, **record})
    trainer.accelerator.wait_for_everyone()
    return path


def read_train_config(model_dir: str | Path) -> tuple[Path, dict]:
    """(the file, what it records) of a trained model's training config; ({model_dir}/ttstrain_config.json, {})
    when the folder has none (a hub id, a model trained elsewhere)."""
    for name in (TRAIN_CONFIG, *LEGACY_TRAIN_CONFIGS):
        path = Path(model_dir) / name
        if path.is_file():
            return path, json.loads(path.read_text())
    return Path(model_dir) / TRAIN_CONFIG, {}


__all__ = ["LEGACY_TRAIN_CONFIGS", "MODEL_CARD", "TRAIN_CONFIG", "append_card_line", "model_card",
           "read_train_config", "save_final_model", "write_train_config", "writes_output"]
