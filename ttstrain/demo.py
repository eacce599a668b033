"""The main job: the whole ttstrain pipeline on the default world, end to end, in one command.

    ttstrain demo --out runs/demo            # full sizes
    ttstrain demo --out runs/quick --quick   # smaller sizes, same stages (a few minutes)

Stages, in order (each writes its data and resolved config under --out):
  1. world    load the shipped policy and the held-out test problems of the arithmetic task
  2. greedy   greedy pass@1 per level
  3. sample   N sampled solutions per test problem, graded
  4. baseline pass@1 by level, pass@N and majority vote at N = 1, 2, 4, ..., N (plot)
  5. label    Monte Carlo step labels on training problems (the PRM's data)
  6. prm      train a PRM on those soft labels (BCE, early stopping on 10% held-out questions)
  7. prm_eval held-out BCE and step AUROC; PRM-weighted best-of-N vs majority on the test samples
     predict_bon  best-of-N accuracy predicted from the first N/8 scored samples per test problem,
              checked against all of them (`ttstrain predict-bon`)
  8. search   majority, PRM-weighted best-of-N, beam search (M=4), DVTS (M=4) and SLG at
              N = 1, 2, 4, ... on test problems; each against best-of-N with paired standard errors
  9. revision_data  sampled answers of training problems at a higher temperature, correct ones
              paired with wrong attempts (closest by edit distance last)
 10. revision       revision SFT of the policy on them (loss on the correct answer only)
 11. revision_eval  sequential revision chains on the searched test problems: pass@1 by revision
              step, flip rates, majority vs PRM-hierarchical selection per chains x length split;
              the compute-optimal revision family selects by --revision_selection (hierarchical)
 12. compute_optimal  difficulty bins (oracle: pass@1 of the samples; predicted: mean PRM score),
              best strategy per bin and budget by 2-fold CV, efficiency ratio over best-of-N, for
              the search methods and for sequential:parallel revision splits
Then `report.md`, `report.json` and the plots are written to --out, with the sizes used and
the wall time of every stage; `report.json`'s `findings` block holds the figures runs are
compared by (`demo_findings`).
"""

from __future__ import annotations

import math
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ttstrain.io import write_json, write_parquet, write_resolved_config, write_text


# the demo's search methods: majority and best-of-N come from one run at the largest N; the others
# run at every budget (DVTS and SLG are the methods users compare beam search with)
SEARCH_METHODS_RUN = ("majority", "best_of_n_weighted", "beam_search", "dvts", "slg")


@dataclass
class DemoConfig:
    out: str = field(default="runs/demo", metadata={"help": "Output directory for data, report and plots."})
    quick: bool = field(default=False, metadata={"help": "Smaller sizes, same stages (under 5 minutes)."})
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})
    policy: str = field(default="default", metadata={"help": "Policy checkpoint: 'default' (shipped world), path or hub id."})
    backend: str = field(default="transformers", metadata={"help": "Generation backend: transformers or vllm."})
    test_per_level: int | None = field(default=None, metadata={"help": "Test problems per level (default 40; quick 10)."})
    num_samples: int | None = field(default=None, metadata={"help": "Samples per test problem (default 64; quick 16)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    max_new_tokens: int = field(default=320, metadata={"help": "Generation cap per solution."})
    resamples: int = field(default=16, metadata={"help": "Resamplings per budget for voting curves."})
    label_per_level: int | None = field(default=None, metadata={"help": "Training problems per level to label (default 24; quick 4)."})
    label_samples: int | None = field(default=None, metadata={"help": "Samples per labelled problem (default 8; quick 4; paper 16)."})
    label_rollouts: int | None = field(default=None, metadata={"help": "Rollouts per step prefix (default 8; quick 4; paper 16)."})
    prm_epochs: int | None = field(default=None, metadata={"help": "PRM training epochs, early-stopped on validation loss (default 8; quick 3)."})
    search_per_level: int | None = field(default=None, metadata={"help": "Test problems per level searched (default 10; quick 2)."})
    search_max_budget: int | None = field(default=None, metadata={"help": "Largest search budget N (default 16; quick 4)."})
    prm_learning_rate: float = field(default=1e-3, metadata={"help": "PRM learning rate (a tiny body learns in minutes at 1e-3; paper 3e-5)."})
    prm_reference_features: bool = field(default=True, metadata={"help": "Combine the PRM's value head with the policy's token log-probs (train-prm --reference_features); false: the value head alone."})
    revision_per_level: int | None = field(default=None, metadata={"help": "Training problems per level for revision data (default 24; quick 4)."})
    revision_samples: int | None = field(default=None, metadata={"help": "Answers sampled per revision-data problem (default 32; quick 8; paper 64)."})
    revision_temperature: float = field(default=1.2, metadata={"help": "Temperature of the revision-data samples."})
    revision_epochs: float | None = field(default=None, metadata={"help": "Revision SFT epochs (default 2; quick 1)."})
    revision_learning_rate: float = field(default=3e-4, metadata={"help": "Revision SFT learning rate (paper 1e-5, for billion-parameter models)."})
    revision_chains: int | None = field(default=None, metadata={"help": "Parallel revision chains per test problem (default 4; quick 2)."})
    revision_length: int = field(default=4, metadata={"help": "Attempts per revision chain."})
    revision_selection: str = field(default="hierarchical", metadata={"help": "Answer selection over revision chains in the compute-optimal analysis: hierarchical (default, the paper's: PRM-weighted within each chain, then across), majority (what to use with a PRM that does not rank answers within a question, such as the value head alone: --prm_reference_features false) or weighted (PRM-weighted over all attempts at once)."})

    def __post_init__(self):
        if self.test_per_level is None:
            self.test_per_level = 10 if self.quick else 40
        if self.num_samples is None:
            self.num_samples = 16 if self.quick else 64
        if self.label_per_level is None:
            self.label_per_level = 4 if self.quick else 24
        if self.label_samples is None:
            self.label_samples = 4 if self.quick else 8
        if self.label_rollouts is None:
            self.label_rollouts = 4 if self.quick else 8
        if self.prm_epochs is None:
            self.prm_epochs = 3 if self.quick else 8
        if self.search_per_level is None:
            self.search_per_level = 2 if self.quick else 10
        if self.search_max_budget is None:
            self.search_max_budget = 4 if self.quick else 16
        if self.revision_per_level is None:
            self.revision_per_level = 4 if self.quick else 24
        if self.revision_samples is None:
            self.revision_samples = 8 if self.quick else 32
        if self.revision_epochs is None:
            self.revision_epochs = 1 if self.quick else 2
        if self.revision_chains is None:
            self.revision_chains = 2 if self.quick else 4
        from ttstrain.compute_optimal import CHAIN_SELECTIONS

        if self.revision_selection not in CHAIN_SELECTIONS:
            raise ValueError(f"revision_selection must be majority, hierarchical or weighted, got {self.revision_selection!r}")


class StageClock:
    """Wall time of each named stage, for the report."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        print(f"[demo] {name} ...", flush=True)
        t0 = time.time()
        yield
        self.seconds[name] = round(time.time() - t0, 1)
        print(f"[demo] {name} done in {self.seconds[name]} s", flush=True)


def run_demo(cfg: DemoConfig) -> dict:
    from ttstrain.baselines import greedy_by_level, sampling_baselines
    from ttstrain.generation import load_generator
    from ttstrain.metrics import power_of_two_budgets
    from ttstrain.problems import load_problems

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock()
    budgets = power_of_two_budgets(cfg.num_samples)

    with clock.stage("world"):
        generator = load_generator(cfg.backend, model=cfg.policy)
        problems = load_problems("arith", "test", per_level=cfg.test_per_level, seed=cfg.seed)
        write_resolved_config(out, cfg, generator=generator.identity(), budgets=budgets)

    with clock.stage("greedy"):
        from ttstrain.sampling import sample_solutions

        greedy = sample_solutions(generator, problems, n=1, temperature=0.0, seed=cfg.seed,
                                  max_new_tokens=cfg.max_new_tokens, desc="greedy")
        write_parquet(out / "greedy.parquet", greedy)

    with clock.stage("sample"):
        tokens_before = generator.stats.generated_tokens
        t0 = time.time()
        samples = sample_solutions(generator, problems, n=cfg.num_samples, temperature=cfg.temperature,
                                   seed=cfg.seed, max_new_tokens=cfg.max_new_tokens, desc=f"sample n={cfg.num_samples}")
        sample_tokens_per_s = (generator.stats.generated_tokens - tokens_before) / max(1e-9, time.time() - t0)
        write_parquet(out / "samples.parquet", samples)

    with clock.stage("baseline"):
        baselines = sampling_baselines(samples, budgets, resamples=cfg.resamples, seed=cfg.seed)
        greedy_acc = greedy_by_level(greedy)

    with clock.stage("label"):
        from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc

        # sizes in the folder name: a rerun with other sizes starts its own resumable folder
        label_dir = out / f"label_mc-{cfg.label_per_level}x{cfg.label_samples}x{cfg.label_rollouts}-seed{cfg.seed}"
        label_cfg = LabelMCConfig(output_dir=str(label_dir), model=cfg.policy, backend=cfg.backend,
                                  problems="arith", split="train", per_level=cfg.label_per_level,
                                  num_samples=cfg.label_samples, num_rollouts=cfg.label_rollouts,
                                  max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        labelling = run_label_mc(label_cfg, generator=generator)
        labelling["signal"] = label_signal(label_dir)

    with clock.stage("prm"):
        from ttstrain.stages.train_prm import run_train_prm

        trainer = run_train_prm(demo_prm_config(cfg, label_dir, out / "prm"))
        prm_training = {"data": trainer.data_summary, "best_validation_bce": trainer.state.best_metric,
                        "optimizer_steps": trainer.state.global_step,
                        "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None}

    with clock.stage("prm_eval"):
        from ttstrain.stages.eval_prm import EvalPRMConfig, run_eval_prm

        prm_eval = run_eval_prm(EvalPRMConfig(prm=str(out / "prm"), output_dir=str(out / "eval_prm"),
                                              labels=str(label_dir), labels_split="validation",
                                              samples=str(out / "samples.parquet"), budgets=budgets,
                                              resamples=cfg.resamples, seed=cfg.seed))

    with clock.stage("search"):
        from ttstrain.stages.run_search import SearchStageConfig, run_search_stage

        search_dir = out / f"search-{cfg.search_per_level}x{cfg.search_max_budget}-seed{cfg.seed}"
        search_cfg = SearchStageConfig(output_dir=str(search_dir), model=cfg.policy, backend=cfg.backend,
                                       prm_path=str(out / "prm"), problems="arith", split="test",
                                       per_level=cfg.search_per_level, max_budget=cfg.search_max_budget,
                                       methods=list(SEARCH_METHODS_RUN), beam_width="4",
                                       max_new_tokens=cfg.max_new_tokens, resamples=cfg.resamples, seed=cfg.seed)
        # a rerun retrains the PRM: drop search results scored by an earlier one
        import shutil

        shutil.rmtree(search_dir, ignore_errors=True)
        search_summary = run_search_stage(search_cfg, generator=generator)

    with clock.stage("revision_data"):
        from ttstrain.stages.build_revisions import BuildRevisionsConfig, run_build_revisions

        revision_data_dir = out / f"revisions-{cfg.revision_per_level}x{cfg.revision_samples}-seed{cfg.seed}"
        revision_data = run_build_revisions(BuildRevisionsConfig(
            output_dir=str(revision_data_dir), model=cfg.policy, backend=cfg.backend, problems="arith", split="train",
            per_level=cfg.revision_per_level, num_samples=cfg.revision_samples, temperature=cfg.revision_temperature,
            max_new_tokens=cfg.max_new_tokens, seed=cfg.seed), generator=generator)

    with clock.stage("revision"):
        from ttstrain.trainers.revision_trainer import train_revision

        revision_cfg = demo_revision_config(cfg, revision_data_dir, out / "revision_model")
        train_revision(revision_cfg)
        revision_training = revision_training_summary(out / "revision_model", revision_cfg)

    with clock.stage("revision_eval"):
        from ttstrain.stages.eval_revision import EvalRevisionConfig, run_eval_revision

        revision_eval = run_eval_revision(EvalRevisionConfig(
            output_dir=str(out / "eval_revision"), model=str(out / "revision_model"), backend=cfg.backend,
            problems="arith", split="test", per_level=cfg.search_per_level, num_chains=cfg.revision_chains,
            chain_length=cfg.revision_length, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
            prm=str(out / "prm"), base_samples=str(out / "samples.parquet"), seed=cfg.seed))

    with clock.stage("predict_bon"):
        from ttstrain.stages.predict_bon import PredictBoNConfig, run_predict_bon

        bon_prediction = run_predict_bon(PredictBoNConfig(
            samples=str(out / "eval_prm" / "sample_scores.parquet"), output_dir=str(out / "predict_bon"),
            fit_samples=max(1, cfg.num_samples // 8)))

    with clock.stage("compute_optimal"):
        from ttstrain.stages.compute_optimal import ComputeOptimalConfig, run_compute_optimal

        co_report = run_compute_optimal(ComputeOptimalConfig(
            output_dir=str(out / "compute_optimal"), search_dirs=[str(search_dir)],
            samples=str(out / "samples.parquet"), revisions=str(out / "eval_revision" / "chains.parquet"),
            revision_score="score_prm", revision_selection=cfg.revision_selection, seed=cfg.seed))

    report = {
        "sizes": {"levels": sorted({p["level"] for p in problems}), "test_problems": len(problems),
                  "test_per_level": cfg.test_per_level, "samples_per_problem": cfg.num_samples,
                  "temperature": cfg.temperature, "budgets": budgets, "quick": cfg.quick,
                  "label_problems_per_level": cfg.label_per_level, "label_samples": cfg.label_samples,
                  "label_rollouts": cfg.label_rollouts, "search_per_level": cfg.search_per_level,
                  "search_max_budget": cfg.search_max_budget, "revision_per_level": cfg.revision_per_level,
                  "revision_samples": cfg.revision_samples, "revision_chains": cfg.revision_chains,
                  "revision_length": cfg.revision_length},
        "generator": generator.identity(),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "greedy_pass@1": greedy_acc,
        "sampling": baselines,
        "throughput": {"sample_generated_tokens_per_s": round(sample_tokens_per_s, 1),
                       "generated_tokens_total": generator.stats.generated_tokens,
                       "prompt_tokens_requested": generator.stats.prompt_tokens,
                       "prompt_tokens_prefilled": generator.stats.prefill_tokens},
        "labelling": labelling,
        "prm": {"training": prm_training, "heldout": prm_eval["heldout"], "best_of_n": prm_eval["best_of_n"],
                "learning_rate": cfg.prm_learning_rate, "epochs": cfg.prm_epochs,
                "reference_features": prm_eval.get("reference_features"),
                "value_head_only": prm_eval.get("value_head_only")},
        "search": search_summary_for_report(search_summary, co_report),
        "search_vs_best_of_n": search_methods_vs_bon(search_dir, co_report),
        "bon_prediction": {k: bon_prediction[k] for k in ("fit_samples", "questions", "largest_checked_n",
                                                          "accuracy_mae_at_largest_n", "curves")},
        "revisions": revision_summary_for_report(revision_data, revision_training, revision_eval, co_report, cfg),
        "stage_seconds": clock.seconds,
    }
    report["stage_seconds"]["total"] = round(sum(clock.seconds.values()), 1)
    report["findings"] = demo_findings(report, cfg)
    write_demo_report(out, report)
    return report


def search_methods_vs_bon(search_dir: Path, co_report: dict) -> dict:
    """Beam search, DVTS and SLG minus weighted best-of-N at every budget, overall and per oracle bin."""
    from ttstrain.io import read_parquet
    from ttstrain.method_comparison import compare_methods

    rows = read_parquet(search_dir / "results.parquet")
    bins = co_report["bins"]["oracle"]["assignment"]
    return compare_methods(rows, ["beam_search", "dvts", "slg"], "best_of_n_weighted", bins=bins)


def demo_findings(report: dict, cfg: DemoConfig) -> dict:
    """The figures every run is compared by (null where a stage did not give them)."""
    bon = report["prm"]["best_of_n"]
    alone = (report["prm"].get("value_head_only") or {}).get("best_of_n") or bon
    top = max(bon["weighted_at"]) if bon["weighted_at"] else None
    at16 = 16 if 16 in bon["weighted_at"] else top
    search, vs = report["search"], report["search_vs_best_of_n"]["methods"]
    co = search["compute_optimal"].get("oracle", {})
    base = search["methods"].get("best_of_n_weighted", {})
    gains = [co[b] - base[b] for b in co if co[b] is not None and base.get(b) is not None]
    rev = report["revisions"]
    by_step = [rev["pass@1_by_revision_step"][k] for k in sorted(rev["pass@1_by_revision_step"])]
    attempts = rev["problems"] * rev["num_chains"]  # attempts at each revision step
    step_se = max((math.sqrt(p * (1 - p) / attempts) for p in by_step), default=None) if attempts else None

    def at_largest(method):
        overall = vs.get(method, {}).get("overall", {})
        return overall[max(overall)]["diff"] if overall else None

    return {
        "policy": cfg.policy,
        "value_head_within_question_auroc": alone.get("within_question_auroc"),
        "weighted_minus_majority_at_16": (round(bon["weighted_at"][at16] - bon["majority_at"][at16], 4)
                                          if at16 is not None else None),
        "weighted_minus_majority_at_16_se": (bon.get("weighted_minus_majority_se_at") or {}).get(at16),
        "revision_pass1_by_step": by_step,
        "revision_pass1_se": None if step_se is None else round(step_se, 4),
        "compute_optimal_efficiency_at_16": search["efficiency"].get("oracle", {}).get(cfg.search_max_budget),
        "compute_optimal_min_gain_over_bon": round(min(gains), 4) if gains else None,
        "dvts_minus_bon_at_16": at_largest("dvts"),
        "slg_minus_bon_at_16": at_largest("slg"),
        "bon_prediction_error": report["bon_prediction"]["accuracy_mae_at_largest_n"],
        "demo_seconds": report["stage_seconds"]["total"],
    }


def demo_prm_config(cfg: DemoConfig, label_dir: Path, out: Path):
    """recipes/default/prm/config_demo.yaml's settings, sized by the demo, evaluated every epoch."""
    from ttstrain.trainers.prm_config import PRMConfig

    return PRMConfig(output_dir=str(out), model_name_or_path=cfg.policy, dataset_path=str(label_dir),
                     label_mode="soft", validation_fraction=0.1, learning_rate=cfg.prm_learning_rate,
                     warmup_steps=10, per_device_train_batch_size=16, gradient_accumulation_steps=1,
                     num_train_epochs=cfg.prm_epochs, eval_strategy="epoch", save_strategy="epoch",
                     save_total_limit=1, logging_steps=10, early_stopping_patience=2, seed=cfg.seed,
                     report_to=[], dataloader_pin_memory=False, reference_features=cfg.prm_reference_features)


def demo_revision_config(cfg: DemoConfig, data_dir: Path, out: Path):
    """recipes/default/revision/config_demo.yaml's settings, sized by the demo (one final model, no
    periodic checkpoints: the demo evaluates the model it ends with)."""
    from ttstrain.trainers.revision_config import RevisionConfig

    return RevisionConfig(output_dir=str(out), model_name_or_path=cfg.policy, dataset_path=str(data_dir),
                          learning_rate=cfg.revision_learning_rate, warmup_steps=10, per_device_train_batch_size=16,
                          gradient_accumulation_steps=1, num_train_epochs=cfg.revision_epochs, max_length=1024,
                          save_strategy="no", logging_steps=10, dropout=0.0, seed=cfg.seed, use_cpu=True,
                          report_to="none", dataloader_pin_memory=False)


def revision_training_summary(model_dir: Path, revision_cfg) -> dict:
    """Optimizer settings, steps, and the first, last and mean training loss of the revision SFT run."""
    import json

    state_file = model_dir / "trainer_state.json"
    history = json.loads(state_file.read_text())["log_history"] if state_file.exists() else []
    losses = [h["loss"] for h in history if "loss" in h]
    mean_loss = next((h["train_loss"] for h in history if "train_loss" in h), None)
    return {"mean_loss": mean_loss, "learning_rate": revision_cfg.learning_rate, "epochs": revision_cfg.num_train_epochs,
            "batch": revision_cfg.per_device_train_batch_size * revision_cfg.gradient_accumulation_steps,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "optimizer_steps": max((h.get("step", 0) for h in history), default=None)}


def label_signal(label_dir: Path) -> dict:
    """Mean soft label of steps in samples that end correct vs wrong (labels must carry signal)."""
    from ttstrain.shards import load_dataset_dir

    ds = load_dataset_dir(label_dir)
    right = [x for r in ds if r["final_correct"] for x in r["labels"][:-1]]
    wrong = [x for r in ds if not r["final_correct"] for x in r["labels"][:-1]]
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {"mean_label_steps_of_correct_samples": mean(right), "mean_label_steps_of_wrong_samples": mean(wrong),
            "steps_of_correct_samples": len(right), "steps_of_wrong_samples": len(wrong)}


def write_demo_report(out: Path, report: dict) -> None:
    from ttstrain.report import md_table, plot_curves

    base = report["sampling"]
    curves = {"pass@N (oracle)": base["overall"]["pass_at"], "majority@N": base["overall"]["majority_at"]}
    plot_curves(out / "baselines.png", curves, "Default world: sampling baselines")
    by_level = {f"majority@N L{lvl}": v["majority_at"] for lvl, v in base["by_level"].items()}
    plot_curves(out / "majority_by_level.png", by_level, "Majority vote by level")
    bon = report["prm"]["best_of_n"]
    plot_curves(out / "best_of_n.png", {"PRM-weighted best-of-N": bon["weighted_at"],
                                        "majority@N": bon["majority_at"], "pass@N (oracle)": base["overall"]["pass_at"]},
                "Default world: PRM best-of-N vs majority")
    write_json(out / "report.json", report)

    s = report["sizes"]
    levels = list(base["by_level"])
    lines = [
        "# ttstrain demo report",
        "",
        f"Policy: `{report['generator'].get('model')}` ({report['generator'].get('parameters', '?')} parameters, "
        f"backend {report['generator']['backend']}).",
        f"Sizes: {s['test_problems']} test problems ({s['test_per_level']} per level, levels {s['levels']}), "
        f"{s['samples_per_problem']} samples per problem at temperature {s['temperature']}"
        + (" (--quick)." if s["quick"] else "."),
        "",
        "## Findings",
        "",
        findings_section(report["findings"]),
        "",
        "## Policy accuracy by level",
        "",
        md_table(["level", "greedy pass@1", "sampled pass@1", f"pass@{s['budgets'][-1]}", f"majority@{s['budgets'][-1]}"],
                 [[lvl, report["greedy_pass@1"][lvl], base["by_level"][lvl]["pass@1"],
                   base["by_level"][lvl]["pass_at"][s["budgets"][-1]], base["by_level"][lvl]["majority_at"][s["budgets"][-1]]]
                  for lvl in levels]
                 + [["all", report["greedy_pass@1"]["all"], base["overall"]["pass@1"],
                     base["overall"]["pass_at"][s["budgets"][-1]], base["overall"]["majority_at"][s["budgets"][-1]]]]),
        "",
        "## Accuracy vs samples per problem",
        "",
        md_table(["N", "pass@N", "majority@N"],
                 [[b, base["overall"]["pass_at"][b], base["overall"]["majority_at"][b]] for b in s["budgets"]]),
        "",
        "![baselines](baselines.png)",
        "",
        "![majority by level](majority_by_level.png)",
        "",
        "## Monte Carlo step labels (PRM training data)",
        "",
        labelling_section(report["labelling"], s),
        "",
        "## Process reward model",
        "",
        prm_section(report["prm"]),
        "",
        "## Test-time search and compute-optimal scaling",
        "",
        search_section(report["search"]),
        "",
        "### DVTS and SLG against weighted best-of-N",
        "",
        search_methods_section(report["search_vs_best_of_n"]),
        "",
        "### Predicting best-of-N from a few samples",
        "",
        bon_prediction_section(report["bon_prediction"]),
        "",
        "## Revisions",
        "",
        revision_section(report["revisions"]),
        "",
        "## Cost",
        "",
        f"Sampling throughput: {report['throughput']['sample_generated_tokens_per_s']:.0f} generated tokens/s; "
        f"prompt tokens requested {report['throughput']['prompt_tokens_requested']}, actually prefilled "
        f"{report['throughput']['prompt_tokens_prefilled']} (shared-prefix KV reuse).",
        "",
        md_table(["stage", "seconds"], list(report["stage_seconds"].items())),
        "",
    ]
    write_text(out / "report.md", "\n".join(lines))


def findings_section(findings: dict) -> str:
    from ttstrain.report import md_table

    return md_table(["finding", "value"], [[k, _f(v) if isinstance(v, float) else v] for k, v in findings.items()])


def search_methods_section(cmp: dict) -> str:
    from ttstrain.method_comparison import comparison_markdown

    return ("Same test problems and PRM; every method at each budget N spends at most N generations "
            "(DVTS: N/4 subtrees of width 4; SLG: root samples, first-step states and the remainder to the "
            "state with the best reward-tail prediction). Differences in accuracy, paired over problems, "
            "with standard errors; oracle bin 1 is the easiest.\n\n" + comparison_markdown(cmp))


def bon_prediction_section(pred: dict) -> str:
    from ttstrain.report import md_table

    curves = pred["curves"]
    return "\n".join([
        f"From the first {pred['fit_samples']} PRM-scored samples of each of the {pred['questions']} test problems "
        f"(`ttstrain predict-bon`), the predicted best-of-N accuracy against what all samples show "
        f"(exact expectation over random N-subsets); mean absolute error over problems at "
        f"N = {pred['largest_checked_n']}: {_f(pred['accuracy_mae_at_largest_n'])}.",
        "",
        md_table(["N", "predicted accuracy", "observed accuracy", "MAE over problems", "predicted reward",
                  "observed reward"],
                 [[n, c["predicted_accuracy"], c["observed_accuracy"], c["accuracy_mae"], c["predicted_reward"],
                   c["observed_reward"]] for n, c in curves.items()]),
        "",
        "![best-of-N prediction](predict_bon/predict_bon.png)",
    ])


def labelling_section(lab: dict, sizes: dict) -> str:
    from ttstrain.report import md_table

    sig = lab["signal"]
    return "\n".join([
        f"{lab['problems']} training problems ({sizes['label_problems_per_level']} per level), "
        f"{sizes['label_samples']} samples each, {sizes['label_rollouts']} rollouts per step prefix "
        f"(paper: 16 and 16; see recipes/default/label_mc/config_paper.yaml).",
        "",
        md_table(["samples", "kept", "dropped (no answer)", "steps labelled", "rollouts", "distinct prefixes",
                  "generated tokens", "labelled steps/s"],
                 [[lab["samples"], lab["samples_kept"], lab.get("samples_dropped_no_answer", 0), lab["steps_labelled"],
                   lab.get("rollouts", 0), lab.get("distinct_prefixes", 0), lab["generated_tokens"],
                   lab["labelled_steps_per_second"]]]),
        "",
        f"Signal: mean soft label of the non-final steps of samples that end correct "
        f"{sig['mean_label_steps_of_correct_samples']} vs wrong {sig['mean_label_steps_of_wrong_samples']}.",
    ])


def prm_section(prm: dict) -> str:
    from ttstrain.report import md_table

    tr, ho, bon = prm["training"], prm["heldout"], prm["best_of_n"]
    budgets = list(bon["weighted_at"])
    data = tr["data"]
    return "\n".join([
        f"Trained on the soft labels above from the policy's weights (BCE at step ends, lr {prm['learning_rate']}, "
        f"batch 16, up to {prm['epochs']} epochs, early stopping on the validation loss): "
        f"{data['train']['rows_kept']} training rows ({data['train'].get('questions', '?')} questions), "
        f"{data.get('validation', {}).get('rows_kept', 0)} validation rows "
        f"({data.get('validation', {}).get('questions', '?')} held-out questions); best validation BCE "
        f"{tr['best_validation_bce']:.4f} at {tr['best_checkpoint']} of {tr['optimizer_steps']} optimizer steps.",
        "",
        f"Held-out questions: BCE {ho['bce']}, step AUROC {ho['step_auroc']} (steps with Monte Carlo value >= "
        f"{ho['step_positive_at']} as positives: {ho['positive_steps']} of {ho['steps']}), solution AUROC "
        f"{ho['solution_auroc']} (last-step score vs final correctness).",
        "",
        f"Best-of-N on the test samples, {bon['problems']} problems, {bon['resamples']} random subsets per N "
        f"(the same subsets for every rule), aggregation `{bon['aggregation']}`:",
        "",
        md_table(["N", "PRM-weighted best-of-N", "PRM best-of-N (naive)", "majority@N"],
                 [[b, bon["weighted_at"][b], bon["naive_at"][b], bon["majority_at"][b]] for b in budgets]),
        "",
        weighted_vs_majority_line(bon),
        "",
        within_question_line(bon),
        "",
        *reference_feature_lines(prm),
        "![best-of-N](best_of_n.png)",
    ])


def headline_budget(curve: dict, preferred: int = 16):
    """The budget a one-line summary reads: N = 16 (the issue's target) where measured, else the largest."""
    keys = list(curve)
    return next((k for k in keys if int(k) == preferred), keys[-1])


def weighted_vs_majority_line(bon: dict) -> str:
    """Weighted best-of-N minus majority at N = 16 (else the largest budget), with its paired standard error."""
    n = headline_budget(bon["weighted_at"])
    diff = bon["weighted_at"][n] - bon["majority_at"][n]
    se = (bon.get("weighted_minus_majority_se_at") or {}).get(n)
    verdict = "beats" if diff > 0 else ("ties" if diff == 0 else "is below")
    spread = f" (paired standard error over problems {se})" if se is not None else ""
    return f"At N = {n}, PRM-weighted best-of-N {verdict} majority by {diff:+.4f}{spread}."


def reference_feature_lines(prm: dict) -> list[str]:
    """The combiner the PRM scores with, and the value head alone (the ablation)."""
    spec, alone = prm.get("reference_features"), prm.get("value_head_only")
    if not spec:
        return []
    w = spec["weights"]
    lines = [
        f"The PRM scores with reference features (`train-prm --reference_features`): step logit = {w[0]:.3f} x "
        f"value-head logit + {w[1]:.3f} x min + {w[2]:.3f} x mean of the policy's token log-probs of the solution "
        f"so far + {spec['bias']:.3f}, fitted on the {spec['fitted_rows']} rows of the "
        f"{spec['fitted_on']} split ({spec['fitted_steps']} steps; their BCE {spec['bce_value_head_only']} with the value head alone, "
        f"{spec['bce_combined']} combined).", ""]
    if alone and alone.get("best_of_n"):
        ab, ho = alone["best_of_n"], alone.get("heldout") or {}
        n = headline_budget(ab["weighted_at"])
        lines += [f"Ablation, the value head alone: held-out BCE {ho.get('bce')}, step AUROC {ho.get('step_auroc')}; "
                  f"weighted best-of-{n} {ab['weighted_at'][n]} vs majority {ab['majority_at'][n]}; AUROC within a "
                  f"question {ab.get('within_question_auroc')}, pooled {ab.get('pooled_auroc')}.", ""]
    return lines


def within_question_line(bon: dict, near_chance: float = 0.05) -> str:
    """How the PRM ranks answers inside a question vs across questions (what weighted best-of-N needs)."""
    within, pooled = bon.get("within_question_auroc"), bon.get("pooled_auroc")
    if within is None:
        return "No test problem has both right and wrong samples, so the PRM's ranking within a question is unmeasured."
    if within <= 0.5 + near_chance:
        verdict = ("near chance within a question: the PRM tells easy questions from hard ones, not right answers from "
                   "wrong ones, so weighting can add little to majority vote")
    else:
        verdict = "the PRM ranks right answers above wrong ones within a question"
    return (f"Ranking: AUROC of the solution scores against correctness {within} within a question (mean over the "
            f"{bon['within_question_problems']} problems with both right and wrong samples) vs {pooled} pooled over "
            f"all test samples; {verdict}.")


def search_summary_for_report(summary: dict, co_report: dict) -> dict:
    """Accuracy per method and budget, beam vs best-of-N overall and per oracle bin, compute-optimal."""
    fam = co_report["families"]["search"]
    methods = {m: {int(b): e["accuracy"] for b, e in per_b.items()} for m, per_b in summary["methods"].items()}
    beam = next(s for s in fam["strategies"] if s.startswith("beam_search"))
    bon = fam["baseline"]
    by_bin = fam["by_bin"]["oracle"]
    low = [b for b in fam["budgets"] if b <= 4]
    beam_minus_bon_by_bin = {
        int(k): {int(b): (None if by_bin[beam][k][b] is None or by_bin[bon][k][b] is None
                          else round(by_bin[beam][k][b] - by_bin[bon][k][b], 4)) for b in low}
        for k in by_bin[bon]}
    return {
        "problems": summary["problems"], "budgets": summary["budgets"], "methods": methods,
        "generations": {m: {int(b): e["generations"] for b, e in per_b.items()} for m, per_b in summary["methods"].items()},
        "beam_strategy": beam, "baseline": bon, "beam_minus_bon_low_budget_by_oracle_bin": beam_minus_bon_by_bin,
        "compute_optimal": {kind: {int(b): v for b, v in sel["accuracy"].items()}
                            for kind, sel in fam["compute_optimal"].items()},
        "efficiency": {kind: {int(b): e["ratio"] for b, e in eff.items()} for kind, eff in fam["efficiency"].items()},
        "bin_agreement": co_report.get("bin_agreement"),
        "seconds": summary.get("seconds"),
    }


def revision_summary_for_report(data: dict | None, training: dict, evaluation: dict, co_report: dict,
                                cfg: DemoConfig) -> dict:
    """Revision data and training, pass@1 along chains against the base policy's samples on the same
    problems (the eval stage's answer bounds), selection rules per split, and the sequential-vs-parallel
    compute-optimal family."""
    bounds = evaluation.get("answer_bounds") or {}
    fam = co_report["families"].get("revisions", {})
    data = data or {}
    return {
        "data": {**{k: data.get(k, 0) for k in ("questions", "rows", "samples", "samples_valid", "correct", "incorrect",
                                                "questions_without_correct", "questions_without_incorrect",
                                                "samples_dropped_no_answer")},
                 "k_histogram": data.get("k_histogram"), "samples_per_question": cfg.revision_samples},
        "training": training, "temperature": cfg.revision_temperature,
        "problems": evaluation["problems"], "num_chains": evaluation["num_chains"],
        "chain_length": evaluation["chain_length"],
        "base_policy_sampled_pass@1": bounds.get("first_attempt"),
        "pass@1_by_revision_step": {int(k): v for k, v in evaluation["pass@1_by_revision_step"].items()},
        "flip_rates": evaluation["flip_rates"],
        "answer_bounds": evaluation.get("answer_bounds"),
        "changed_attempts": evaluation.get("changed_attempts"),
        "majority": evaluation["majority"],
        "prm_hierarchical": evaluation["verifiers"].get("prm", {}).get("hierarchical"),
        "prm_auroc": evaluation["verifiers"].get("prm", {}).get("auroc_all_attempts"),
        "compute_optimal": {kind: {int(b): v for b, v in sel["accuracy"].items()}
                            for kind, sel in fam.get("compute_optimal", {}).items()},
        "choices_oracle": fam.get("compute_optimal", {}).get("oracle", {}).get("choices"),
        "curves": {name: {int(b): v for b, v in c.items()} for name, c in fam.get("curves", {}).items()},
        "selection": cfg.revision_selection,
    }


def revision_trend(first: float, last: float, attempts_per_step: int) -> str:
    """'rises', 'falls', or 'is flat within noise' when the change is under two standard errors of
    the difference of two proportions over `attempts_per_step` attempts each."""
    p = (first + last) / 2
    two_se = 2 * math.sqrt(2 * p * (1 - p) / attempts_per_step) if attempts_per_step else 0.0
    if abs(last - first) <= two_se:  # equal rates are flat even when the spread is 0 (both 0.0 or 1.0)
        return f"is flat within noise (2 standard errors: {two_se:.3f})"
    return "rises" if last > first else "falls"


def revision_section(rv: dict) -> str:
    from ttstrain.report import md_table

    d, tr = rv["data"], rv["training"]
    steps = rv["pass@1_by_revision_step"]
    first, last = steps[min(steps)], steps[max(steps)]
    trend = revision_trend(first, last, rv["problems"] * rv["num_chains"])
    fr = rv["flip_rates"]
    splits = sorted(rv["majority"], key=lambda k: (int(k.split("x")[0]) * int(k.split("x")[1]), k))
    curves = rv["curves"]
    budgets = sorted({b for c in curves.values() for b in c})
    kinds = list(rv["compute_optimal"])
    lines = [
        f"Data: {d['questions']} training problems x {d['samples_per_question']} answers at temperature "
        f"{rv['temperature']}; {d['correct']} correct answers became {d['rows']} rows "
        f"(k previous wrong attempts, histogram {d['k_histogram']}); {d['questions_without_correct']} problems had "
        f"no correct answer, {d['questions_without_incorrect']} no wrong one.",
        "",
        f"Revision SFT of the policy (loss on the correct answer only): lr {tr['learning_rate']}, batch {tr['batch']}, "
        f"{tr['epochs']} epochs, {tr['optimizer_steps']} optimizer steps; training loss {_f(tr['first_loss'])} "
        f"(first logged) -> {_f(tr['last_loss'])} (last), {_f(tr['mean_loss'])} on average.",
        "",
        f"Sequential chains on {rv['problems']} test problems ({rv['num_chains']} chains x {rv['chain_length']} "
        f"attempts, each attempt conditioned on the chain's previous ones, at most 4). pass@1 by revision step "
        f"{trend} from step 1 to step {max(steps) + 1} ({first:.3f} -> {last:.3f}); the base policy's sampled pass@1 "
        f"on the same problems is {_f(rv['base_policy_sampled_pass@1'])}.",
        "",
        md_table(["revision step"] + [str(s + 1) for s in steps], [["pass@1"] + [_f(v) for v in steps.values()]]),
        "",
        f"A correct answer turned into a wrong one at the next revision {_f(fr['correct_to_incorrect'])} of the time "
        f"({fr['transitions_from_correct']} transitions; the paper saw 0.38); a wrong one into a right one "
        f"{_f(fr['incorrect_to_correct'])} ({fr['transitions_from_incorrect']}). The PRM's AUROC on the attempts: "
        f"{_f(rv['prm_auroc'])}.",
        "",
        *answer_bounds_lines(rv.get("answer_bounds"), rv.get("changed_attempts")),
        "Accuracy of L sequential x P parallel attempts (budget L*P), answer by majority over all attempts or "
        "hierarchically with the PRM (weighted best-of-N within each chain, then across chains):",
        "",
        md_table(["L x P", "budget", "majority", "PRM hierarchical"],
                 [[k, int(k.split("x")[0]) * int(k.split("x")[1]), _f(rv["majority"].get(k)),
                   _f((rv["prm_hierarchical"] or {}).get(k))] for k in splits]),
        "",
        f"Compute-optimal over the sequential:parallel split ({rv['selection']} selection, "
        "oracle bins, 2-fold CV) against parallel sampling (L = 1):",
        "",
        md_table(["N"] + list(curves) + [f"compute-optimal ({k} bins)" for k in kinds],
                 [[b] + [_f(c.get(b)) for c in curves.values()] + [_f(rv["compute_optimal"][k].get(b)) for k in kinds]
                  for b in budgets]),
        "",
        "Sequential length chosen per oracle bin (1 = easiest) and budget, one choice per cross-validation fold:",
        "",
        choices_table(rv["choices_oracle"] or {}),
        "",
        "Plots: [compute_optimal/accuracy_revisions.png](compute_optimal/accuracy_revisions.png), "
        "[compute_optimal/revision_ratio_sweep.png](compute_optimal/revision_ratio_sweep.png).",
    ]
    return "\n".join(lines)


def answer_bounds_lines(bounds: dict | None, changed: dict | None = None) -> list[str]:
    """What keeping or excluding the previous answer buys on these problems, and how the revision
    model's changed wrong attempts compare with fresh samples (ttstrain.revisions.bounds)."""
    if not bounds:
        return []
    lines = [f"What a next attempt gets from the base policy's {bounds['samples_per_question']:g} samples per problem: "
             f"a fresh sample {_f(bounds['first_attempt'])}; a fresh sample with the previous answer excluded "
             f"(what wrong-only revision contexts teach) {_f(bounds['exclude_previous'])}; keeping a right answer "
             f"and excluding a wrong one (perfect error detection) {_f(bounds['keep_or_exclude_oracle'])}."]
    if bounds["exclude_previous"] < bounds["first_attempt"]:
        lines[0] += (" Exclusion loses here (the wrong answers are spread thin), so a chain can rise above its "
                     "first attempt only as far as the revision model tells its right attempts from its wrong ones.")
    if changed and changed.get("changed_wrong_attempts"):
        lines[0] += (f" When the revision model changed a wrong answer ({changed['changed_wrong_attempts']} times), "
                     f"its new attempt was right {_f(changed['right_after_change'])} of the time; a fresh base sample "
                     f"avoiding the previous answer would be right {_f(changed['fresh_sample_excluding_previous'])}.")
    return lines + [""]


def choices_table(choices: dict) -> str:
    """bins x budgets, each cell the strategies chosen by the folds, `revisions(L=4)` shown as `L=4`."""
    from ttstrain.report import md_table

    budgets = sorted({int(b) for per in choices.values() for b in per})
    short = lambda name: name.replace("revisions(", "").rstrip(")")  # noqa: E731
    return md_table(["bin"] + [f"N={b}" for b in budgets],
                    [[k] + [" / ".join(short(c) for c in per.get(str(b), per.get(b, []))) for b in budgets]
                     for k, per in sorted(choices.items(), key=lambda kv: int(kv[0]))])


def _f(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def search_section(sr: dict) -> str:
    from ttstrain.report import md_table

    budgets = sr["budgets"]
    kinds = list(sr["compute_optimal"])
    rows = []
    for b in budgets:
        rows.append([b] + [_f(sr["methods"][m].get(b)) for m in ("majority", "best_of_n_weighted", "beam_search")]
                    + [_f(sr["compute_optimal"][k].get(b)) for k in kinds])
    low = [b for b in budgets if b <= 4]
    diffs = [sr["methods"]["beam_search"][b] - sr["methods"]["best_of_n_weighted"][b] for b in low]
    verdict = ("beats" if all(d > 0 for d in diffs) else "does not beat" if all(d <= 0 for d in diffs)
               else "is mixed against")
    bins_better = sorted(k for k, v in sr["beam_minus_bon_low_budget_by_oracle_bin"].items()
                         if any(d is not None and d > 0 for d in v.values()))
    eff = sr["efficiency"].get("oracle", {})
    best_eff = max((r for r in eff.values() if r is not None), default=None)
    return "\n".join([
        f"{sr['problems']} test problems, the PRM above as verifier, beam width M=4, budgets N = {budgets} "
        f"(generations; best-of-N curves from nested subsets averaged over resamplings).",
        "",
        md_table(["N", "majority", "PRM-weighted best-of-N", f"beam search ({sr['beam_strategy']})"]
                 + [f"compute-optimal ({k} bins)" for k in kinds], rows),
        "",
        f"At low budgets (N <= 4) beam search {verdict} best-of-N weighted overall "
        f"(beam minus best-of-N: {', '.join(f'N={b}: {d:+.3f}' for b, d in zip(low, diffs))}); "
        f"oracle difficulty bins where beam search is ahead at some N <= 4: {bins_better or 'none'} (1 = easiest).",
        "",
        md_table(["oracle bin"] + [f"beam - BoN, N={b}" for b in low],
                 [[k] + [_f(v.get(b)) for b in low] for k, v in sorted(sr["beam_minus_bon_low_budget_by_oracle_bin"].items())]),
        "",
        f"Compute-optimal efficiency (oracle bins): the largest ratio of best-of-N's budget to the smallest "
        f"compute-optimal budget that matches its accuracy is {_f(best_eff, 2)}"
        + ("x" if best_eff is not None else " (never matched)") + "; per budget: "
        + ", ".join(f"N={b}: {_f(r, 2)}" for b, r in eff.items()) + ". "
        f"Oracle/predicted bin agreement {_f(sr['bin_agreement'], 2)}. Full analysis: "
        f"[compute_optimal/compute_optimal.md](compute_optimal/compute_optimal.md).",
    ])


def make_parser():
    from ttstrain.parsing import StageParser

    return StageParser((DemoConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    report = run_demo(cfg)
    print(f"[demo] report written to {Path(cfg.out) / 'report.md'} (total {report['stage_seconds']['total']} s)")


if __name__ == "__main__":
    main()
