"""A real SIGKILL at several moments, then the same command again: the rows equal an uninterrupted run's.

Each stage that writes resumable chunks (label-mc, build-revisions, sample, eval-revision) runs in
a subprocess with a scripted policy that is slowed down, so the kill lands while chunks are being
computed; the parent kills it with SIGKILL (no Python handler runs), then resumes in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.io import read_parquet

pytestmark = pytest.mark.slow

POLICY = '''
import hashlib
from ttstrain.world.task import apply_op, parse_question


def policy(prompt, j, params):
    """Solves the world's question after the last "Problem:", slipping by one on about a third of draws."""
    question = prompt.split("Problem:\\n")[-1].split("\\nSolution:\\n")[0]
    done = prompt.rsplit("\\nSolution:\\n", 1)[1].count("\\n")
    start, ops = parse_question(question)
    slip = int(hashlib.blake2b(f"{prompt}|{j}".encode(), digest_size=4).hexdigest(), 16) % 3 == 0
    steps, value = [], start
    for i, (op, x) in enumerate(ops):
        new = apply_op(value, op, x) + (1 if slip and i == 0 else 0)
        steps.append(f"{value} {op} {x} = {new}")
        value = new
    steps.append(f"The answer is \\\\boxed{{{value}}}.")
    return "\\n".join(steps[done:])
'''

WORKER = POLICY + '''
import json, sys, time
from ttstrain.generation.scripted import ScriptedGenerator


class Slow(ScriptedGenerator):
    def generate(self, prompts, params, streams=None):
        time.sleep(float(sys.argv[3]))
        return super().generate(prompts, params, streams)


stage, options = sys.argv[1], json.loads(sys.argv[2])
if stage == "label-mc":
    from ttstrain.stages.label_mc import LabelMCConfig as Config, run_label_mc as run
elif stage == "build-revisions":
    from ttstrain.stages.build_revisions import BuildRevisionsConfig as Config, run_build_revisions as run
elif stage == "sample":
    from ttstrain.stages.sample import SampleConfig as Config, run_sample as run
else:
    from ttstrain.stages.eval_revision import EvalRevisionConfig as Config, run_eval_revision as run
run(Config(**options), generator=Slow(policy), progress=False)
'''

namespace: dict = {}
exec(POLICY, namespace)
policy = namespace["policy"]

STAGES = {
    "label-mc": dict(problems="arith", split="train", per_level=1, num_samples=2, num_rollouts=2,
                     problems_per_chunk=1, seed=3),
    "build-revisions": dict(problems="arith", split="train", per_level=1, num_samples=8, problems_per_chunk=1, seed=3),
    "sample": dict(problems="arith", split="test", per_level=1, num_samples=3, problems_per_chunk=1, seed=3),
    "eval-revision": dict(problems="arith", split="test", per_level=1, num_chains=2, chain_length=2,
                          problems_per_chunk=1, seed=3),
}


def run_in_process(stage: str, out: Path):
    options = {**STAGES[stage], "output_dir": str(out)}
    gen = ScriptedGenerator(policy)
    if stage == "label-mc":
        from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc

        run_label_mc(LabelMCConfig(**options), generator=gen, progress=False)
    elif stage == "build-revisions":
        from ttstrain.stages.build_revisions import BuildRevisionsConfig, run_build_revisions

        run_build_revisions(BuildRevisionsConfig(**options), generator=gen, progress=False)
    elif stage == "sample":
        from ttstrain.stages.sample import SampleConfig, run_sample

        run_sample(SampleConfig(**options), generator=gen, progress=False)
    else:
        from ttstrain.stages.eval_revision import EvalRevisionConfig, run_eval_revision

        run_eval_revision(EvalRevisionConfig(**options), generator=gen, progress=False)
    return gen


def output_rows(stage: str, out: Path) -> list[dict]:
    if stage == "sample":
        return read_parquet(out / "samples.parquet")
    if stage == "eval-revision":
        return read_parquet(out / "chains.parquet")
    return [r for f in sorted((out / "data").glob("train-*.parquet")) for r in read_parquet(f)]


def kill_during_run(stage: str, out: Path, after_chunks: int, delay: float = 0.4) -> int:
    """Start the stage in a subprocess, SIGKILL it once `after_chunks` chunks are on disk; chunks left."""
    proc = subprocess.Popen([sys.executable, "-c", WORKER, stage, json.dumps({**STAGES[stage], "output_dir": str(out)}),
                             str(delay)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    chunks = out / "chunks"
    while time.monotonic() < deadline:
        ready = (out / "run_fingerprint.json").exists() if after_chunks == 0 else \
            len(list(chunks.glob("chunk-*.parquet"))) >= after_chunks if chunks.exists() else False
        if ready or proc.poll() is not None:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the stage ended before the kill: {proc.stderr.read()[-2000:]}"
    time.sleep(delay / 2)  # inside the next chunk's generate call
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return len(list(chunks.glob("chunk-*.parquet"))) if chunks.exists() else 0


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_then_resume_gives_the_uninterrupted_rows(tmp_path, stage):
    run_in_process(stage, tmp_path / "uninterrupted")
    expected = output_rows(stage, tmp_path / "uninterrupted")
    assert len(expected) > 0
    for after in (0, 1, 3):
        out = tmp_path / f"killed-after-{after}"
        left = kill_during_run(stage, out, after)
        assert after <= left < 5, f"kill after {after} chunks left {left}"
        gen = run_in_process(stage, out)
        assert len(gen.calls) > 0, "the resume had chunks left to compute"
        rows = output_rows(stage, out)
        assert rows == expected, f"{stage}: resumed rows differ after a kill at chunk {after}"
        keys = [json.dumps({k: r.get(k) for k in ("problem_id", "sample_index", "chain", "step", "target_sample_index")})
                for r in rows]
        assert len(keys) == len(set(keys)), "no duplicated rows"
