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
  8. search   majority, PRM-weighted best-of-N and beam search (M=4) at N = 1, 2, 4, ... on test problems
  9. compute_optimal  difficulty bins (oracle: pass@1 of the samples; predicted: mean PRM score),
              best strategy per bin and budget by 2-fold CV, efficiency ratio over best-of-N
Then `report.md`, `report.json` and the plots are written to --out, with the sizes used and
the wall time of every stage.
"""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ttstrain.io import write_json, write_parquet, write_resolved_config, write_text


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
                                       methods=["majority", "best_of_n_weighted", "beam_search"], beam_width="4",
                                       max_new_tokens=cfg.max_new_tokens, resamples=cfg.resamples, seed=cfg.seed)
        # a rerun retrains the PRM: drop search results scored by an earlier one
        import shutil

        shutil.rmtree(search_dir, ignore_errors=True)
        search_summary = run_search_stage(search_cfg, generator=generator)

    with clock.stage("compute_optimal"):
        from ttstrain.stages.compute_optimal import ComputeOptimalConfig, run_compute_optimal

        co_report = run_compute_optimal(ComputeOptimalConfig(output_dir=str(out / "compute_optimal"),
                                                             search_dirs=[str(search_dir)],
                                                             samples=str(out / "samples.parquet"), seed=cfg.seed))

    report = {
        "sizes": {"levels": sorted({p["level"] for p in problems}), "test_problems": len(problems),
                  "test_per_level": cfg.test_per_level, "samples_per_problem": cfg.num_samples,
                  "temperature": cfg.temperature, "budgets": budgets, "quick": cfg.quick,
                  "label_problems_per_level": cfg.label_per_level, "label_samples": cfg.label_samples,
                  "label_rollouts": cfg.label_rollouts, "search_per_level": cfg.search_per_level,
                  "search_max_budget": cfg.search_max_budget},
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
                "learning_rate": cfg.prm_learning_rate, "epochs": cfg.prm_epochs},
        "search": search_summary_for_report(search_summary, co_report),
        "stage_seconds": clock.seconds,
    }
    report["stage_seconds"]["total"] = round(sum(clock.seconds.values()), 1)
    write_demo_report(out, report)
    return report


def demo_prm_config(cfg: DemoConfig, label_dir: Path, out: Path):
    """recipes/default/prm/config_demo.yaml's settings, sized by the demo, evaluated every epoch."""
    from ttstrain.trainers.prm_config import PRMConfig

    return PRMConfig(output_dir=str(out), model_name_or_path=cfg.policy, dataset_path=str(label_dir),
                     label_mode="soft", validation_fraction=0.1, learning_rate=cfg.prm_learning_rate,
                     warmup_steps=10, per_device_train_batch_size=16, gradient_accumulation_steps=1,
                     num_train_epochs=cfg.prm_epochs, eval_strategy="epoch", save_strategy="epoch",
                     save_total_limit=1, logging_steps=10, early_stopping_patience=2, seed=cfg.seed,
                     report_to=[], dataloader_pin_memory=False)


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
        "![best-of-N](best_of_n.png)",
    ])


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
    from trl import TrlParser

    return TrlParser((DemoConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    report = run_demo(cfg)
    print(f"[demo] report written to {Path(cfg.out) / 'report.md'} (total {report['stage_seconds']['total']} s)")


if __name__ == "__main__":
    main()
