"""Evaluate a revision model on-policy: sampled revision chains, pass@1 at each revision step, how
often a correct answer turns wrong, and answer selection over chains with and without verifiers.

    ttstrain eval-revision --model_name_or_path runs/demo/revision --per_level 10 --num_chains 4 --chain_length 4 \\
        --prm_path runs/demo/prm --orm_path runs/demo/revision_orm --base_samples runs/demo/samples.parquet \\
        --output_dir runs/demo/eval_revision
    python eval/eval_revision.py --model_name_or_path runs/revision --split train --output_dir runs/revision_chains_train

What it writes to output_dir:
  chains.parquet        one row per attempt (problem, chain, step, revision prompt, completion,
                        answer, correct) and, per verifier given, its score (`score_prm`: the base
                        PRM after the plain question; `score_orm`: the revision-aware ORM after the
                        revision prompt with the previous attempts)
  orm_data.parquet      the same attempts as training rows of the revision-aware ORM (PRM trainer,
                        `--label_mode orm`); run this stage on the train split to build its data
  eval_revision.json    pass@1 by revision step, flip rates, each verifier's AUROC on the attempts,
                        and accuracy of every chains x length split of the budget under majority,
                        and hierarchical selection with each verifier; with --base_samples, what
                        "try a different answer" can buy on these problems (`answer_bounds`), and
                        how a changed wrong attempt compares with a fresh sample that avoids the
                        previous answer (`changed_attempts`; see ttstrain.revisions.bounds)
  config.json           the resolved config
  chunks/               the chains of each chunk of problems, written atomically: kill the run and
                        run the same command again, and only unfinished chunks are sampled (a
                        resume with settings that change the chains is refused; see ttstrain.runner.chunked)

The paper found validation loss a poor stopping signal for revision models; pass@1 along chains
is the measure to pick a checkpoint by (run this on each `checkpoint-*` folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from ttstrain.analysis.compute_optimal import revision_accuracy_rows
from ttstrain.analysis.metrics import auroc
from ttstrain.devices import resolve_device
from ttstrain.generation.base import SamplingArguments
from ttstrain.io import write_json, write_parquet, write_resolved_config
from ttstrain.models import load_tokenizer, resolve_model
from ttstrain.parsing import StageParser
from ttstrain.prm.verifiers import load_verifier
from ttstrain.prm.verifiers_vllm import load_pooling_verifier
from ttstrain.prompts import check_same_format
from ttstrain.revisions.bounds import changed_attempt_check, revision_answer_bounds
from ttstrain.revisions.chains import flip_rates, revision_step_accuracy, run_revision_chains
from ttstrain.revisions.pairs import revision_prompt_record
from ttstrain.revisions.verifier import revision_orm_rows, score_attempts
from ttstrain.runner.chunked import ChunkedStage, ChunkWorker, run_chunked_stage
from ttstrain.runner.rows import read_rows
from ttstrain.stages import run_fingerprint, stage_generator, stage_problems
from ttstrain.stages.arguments import ChunkArguments, PolicyArguments, ProblemArguments, VerifierArguments
from ttstrain.steps import StepFormat


@dataclass
class EvalRevisionConfig(PolicyArguments, ProblemArguments, VerifierArguments, ChunkArguments, SamplingArguments):
    """Defaults changed from the argument groups: per_level = 10. The verifiers (prm_path and orm_path, read
    as prm_format says, on prm_backend) score the chains after every chunk is written."""

    # read after the chains are written: a resume may change them (`ttstrain.runner.chunked.stage_fingerprint`)
    read_after_chunks: ClassVar[tuple[str, ...]] = ("prm_path", "orm_path", "prm_format", "prm_backend", "prm_dtype",
                                                    "base_samples")
    # counted since the one runner; folders written before did not record it (it changes the problems)
    counted_since_recorded: ClassVar[tuple[str, ...]] = ("levels",)

    output_dir: str = field(default="runs/eval_revision", metadata={"help": "Output folder."})
    per_level: int | None = field(default=10, metadata={"help": "Problems per level (arith only)."})
    num_chains: int = field(default=4, metadata={"help": "Parallel chains per question."})
    chain_length: int = field(default=4, metadata={"help": "Attempts per chain (revision steps)."})
    max_attempts: int = field(default=4, metadata={"help": "Previous attempts kept in context (what the model was trained with)."})
    orm_path: str | None = field(default=None, metadata={"help": "Revision-aware ORM: scores each attempt after its revision prompt (read as auto detects it; prm_path, the base PRM, scores each attempt after the plain question)."})
    base_samples: str | None = field(default=None, metadata={"help": "Base-policy samples on the same problems (a `ttstrain sample` folder or parquet with problem_id, answer, correct): reports answer_bounds, the pass@1 a next attempt gets by keeping or excluding the previous answer."})
    problems_per_chunk: int = field(default=64, metadata={"help": "Problems whose chains form one resumable chunk (written atomically; each chain step of a chunk is one generate call)."})
    seed: int = field(default=0, metadata={"help": "Seed of the chains."})


def verifier_summary(rows: list[dict], key: str) -> dict:
    scores = [r[key] if r[key] is not None else 0.0 for r in rows]
    later = [i for i, r in enumerate(rows) if r["step"] > 0]
    scored = [{**r, "score": s} for r, s in zip(rows, scores)]
    return {"auroc_all_attempts": auroc(scores, [r["correct"] for r in rows]),
            "auroc_revisions_only": auroc([scores[i] for i in later], [rows[i]["correct"] for i in later]),
            "hierarchical": split_accuracy(revision_accuracy_rows(scored, selection="hierarchical"))}


def read_base_samples(path: str | Path) -> list[dict]:
    """problem_id, answer and correct of base-policy samples; a folder means its samples.parquet."""
    need = ["problem_id", "answer", "correct"]
    return read_rows(path, default_name="samples.parquet", columns=need, required=need, origin="--base_samples")


def split_accuracy(acc_rows: list[dict]) -> dict[str, float]:
    """Mean accuracy per 'L x P' split (L sequential attempts, P parallel chains)."""
    out: dict[str, list[float]] = {}
    for r in acc_rows:
        out.setdefault(f"{r['sequential']}x{r['parallel']}", []).append(r["accuracy"])
    return {k: round(sum(v) / len(v), 4) for k, v in out.items()}


def load_chain_verifier(cfg: EvalRevisionConfig, name: str, path: str):
    """The base PRM (read as prm_format says) or the revision-aware ORM (read as auto detects it)."""
    fmt = cfg.prm_format if name == "prm" else "auto"
    if cfg.prm_backend == "vllm":
        return load_pooling_verifier(path, fmt, dtype=cfg.prm_dtype, batch_size=cfg.prm_batch_size)
    return load_verifier(path, fmt, device=cfg.prm_device, dtype=cfg.prm_dtype, batch_size=cfg.prm_batch_size)


def chains_worker(cfg: EvalRevisionConfig, generator, steps: StepFormat) -> ChunkWorker:
    """The revision model's chains; a chunk makes one generate call per revision step."""
    own = generator is None
    generator = generator or stage_generator(cfg)

    def chains_chunk(chunk, start):
        return run_revision_chains(generator, chunk, num_chains=cfg.num_chains, chain_length=cfg.chain_length,
                                   temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                   seed=cfg.seed, max_attempts=cfg.max_attempts, progress=False, step_format=steps), {}

    # vLLM: the engine is shut down once the chains are written, so the verifiers get the GPU
    return ChunkWorker(chains_chunk, generator, {"generator": generator.identity()}, calls_per_chunk=cfg.chain_length,
                       close=generator.close if own else None)


def run_eval_revision(cfg: EvalRevisionConfig, generator=None, scorers: dict | None = None,
                      progress: bool = True) -> dict | None:
    """Sample the chains of the problems this shard owns; with every chunk done, score them and write the
    results. Returns them (None while other shards still have chunks to write)."""
    problems = stage_problems(cfg)
    base_samples = read_base_samples(cfg.base_samples) if cfg.base_samples else None  # bad input fails before sampling
    cfg = replace(cfg, prm_device=resolve_device(cfg.prm_device))  # as is a bad device
    out = Path(cfg.output_dir)
    tokenizer = generator.tokenizer if generator is not None else load_tokenizer(resolve_model(cfg.model_name_or_path))
    trained = Path(cfg.model_name_or_path) / "ttstrain_config.json"
    # a revision model says which revision prompts it was trained on and where its attempts end (LINE otherwise)
    trained_format = json.loads(trained.read_text()).get("prompt_format") if trained.is_file() else None
    steps = StepFormat.from_record((trained_format or {}).get("step_format"))
    chain_format = revision_prompt_record(tokenizer, steps)
    if trained_format is not None:
        check_same_format(trained_format, chain_format,
                          f"the revision model {cfg.model_name_or_path}", "these chains' revision prompts")
    stage = ChunkedStage("eval-revision chains", cfg, problems, cfg.problems_per_chunk, run_fingerprint(cfg),
                         open_worker=lambda: chains_worker(cfg, generator, steps))
    chunks = run_chunked_stage(stage, progress)
    if chunks is None:
        return None
    order = {p["id"]: i for i, p in enumerate(problems)}
    rows, _ = chunks.rows()
    rows.sort(key=lambda r: (r["step"], order[r["problem_id"]], r["chain"]))  # the order of one unchunked call
    if generator is not None:
        generator.close()  # vLLM: the chains are written; give the GPU to the verifiers
    scorers = dict(scorers or {})
    for name, path in (("prm", cfg.prm_path), ("orm", cfg.orm_path)):
        if path and name not in scorers:
            scorers[name] = load_chain_verifier(cfg, name, path)
    for name, scorer in scorers.items():
        for r, s in zip(rows, score_attempts(scorer, rows, context=(name == "orm"), attempt_steps=steps)):
            r[f"score_{name}"] = s
    result = {
        "problems": len(problems), "num_chains": cfg.num_chains, "chain_length": cfg.chain_length,
        "pass@1_by_revision_step": revision_step_accuracy(rows),
        "flip_rates": flip_rates(rows),
        "majority": split_accuracy(revision_accuracy_rows(rows, selection="majority")),
        "verifiers": {name: verifier_summary(rows, f"score_{name}") for name in scorers},
        **chunks.workers(),
    }
    if base_samples is not None:
        result["answer_bounds"] = revision_answer_bounds(base_samples, problem_ids={p["id"] for p in problems})
        result["changed_attempts"] = changed_attempt_check(rows, base_samples)
    write_parquet(out / "chains.parquet", rows)
    write_parquet(out / "orm_data.parquet", revision_orm_rows(rows, steps))
    write_json(out / "eval_revision.json", result)
    shards = sorted(f.name for f in out.glob("config.shard-*.json"))  # a sharded run names its shards' configs
    recorded = json.loads((out / "config.json").read_text())  # the chains' generator, as the runner recorded it
    write_resolved_config(out, cfg, generator=recorded.get("generator"), prompt_format=chain_format,
                          **({"shard_configs": shards} if shards else {}))
    return result


def make_parser():
    return StageParser((EvalRevisionConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    result = run_eval_revision(cfg)
    print(json.dumps(result, indent=2))
    print(f"[eval-revision] written to {cfg.output_dir}")


if __name__ == "__main__":
    main()
