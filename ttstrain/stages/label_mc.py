"""Monte Carlo step labels for PRM training: resumable, sharded, in TRL's stepwise schema.

    ttstrain label-mc --config recipes/default/label_mc/config_pipeline.yaml
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

from dataclasses import dataclass, field

from ttstrain.data_guards import label_warnings, report_warnings
from ttstrain.io import write_json
from ttstrain.labeling.mc import MCSettings, label_chunk
from ttstrain.parsing import StageParser
from ttstrain.runner.chunked import ChunkedStage, ChunkWorker, run_chunked_stage
from ttstrain.runner.shards import load_dataset_dir
from ttstrain.stages import run_fingerprint, stage_generator, stage_problems, stage_prompt_format
from ttstrain.stages.arguments import ChunkArguments, PolicyArguments, ProblemArguments, PromptArguments


@dataclass
class LabelMCConfig(PolicyArguments, ProblemArguments, PromptArguments, ChunkArguments, MCSettings):
    """The settings of Monte Carlo labelling are `MCSettings`' fields. Defaults changed from the argument
    groups: split = 'train'."""

    output_dir: str = field(default="runs/label_mc", metadata={"help": "Output folder (dataset, config, summary)."})
    split: str | None = field(default="train", metadata={"help": "Split of the problem source."})
    problems_per_chunk: int = field(default=8, metadata={"help": "Problems per resumable chunk."})
    prefix_cache_mb: int = field(default=512, metadata={"help": "MB of the policy's prefix KV cache within a chunk (transformers backend): a rollout prefix prefills only the step it adds to the shorter prefix before it (0: off)."})


def label_worker(cfg: LabelMCConfig, generator=None) -> ChunkWorker:
    """The policy and prompt format the chunks are labelled with; a chunk makes two generate calls (the
    samples, then every prefix's rollouts)."""
    own = generator is None
    generator = generator or stage_generator(cfg)
    shots = stage_prompt_format(cfg, generator)

    def label(chunk, start):
        with generator.fresh_prefix_cache(cfg.prefix_cache_mb << 20):
            return label_chunk(generator, chunk, cfg, shots)

    return ChunkWorker(label, generator, {"generator": generator.identity(), "prompt_format": shots.record()},
                       calls_per_chunk=2, close=generator.close if own else None)


def run_label_mc(cfg: LabelMCConfig, generator=None, progress: bool = True) -> dict | None:
    """Label the problems this shard owns; merge when every chunk is done. Returns the summary if merged."""
    problems = stage_problems(cfg)
    stage = ChunkedStage("label-mc", cfg, problems, cfg.problems_per_chunk, run_fingerprint(cfg),
                         open_worker=lambda: label_worker(cfg, generator))
    chunks = run_chunked_stage(stage, progress)
    if chunks is None:
        return None
    summary = chunks.merge()
    summary["mode"] = cfg.mode
    summary.update(chunks.workers())
    summary["warnings"] = report_warnings("label-mc", label_warnings(load_dataset_dir(cfg.output_dir)))
    seconds = chunks.rate_seconds(summary.get("seconds", 0))
    summary["labelled_steps_per_second"] = round(summary.get("steps_labelled", 0) / max(seconds, 1e-9), 2)
    write_json(stage.output_dir / "summary.json", summary)
    print(f"[label-mc] merged: {summary}")
    return summary


def make_parser():
    return StageParser((LabelMCConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    run_label_mc(cfg)


if __name__ == "__main__":
    main()
