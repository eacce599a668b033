"""Train a revision model (see ttstrain.trainers.revision_trainer).

    ttstrain train-revision --config recipes/default/revision/config_pipeline.yaml
    accelerate launch recipes/train_revision.py --config recipes/default/revision/config_pipeline.yaml

Options are the fields of `ttstrain.trainers.revision_config.RevisionConfig` (TRL's SFTConfig plus
the revision model's own; `dtype` and `model_dropout` as in train-prm). Output folder
(`output_dir`): the model, README.md (model card), ttstrain_config.json (the resolved config and
the revision prompt format) and trainer_state.json, as train-prm writes them
(`ttstrain.trainers.run_skeleton`).
"""

from __future__ import annotations

from ttstrain.parsing import StageParser
from ttstrain.trainers.revision_config import RevisionConfig
from ttstrain.trainers.revision_trainer import train_revision


def make_parser():
    return StageParser((RevisionConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    out = train_revision(cfg)
    if cfg.should_save:
        print(f"revision model written to {out}")


if __name__ == "__main__":
    main()
