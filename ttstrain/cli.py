"""The `ttstrain` command: one word per stage, each dispatching to the module that runs it.

    ttstrain demo --output_dir runs/demo [--quick]
    ttstrain pipeline recipes/smollm2-135m --output_dir runs/smollm2
    ttstrain build-world
    ttstrain sample --config recipes/default/sample/config_world.yaml

Every command also runs as `python <module or script> --config <yaml>`; options are the fields
of the stage's config dataclass (YAML sets defaults, the command line overrides, unknown keys fail).
An error the user can cause ends in one line and exit status 1 (`ttstrain.user_errors`;
`TTSTRAIN_DEBUG=1` shows the traceback).
"""

from __future__ import annotations

import importlib
import sys

from ttstrain.user_errors import report_user_errors

COMMANDS = {
    "demo": ("ttstrain.pipeline.demo", "Run the whole pipeline on the default world and write a report."),
    "pipeline": ("ttstrain.pipeline.run", "Run every stage of a recipe folder in order (resumable) and write its report."),
    "build-world": ("ttstrain.world_builder.build", "Pretrain the default world's policy (the shipped checkpoint)."),
    "sample": ("ttstrain.stages.sample", "Sample and grade N solutions per problem with any backend."),
    "build-revisions": ("ttstrain.stages.build_revisions", "Revision SFT data: correct answers paired with wrong attempts."),
    "train-revision": ("ttstrain.stages.train_revision", "Revision SFT (loss on the correct answer only)."),
    "label-mc": ("ttstrain.stages.label_mc", "Monte Carlo step labels for PRM training (resumable, sharded)."),
    "train-prm": ("ttstrain.stages.train_prm", "Train a process reward model on step labels (Trainer, accelerate)."),
    "eval-revision": ("ttstrain.stages.eval_revision", "Revision chains: pass@1 by revision step, flip rates, selection with PRM / revision-aware ORM."),
    "eval-prm": ("ttstrain.stages.eval_prm", "Evaluate a PRM: held-out BCE, step AUROC, best-of-N vs majority, ProcessBench F1."),
    "search": ("ttstrain.stages.run_search", "Test-time search (best-of-N, beam, lookahead) x budgets, graded."),
    "predict-bon": ("ttstrain.stages.predict_bon", "Predict best-of-N accuracy and reward from a few scored samples per question."),
    "compute-optimal": ("ttstrain.stages.compute_optimal", "Difficulty bins, compute-optimal strategy per bin (2-fold CV), FLOPs match."),
}


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: ttstrain <command> [options]   (ttstrain <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ttstrain: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    sys.argv = [f"ttstrain {name}"] + rest
    with report_user_errors(name):
        module = importlib.import_module(COMMANDS[name][0])
        module.main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
