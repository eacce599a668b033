"""The reference-feature fit under several processes outlasts no process-group timeout.

A real model's fit takes longer than the process group's timeout (1,800 s by default); a rank that
waited at a barrier through another rank's whole fit would time out. Two CPU processes train the
tiny PRM with `--reference_features true` in a process group with a 10 s timeout (the worker
starts it: on CPU transformers does not pass `--ddp_timeout` on), and the worker slows each call
that reads features by 8 s, so one rank's whole fit takes longer than the timeout; the run must
finish with the combiner recorded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from test_prm_trainer import REPO, _free_port, data_dir  # noqa: F401  (the fixture)

FIT_DELAY_S = 8
TIMEOUT_S = 10

WORKER = textwrap.dedent(f"""
    import sys, time
    from datetime import timedelta
    import torch.distributed as dist
    import ttstrain.prm.reference_fit as fit
    from ttstrain.stages.train_prm import make_parser, run_train_prm

    step_features = fit.step_features

    def slow_step_features(*args, **kwargs):  # a real model reads features for much longer than the tiny one
        time.sleep({FIT_DELAY_S})
        return step_features(*args, **kwargs)

    fit.step_features = slow_step_features
    dist.init_process_group("gloo", timeout=timedelta(seconds={TIMEOUT_S}))  # accelerate takes this group on
    (cfg,) = make_parser().parse_args_and_config(sys.argv[1:])
    run_train_prm(cfg)
""")


def test_a_fit_longer_than_the_process_group_timeout_finishes(tmp_path, base_dir, data_dir):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / "out"
    args = ["--model_name_or_path", str(base_dir), "--dataset_path", str(data_dir), "--output_dir", str(out),
            "--reference_features", "true", "--learning_rate", "3e-3",
            "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--max_steps", "2",
            "--validation_fraction", "0.2", "--eval_strategy", "no", "--save_strategy", "no",
            "--load_best_model_at_end", "false", "--disable_tqdm", "true", "--dataloader_pin_memory", "false",
            "--report_to", "none", "--seed", "0"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _free_port()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ACCELERATE_USE_CPU", None)
    start = time.perf_counter()
    proc = subprocess.run(launcher + [str(worker)] + args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    print(f"two-process run with a slowed fit: {time.perf_counter() - start:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    spec = json.loads((out / "config.json").read_text())["ttstrain_prm"]["reference_features"]
    assert spec["fitted_rows"] > 0 and "validation" in spec
    assert "reference features" in (out / "README.md").read_text()


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed is not installed (pip install -e '.[deepspeed]'; make install does)")
def test_the_fit_runs_under_zero3(tmp_path, base_dir, data_dir):
    """Under ZeRO-3 the fit's two models load whole, not partitioned for a DeepSpeed engine they do not have."""
    out = tmp_path / "out"
    args = ["--model_name_or_path", str(base_dir), "--dataset_path", str(data_dir), "--output_dir", str(out),
            "--reference_features", "true", "--per_device_train_batch_size", "4", "--max_steps", "2",
            "--validation_fraction", "0.2", "--eval_strategy", "no", "--save_strategy", "no",
            "--load_best_model_at_end", "false", "--disable_tqdm", "true", "--dataloader_pin_memory", "false",
            "--report_to", "none", "--seed", "0"]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(REPO / "accelerate_configs" / "deepspeed_zero3.yaml"), "--num_processes", "2",
                "--main_process_port", _free_port(), str(REPO / "recipes" / "train_prm.py")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run(launcher + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    spec = json.loads((out / "config.json").read_text())["ttstrain_prm"]["reference_features"]
    assert spec["fitted_rows"] > 0 and "validation" in spec
