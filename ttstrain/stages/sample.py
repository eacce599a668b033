"""Sample and grade N solutions per problem with any generation backend.

    ttstrain sample --config recipes/default/sample/config_world.yaml
    python data_gen/sample_solutions.py --config recipes/smollm2-135m/sample/config_gsm8k.yaml --limit 8

Writes `<output_dir>/samples.parquet` (one row per sample, see ttstrain.generation.sampling), the resolved
`config.json` with the generator's identity, and `summary.json` (accuracy, tokens, wall time).
Problems are sampled in chunks (`chunks/`, see ttstrain.runner.shards), each written atomically: kill
the run at any moment and run the same command again, and it samples only the unfinished
chunks; samples.parquet equals an uninterrupted run's (every sample's seed depends on its
problem and index, not on its batch). A resume with settings that change the samples is refused.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ttstrain.data_guards import report_warnings, sample_warnings
from ttstrain.runner.progress import StageProgress
from ttstrain.io import write_json, write_parquet, write_resolved_config
from ttstrain.runner.shards import Shard, check_or_write_config, read_chunks, run_chunks
from ttstrain.stages import run_fingerprint, stage_generator, stage_problems, stage_prompt_format
from ttstrain.stages.arguments import RUNTIME_FIELDS, PolicyArguments, ProblemArguments, PromptArguments


@dataclass
class SampleConfig(PolicyArguments, ProblemArguments, PromptArguments):
    output_dir: str = field(default="runs/samples", metadata={"help": "Where samples.parquet and config.json go."})
    num_samples: int = field(default=16, metadata={"help": "Samples per problem (paper: 16)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold."})
    max_new_tokens: int = field(default=320, metadata={"help": "Generation cap per solution."})
    problems_per_chunk: int = field(default=16, metadata={"help": "Problems per resumable chunk (written atomically); 16 keeps one generate call per chunk."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and few-shot selection."})

    def fingerprint(self) -> dict:
        """Fields that change the samples: a resumed run must match them."""
        return {k: v for k, v in asdict(self).items() if k not in ("output_dir", *RUNTIME_FIELDS)}


def run_sample(cfg: SampleConfig, generator=None, progress: bool = True) -> dict:
    from ttstrain.generation.sampling import sample_solutions

    out = Path(cfg.output_dir)
    problems = stage_problems(cfg)
    check_or_write_config(out, run_fingerprint(cfg))
    generator = generator or stage_generator(cfg)
    shots = stage_prompt_format(cfg, generator)
    write_resolved_config(out, cfg, generator=generator.identity(), problems_loaded=len(problems),
                          prompt_format=shots.record())

    def sample_chunk(chunk, start):
        before = (generator.stats.generated_tokens, generator.stats.prefill_tokens)
        rows = sample_solutions(generator, chunk, n=cfg.num_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                                max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, few_shot=shots, progress=False)
        return rows, {"generated_tokens": generator.stats.generated_tokens - before[0],
                      "prefill_tokens": generator.stats.prefill_tokens - before[1]}

    t0 = time.time()
    with StageProgress(len(problems), "sample", generator, 1, cfg.problems_per_chunk, progress) as bar:
        run = run_chunks(out, problems, cfg.problems_per_chunk, Shard(), sample_chunk, progress=bar.chunk_done)
    seconds = time.time() - t0
    rows, counters = read_chunks(out, len(problems), cfg.problems_per_chunk)
    counters = {"generated_tokens": 0, "prefill_tokens": 0, "seconds": 0.0, **counters}
    write_parquet(out / "samples.parquet", rows)
    summary = {
        "problems": len(problems), "samples": len(rows),
        "accuracy": sum(r["correct"] for r in rows) / max(1, len(rows)),
        "no_answer": sum(r["answer"] is None for r in rows),
        "generated_tokens": counters["generated_tokens"],
        "prefill_tokens": counters["prefill_tokens"],
        "seconds": round(seconds, 1),
        "sampling_seconds": round(counters["seconds"], 1),
        "generated_tokens_per_s": round(counters["generated_tokens"] / max(counters["seconds"], 1e-9), 1),
        **run,
        "warnings": report_warnings("sample", sample_warnings(rows)),
    }
    write_json(out / "summary.json", summary)
    print(summary)
    return summary


def make_parser():
    from ttstrain.parsing import StageParser

    return StageParser((SampleConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    run_sample(cfg)


if __name__ == "__main__":
    main()
