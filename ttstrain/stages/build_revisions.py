"""Revision SFT data: sample many answers per question, pair correct ones with wrong attempts.

    ttstrain build-revisions --config recipes/default/build_revisions/config_paper.yaml
    ttstrain build-revisions --config ... --shard 1/4          # one of 4 jobs; --merge_only true to merge

Output folder (same resume/shard/atomic guarantees as `ttstrain label-mc`, see ttstrain.runner.shards):
  data/train-*.parquet  problem_id, question, gold, level, previous_attempts, previous_answers,
                        attempt_sample_indices, target, target_sample_index, k, closest_edit_distance
  config.json, summary.json (questions without a correct / an incorrect answer, histogram of k)
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ttstrain.runner.progress import StageProgress
from ttstrain.io import write_json, write_resolved_config
from ttstrain.stages import run_fingerprint, stage_generator, stage_problems, stage_prompt_format
from ttstrain.stages.arguments import RUNTIME_FIELDS, PolicyArguments, ProblemArguments, PromptArguments
from ttstrain.runner.shards import (Shard, check_or_write_config, merge_chunks, missing_chunks, run_chunks,
                             shard_configs)


@dataclass
class BuildRevisionsConfig(PolicyArguments, ProblemArguments, PromptArguments):
    """Defaults changed from the argument groups: split = 'train'."""

    output_dir: str = field(default="runs/revisions", metadata={"help": "Output folder."})
    split: str | None = field(default="train", metadata={"help": "Split of the problem source."})
    num_samples: int = field(default=64, metadata={"help": "Answers sampled per question (paper: 64)."})
    temperature: float = field(default=1.2, metadata={"help": "Sampling temperature (higher than for solving)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus threshold."})
    max_new_tokens: int = field(default=320, metadata={"help": "Generation cap per answer."})
    max_attempts: int = field(default=4, metadata={"help": "k is drawn from U{0..max_attempts}, capped by #incorrect."})
    max_rows_per_question: int | None = field(default=None, metadata={"help": "Use at most this many correct "
        "answers of a question as SFT targets (drawn at random), so easy questions do not fill the data "
        "(None: every correct answer, as the paper)."})
    problems_per_chunk: int = field(default=8, metadata={"help": "Problems per resumable chunk."})
    shard: str | None = field(default=None, metadata={"help": "i/n: this job builds chunks c with c mod n == i."})
    merge_only: bool = field(default=False, metadata={"help": "Only merge finished chunks into data/."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and pairing."})

    def fingerprint(self) -> dict:
        """Fields that change the rows: a resumed run or a merge must match them."""
        skip = {"output_dir", "shard", "merge_only", *RUNTIME_FIELDS}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def revision_chunk(generator, problems, cfg: BuildRevisionsConfig, prompt_format=None) -> tuple[list[dict], dict]:
    from ttstrain.revisions.pairs import build_revision_rows
    from ttstrain.generation.sampling import group_by_problem, sample_solutions

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


def run_build_revisions(cfg: BuildRevisionsConfig, generator=None, progress: bool = True) -> dict | None:

    out = Path(cfg.output_dir)
    problems = stage_problems(cfg)
    fingerprint = run_fingerprint(cfg)
    check_or_write_config(out, fingerprint, must_exist=cfg.merge_only)
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.merge_only:
        if generator is None:
            generator = stage_generator(cfg)
        shard = Shard.parse(cfg.shard)
        name = "config.json" if shard.count == 1 else f"config.shard-{shard.index}-of-{shard.count}.json"
        fmt = stage_prompt_format(cfg, generator)
        if fmt.kind != "chat" and getattr(generator.tokenizer, "chat_template", None):
            print(f"[build-revisions] WARNING: the attempts are sampled with the {fmt.kind} prompt format, but revision "
                  "prompts of this model use its chat template: sample them in the format the revision model will "
                  "see (--prompt_format chat)", flush=True)
        write_resolved_config(out, cfg, name=name, generator=generator.identity(), problems_loaded=len(problems),
                              prompt_format=fmt.record())
        with StageProgress(len(problems), "build-revisions", generator, 1, cfg.problems_per_chunk, progress) as bar:
            run_chunks(out, problems, cfg.problems_per_chunk, shard,
                       lambda chunk, start: revision_chunk(generator, chunk, cfg, fmt), progress=bar.chunk_done)
    if missing_chunks(out, len(problems), cfg.problems_per_chunk):
        print("[build-revisions] chunks still to do (other shards?); merge when all are done")
        return None
    summary = merge_chunks(out, len(problems), cfg.problems_per_chunk)
    if not (out / "config.json").exists():  # a sharded run: the merged dataset's config, with its shards'
        write_resolved_config(out, cfg, problems_loaded=len(problems), **shard_configs(out))
    summary["k_histogram"] = {k: summary.pop(k) for k in sorted([k for k in summary if k.startswith("k=")])}
    write_json(out / "summary.json", summary)
    print(f"[build-revisions] merged: {summary}")
    return summary


def make_parser():
    from ttstrain.parsing import StageParser

    return StageParser((BuildRevisionsConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    run_build_revisions(cfg)


if __name__ == "__main__":
    main()
