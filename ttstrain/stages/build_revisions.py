"""Revision SFT data: sample many answers per question, pair correct ones with wrong attempts.

    ttstrain build-revisions --config recipes/default/build_revisions/config_paper.yaml
    ttstrain build-revisions --config ... --shard 1/4          # one of 4 jobs; --merge_only true to merge

Output folder (same resume/shard/atomic guarantees as `ttstrain label-mc`, see ttstrain.runner.chunked):
  data/train-*.parquet  problem_id, question, gold, level, previous_attempts, previous_answers,
                        attempt_sample_indices, target, target_sample_index, k, closest_edit_distance
  config.json, summary.json (questions without a correct / an incorrect answer, histogram of k)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ttstrain.generation.base import SamplingArguments
from ttstrain.generation.sampling import group_by_problem, sample_solutions
from ttstrain.io import write_json
from ttstrain.parsing import StageParser
from ttstrain.revisions.pairs import build_revision_rows
from ttstrain.runner.chunked import ChunkedStage, ChunkWorker, run_chunked_stage
from ttstrain.stages import run_fingerprint, stage_generator, stage_problems, stage_prompt_format
from ttstrain.stages.arguments import ChunkArguments, PolicyArguments, ProblemArguments, PromptArguments


@dataclass
class BuildRevisionsConfig(PolicyArguments, ProblemArguments, PromptArguments, ChunkArguments, SamplingArguments):
    """Defaults changed from the argument groups: split = 'train', temperature = 1.2."""

    output_dir: str = field(default="runs/revisions", metadata={"help": "Output folder."})
    split: str | None = field(default="train", metadata={"help": "Split of the problem source."})
    num_samples: int = field(default=64, metadata={"help": "Answers sampled per question (paper: 64)."})
    temperature: float = field(default=1.2, metadata={"help": "Sampling temperature (higher than for solving)."})
    max_attempts: int = field(default=4, metadata={"help": "k is drawn from U{0..max_attempts}, capped by #incorrect."})
    max_rows_per_question: int | None = field(default=None, metadata={"help": "Use at most this many correct "
        "answers of a question as SFT targets (drawn at random), so easy questions do not fill the data "
        "(None: every correct answer, as the paper)."})
    problems_per_chunk: int = field(default=8, metadata={"help": "Problems per resumable chunk."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and pairing."})


def revision_chunk(generator, problems, cfg: BuildRevisionsConfig, prompt_format=None) -> tuple[list[dict], dict]:
    samples = sample_solutions(generator, problems, n=cfg.num_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                               max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, few_shot=prompt_format, progress=False)
    by_problem = group_by_problem(samples)
    rows, totals = [], {}
    for p in problems:
        rng = random.Random(f"revisions-{cfg.seed}-{p['id']}")  # per question: chunking never changes a row
        got, stats = build_revision_rows(p, by_problem.get(p["id"], []), rng, cfg.max_attempts,
                                          cfg.max_rows_per_question)
        rows += got
        for k, v in stats.items():
            totals[k] = totals.get(k, 0) + v
    totals["samples_dropped_no_answer"] = sum(r["answer"] is None for r in samples)
    return rows, totals


def revision_worker(cfg: BuildRevisionsConfig, generator=None) -> ChunkWorker:
    """The policy and prompt format the attempts are sampled with; a chunk is one generate call."""
    own = generator is None
    generator = generator or stage_generator(cfg)
    fmt = stage_prompt_format(cfg, generator)
    if fmt.kind != "chat" and getattr(generator.tokenizer, "chat_template", None):
        print(f"[build-revisions] WARNING: the attempts are sampled with the {fmt.kind} prompt format, but revision "
              "prompts of this model use its chat template: sample them in the format the revision model will "
              "see (--prompt_format chat)", flush=True)
    return ChunkWorker(lambda chunk, start: revision_chunk(generator, chunk, cfg, fmt), generator,
                       {"generator": generator.identity(), "prompt_format": fmt.record()},
                       close=generator.close if own else None)


def run_build_revisions(cfg: BuildRevisionsConfig, generator=None, progress: bool = True) -> dict | None:
    """Build the rows of the problems this shard owns; merge when every chunk is done. Returns the summary if merged."""
    problems = stage_problems(cfg)
    stage = ChunkedStage("build-revisions", cfg, problems, cfg.problems_per_chunk, run_fingerprint(cfg),
                         open_worker=lambda: revision_worker(cfg, generator))
    chunks = run_chunked_stage(stage, progress)
    if chunks is None:
        return None
    summary = chunks.merge()
    summary["k_histogram"] = {k: summary.pop(k) for k in sorted([k for k in summary if k.startswith("k=")])}
    summary.update(chunks.workers())
    write_json(stage.output_dir / "summary.json", summary)
    print(f"[build-revisions] merged: {summary}")
    return summary


def make_parser():
    return StageParser((BuildRevisionsConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    run_build_revisions(cfg)


if __name__ == "__main__":
    main()
