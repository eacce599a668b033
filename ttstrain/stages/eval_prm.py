"""Evaluate a trained PRM: held-out BCE and step AUROC on Monte Carlo labels, PRM-weighted best-of-N
vs majority vote on graded samples, and ProcessBench first-error F1 (definitions: ttstrain.prm.evaluation).

    ttstrain eval-prm --prm_path runs/demo/prm --labels runs/demo/label_mc-24x8x8-seed0 \\
        --samples runs/demo/samples.parquet --output_dir runs/demo/eval_prm
    python eval/eval_prm.py --prm_path runs/prm --processbench ../shared/data/processbench/gsm8k.json.gz my_pb.jsonl
    python eval/eval_prm.py --prm_path runs/prm --processbench pb.json --processbench_threshold 0.4

Each part runs only when its input is given. `labels` is evaluated on the validation questions the
PRM held out in training (`labels_split: validation`, the split recorded in the PRM's
ttstrain_config.json) or on every row (`all`, for a labelled set the PRM never saw). Samples must
be written in the PRM's prompt and step format, labels that record a step format in the PRM's
(refused otherwise, naming both); ProcessBench steps are read in the PRM's step format (a step that
holds its separator flattened to one step, `StepFormat.flatten`). The ProcessBench threshold is a
number, or `calibrate`: chosen on `processbench_calibration` (a file of the same schema) when
given, else on the id-hash calibration half of each file and reported on the other half. A PRM
trained with `--reference_features true` is also scored by its value head alone (`value_head_only`,
the ablation). `likelihood_baseline` also scores the samples by a causal LM's
mean token likelihood (`ttstrain.prm.likelihood_baseline`; `auto`: the model the PRM was trained from),
the verifier a trained PRM has to beat. The PRM, its reference model and the likelihood model load on
`prm_device` in `prm_dtype` (search's names for its verifier; `auto`: cuda when torch sees a GPU, and
config.json records the device resolved). Output: eval_prm.json and config.json in output_dir, and with
`samples` sample_scores.parquet (problem_id, sample_index, level, correct, score, the value head's
score_value_head with reference features, score_likelihood with the baseline), which
`ttstrain predict-bon` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from ttstrain.aggregation import DEFAULT_AGGREGATION
from ttstrain.analysis import published_figures
from ttstrain.devices import resolve_device
from ttstrain.io import write_json, write_parquet, write_resolved_config
from ttstrain.parsing import StageParser
from ttstrain.prm.data import load_prm_rows, split_by_question
from ttstrain.prm.evaluation import (bon_vs_majority, heldout_metrics, load_processbench, processbench_f1, sample_scores)
from ttstrain.prm.likelihood_baseline import LikelihoodScorer
from ttstrain.prm.scoring import PRMScorer
from ttstrain.prm.verifiers import load_verifier, reads_questions, resolve_prm_format
from ttstrain.prm.verifiers_vllm import load_pooling_verifier
from ttstrain.prompts import PromptFormat, check_same_format
from ttstrain.runner.rows import read_rows, recorded_prompt_format, rows_path
from ttstrain.stages.arguments import VerifierArguments
from ttstrain.trainers.run_skeleton import read_train_config
from ttstrain.steps import check_same_steps
from ttstrain.validation import InputError


@dataclass
class EvalPRMConfig(VerifierArguments):
    """The PRM and where it runs are `VerifierArguments`' fields (prm_batch_size: solutions per forward pass, the
    likelihood baseline's too). Defaults changed from the group: prm_path = runs/demo/prm (the demo's PRM)."""

    prm_path: str = field(default="runs/demo/prm", metadata={"help": "PRM checkpoint folder (written by train-prm) or hub id."})
    output_dir: str = field(default="runs/eval_prm", metadata={"help": "Where eval_prm.json and config.json go."})
    labels: str | None = field(default=None, metadata={"help": "Monte Carlo labels (label-mc folder or parquet) for BCE and AUROC."})
    labels_split: str = field(default="validation", metadata={"help": "'validation': the questions the PRM held out in training; 'all': every row."})
    validation_fraction: float | None = field(default=None, metadata={"help": "Override the held-out fraction (default: from the PRM's ttstrain_config.json)."})
    split_seed: int | None = field(default=None, metadata={"help": "Override the split seed (default: from the PRM's ttstrain_config.json)."})
    samples: str | None = field(default=None, metadata={"help": "Graded samples (parquet or `ttstrain sample` folder) for best-of-N vs majority."})
    budgets: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16], metadata={"help": "N values of best-of-N and majority."})
    aggregation: str = field(default=DEFAULT_AGGREGATION, metadata={"help": "Step score aggregation for best-of-N: last, min, prod, mean."})
    resamples: int = field(default=16, metadata={"help": "Random subsets per budget."})
    processbench: list[str] = field(default_factory=list, metadata={"help": "ProcessBench-schema files (json array, .json.gz or jsonl)."})
    processbench_threshold: str = field(default="calibrate", metadata={"help": "Step-score threshold, or 'calibrate'."})
    processbench_calibration: str | None = field(default=None, metadata={"help": "ProcessBench-schema file the threshold is calibrated on (default: the id-hash half of each file)."})
    likelihood_baseline: str = field(default="none", metadata={"help": "Also score the samples by a causal LM's mean token likelihood "
                                     "(the verifier a PRM must beat): 'none', 'auto' (the model the PRM was trained from), or a model."})
    step_separator: str = field(default="auto", metadata={"help": "For a PRM trained with TRL's PRMTrainer (no ttstrain "
                                "metadata): the step separator it was trained with; auto: TRL's default '\\n'. A "
                                "ttstrain PRM records its own step format."})
    seed: int = field(default=0, metadata={"help": "Seed of the best-of-N subsets."})


def recorded_training(prm_path: str) -> tuple[Path, dict]:
    """The PRM's training config (ttstrain_config.json, written by train-prm; prm_train_config.json in PRMs
    saved before) and what it records ({} when it is absent)."""
    return read_train_config(prm_path)


def heldout_rows(cfg: EvalPRMConfig) -> tuple[list[dict], dict]:
    rows = load_prm_rows(cfg.labels)
    if cfg.labels_split == "all":
        return list(rows), {"split": "all"}
    if cfg.labels_split != "validation":
        raise ValueError(f"labels_split must be 'validation' or 'all', got {cfg.labels_split!r}")
    train_cfg, recorded = recorded_training(cfg.prm_path)
    fraction = cfg.validation_fraction if cfg.validation_fraction is not None else recorded.get("validation_fraction")
    seed = cfg.split_seed if cfg.split_seed is not None else recorded.get("seed")
    if fraction is None or seed is None:
        raise ValueError(f"{train_cfg} not found or incomplete: give validation_fraction and split_seed, "
                         f"or labels_split=all")
    _, val = split_by_question(rows, fraction, seed)
    if val is None:
        raise ValueError(f"validation_fraction {fraction} leaves no held-out questions in {cfg.labels}")
    return list(val), {"split": "validation", "validation_fraction": fraction, "split_seed": seed}


def likelihood_model(cfg: EvalPRMConfig) -> str | None:
    """The causal LM of the likelihood baseline: None, the PRM's recorded base model for 'auto', or the name given."""
    if cfg.likelihood_baseline in ("none", "", None):
        return None
    if cfg.likelihood_baseline != "auto":
        return cfg.likelihood_baseline
    train_cfg, recorded = recorded_training(cfg.prm_path)
    name = recorded.get("model_name_or_path")
    if not name:
        raise ValueError(f"likelihood_baseline=auto reads the PRM's base model from {train_cfg}, which "
                         f"{'has no model_name_or_path' if train_cfg.exists() else 'does not exist'}; name the model instead")
    return name


def load_samples(path: str) -> list[dict]:
    """Graded samples to score (a parquet file or a `ttstrain sample` folder), each with its prompt or question."""
    rows = read_rows(path, default_name="samples.parquet", required=("problem_id", "steps", "answer", "correct"))
    for i, r in enumerate(rows, 1):
        if not r.get("prompt") and not r.get("question"):
            raise InputError(rows_path(path, "samples.parquet"), "has neither 'prompt' nor 'question'", i)
    return rows


def run_eval_prm(cfg: EvalPRMConfig) -> dict:
    if cfg.processbench_threshold != "calibrate":
        float(cfg.processbench_threshold)  # fail before any work on a bad value
    cfg = replace(cfg, prm_device=resolve_device(cfg.prm_device), prm_format=resolve_prm_format(cfg.prm_path, cfg.prm_format))
    public = cfg.prm_format not in ("ttstrain", "trl")
    if public and cfg.likelihood_baseline == "auto":
        raise ValueError(f"likelihood_baseline=auto is the model a ttstrain PRM was trained from; {cfg.prm_path} is a "
                         f"{cfg.prm_format} PRM: name the likelihood model")
    baseline = likelihood_model(cfg) if cfg.samples else None
    own = {"step_separator": cfg.step_separator}
    if cfg.prm_backend == "vllm":
        scorer = load_pooling_verifier(cfg.prm_path, cfg.prm_format, dtype=cfg.prm_dtype, batch_size=cfg.prm_batch_size,
                                       gpu_memory_utilization=0.8, **own)
    else:
        scorer = load_verifier(cfg.prm_path, cfg.prm_format, device=cfg.prm_device, dtype=cfg.prm_dtype,
                               batch_size=cfg.prm_batch_size, **({} if public else own))
    reference_spec = getattr(scorer, "reference_spec", None)
    if reference_spec:
        scorer.value_cache = {}  # the value-head-only ablation below reads the logits the combined pass computed
    rows, split = heldout_rows(cfg) if cfg.labels else (None, {})
    labels_format = recorded_prompt_format(cfg.labels) if cfg.labels else None
    if rows is not None and reads_questions(scorer):  # a public PRM reads each row's question, in its own layout
        rows = [{**r, "prompt": scorer.prompt_for(r["question"])} for r in rows]
    if labels_format is not None and not public:  # labelled rows are read in the PRM's step format: they must be written in it
        check_same_steps(labels_format.get("step_format"), scorer.prompt_format.steps.record(),
                         f"the labels {cfg.labels}", f"the PRM {cfg.prm_path}")
    samples = load_samples(cfg.samples) if cfg.samples else None
    if samples is not None and not reads_questions(scorer):  # the samples' prompts must be the PRM's training layout
        check_same_format(recorded_prompt_format(cfg.samples), scorer.prompt_format.record(),
                          f"the samples {cfg.samples}", f"the PRM {cfg.prm_path}")
    elif samples is not None and not public:  # a PRM trained without the worked examples: the steps must still agree
        check_same_steps((recorded_prompt_format(cfg.samples) or {}).get("step_format"),
                         scorer.prompt_format.steps.record(), f"the samples {cfg.samples}", f"the PRM {cfg.prm_path}")
    # the policy's own prompts, for the likelihood baseline of a PRM that does not read them
    samples_format = (PromptFormat.from_record(recorded_prompt_format(cfg.samples))
                      if reads_questions(scorer) and samples else None)
    benches = {f: load_processbench(f) for f in cfg.processbench}
    calib = load_processbench(cfg.processbench_calibration) if cfg.processbench_calibration else None

    def evaluate(s) -> dict:
        part: dict = {}
        if rows is not None:
            part["heldout"] = heldout_metrics(s, rows)
        if samples is not None:
            part["_sample_scores"] = sample_scores(s, samples, cfg.aggregation)
            part["best_of_n"] = bon_vs_majority(s, samples, cfg.budgets, how=cfg.aggregation, resamples=cfg.resamples,
                                                seed=cfg.seed, scores=part["_sample_scores"])
        if benches:
            part["processbench"] = {
                f: processbench_f1(s, records, cfg.processbench_threshold, calibration_records=calib,
                                   calibration_name=cfg.processbench_calibration or "")
                for f, records in benches.items()}
        return part

    result: dict = {"prm": cfg.prm_path, "prm_format": cfg.prm_format, **evaluate(scorer)}
    for f, figures in result.get("processbench", {}).items():  # the published figure, where this PRM has one
        published = published_figures.published_processbench(cfg.prm_path, f)
        if published is not None:
            figures["published"] = published
            print(f"[eval-prm] ProcessBench {Path(f).name}: F1 {100 * figures['f1']:.1f} here, "
                  f"{published['f1']} published ({published['source']})")
    if rows is not None:
        result["heldout"].update(split, labels=cfg.labels)
    if reference_spec:
        # the ablation: the same checkpoint scored by its value head alone, on the same inputs
        alone = PRMScorer(scorer.model, scorer.tokenizer, batch_size=cfg.prm_batch_size, use_reference_features=False,
                          value_cache=scorer.value_cache, step_separator=cfg.step_separator)
        result["value_head_only"] = evaluate(alone)
        result["reference_features"] = reference_spec
    if baseline is not None:
        if reference_spec and scorer.reference_model is not None and reference_spec.get("reference_model") == baseline:
            # the policy the combiner already loaded (same tokenizer, checked then): no second copy in memory
            lik = LikelihoodScorer(scorer.reference_model, scorer.tokenizer, name=baseline, batch_size=cfg.prm_batch_size,
                                   prompt_format=scorer.prompt_format)
        else:
            lik = LikelihoodScorer.from_pretrained(baseline, device=cfg.prm_device, dtype=cfg.prm_dtype,
                                                   batch_size=cfg.prm_batch_size,
                                                   prompt_format=samples_format or scorer.prompt_format)
        lik_scores = sample_scores(lik, samples, cfg.aggregation)
        result["likelihood_baseline"] = {
            "model": baseline, "score": "exp(mean token log-prob of the solution so far)",
            "best_of_n": bon_vs_majority(lik, samples, cfg.budgets, how=cfg.aggregation, resamples=cfg.resamples,
                                         seed=cfg.seed, scores=lik_scores)}
    result["scorer_stats"] = dict(scorer.stats)
    out = Path(cfg.output_dir)
    if samples is not None:  # every sample's score, for `ttstrain predict-bon` and other analyses
        alone_scores = result.get("value_head_only", {}).pop("_sample_scores", None)
        write_parquet(out / "sample_scores.parquet", [
            {"problem_id": r["problem_id"], "sample_index": r.get("sample_index", j), "level": r.get("level"),
             "correct": bool(r["correct"]), "score": sc, "score_value_head": None if alone_scores is None else alone_scores[j],
             "score_likelihood": None if baseline is None else lik_scores[j]}
            for j, (r, sc) in enumerate(zip(samples, result.pop("_sample_scores")))])
    write_json(out / "eval_prm.json", result)
    write_resolved_config(out, cfg, **({"verifier": reads} if (reads := scorer.describe()) else {}))
    return result


def make_parser():
    return StageParser((EvalPRMConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    result = run_eval_prm(cfg)
    print(json.dumps({k: v for k, v in result.items() if k != "scorer_stats"}, indent=2))
    print(f"[eval-prm] written to {Path(cfg.output_dir) / 'eval_prm.json'}")


if __name__ == "__main__":
    main()
