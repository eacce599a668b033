"""Monte Carlo step labels for PRM training: resumable, sharded, in TRL's stepwise schema.

    ttstrain label-mc --config recipes/default/label_mc/config_demo.yaml
    ttstrain label-mc --config recipes/default/label_mc/config_paper.yaml --shard 3/8   # one of 8 jobs
    ttstrain label-mc --config recipes/default/label_mc/config_paper.yaml --merge_only true

Output folder:
  data/train-XXXXX-of-YYYYY.parquet  the dataset: prompt, completions (steps), labels (soft, in
                                     [0, 1]), problem_id, sample_index, final_correct,
                                     rollouts_per_step, hard_labels, question, gold, level
  config.json                        the resolved config and the generator's identity
  summary.json                       problems, samples kept/dropped, steps, rollouts, tokens, time
  chunks/                            the resumable unit of work (see ttstrain.runner.shards)

Kill it at any moment and run the same command again: finished chunks are kept, the rest is
recomputed with the same seeds, and the merged dataset equals an uninterrupted run's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ttstrain.data_guards import label_warnings, report_warnings
from ttstrain.runner.progress import StageProgress
from ttstrain.io import write_json, write_resolved_config
from ttstrain.stages import (policy_prefix_cache, run_fingerprint, stage_generator, stage_problems,
                             stage_prompt_format)
from ttstrain.stages.arguments import RUNTIME_FIELDS, PolicyArguments, ProblemArguments, PromptArguments
from ttstrain.labeling.mc import MCSettings, label_chunk
from ttstrain.runner.shards import (Shard, check_or_write_config, load_dataset_dir, merge_chunks, missing_chunks, run_chunks,
                             shard_configs)


@dataclass
class LabelMCConfig(PolicyArguments, ProblemArguments, PromptArguments):
    """Defaults changed from the argument groups: split = 'train'."""

    output_dir: str = field(default="runs/label_mc", metadata={"help": "Output folder (dataset, config, summary)."})
    split: str | None = field(default="train", metadata={"help": "Split of the problem source."})
    num_samples: int = field(default=16, metadata={"help": "Solutions sampled per problem (paper: 16)."})
    num_rollouts: int = field(default=16, metadata={"help": "Monte Carlo rollouts per step prefix (paper: 16)."})
    temperature: float = field(default=1.0, metadata={"help": "Temperature of the sampled solutions."})
    rollout_temperature: float = field(default=1.0, metadata={"help": "Temperature of the rollouts."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus threshold for samples and rollouts."})
    max_new_tokens: int = field(default=320, metadata={"help": "Generation cap per solution or rollout."})
    max_steps_per_sample: int | None = field(default=None, metadata={"help": "Drop samples with more steps (counted)."})
    mode: str = field(default="full", metadata={"help": "full (every prefix) or binary_search (OmegaPRM-style, hard labels)."})
    problems_per_chunk: int = field(default=8, metadata={"help": "Problems per resumable chunk."})
    prefix_cache_mb: int = field(default=512, metadata={"help": "MB of the policy's prefix KV cache within a chunk (transformers backend): a rollout prefix prefills only the step it adds to the shorter prefix before it (0: off)."})
    shard: str | None = field(default=None, metadata={"help": "i/n: this job labels chunks c with c mod n == i."})
    merge_only: bool = field(default=False, metadata={"help": "Only merge finished chunks into data/."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and rollouts."})

    def settings(self) -> MCSettings:
        return MCSettings(num_samples=self.num_samples, num_rollouts=self.num_rollouts, temperature=self.temperature,
                          rollout_temperature=self.rollout_temperature, top_p=self.top_p,
                          max_new_tokens=self.max_new_tokens, max_steps_per_sample=self.max_steps_per_sample,
                          mode=self.mode, seed=self.seed)

    def fingerprint(self) -> dict:
        """Fields that change the labels: a resumed run or a merge must match them (batch rows only
        change how many rows share a forward pass, and the shard which chunks a job writes)."""
        skip = {"output_dir", "shard", "merge_only", *RUNTIME_FIELDS}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def run_label_mc(cfg: LabelMCConfig, generator=None, progress: bool = True) -> dict | None:
    """Label the problems this shard owns; merge when every chunk is done. Returns the summary if merged."""

    out = Path(cfg.output_dir)
    problems = stage_problems(cfg)
    fingerprint = run_fingerprint(cfg)
    check_or_write_config(out, fingerprint, must_exist=cfg.merge_only)
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.merge_only:
        settings = cfg.settings()
        if generator is None:
            generator = stage_generator(cfg)
        shots = stage_prompt_format(cfg, generator)
        shard = Shard.parse(cfg.shard)
        name = "config.json" if shard.count == 1 else f"config.shard-{shard.index}-of-{shard.count}.json"
        write_resolved_config(out, cfg, name=name, generator=generator.identity(), problems_loaded=len(problems),
                              prompt_format=shots.record())
        t0 = time.time()
        def label(chunk, start):
            with policy_prefix_cache(generator, cfg.prefix_cache_mb << 20):
                return label_chunk(generator, chunk, settings, shots)

        # a chunk makes two generate calls: the samples, then every prefix's rollouts
        with StageProgress(len(problems), "label-mc", generator, 2, cfg.problems_per_chunk, progress) as bar:
            run = run_chunks(out, problems, cfg.problems_per_chunk, shard, label, progress=bar.chunk_done)
        print(f"[label-mc] {run} in {time.time() - t0:.1f} s")
    missing = missing_chunks(out, len(problems), cfg.problems_per_chunk)
    if missing:
        print(f"[label-mc] {len(missing)} chunk(s) still to do (other shards?); merge when all are done")
        return None
    summary = merge_chunks(out, len(problems), cfg.problems_per_chunk)
    if not (out / "config.json").exists():  # a sharded run: the merged dataset's config, with its shards'
        write_resolved_config(out, cfg, problems_loaded=len(problems), **shard_configs(out))
    summary["mode"] = cfg.mode
    summary["warnings"] = report_warnings("label-mc", label_warnings(load_dataset_dir(out)))
    summary["labelled_steps_per_second"] = round(summary.get("steps_labelled", 0) / max(summary.get("seconds", 0), 1e-9), 2)
    write_json(out / "summary.json", summary)
    print(f"[label-mc] merged: {summary}")
    return summary


def make_parser():
    from ttstrain.parsing import StageParser

    return StageParser((LabelMCConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    run_label_mc(cfg)


if __name__ == "__main__":
    main()
