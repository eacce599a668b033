"""The whole method on one recipe folder: every stage in order, a report with its findings, resumable.

    ttstrain pipeline recipes/smollm2-135m --output_dir runs/smollm2   # every stage of that folder
    ttstrain pipeline recipes/smollm2-135m --quick true                # its quick.yaml on top
    ttstrain pipeline recipes/qwen2.5-math-1.5b-instruct --print_config true   # resolved stages, checked
    ttstrain pipeline recipes/smollm2-135m --set search.max_budget=8   # one value of a recipe changed

A recipe folder holds `<stage>/config_pipeline.yaml` for the stages sample, label_mc, prm, eval_prm,
search, build_revisions, revision, eval_revision, predict_bon and compute_optimal, in the keys of
the config class the stage's own command reads (`ttstrain <stage> --config <file>` runs one alone),
and may hold `quick.yaml` (stage -> values for --quick) and `targets.yaml` (the findings' targets
report.md judges the run by, `ttstrain.reporting.finding_targets`). The pipeline adds only the wiring: output
folders under --output_dir, the seed, which stage's output another reads, and, when given on the
command line, one model and backend for all. Each stage runs through the same entry its command
uses (`run_sample`, `run_label_mc`, `run_train_prm`, ...).

Before the first stage the stages are checked to agree on the model, the prompt and step format
and the test problems (`ttstrain.pipeline.agreement`). A stopped run resumes stage by stage
(`ttstrain.pipeline.records`): a finished stage whose settings and inputs are unchanged is skipped,
a stopped chunked stage resumes from its chunks, and a changed stage reruns with all that reads it.
`ttstrain demo` is this command on `recipes/default` (`ttstrain.pipeline.demo`).

Stages, in order (each writes its data and resolved config under --output_dir):
  world, greedy, sample   the policy; greedy pass@1 (the sample stage at temperature 0) and N
                  samples per test problem, graded
  baseline        pass@1 by level, pass@N and majority vote at N = 1, 2, 4, ... (plot)
  label, prm      Monte Carlo step labels on training problems; a PRM trained on them
  prm_eval        held-out BCE and step AUROC; PRM-weighted best-of-N vs majority on the samples
  search          majority, weighted best-of-N, beam search, DVTS and SLG at N = 1, 2, 4, ...
  search_value_head   (a PRM with reference features only) the same search scored by the PRM's value
                  head alone: the findings' targets are read on it
  revision_data, revision, revision_eval   revision pairs, revision SFT, sequential chains
  predict_bon     best-of-N accuracy predicted from the first samples per problem, then checked
  compute_optimal difficulty bins, best strategy per bin and budget by 2-fold CV, efficiency
Then `report.md`, `report.json` (with its `findings` block and `stage_seconds`) and the plots.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ttstrain.analysis.baselines import greedy_by_level, sampling_baselines
from ttstrain.analysis.metrics import power_of_two_budgets
from ttstrain.io import read_parquet, write_json, write_resolved_config
from ttstrain.machine_facts import machine_facts
from ttstrain.models import policy_name
from ttstrain.parsing import StageParser
from ttstrain.pipeline.agreement import check_agreement
from ttstrain.pipeline.recipes import DEFAULT_RECIPES, check_fields, load_stage_settings
from ttstrain.pipeline.records import StageRecords
from ttstrain.prm.config import PRMConfig
from ttstrain.reporting.demo_report import write_demo_report
from ttstrain.reporting.finding_targets import load_targets
from ttstrain.runner.process_executor import check_processes_config, suits_processes, usable_cores
from ttstrain.reporting.demo_summary import (demo_findings, label_signal, revision_summary_for_report,
                                             revision_training_summary, search_methods_vs_bon,
                                             search_summary_for_report)
from ttstrain.search.selection import CHAIN_SELECTIONS
from ttstrain.stages import stage_generator, stage_problems
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

PIPELINE_VLLM_SHARE = 0.6  # the rest of the GPU for PRM training, the PRM and its caches in search, revision training
REPORT_NAMES = {"label_mc": "label", "eval_prm": "prm_eval", "build_revisions": "revision_data",
                "eval_revision": "revision_eval"}
GENERATING = ("greedy", "sample", "label_mc", "search", "search_value_head", "build_revisions")


@dataclass
class PipelineConfig:
    recipes: str = field(default=str(DEFAULT_RECIPES), metadata={"help": "Recipe folder: <stage>/config_pipeline.yaml for every stage (and quick.yaml); also given as the first word, `ttstrain pipeline recipes/smollm2-135m`."})
    output_dir: str | None = field(default=None, metadata={"help": "Output directory for data, report and plots (unset: runs/<recipe folder's name>)."})
    quick: bool = field(default=False, metadata={"help": "Smaller sizes, same stages: the folder's quick.yaml."})
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Policy of every stage (and base of the PRM and revision model); unset: each stage's recipe value, which must agree."})
    backend: str | None = field(default=None, metadata={"help": "Generation backend of every stage: transformers or vllm; unset: each stage's recipe value."})
    gpu_memory_utilization: float = field(default=PIPELINE_VLLM_SHARE, metadata={"help": "vllm: the policy engine's share of the GPU; the PRM trains and scores beside it, and the engine is shut down before eval-revision starts its own (docs/gpu.md)."})
    executor: str = field(default="auto", metadata={"help": "What runs the generating stages' chunks where their recipe does not say: local, processes, ray (as each stage's --executor), or auto: processes on a CPU machine of two or more cores that can fork (the chunks in one process per core, same rows, faster: docs/benchmarks.md), else local.", "choices": ["auto", "local", "processes", "ray"]})
    num_workers: int | None = field(default=None, metadata={"help": "Workers of --executor processes or ray; unset: processes take one per usable core (at most 8), ray each stage's value."})
    set: list[str] = field(default_factory=list, metadata={"help": "stage.field=value overrides applied last, e.g. label_mc.per_level=8."})
    print_config: bool = field(default=False, metadata={"help": "Check the stages agree, print the resolved stage configs as JSON and exit."})

    def out(self) -> Path:
        return Path(self.output_dir or Path("runs") / Path(self.recipes).resolve().name)


class StageClock:
    """Wall time of each named stage, for the report."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = round(seconds, 1)


MIXED_PRECISION = ("bf16", "fp16")


RECIPE_OF = {"greedy": "sample", "search_value_head": "search"}  # stages built from another stage's recipe
MAX_AUTO_WORKERS = 8  # each process holds its own KV and prefix caches


def choose_executor(stage_cfg, cfg: PipelineConfig, recipe: dict) -> None:
    """Set a chunked stage's executor from the pipeline's `--executor` and `--num_workers`, unless its recipe (or
    --set) names one: the recipe's choice, a Ray cluster say, wins, and so does its `num_workers`."""
    if "executor" in recipe:
        return
    name = cfg.executor
    if name == "auto":
        name = "processes" if suits_processes(stage_cfg) else "local"
    stage_cfg.executor = name
    if cfg.num_workers is not None:
        stage_cfg.num_workers = cfg.num_workers
    elif name == "processes" and "num_workers" not in recipe:
        stage_cfg.num_workers = min(usable_cores(), MAX_AUTO_WORKERS)
    if name == "processes":
        check_processes_config(stage_cfg)  # a GPU stage or a bad count fails here, before any stage runs


def pipeline_stage_configs(cfg: PipelineConfig, planning: bool = False) -> dict:
    """Every stage's config: the recipe's settings plus the pipeline's wiring (folders, seed, inputs).

    `planning` (--print_config) builds the trainers' configs on a machine that cannot run them: a GPU
    recipe's bf16 is set after TrainingArguments' check of this machine, so the plan of a GPU folder
    prints, and is checked, on a CPU."""
    settings = load_stage_settings(cfg.recipes, quick=cfg.quick, overrides=cfg.set)
    out, seed = cfg.out(), cfg.seed
    policy = {"model_name_or_path": cfg.model_name_or_path} if cfg.model_name_or_path else {}
    run = {**policy, **({"backend": cfg.backend} if cfg.backend else {}), "seed": seed}

    def build(stage, cls, **wiring):
        check_fields(stage, cls, settings[stage], cfg.recipes)
        values = {**settings[stage], **wiring}
        later = {k: values.pop(k) for k in MIXED_PRECISION if planning and k in values}
        built = cls(**values)
        for name, value in later.items():
            setattr(built, name, value)
        return built

    smp = settings["sample"]
    sample = build("sample", SampleConfig, output_dir=str(out / f"sample-{smp.get('per_level')}x{smp.get('num_samples')}-seed{seed}"),
                   **run)
    # the greedy pass: the sample stage at temperature 0, one solution per problem
    greedy = replace(sample, num_samples=1, temperature=0.0, output_dir=str(out / f"greedy-{smp.get('per_level')}-seed{seed}"))
    lab = settings["label_mc"]
    # sizes in the folder names: a rerun with other sizes starts its own resumable folder
    label_dir = out / f"label_mc-{lab.get('per_level')}x{lab.get('num_samples')}x{lab.get('num_rollouts')}-seed{seed}"
    label_mc = build("label_mc", LabelMCConfig, output_dir=str(label_dir), **run)
    prm = build("prm", PRMConfig, output_dir=str(out / "prm"), dataset_path=str(label_dir), seed=seed, **policy)
    eval_prm = build("eval_prm", EvalPRMConfig, prm_path=str(out / "prm"), output_dir=str(out / "eval_prm"),
                     # the sample stage's own folder: its config.json records the prompt format eval-prm checks
                     labels=str(label_dir), samples=str(Path(sample.output_dir) / "samples.parquet"),
                     budgets=power_of_two_budgets(sample.num_samples), seed=seed)
    srch = settings["search"]
    search_dir = out / f"search-{srch.get('per_level')}x{srch.get('max_budget')}-seed{seed}"
    search = build("search", SearchStageConfig, output_dir=str(search_dir), prm_path=str(out / "prm"), **run)
    rev = settings["build_revisions"]
    revision_data_dir = out / f"revisions-{rev.get('per_level')}x{rev.get('num_samples')}-seed{seed}"
    revision_data = build("build_revisions", BuildRevisionsConfig, output_dir=str(revision_data_dir), **run)
    revision = build("revision", RevisionConfig, output_dir=str(out / "revision_model"),
                     dataset_path=str(revision_data_dir), seed=seed, **policy)
    eval_revision = build("eval_revision", EvalRevisionConfig, output_dir=str(out / "eval_revision"),
                          model_name_or_path=str(out / "revision_model"), prm_path=str(out / "prm"),
                          base_samples=str(out / "samples.parquet"), problems=search.problems, split=search.split,
                          per_level=search.per_level, levels=search.levels, seed=seed,
                          **({"backend": cfg.backend} if cfg.backend else {}))
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
    configs = {"greedy": greedy, "sample": sample, "label_mc": label_mc, "prm": prm, "eval_prm": eval_prm,
               "search": search, "build_revisions": revision_data, "revision": revision,
               "eval_revision": eval_revision, "predict_bon": predict_bon, "compute_optimal": compute_optimal,
               **({"search_value_head": search_value_head, "compute_optimal_value_head": compute_optimal_value_head}
                  if search_value_head else {})}
    for stage, stage_cfg in configs.items():
        if hasattr(stage_cfg, "executor"):
            choose_executor(stage_cfg, cfg, settings.get(RECIPE_OF.get(stage, stage), {}))
    check_agreement(configs, cfg.recipes)
    load_targets(cfg.recipes)  # a malformed targets.yaml stops the run here, not at its report
    return configs


def stage_config_dicts(configs: dict) -> dict:
    """The stage configs as JSON-ready dicts (TrainingArguments' own to_dict for the trainers)."""
    return {name: (c.to_dict() if hasattr(c, "to_dict") else asdict(c)) for name, c in configs.items()}


class Pipeline:
    """One run: the stage configs, their records, the shared policy generator (loaded when a stage needs it)."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.configs = pipeline_stage_configs(cfg)
        self.dicts = stage_config_dicts(self.configs)
        self.out = cfg.out()
        self.records = StageRecords(self.out / "pipeline")
        self.clock = StageClock()
        self.generator = None
        self.reused: list[str] = []

    def policy(self):
        if self.generator is None:
            t0 = time.time()
            share = self.cfg.gpu_memory_utilization if self.configs["sample"].backend == "vllm" else None
            self.generator = stage_generator(self.configs["sample"], gpu_memory_utilization=share)
            self.clock.add("world", time.time() - t0)
            write_json(self.world_file, {"seconds": self.clock.seconds["world"], "identity": self.generator.identity()})
        return self.generator

    @property
    def world_file(self) -> Path:
        return self.records.folder / "world.json"

    def world(self) -> dict:
        """The policy's identity and load time: this run's, or as the run that loaded it recorded them."""
        if not self.world_file.is_file():
            self.policy()  # a folder whose stages were all done before the load was recorded
        return json.loads(self.world_file.read_text())

    def stage(self, name: str, fn, upstream: list[str] = (), outputs: list = (), config: dict | None = None):
        """Run `fn()` for stage `name` unless a finished record of the same settings and inputs says it ran;
        either way return its summary."""
        key = self.records.key(name, self.dicts.get(name, config or {}), upstream)
        if self.records.done(name, key):
            record = self.records.record(name)
            self.clock.add(name, record.get("seconds", 0.0))
            self.reused.append(name)
            print(f"[pipeline] {name}: done before with these settings, skipped", flush=True)
            return self.records.summary(name)
        if name in GENERATING:
            self.policy()  # loaded (and timed as "world") before the first stage that generates
        resumes = self.records.start(name, key, outputs)
        print(f"[pipeline] {name} ...{' (resuming its chunks)' if resumes else ''}", flush=True)
        before = self._generation()
        t0 = time.time()
        summary = fn()
        seconds = time.time() - t0
        after = self._generation()
        self.records.finish(name, key, summary, seconds, {k: after[k] - before[k] for k in after})
        self.clock.add(name, seconds)
        print(f"[pipeline] {name} done in {round(seconds, 1)} s", flush=True)
        return summary

    def _generation(self) -> dict:
        stats = self.generator.stats if self.generator is not None else None
        return {k: getattr(stats, k, 0) for k in ("generated_tokens", "prompt_tokens", "prefill_tokens")}

    def generation_totals(self) -> dict:
        totals = {"generated_tokens": 0, "prompt_tokens": 0, "prefill_tokens": 0}
        for name in GENERATING:
            for k, v in self.records.record(name).get("generation", {}).items():
                totals[k] += v
        return totals

    def close_policy(self) -> None:
        if self.generator is not None:
            self.generator.close()  # vLLM: give the GPU back before revision training and eval-revision's engine
            self.generator = None


def _copy_rows(stage_dir: str, target: Path) -> None:
    shutil.copyfile(Path(stage_dir) / "samples.parquet", target)


def run_pipeline(cfg: PipelineConfig) -> dict:
    p = Pipeline(cfg)
    c, out = p.configs, p.out
    sc, ep = c["sample"], c["eval_prm"]
    out.mkdir(parents=True, exist_ok=True)
    write_resolved_config(out, cfg, budgets=ep.budgets, stages=p.dicts)
    targets = load_targets(cfg.recipes)
    problems = stage_problems(sc)

    def sample_stage(name, target):
        def fn():
            summary = run_sample(c[name], generator=p.policy())
            _copy_rows(c[name].output_dir, target)
            return summary
        return fn

    p.stage("greedy", sample_stage("greedy", out / "greedy.parquet"), outputs=[c["greedy"].output_dir])
    sampling = p.stage("sample", sample_stage("sample", out / "samples.parquet"), outputs=[sc.output_dir])
    greedy_acc = greedy_by_level(read_parquet(out / "greedy.parquet"))
    baselines = p.stage("baseline", lambda: sampling_baselines(read_parquet(out / "samples.parquet"), ep.budgets,
                                                               resamples=ep.resamples, seed=cfg.seed),
                        upstream=["sample"], config={"budgets": ep.budgets, "resamples": ep.resamples, "seed": cfg.seed})

    def label():
        labelling = run_label_mc(c["label_mc"], generator=p.policy())
        labelling["signal"] = label_signal(Path(c["label_mc"].output_dir))
        return labelling

    labelling = p.stage("label_mc", label, outputs=[c["label_mc"].output_dir])

    def train_prm():
        trainer = run_train_prm(c["prm"])
        return {"data": trainer.data_summary, "best_validation_bce": trainer.state.best_metric,
                "optimizer_steps": trainer.state.global_step,
                "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None}

    prm_training = p.stage("prm", train_prm, upstream=["label_mc"], outputs=[c["prm"].output_dir])
    prm_eval = p.stage("eval_prm", lambda: run_eval_prm(ep), upstream=["prm", "sample", "label_mc"],
                       outputs=[ep.output_dir])
    search_summary = p.stage("search", lambda: run_search_stage(c["search"], generator=p.policy()),
                             upstream=["prm"], outputs=[c["search"].output_dir])
    value_head_search = None
    if "search_value_head" in c:
        value_head_search = p.stage("search_value_head",
                                    lambda: run_search_stage(c["search_value_head"], generator=p.policy()),
                                    upstream=["prm"], outputs=[c["search_value_head"].output_dir])
    revision_data = p.stage("build_revisions", lambda: run_build_revisions(c["build_revisions"], generator=p.policy()),
                            outputs=[c["build_revisions"].output_dir])
    world = p.world()
    p.close_policy()

    def train():
        train_revision(c["revision"])
        return revision_training_summary(out / "revision_model", c["revision"])

    revision_training = p.stage("revision", train, upstream=["build_revisions"], outputs=[c["revision"].output_dir])
    revision_eval = p.stage("eval_revision", lambda: run_eval_revision(c["eval_revision"]),
                            upstream=["revision", "prm", "sample"], outputs=[c["eval_revision"].output_dir])
    bon_prediction = p.stage("predict_bon", lambda: run_predict_bon(c["predict_bon"]), upstream=["eval_prm"],
                             outputs=[c["predict_bon"].output_dir])
    co_report = p.stage("compute_optimal", lambda: run_compute_optimal(c["compute_optimal"]),
                        upstream=["search", "sample", "eval_revision"], outputs=[c["compute_optimal"].output_dir])
    co_value_head = None
    if "compute_optimal_value_head" in c:
        co_value_head = p.stage("compute_optimal_value_head",
                                lambda: run_compute_optimal(c["compute_optimal_value_head"]),
                                upstream=["search_value_head", "sample"],
                                outputs=[c["compute_optimal_value_head"].output_dir])
    # the report has carried one compute_optimal time, both runs together
    p.clock.seconds["compute_optimal"] = round(p.clock.seconds.pop("compute_optimal_value_head", 0.0)
                                               + p.clock.seconds["compute_optimal"], 1)
    # the policy's load time first, as recorded where every stage that generates was done before; the stages
    # under the names the demo's reports have always used, so runs before and after compare key by key
    p.clock.seconds = {"world": p.clock.seconds.get("world", world["seconds"]),
                       **{REPORT_NAMES.get(k, k): v for k, v in p.clock.seconds.items() if k != "world"}}
    report = assemble_report(c, problems, world["identity"], p.generation_totals(), greedy_acc, baselines,
                             sampling["generated_tokens_per_s"], labelling, prm_training, prm_eval, search_summary,
                             co_report, bon_prediction, revision_data, revision_training, revision_eval, p.clock,
                             quick=cfg.quick)
    if value_head_search is not None:
        report["search_value_head"] = search_summary_for_report(value_head_search, co_value_head)
    report["pipeline"] = {"recipes": str(cfg.recipes), "stages_reused": p.reused}
    report["findings"] = demo_findings(report, policy_name(sc.model_name_or_path))
    report["finding_targets"] = targets
    write_demo_report(out, report)
    return report


def assemble_report(configs, problems, identity, generation, greedy_acc, baselines, sample_tokens_per_s, labelling,
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
        "generator": identity,
        "machine": machine_facts(),
        "greedy_pass@1": greedy_acc,
        "sampling": baselines,
        "throughput": {"sample_generated_tokens_per_s": round(sample_tokens_per_s, 1),
                       "generated_tokens_total": generation["generated_tokens"],
                       "prompt_tokens_requested": generation["prompt_tokens"],
                       "prompt_tokens_prefilled": generation["prefill_tokens"]},
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
    return StageParser((PipelineConfig,))


def recipe_folder_first(args: list[str]) -> list[str]:
    """`ttstrain pipeline recipes/x --quick true` -> `--recipes recipes/x --quick true`."""
    return ["--recipes", args[0], *args[1:]] if args and not args[0].startswith("-") else list(args)


def run_main(cfg: PipelineConfig, name: str) -> None:
    if cfg.print_config:
        print(json.dumps(stage_config_dicts(pipeline_stage_configs(cfg, planning=True)), indent=1, default=str))
        return
    report = run_pipeline(cfg)
    print(f"[{name}] report written to {cfg.out() / 'report.md'} (total {report['stage_seconds']['total']} s)")


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(recipe_folder_first(sys.argv[1:] if args is None else args))
    run_main(cfg, "pipeline")


if __name__ == "__main__":
    main()
