"""Sample and grade N solutions per problem with any generation backend.

    ttstrain sample --config recipes/default/sample/config_world.yaml
    python data_gen/sample_solutions.py --config recipes/smollm2-135m/sample/config_gsm8k.yaml --limit 8

Writes `<output_dir>/samples.parquet` (one row per sample, see ttstrain.generation.sampling), the resolved
`config.json` with the generator's identity, and `summary.json` (accuracy, tokens, wall time).
Problems are sampled in chunks (`chunks/`, see ttstrain.runner.chunked), each written atomically: kill
the run at any moment and run the same command again, and it samples only the unfinished
chunks; samples.parquet equals an uninterrupted run's (every sample's seed depends on its
problem and index, not on its batch). A resume with settings that change the samples is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ttstrain.data_guards import report_warnings, sample_warnings
from ttstrain.generation.base import SamplingArguments
from ttstrain.generation.sampling import sample_solutions
from ttstrain.io import write_json, write_parquet
from ttstrain.parsing import StageParser
from ttstrain.runner.chunked import ChunkedStage, ChunkWorker, run_chunked_stage
from ttstrain.stages import run_fingerprint, stage_generator, stage_problems, stage_prompt_format
from ttstrain.stages.arguments import ChunkArguments, PolicyArguments, ProblemArguments, PromptArguments


@dataclass
class SampleConfig(PolicyArguments, ProblemArguments, PromptArguments, ChunkArguments, SamplingArguments):
    output_dir: str = field(default="runs/samples", metadata={"help": "Where samples.parquet and config.json go."})
    num_samples: int = field(default=16, metadata={"help": "Samples per problem (paper: 16)."})
    problems_per_chunk: int = field(default=16, metadata={"help": "Problems per resumable chunk (written atomically); 16 keeps one generate call per chunk."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and few-shot selection."})


def sample_worker(cfg: SampleConfig, generator=None) -> ChunkWorker:
    """The policy and prompt format the chunks are sampled with; a chunk is one generate call."""
    own = generator is None
    generator = generator or stage_generator(cfg)
    shots = stage_prompt_format(cfg, generator)

    def sample_chunk(chunk, start):
        before = (generator.stats.generated_tokens, generator.stats.prefill_tokens)
        rows = sample_solutions(generator, chunk, n=cfg.num_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                                max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, few_shot=shots, progress=False)
        return rows, {"generated_tokens": generator.stats.generated_tokens - before[0],
                      "prefill_tokens": generator.stats.prefill_tokens - before[1]}

    return ChunkWorker(sample_chunk, generator, {"generator": generator.identity(), "prompt_format": shots.record()},
                       close=generator.close if own else None)


def run_sample(cfg: SampleConfig, generator=None, progress: bool = True) -> dict | None:
    """Sample the problems this shard owns; with every chunk done, write samples.parquet and the summary."""
    problems = stage_problems(cfg)
    stage = ChunkedStage("sample", cfg, problems, cfg.problems_per_chunk, run_fingerprint(cfg),
                         open_worker=lambda: sample_worker(cfg, generator))
    t0 = time.time()
    chunks = run_chunked_stage(stage, progress)
    if chunks is None:
        return None
    seconds = time.time() - t0
    rows, counters = chunks.rows()
    counters = {"generated_tokens": 0, "prefill_tokens": 0, "seconds": 0.0, **counters}
    write_parquet(stage.output_dir / "samples.parquet", rows)
    summary = {
        "problems": len(problems), "samples": len(rows),
        "accuracy": sum(r["correct"] for r in rows) / max(1, len(rows)),
        "no_answer": sum(r["answer"] is None for r in rows),
        "generated_tokens": counters["generated_tokens"],
        "prefill_tokens": counters["prefill_tokens"],
        "seconds": round(seconds, 1),
        "sampling_seconds": round(counters["seconds"], 1),
        "generated_tokens_per_s": round(counters["generated_tokens"] / max(chunks.rate_seconds(counters["seconds"]), 1e-9), 1),
        **{k: v for k, v in chunks.run.items() if k != "seconds"},
        "warnings": report_warnings("sample", sample_warnings(rows)),
    }
    write_json(stage.output_dir / "summary.json", summary)
    print(summary)
    return summary


def make_parser():
    return StageParser((SampleConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    run_sample(cfg)


if __name__ == "__main__":
    main()
