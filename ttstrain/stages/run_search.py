"""Test-time search over a problem set: methods x budgets N = 1, 2, 4, ..., max_budget, graded.

    ttstrain search --prm_path runs/default/prm_demo --max_budget 16 --output_dir runs/default/search
    python eval/run_search.py --prm_path runs/default/prm_demo --methods majority best_of_n_weighted beam_search
    ttstrain search --config <recipe.yaml> --shard 1/4      # one of 4 jobs writing disjoint chunks

Best-of-N weighted, best-of-N naive and majority come from ONE best-of-N run at max_budget per
problem: budget b of resampling r selects among the first b samples of permutation r (nested
subsets; resampling 0 is the identity, i.e. exactly the samples a run at N=b would draw), and a
row's accuracy and cost are means over `resamples` resamplings (one at b = max_budget). Beam
search and lookahead cannot be subsampled and run once per budget. Every method reports the cost
record of `ttstrain.search.base` (generations, generated/prefill/verifier tokens, FLOPs).

Output folder:
  results.parquet     one row per (problem, method, budget): accuracy (mean over resamplings),
                      answers and correct per resampling, coverage (any candidate correct), mean
                      cost (generations, completions, rounds, generated_tokens, prefill_tokens,
                      verifier_tokens, policy_flops, verifier_flops, total_flops)
  candidates.parquet  every candidate of every run actually made ("best_of_n" at max_budget, and
                      each step-search method at each budget): text, steps, step scores, score,
                      answer, correct, finish reason, tokens, selected
  summary.json        accuracy and mean cost per method and budget, overall and by level; seconds
  config.json         the resolved config, the generator's and scorer's identity
  chunks/             the resumable unit of work (see ttstrain.runner.chunked)

The verifier is the PRM, `ttstrain.prm.scoring.PRMScorer.from_pretrained(prm_path)` (imported only
when a method needs one; `--verifier value_head` scores with its value head alone, the ablation of a
PRM trained with reference features), or with `--verifier likelihood` the untrained baseline of
`ttstrain.prm.likelihood_baseline`: a causal LM's geometric-mean token probability of each solution so
far (`--likelihood_model`, the policy when unset), the search counterpart of `eval-prm
--likelihood_baseline`. `run_search_stage(cfg, generator=..., scorer=...)` takes others (tests
pass the scripted ones).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ttstrain.analysis.metrics import power_of_two_budgets
from ttstrain.answers.grading import answer_key, is_equivalent
from ttstrain.answers.pooling import AnswerPool
from ttstrain.devices import (DEFAULT_VLLM_SHARE, checkpoint_bytes, gpu_total_bytes, pooling_engine_share,
                              prm_reference_model, resolve_device, same_gpu, verifier_bytes, vllm_memory_share)
from ttstrain.io import write_json, write_parquet
from ttstrain.models import check_weight_files, model_revision, resolve_model
from ttstrain.parsing import StageParser
from ttstrain.prm.likelihood_baseline import LikelihoodScorer
from ttstrain.prm.scoring import PRMScorer
from ttstrain.prm.verifiers import OWN_FORMATS, load_verifier, reads_questions, resolve_prm_format
from ttstrain.prm.verifiers_vllm import load_pooling_verifier
from ttstrain.prompts import check_same_format, format_prompt
from ttstrain.runner.chunked import ChunkedStage, ChunkWorker, run_chunked_stage
from ttstrain.search import (NO_VERIFIER, SUBSAMPLED, SearchConfig, SearchSettings, best_of_n, get_method,
                             nested_orders, subset_result)
from ttstrain.stages import run_fingerprint, stage_generator, stage_problems, stage_prompt_format
from ttstrain.stages.arguments import (ChunkArguments, PolicyArguments, ProblemArguments, PromptArguments,
                                       VerifierArguments)
from ttstrain.steps import LINE, check_same_steps

# --verifier choices, and how messages name them
VERIFIERS = {"prm": "PRM", "value_head": "PRM's value head", "likelihood": "likelihood model"}
PRM_VERIFIERS = ("prm", "value_head")  # the two that read prm_path
ALL_METHODS = ["majority", "best_of_n_weighted", "best_of_n_naive", "beam_search", "lookahead"]
COST_FIELDS = ("generations", "completions", "rounds", "generated_tokens", "prefill_tokens", "verifier_tokens",
               "policy_flops", "verifier_flops", "total_flops")


@dataclass
class SearchStageConfig(PolicyArguments, ProblemArguments, PromptArguments, VerifierArguments, ChunkArguments,
                        SearchSettings):
    """Every method's hyperparameters are `ttstrain.search.SearchSettings`' fields, the verifier's
    `VerifierArguments`'."""

    output_dir: str = field(default="runs/search", metadata={"help": "Output folder (results, candidates, summary)."})
    verifier: str = field(default="prm", metadata={"help": "What scores solutions for every method but majority: prm (the PRM at prm_path, as trained: with its reference features if it has them), value_head (that PRM's value head alone, reference features off: the ablation) or likelihood (a causal LM's geometric-mean token probability, untrained: see likelihood_model).", "choices": list(VERIFIERS)})
    likelihood_model: str | None = field(default=None, metadata={"help": "verifier likelihood: the causal LM that scores ('default', a path or hub id); unset: the policy, model_name_or_path."})
    prefix_cache_mb: int = field(default=512, metadata={"help": "MB of the policy's prefix KV cache within one method and budget (transformers backend): a beam prefix re-sent next round prefills only its new step (0: off)."})
    prm_prefix_cache_mb: int = field(default=512, metadata={"help": "MB of the PRM's prefix KV cache: a step-search round runs the PRM (and its reference model) only on the tokens after the longest prefix scored before (0: off, every solution read whole)."})
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS),
                               metadata={"help": f"Search methods, from ttstrain.search.SEARCH_METHODS (default {ALL_METHODS}; also dvts, revisions)."})
    max_budget: int = field(default=16, metadata={"help": "Largest N; budgets are 1, 2, 4, ... up to it."})
    resamples: int = field(default=16, metadata={"help": "Nested-subset resamplings averaged for best-of-N curves."})
    problems_per_chunk: int = field(default=64, metadata={"help": "Problems searched together (one resumable chunk)."})

    def budgets(self) -> list[int]:
        out = power_of_two_budgets(self.max_budget)
        return out if out[-1] == self.max_budget else out + [self.max_budget]

    def search_config(self, n: int, step_format=None) -> SearchConfig:
        """The library's config at budget n; `step_format` is the policy prompt format's (LINE when unset)."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(SearchSettings)}
        return SearchConfig(**settings, n=n, step_format=step_format or LINE)


def search_fingerprint(cfg: SearchStageConfig) -> dict:
    """What a resumed search must match: the stage's fields (a --prm_format that names what auto detects
    counts as auto) and the verifier's revision."""
    if cfg.prm_format == _detected_format(cfg.prm_path):
        cfg = replace(cfg, prm_format="auto")
    verifier = verifier_name(cfg)
    return {**run_fingerprint(cfg), f"{cfg.verifier}_revision": model_revision(verifier, fetch=True) if verifier else None}


def _detected_format(prm_path: str | None) -> str | None:
    """What --prm_format auto reads prm_path as (None: nothing can tell)."""
    try:
        return resolve_prm_format(prm_path, "auto") if prm_path else None
    except ValueError:
        return None


def verifier_name(cfg: SearchStageConfig) -> str | None:
    """The model the verifier reads: the PRM folder, or the likelihood model (the policy when unset)."""
    if cfg.verifier not in VERIFIERS:
        raise ValueError(f"verifier {cfg.verifier!r} is not one of {list(VERIFIERS)}")
    return cfg.prm_path if cfg.verifier in PRM_VERIFIERS else (cfg.likelihood_model or cfg.model_name_or_path)


def load_scorer(cfg: SearchStageConfig, prompt_format=None):
    """The verifier `cfg.verifier` names; `prompt_format` is the policy's (the likelihood scorer reads those prompts)."""
    name = verifier_name(cfg)
    device = resolve_device(cfg.prm_device)
    if cfg.verifier == "likelihood":
        return LikelihoodScorer.from_pretrained(name, device=device, dtype=cfg.prm_dtype,
                                                batch_size=cfg.prm_batch_size, prompt_format=prompt_format)
    if not name:
        raise ValueError(f"methods {[m for m in cfg.methods if m != 'majority']} need a PRM: set prm_path "
                         f"(or --verifier likelihood)")
    fmt = resolve_prm_format(name, cfg.prm_format)
    if cfg.prm_backend == "vllm":
        if cfg.verifier != "prm":
            raise ValueError(f"--prm_backend vllm serves a PRM as it is; --verifier {cfg.verifier} runs on transformers")
        return load_pooling_verifier(name, fmt, gpu_memory_utilization=pooling_share(cfg), dtype=cfg.prm_dtype,
                                     batch_size=cfg.prm_batch_size)
    if cfg.verifier == "value_head" and fmt not in OWN_FORMATS:
        raise ValueError(f"--verifier value_head reads a ttstrain PRM's value head without its reference features; "
                         f"{name} is a {fmt} PRM: use --verifier prm")
    own = {"prefix_cache_bytes": cfg.prm_prefix_cache_mb << 20, "use_reference_features": cfg.verifier == "prm"}
    return load_verifier(name, fmt, device=device, dtype=cfg.prm_dtype, batch_size=cfg.prm_batch_size,
                         **(own if fmt in OWN_FORMATS else {}))


# ---------------------------------------------------------------------------------------------
# One chunk of problems
# ---------------------------------------------------------------------------------------------


class _Grader:
    """Grades each distinct (problem, answer key) once."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, problem: dict, answer: str | None) -> bool:
        if answer is None:
            return False
        key = (problem["id"], answer_key(answer))
        if key not in self.cache:
            self.cache[key] = bool(is_equivalent(answer, str(problem["answer"])))
        return self.cache[key]


def _mean(xs):
    xs = list(xs)
    if any(x is None for x in xs):
        return None
    return sum(xs) / len(xs)


def _result_row(problem: dict, method: str, budget: int, results: list, grader: _Grader) -> dict:
    """One row from the results of one or more resamplings of (problem, method, budget)."""
    correct = [grader(problem, r.answer) for r in results]
    coverage = [any(grader(problem, c.answer) for c in r.candidates) for r in results]
    costs = [r.cost.to_dict() for r in results]
    row = {"problem_id": str(problem["id"]), "level": problem.get("level"), "gold": str(problem["answer"]),
           "method": method, "budget": budget, "resamples": len(results),
           "accuracy": sum(correct) / len(correct), "coverage": sum(coverage) / len(coverage),
           "answers": [r.answer for r in results], "correct": correct}
    row.update({k: _mean(c[k] for c in costs) for k in COST_FIELDS})
    return row


def _candidate_rows(problem: dict, run: str, budget: int, result, grader: _Grader) -> list[dict]:
    return [{"problem_id": str(problem["id"]), "run": run, "budget": budget, "index": j, "text": c.text,
             "steps": c.steps, "step_scores": c.step_scores, "score": c.score, "answer": c.answer,
             "correct": grader(problem, c.answer), "finish_reason": c.finish_reason, "finished": c.finished,
             "num_tokens": c.num_tokens, "verifier_tokens": c.verifier_tokens, "selected": j == result.selected}
            for j, c in enumerate(result.candidates)]


def search_chunk(cfg: SearchStageConfig, generator, scorer, problems: list[dict],
                 shots, map_runs=None) -> tuple[list[dict], list[dict], dict]:
    """Every method x budget on `problems`; returns result rows, candidate rows and counters.

    Each run (one best-of-N at the largest budget for the subsampled methods, then each other method at
    each budget) depends on its inputs alone, so `map_runs(fn, calls)` may run them in any order and in
    other processes (`ttstrain.runner.process_executor.fork_map`); the rows are assembled in one order."""
    prompts = [format_prompt(p["question"], shots) for p in problems]
    budgets, top = cfg.budgets(), cfg.max_budget
    grader = _Grader()
    rows, cand_rows, counters = [], [], {"problems": len(problems)}
    sub = [m for m in cfg.methods if m in SUBSAMPLED]
    scored = any(m not in NO_VERIFIER for m in sub)
    runs = ([(BEST_OF_N_RUN, top)] if sub else []) + [(m, b) for m in cfg.methods if m not in SUBSAMPLED
                                                       for b in budgets]

    def run(method: str, budget: int) -> tuple[list, float]:
        t0 = time.time()
        if method == BEST_OF_N_RUN:
            results = best_of_n(generator, scorer if scored else None, prompts, cfg.search_config(top, shots.steps),
                                selection="weighted" if scored else "majority")
            return results, time.time() - t0
        if scorer is not None:  # each run starts cold: its scores depend on it alone
            scorer.clear_prefix_caches()
        with generator.fresh_prefix_cache(cfg.prefix_cache_mb << 20):
            results = get_method(method)(generator, None if method in NO_VERIFIER else scorer, prompts,
                                         cfg.search_config(budget, shots.steps))
        return results, time.time() - t0

    outputs = dict(zip(runs, (map_runs or _run_here)(run, runs)))
    if sub:
        full, counters["seconds_best_of_n"] = outputs[(BEST_OF_N_RUN, top)]
        for p, res in zip(problems, full):
            cand_rows += _candidate_rows(p, "best_of_n", top, res, grader)
            orders = nested_orders(top, cfg.resamples, f"{cfg.seed}:{p['id']}")
            pool = AnswerPool()  # one per problem: every subset's vote reuses its equivalence verdicts
            for m in sub:
                for b in budgets:
                    subs = [subset_result(res, o[:b], SUBSAMPLED[m], pool)
                            for o in (orders if b < top else orders[:1])]
                    rows.append(_result_row(p, m, b, subs, grader))
    for m, b in runs[1 if sub else 0:]:
        results, counters[f"seconds_{m}_N{b}"] = outputs[(m, b)]
        for p, res in zip(problems, results):
            rows.append(_result_row(p, m, b, [res], grader))
            cand_rows += _candidate_rows(p, m, b, res, grader)
    return rows, cand_rows, counters


BEST_OF_N_RUN = "best_of_n"  # the one run the subsampled methods (majority, best-of-N) read their subsets from


def _run_here(fn, calls):
    return [fn(*args) for args in calls]


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def summarize(rows: list[dict]) -> dict:
    """Mean accuracy and cost per method and budget, overall and by level."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["method"], r["budget"]), []).append(r)
    out: dict = {}
    for (m, b), rs in sorted(groups.items()):
        entry = {"problems": len(rs), "accuracy": _mean(r["accuracy"] for r in rs),
                 "coverage": _mean(r["coverage"] for r in rs)}
        entry.update({k: _mean(r[k] for r in rs) for k in COST_FIELDS})
        levels = sorted({r["level"] for r in rs if r["level"] is not None})
        entry["accuracy_by_level"] = {str(lvl): _mean(r["accuracy"] for r in rs if r["level"] == lvl) for lvl in levels}
        out.setdefault(m, {})[str(b)] = entry
    return out


def pooling_share(cfg: SearchStageConfig) -> float:
    """The GPU share of the PRM's pooling engine (--prm_backend vllm): its weights and a workspace."""
    need = checkpoint_bytes(cfg.prm_path, cfg.prm_dtype)
    if need is None:
        raise ValueError(f"cannot size the PRM {cfg.prm_path!r} for its vLLM engine (no local safetensors files, and "
                         "the hub's metadata could not be read): set --gpu_memory_utilization for the policy and "
                         "download the PRM first")
    return pooling_engine_share(need, gpu_total_bytes())


def planned_vllm_share(cfg: SearchStageConfig) -> float | None:
    """vLLM's GPU share when this search's verifier runs on the engine's GPU: 0.9 less what the verifier
    needs (`ttstrain.devices`); None (the config's or the default share) otherwise."""
    if cfg.backend != "vllm" or cfg.gpu_memory_utilization is not None or all(m in NO_VERIFIER for m in cfg.methods):
        return None
    if not verifier_name(cfg):
        return None  # load_scorer says what is missing
    if cfg.prm_backend == "vllm":  # two engines on one GPU: the policy gets what the PRM's leaves of 0.9
        return round(DEFAULT_VLLM_SHARE - pooling_share(cfg), 2)
    device = resolve_device(cfg.prm_device)
    if not same_gpu(device):
        return None
    models = [verifier_name(cfg)]
    reference = prm_reference_model(cfg.prm_path) if cfg.verifier == "prm" and cfg.prm_path else None
    public = cfg.verifier in PRM_VERIFIERS and resolve_prm_format(cfg.prm_path, cfg.prm_format) not in OWN_FORMATS
    models += [reference] if reference else []
    cache = cfg.prm_prefix_cache_mb << 20 if cfg.verifier in PRM_VERIFIERS and not public else 0
    need = verifier_bytes(models, cfg.prm_dtype, cache)
    return vllm_memory_share(None, verifier_device=device, verifier_need=need, gpu_bytes=gpu_total_bytes())


def search_worker(cfg: SearchStageConfig, generator=None, scorer=None) -> ChunkWorker:
    """The policy, its prompt format and the verifier the chunks are searched with; each chunk writes its
    candidates beside its results."""
    verifier = verifier_name(cfg)
    own = generator is None
    generator = generator or stage_generator(cfg, gpu_memory_utilization=planned_vllm_share(cfg))
    shots = stage_prompt_format(cfg, generator)
    if scorer is None and any(m not in NO_VERIFIER for m in cfg.methods):
        scorer = load_scorer(cfg, prompt_format=shots)
    if scorer is not None and reads_questions(scorer):  # a public PRM reads the question in each policy prompt
        scorer.read_prompts_as(shots)
        if isinstance(scorer, PRMScorer):  # ours, trained without the worked examples: it reads steps as trained
            check_same_steps(scorer.prompt_format.steps.record(), shots.steps.record(),
                             f"the {VERIFIERS[cfg.verifier]} {verifier}", "this search's policy prompts")
    elif scorer is not None:  # the PRM reads the prompts the policy gets
        check_same_format(scorer.prompt_format.record(), shots.record(), f"the {VERIFIERS[cfg.verifier]} {verifier}",
                          "this search's policy prompts")
    scorer_id = None if scorer is None else {"type": type(scorer).__name__, "path": verifier,
                                              "parameters": getattr(scorer, "num_parameters", None),
                                              **({"reads": reads} if (reads := scorer.describe()) else {})}

    map_runs = None
    if cfg.executor == "processes":  # a chunk's runs shared among the processes (a stage of one chunk, the demo's)
        from ttstrain.runner.process_executor import fork_map

        def map_runs(fn, calls):
            return fork_map(fn, calls, cfg.num_workers, generator=generator, cost=lambda call: call[1])

    def process(chunk, start):
        rows, cand_rows, counters = search_chunk(cfg, generator, scorer, list(chunk), shots, map_runs)
        return rows, counters, {"candidates": cand_rows}

    # step search makes a call per round: the bar moves per call and stops short of a chunk's end until it is written
    calls = len(cfg.budgets()) * len([m for m in cfg.methods if m not in SUBSAMPLED]) + 1
    record = {"generator": generator.identity(), "scorer": scorer_id, "budgets": cfg.budgets(),
              "prompt_format": shots.record()}
    return ChunkWorker(process, generator, record, calls_per_chunk=calls, close=generator.close if own else None)


def run_search_stage(cfg: SearchStageConfig, generator=None, scorer=None, progress: bool = True) -> dict | None:
    """Search the problems this shard owns; merge when every chunk is done. Returns the summary if merged."""
    for m in cfg.methods:
        get_method(m)
    cfg.search_config(cfg.max_budget).width()  # a beam width that does not divide N fails now, not mid-run
    verifier = verifier_name(cfg)  # with verifier likelihood, a prm_path a recipe still names is not read
    if verifier and cfg.verifier in PRM_VERIFIERS and any(m not in NO_VERIFIER for m in cfg.methods):
        resolve_prm_format(verifier, cfg.prm_format)  # a PRM that cannot be read is named before the policy loads
        check_weight_files(resolve_model(verifier), "PRM")
    problems = stage_problems(cfg)
    stage = ChunkedStage("search", cfg, problems, cfg.problems_per_chunk, search_fingerprint(cfg),
                         open_worker=lambda: search_worker(cfg, generator, scorer))
    chunks = run_chunked_stage(stage, progress)
    if chunks is None:
        return None
    rows, counters = chunks.rows()
    seconds = {k: round(v, 3) for k, v in counters.items() if k.startswith("seconds")}
    write_parquet(stage.output_dir / "results.parquet", rows)
    write_parquet(stage.output_dir / "candidates.parquet", chunks.table("candidates"))
    summary = {"problems": len(problems), "budgets": cfg.budgets(), "methods": summarize(rows), "seconds": seconds,
               **chunks.workers()}
    write_json(stage.output_dir / "summary.json", summary)
    if progress:
        for m, per_b in summary["methods"].items():
            print(f"[search] {m:<20} " + "  ".join(f"N={b}: {e['accuracy']:.3f}" for b, e in per_b.items()))
    return summary


def make_parser():
    return StageParser((SearchStageConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    run_search_stage(cfg)


if __name__ == "__main__":
    main()
