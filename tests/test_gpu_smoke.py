"""bench/gpu_smoke.sh runs as is on a CUDA machine: on CPU, every command it would run parses (fast suite).

The script's --dry_run prints its commands; each ttstrain command and each accelerate-launched recipe
is parsed by the stage's own parser (unknown or renamed options fail), and every file it names exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import shlex
import subprocess
from pathlib import Path

from ttstrain.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent
RECIPE_SCRIPTS = {"recipes/train_prm.py": "train-prm", "recipes/train_revision.py": "train-revision"}


def test_every_gpu_smoke_command_parses():
    out = subprocess.run(["bash", str(REPO / "bench/gpu_smoke.sh"), "--dry_run"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    commands = [shlex.split(line) for line in out.splitlines() if line.strip()]
    assert len(commands) >= 20
    seen = set()
    for argv in commands:
        tool = Path(argv[0]).name
        if tool == "python" and argv[1] == "-c":  # a check on a step's output: it must at least compile
            compile(argv[2], "<gpu_smoke check>", "exec")
            seen.add("check")
            continue
        if tool == "python":  # a bench script: its own parser takes the arguments
            spec = importlib.util.spec_from_file_location("bench_script", REPO / argv[1])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.make_parser().parse_args(argv[2:])
            seen.add(argv[1])
            continue
        if tool == "ttstrain":
            name, args = argv[1], argv[2:]
        else:
            assert tool == "accelerate" and argv[1] == "launch", argv
            script = next(a for a in argv if a.endswith(".py"))
            config = argv[argv.index("--config_file") + 1]
            assert (REPO / config).is_file() and (REPO / script).is_file()
            name, args = RECIPE_SCRIPTS[script], argv[argv.index(script) + 1:]
        if "--bf16" in args:  # TrainingArguments refuses bf16 where no GPU supports it: parse the rest
            k = args.index("--bf16")
            args = args[:k] + args[k + 2:]
        if "--config" in args:
            assert (REPO / args[args.index("--config") + 1]).is_file()
        (cfg,) = importlib.import_module(COMMANDS[name][0]).make_parser().parse_args_and_config(args)
        assert cfg is not None
        seen.add(name)
    assert {"sample", "label-mc", "train-prm", "eval-prm", "search", "build-revisions", "train-revision",
            "eval-revision", "compute-optimal", "bench/backend_agreement.py", "check"} <= seen
    assert any("--backend vllm" in " ".join(c) for c in commands) and any("deepspeed" in " ".join(c) for c in commands)
