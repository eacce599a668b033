"""The main job: the whole ttstrain pipeline on the default world, end to end, in one command.

    ttstrain demo --output_dir runs/demo            # full sizes
    ttstrain demo --output_dir runs/quick --quick   # smaller sizes, same stages (a few minutes)
    ttstrain demo --print_config                    # the stage configs it would run, then exit
    ttstrain demo --set label_mc.per_level=8 search.max_budget=8   # one value of a recipe changed

Every stage setting comes from a recipe, read through the config class the stage's own command
uses: `recipes/default/<stage>/config_demo.yaml`, then `recipes/default/quick.yaml` with --quick,
then --set. The demo adds only the wiring (output folders under --output_dir, the policy, the
backend, the seed, and which stage's output another reads).

Stages, in order (each writes its data and resolved config under --output_dir):
  world, greedy, sample   the shipped policy; greedy pass@1 (the sample stage at temperature 0) and N
                  samples per test problem, graded
  baseline        pass@1 by level, pass@N and majority vote at N = 1, 2, 4, ... (plot)
  label, prm      Monte Carlo step labels on training problems; a PRM trained on them
  prm_eval        held-out BCE and step AUROC; PRM-weighted best-of-N vs majority on the samples
  search          majority, weighted best-of-N, beam search, DVTS and SLG at N = 1, 2, 4, ...
  search_value_head   the same search scored by the PRM's value head alone (a PRM with reference
                  features only): the findings' targets are read on it
  revision_data, revision, revision_eval   revision pairs, revision SFT, sequential chains
  predict_bon     best-of-N accuracy predicted from the first samples per problem, then checked
  compute_optimal difficulty bins, best strategy per bin and budget by 2-fold CV, efficiency
                  (and compute_optimal_value_head: the search family of the value-head search)
Then `report.md`, `report.json` (with its `findings` block) and the plots are written.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ttstrain.analysis.baselines import greedy_by_level, sampling_baselines
from ttstrain.analysis.metrics import power_of_two_budgets
from ttstrain.generation import load_generator
from ttstrain.io import read_parquet, write_resolved_config
from ttstrain.machine_facts import machine_facts
from ttstrain.models import policy_name
from ttstrain.parsing import StageParser
from ttstrain.pipeline.recipes import DEFAULT_RECIPES, check_fields, load_stage_settings
from ttstrain.prm.config import PRMConfig
from ttstrain.reporting.demo_report import write_demo_report
from ttstrain.reporting.demo_summary import (demo_findings, label_signal, revision_summary_for_report,
                                             revision_training_summary, search_methods_vs_bon,
                                             search_summary_for_report)
from ttstrain.search.selection import CHAIN_SELECTIONS
from ttstrain.stages import stage_problems
from ttstrain.stages.build_revisions import BuildRevisionsConfig, run_build_revisions
from ttstrain.stages.compute_optimal import ComputeOptimalConfig, run_compute_optimal
from ttstrain.stages.eval_prm import EvalPRMConfig, run_eval_prm
from ttstrain.stages.eval_revision import EvalRevisionConfig, run_eval_revision
from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc
from ttstrain.stages.predict_bon import PredictBoNConfig, run_predict_bon
from ttstrain.stages.run_search import SearchStageConfig, run_search_stage
from ttstrain.stages.sample import SampleConfig, run_sample
from ttstrain.stages.train_prm import run_train_prm
from ttstrain.trainers.revision_config import RevisionConfig
from ttstrain.trainers.revision_trainer import train_revision


DEMO_VLLM_SHARE = 0.6  # the rest of the GPU for PRM training, the PRM and its caches in search, revision training


@dataclass
class DemoConfig:
    output_dir: str = field(default="runs/demo", metadata={"help": "Output directory for data, report and plots."})
    quick: bool = field(default=False, metadata={"help": "Smaller sizes, same stages: recipes/default/quick.yaml."})
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})
    model_name_or_path: str = field(default="default", metadata={"help": "Policy: 'default' (shipped world), a path or hub id."})
    backend: str = field(default="transformers", metadata={"help": "Generation backend: transformers or vllm."})
    gpu_memory_utilization: float = field(default=DEMO_VLLM_SHARE, metadata={"help": "vllm: the policy engine's share of the GPU; the PRM trains and scores beside it, and the engine is shut down before eval-revision starts its own (docs/gpu.md)."})
    recipes: str = field(default=str(DEFAULT_RECIPES), metadata={"help": "Folder of <stage>/config_demo.yaml recipes (and quick.yaml)."})
    set: list[str] = field(default_factory=list, metadata={"help": "stage.field=value overrides applied last, e.g. label_mc.per_level=8."})
    print_config: bool = field(default=False, metadata={"help": "Print the resolved stage configs as JSON and exit."})


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


def demo_stage_configs(cfg: DemoConfig) -> dict:
    """Every stage's config: the recipe's settings plus the demo's wiring (folders, policy, seed)."""
    settings = load_stage_settings(cfg.recipes, quick=cfg.quick, overrides=cfg.set)
    out, policy, seed = Path(cfg.output_dir), cfg.model_name_or_path, cfg.seed
    run = {"model_name_or_path": policy, "backend": cfg.backend, "seed": seed}

    def build(stage, cls, **wiring):
        check_fields(stage, cls, settings[stage], cfg.recipes)
        return cls(**{**settings[stage], **wiring})

    smp = settings["sample"]
    sample = build("sample", SampleConfig, output_dir=str(out / f"sample-{smp['per_level']}x{smp['num_samples']}-seed{seed}"),
                   **run)
    # the greedy pass: the sample stage at temperature 0, one solution per problem
    greedy = replace(sample, num_samples=1, temperature=0.0, output_dir=str(out / f"greedy-{smp['per_level']}-seed{seed}"))
    lab = settings["label_mc"]
    # sizes in the folder names: a rerun with other sizes starts its own resumable folder
    label_dir = out / f"label_mc-{lab['per_level']}x{lab['num_samples']}x{lab['num_rollouts']}-seed{seed}"
    label_mc = build("label_mc", LabelMCConfig, output_dir=str(label_dir), **run)
    prm = build("prm", PRMConfig, output_dir=str(out / "prm"), model_name_or_path=policy,
                dataset_path=str(label_dir), seed=seed)
    eval_prm = build("eval_prm", EvalPRMConfig, prm_path=str(out / "prm"), output_dir=str(out / "eval_prm"),
                     labels=str(label_dir), samples=str(out / "samples.parquet"),
                     budgets=power_of_two_budgets(sample.num_samples), seed=seed)
    srch = settings["search"]
    search_dir = out / f"search-{srch['per_level']}x{srch['max_budget']}-seed{seed}"
    search = build("search", SearchStageConfig, output_dir=str(search_dir), prm_path=str(out / "prm"), **run)
    rev = settings["build_revisions"]
    revision_data_dir = out / f"revisions-{rev['per_level']}x{rev['num_samples']}-seed{seed}"
    revision_data = build("build_revisions", BuildRevisionsConfig, output_dir=str(revision_data_dir), **run)
    revision = build("revision", RevisionConfig, output_dir=str(out / "revision_model"), model_name_or_path=policy,
                     dataset_path=str(revision_data_dir), seed=seed)
    eval_revision = build("eval_revision", EvalRevisionConfig, output_dir=str(out / "eval_revision"),
                          model_name_or_path=str(out / "revision_model"), backend=cfg.backend, prm_path=str(out / "prm"),
                          base_samples=str(out / "samples.parquet"), problems=search.problems, split=search.split,
                          per_level=search.per_level, seed=seed)
    # the ablation the findings' targets are read on: the same search scored by the value head alone
    search_value_head = (replace(search, verifier="value_head", output_dir=f"{search_dir}-value_head")
                         if prm.reference_features else None)
    predict_bon = build("predict_bon", PredictBoNConfig, output_dir=str(out / "predict_bon"),
                        samples=str(out / "eval_prm" / "sample_scores.parquet"))
    compute_optimal = build("compute_optimal", ComputeOptimalConfig, output_dir=str(out / "compute_optimal"),
                            search_dirs=[str(search_dir)], samples=str(out / "samples.parquet"),
                            revisions=str(out / "eval_revision" / "chains.parquet"), seed=seed)
    compute_optimal_value_head = (
        replace(compute_optimal, output_dir=str(out / "compute_optimal_value_head"),
                search_dirs=[search_value_head.output_dir], revisions=None) if search_value_head else None)
    if compute_optimal.revision_selection not in CHAIN_SELECTIONS:
        raise ValueError(f"revision_selection must be majority, hierarchical or weighted, got "
                         f"{compute_optimal.revision_selection!r}")
    return {"greedy": greedy, "sample": sample, "label_mc": label_mc, "prm": prm, "eval_prm": eval_prm, "search": search,
            "build_revisions": revision_data, "revision": revision, "eval_revision": eval_revision,
            "predict_bon": predict_bon, "compute_optimal": compute_optimal,
            **({"search_value_head": search_value_head, "compute_optimal_value_head": compute_optimal_value_head}
               if search_value_head else {})}


def stage_config_dicts(configs: dict) -> dict:
    """The stage configs as JSON-ready dicts (TrainingArguments' own to_dict for the trainers)."""
    return {name: (c.to_dict() if hasattr(c, "to_dict") else asdict(c)) for name, c in configs.items()}


def run_demo(cfg: DemoConfig) -> dict:
    configs = demo_stage_configs(cfg)
    sc, ep = configs["sample"], configs["eval_prm"]
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock()
    budgets = ep.budgets

    with clock.stage("world"):
        engine = {"gpu_memory_utilization": cfg.gpu_memory_utilization} if cfg.backend == "vllm" else {}
        generator = load_generator(cfg.backend, model=cfg.model_name_or_path, **engine)
        problems = stage_problems(sc)
        write_resolved_config(out, cfg, generator=generator.identity(), budgets=budgets,
                              stages=stage_config_dicts(configs))

    # the sample stage's rows are copied beside the report, where the later stages read them
    # sampled afresh on every run, as a recipe change (or another policy) must be
    for stage in ("greedy", "sample"):
        shutil.rmtree(configs[stage].output_dir, ignore_errors=True)
    with clock.stage("greedy"):
        run_sample(configs["greedy"], generator=generator)
        shutil.copyfile(Path(configs["greedy"].output_dir) / "samples.parquet", out / "greedy.parquet")
        greedy = read_parquet(out / "greedy.parquet")

    with clock.stage("sample"):
        sampling = run_sample(sc, generator=generator)
        sample_tokens_per_s = sampling["generated_tokens_per_s"]
        shutil.copyfile(Path(sc.output_dir) / "samples.parquet", out / "samples.parquet")
        samples = read_parquet(out / "samples.parquet")

    with clock.stage("baseline"):
        baselines = sampling_baselines(samples, budgets, resamples=ep.resamples, seed=cfg.seed)
        greedy_acc = greedy_by_level(greedy)

    with clock.stage("label"):
        labelling = run_label_mc(configs["label_mc"], generator=generator)
        labelling["signal"] = label_signal(Path(configs["label_mc"].output_dir))

    with clock.stage("prm"):
        trainer = run_train_prm(configs["prm"])
        prm_training = {"data": trainer.data_summary, "best_validation_bce": trainer.state.best_metric,
                        "optimizer_steps": trainer.state.global_step,
                        "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None}

    with clock.stage("prm_eval"):
        prm_eval = run_eval_prm(ep)

    with clock.stage("search"):
        search_dir = Path(configs["search"].output_dir)
        shutil.rmtree(search_dir, ignore_errors=True)  # a rerun retrains the PRM: drop results scored by an earlier one
        search_summary = run_search_stage(configs["search"], generator=generator)

    value_head_search = None
    if "search_value_head" in configs:
        with clock.stage("search_value_head"):
            shutil.rmtree(configs["search_value_head"].output_dir, ignore_errors=True)
            value_head_search = run_search_stage(configs["search_value_head"], generator=generator)

    with clock.stage("revision_data"):
        revision_data = run_build_revisions(configs["build_revisions"], generator=generator)
    generator.close()  # vLLM: give the GPU back before revision training and eval-revision's engine

    with clock.stage("revision"):
        train_revision(configs["revision"])
        revision_training = revision_training_summary(out / "revision_model", configs["revision"])

    with clock.stage("revision_eval"):
        revision_eval = run_eval_revision(configs["eval_revision"])

    with clock.stage("predict_bon"):
        bon_prediction = run_predict_bon(configs["predict_bon"])

    with clock.stage("compute_optimal"):
        co_report = run_compute_optimal(configs["compute_optimal"])
        co_value_head = (run_compute_optimal(configs["compute_optimal_value_head"])
                         if "compute_optimal_value_head" in configs else None)

    report = assemble_report(configs, problems, generator, greedy_acc, baselines, sample_tokens_per_s, labelling,
                             prm_training, prm_eval, search_summary, co_report, bon_prediction, revision_data,
                             revision_training, revision_eval, clock, quick=cfg.quick)
    if value_head_search is not None:
        report["search_value_head"] = search_summary_for_report(value_head_search, co_value_head)
    report["findings"] = demo_findings(report, policy_name(cfg.model_name_or_path))
    write_demo_report(out, report)
    return report


def assemble_report(configs, problems, generator, greedy_acc, baselines, sample_tokens_per_s, labelling,
                    prm_training, prm_eval, search_summary, co_report, bon_prediction, revision_data,
                    revision_training, revision_eval, clock, quick: bool) -> dict:
    sc, lab, srch, rev, ev = (configs[k] for k in ("sample", "label_mc", "search", "build_revisions", "eval_revision"))
    report = {
        "sizes": {"levels": sorted({p["level"] for p in problems}), "test_problems": len(problems),
                  "test_per_level": sc.per_level, "samples_per_problem": sc.num_samples,
                  "temperature": sc.temperature, "budgets": configs["eval_prm"].budgets, "quick": quick,
                  "label_problems_per_level": lab.per_level, "label_samples": lab.num_samples,
                  "label_rollouts": lab.num_rollouts, "search_per_level": srch.per_level,
                  "search_max_budget": srch.max_budget, "revision_per_level": rev.per_level,
                  "revision_samples": rev.num_samples, "revision_chains": ev.num_chains,
                  "revision_length": ev.chain_length},
        "generator": generator.identity(),
        "machine": machine_facts(),
        "greedy_pass@1": greedy_acc,
        "sampling": baselines,
        "throughput": {"sample_generated_tokens_per_s": round(sample_tokens_per_s, 1),
                       "generated_tokens_total": generator.stats.generated_tokens,
                       "prompt_tokens_requested": generator.stats.prompt_tokens,
                       "prompt_tokens_prefilled": generator.stats.prefill_tokens},
        "labelling": labelling,
        "prm": {"training": prm_training, "heldout": prm_eval["heldout"], "best_of_n": prm_eval["best_of_n"],
                "learning_rate": configs["prm"].learning_rate, "epochs": configs["prm"].num_train_epochs,
                "reference_features": prm_eval.get("reference_features"),
                "value_head_only": prm_eval.get("value_head_only"),
                "likelihood_baseline": prm_eval.get("likelihood_baseline")},
        "search": search_summary_for_report(search_summary, co_report),
        "search_vs_best_of_n": search_methods_vs_bon(Path(srch.output_dir), co_report),
        "bon_prediction": {k: bon_prediction[k] for k in ("fit_samples", "questions", "largest_checked_n",
                                                          "accuracy_mae_at_largest_n", "curves")},
        "revisions": revision_summary_for_report(revision_data, revision_training, revision_eval, co_report, rev,
                                                 configs["compute_optimal"].revision_selection),
        "stage_seconds": clock.seconds,
    }
    report["stage_seconds"]["total"] = round(sum(clock.seconds.values()), 1)
    return report


def make_parser():
    return StageParser((DemoConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    if cfg.print_config:
        print(json.dumps(stage_config_dicts(demo_stage_configs(cfg)), indent=1, default=str))
        return
    report = run_demo(cfg)
    print(f"[demo] report written to {Path(cfg.output_dir) / 'report.md'} (total {report['stage_seconds']['total']} s)")


if __name__ == "__main__":
    main()
