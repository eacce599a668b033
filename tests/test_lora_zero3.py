"""LoRA under DeepSpeed ZeRO-3: the final save merges the adapters into the full, gathered weights.

ZeRO-3 leaves each rank a shard of every parameter, and peft's `merge_and_unload` merges whatever
it finds in `weight.data` (it gathers nothing first). Two CPU processes train a LoRA PRM under
`accelerate_configs/deepspeed_zero3.yaml`; the worker keeps the gathered LoRA state the trainer
had just before `save_prm`, and the test merges that state itself, in one plain process, and
checks the saved PRM against it: same tensors, same scores.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from ttstrain.io import write_parquet
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY

from test_prm_trainer import PROMPT, REPO, STEPS, _free_port, synthetic_rows

WORKER = textwrap.dedent("""
    import os, sys
    import deepspeed
    import torch
    from ttstrain.stages.train_prm import make_parser, run_train_prm
    from ttstrain.prm.trainer import PRMTrainer

    save_prm = PRMTrainer.save_prm

    def keep_lora_state(self, output_dir=None, extra_card=None):
        # the trained LoRA model as it is before the save merges it: full tensors, from rank 0
        params = list(self.model.parameters())
        with deepspeed.zero.GatheredParameters(params):
            state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.args.process_index == 0:
            torch.save(state, os.path.join(self.args.output_dir, "lora_state.pt"))
        return save_prm(self, output_dir, extra_card)

    PRMTrainer.save_prm = keep_lora_state
    (cfg,) = make_parser().parse_args_and_config(sys.argv[1:])
    run_train_prm(cfg)
""")


@pytest.fixture(scope="module")
def lora_data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("prm_lora_data")
    write_parquet(path / "data" / "train-00000-of-00001.parquet", synthetic_rows(per_level=2))
    return path


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed is not installed (pip install -e '.[deepspeed]'; make install does)")
def test_lora_prm_under_zero3_saves_the_merged_full_weights(tmp_path, base_dir, lora_data_dir):
    from peft import get_peft_model
    from safetensors.torch import load_file

    from ttstrain.prm.scoring import PRMScorer
    from ttstrain.stages.train_prm import make_parser
    from ttstrain.prm.trainer import load_prm_model, lora_config

    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / "out"
    args = ["--model_name_or_path", str(base_dir), "--dataset_path", str(lora_data_dir), "--output_dir", str(out),
            "--use_lora", "true", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "1e-2",
            "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--max_steps", "3",
            "--validation_fraction", "0", "--save_strategy", "no", "--logging_steps", "1", "--disable_tqdm", "true",
            "--dataloader_pin_memory", "false", "--report_to", "none", "--seed", "0"]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(REPO / "accelerate_configs" / "deepspeed_zero3.yaml"), "--num_processes", "2",
                "--main_process_port", _free_port()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ACCELERATE_USE_CPU", None)
    start = time.perf_counter()
    proc = subprocess.run(launcher + [str(worker)] + args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    print(f"two-process LoRA + ZeRO-3 run: {time.perf_counter() - start:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    # the merge done here, in one plain process, from the LoRA state the trainer ended with
    (cfg,) = make_parser().parse_args_and_config(args)
    model, tok = load_prm_model(str(base_dir))
    lora = get_peft_model(model, lora_config(cfg))
    lora.load_state_dict(torch.load(out / "lora_state.pt"))
    assert any(v.abs().sum() > 0 for k, v in lora.state_dict().items() if "lora_B" in k), "the adapters trained"
    expected = lora.merge_and_unload().eval()

    saved = load_file(out / "model.safetensors")
    want = expected.state_dict()
    assert set(saved) == set(want)
    for name, tensor in want.items():
        assert saved[name].shape == tensor.shape, f"{name}: saved {tuple(saved[name].shape)}, not the full shape"
        assert torch.allclose(saved[name].float(), tensor.float(), atol=1e-6), f"{name} is not the merged weight"
    prm = PRMScorer.from_pretrained(out)
    setattr(expected.config, PRM_CONFIG_KEY, getattr(prm.model.config, PRM_CONFIG_KEY))  # the layout it trained in
    in_process = PRMScorer(expected, prm.tokenizer)
    assert prm.score([PROMPT], [STEPS])[0] == pytest.approx(in_process.score([PROMPT], [STEPS])[0], abs=1e-6)
