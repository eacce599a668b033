"""Train a revision model (see ttstrain.trainers.revision_trainer).

    ttstrain train-revision --config recipes/default/revision/config_demo.yaml
"""

from __future__ import annotations

from ttstrain.trainers.revision_config import RevisionConfig


def make_parser():
    from ttstrain.parsing import StageParser

    return StageParser((RevisionConfig,))


def main(args: list[str] | None = None) -> None:
    from ttstrain.trainers.revision_trainer import train_revision

    (cfg,) = make_parser().parse_args_and_config(args)
    print(f"revision model written to {train_revision(cfg)}")


if __name__ == "__main__":
    main()
