"""The shipped default world, measured for real (slow): the policy is imperfect the way real
policies are, the step contract agrees with generation, labels carry signal, the demo runs."""

from __future__ import annotations

import json

import pytest

from ttstrain.generation import SamplingParams
from ttstrain.generation.hf import HFGenerator
from ttstrain.models import default_policy_dir
from ttstrain.paths import repo_root
from ttstrain.prompts import format_prompt
from ttstrain.reporting.finding_targets import LIST_FINDINGS, NUMBER_FINDINGS, load_targets
from ttstrain.steps import prefix_text, split_steps
from ttstrain.world.task import first_error, problems_split

pytestmark = pytest.mark.slow

needs_policy = pytest.mark.skipif(not (default_policy_dir() / "model.safetensors").exists(),
                                  reason="the default policy has not been built (ttstrain build-world)")


@pytest.fixture(scope="module")
def policy():
    return HFGenerator("default")


@needs_policy
def test_shipped_checkpoint_loads_like_a_hub_checkpoint():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_policy_dir()
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama" and len(tok) == model.config.vocab_size
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert sum(f.stat().st_size for f in path.iterdir()) < 20 * 2**20


@needs_policy
def test_world_card_meets_the_accuracy_target():
    path = default_policy_dir()
    card = json.loads((path / "world_card.json").read_text())
    greedy = card["greedy_pass@1"]
    assert float(greedy["1"]) >= 0.75 and float(greedy["5"]) <= 0.35, greedy
    assert float(card["sampled_pass@16"]["5"]) > float(card["sampled_pass@1"]["5"]) + 0.15
    assert card["wrong_with_identified_step"] >= 0.95


@needs_policy
def test_world_v2_samples_locatable_mistakes_its_checking_phase_did_not():
    """World v2's last phase (ttstrain.world_builder.slipped) makes a wrong operation line a common first
    error of temperature-1 samples (a left-out last line reads as a format error: the answer comes
    a step early); its checking phase made them rarely."""
    from ttstrain.models import world_v2_check_policy_dir

    def locatable_share(path):
        card = json.loads((path / "world_card.json").read_text())
        kinds = card["first_error_kinds"]
        return (kinds.get("copy", 0) + kinds.get("format", 0)) / card["wrong_samples"]

    assert locatable_share(default_policy_dir()) > 0.35
    assert locatable_share(world_v2_check_policy_dir()) < 0.1


@needs_policy
def test_policy_accuracy_falls_with_level(policy):
    from ttstrain.generation.sampling import sample_solutions

    rows = sample_solutions(policy, problems_split("test", 40, seed=7), n=1, temperature=0.0, progress=False)
    acc = {lvl: sum(r["correct"] for r in rows if r["level"] == lvl) / 40 for lvl in range(1, 6)}
    assert acc[1] >= 0.7 and acc[5] <= 0.4 and acc[1] > acc[3] > acc[5], acc
    wrong = [r for r in rows if not r["correct"]]
    identified = [first_error(r["question"], r["completion"]) for r in wrong]
    assert sum(e is not None for e in identified) >= 0.95 * len(wrong)


@needs_policy
def test_step_by_step_generation_agrees_with_whole_solutions(policy):
    """Generating one step at a time (stop='step') and splitting a whole solution give the same steps."""
    for row in problems_split("test", 2, seed=1)[::2]:
        prompt = format_prompt(row["question"])
        whole = policy.generate([prompt], SamplingParams(temperature=0.0, max_new_tokens=320))[0].completions[0]
        steps = []
        for _ in range(10):
            c = policy.generate([prompt + prefix_text(steps, len(steps))],
                                SamplingParams(temperature=0.0, stop="step", max_new_tokens=80))[0].completions[0]
            if c.text:
                steps.append(c.text)
            if c.finished_solution:
                break
        assert steps == split_steps(whole.text)


@needs_policy
def test_monte_carlo_labels_carry_signal(policy, tmp_path):
    from ttstrain.runner.shards import load_dataset_dir
    from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc

    cfg = LabelMCConfig(output_dir=str(tmp_path / "mc"), per_level=3, num_samples=4, num_rollouts=4, seed=0)
    summary = run_label_mc(cfg, generator=policy, progress=False)
    ds = load_dataset_dir(tmp_path / "mc")
    right = [x for r in ds if r["final_correct"] for x in r["labels"][:-1]]
    wrong = [x for r in ds if not r["final_correct"] for x in r["labels"][:-1]]
    assert right and wrong and summary["samples_kept"] > 0
    assert sum(right) / len(right) > sum(wrong) / len(wrong) + 0.1
    assert all(0.0 <= x <= 1.0 for r in ds for x in r["labels"])


@needs_policy
def test_quick_demo_end_to_end(tmp_path):
    from ttstrain.pipeline.demo import DemoConfig, run_demo

    out = tmp_path / "demo"
    report = run_demo(DemoConfig(output_dir=str(out), quick=True, set=[
        "sample.per_level=4", "sample.num_samples=8", "label_mc.per_level=2", "build_revisions.per_level=2",
        "predict_bon.fit_samples=1"]))
    for name in ("report.md", "report.json", "baselines.png", "config.json", "samples.parquet", "best_of_n.png",
                 "prm/model.safetensors", "prm/ttstrain_config.json", "eval_prm/eval_prm.json",
                 "revision_model/model.safetensors", "eval_revision/chains.parquet",
                 "compute_optimal/revision_ratio_sweep.png"):
        assert (out / name).exists(), name
    text = (out / "report.md").read_text()
    assert "greedy pass@1" in text and "Monte Carlo step labels" in text and "Process reward model" in text
    bon = report["prm"]["best_of_n"]
    assert set(bon["weighted_at"]) == {1, 2, 4, 8} and bon["problems"] == 20
    assert report["prm"]["heldout"]["split"] == "validation" and report["prm"]["heldout"]["rows"] > 0
    # the demo PRM scores with reference features, and the report carries the value head alone beside it
    assert report["prm"]["reference_features"]["fitted_on"] == "train" and "value-head logit" in text
    assert set(report["prm"]["value_head_only"]["best_of_n"]["weighted_at"]) == {1, 2, 4, 8}
    # and the policy's own likelihood on the same samples, the baseline the PRM must beat
    lik = report["prm"]["likelihood_baseline"]["best_of_n"]
    assert report["prm"]["likelihood_baseline"]["model"] == "default" and "the policy's own likelihood" in text
    sr = report["search"]
    assert set(sr["methods"]) == {"majority", "best_of_n_weighted", "beam_search", "dvts", "slg"}
    assert sr["budgets"] == [1, 2, 4] and all(sr["generations"][m][4] == 4 for m in ("beam_search", "dvts", "slg"))
    assert "oracle" in sr["compute_optimal"]
    vs = report["search_vs_best_of_n"]["methods"]
    assert set(vs) == {"beam_search", "dvts", "slg"} and set(vs["slg"]["overall"]) == {1, 2, 4}
    assert all(vs[m]["overall"][4]["problems"] == 10 for m in vs) and "DVTS and SLG" in text
    # best-of-N prediction from the first 8 // 8 = 1 sample per problem, checked on all 8
    pred = report["bon_prediction"]
    assert pred["fit_samples"] == 1 and pred["largest_checked_n"] == 8 and (out / "predict_bon/predict_bon.png").exists()
    findings = report["findings"]
    assert {"policy", "deployed_prm", "value_head_within_question_auroc", "weighted_minus_majority_at_16",
            "weighted_minus_majority_at_16_se", "deployed_prm_within_question_auroc",
            "deployed_prm_weighted_minus_majority_at_16", "deployed_prm_weighted_minus_majority_at_16_se",
            "likelihood_within_question_auroc",
            "likelihood_weighted_minus_majority_at_16", "revision_pass1_by_step", "revision_pass1_se",
            "compute_optimal_efficiency_at_16", "compute_optimal_min_gain_over_bon",
            "deployed_prm_compute_optimal_efficiency_at_16", "deployed_prm_compute_optimal_min_gain_over_bon",
            "dvts_minus_bon_at_16", "slg_minus_bon_at_16", "bon_prediction_error", "at_16_keys_read_at",
            "demo_seconds"} == set(findings)
    # the targets read the value head alone: its best-of-N and its own search; deployed_prm_* the PRM as used
    alone, deployed = report["prm"]["value_head_only"]["best_of_n"], report["prm"]["best_of_n"]
    assert findings["deployed_prm"] == "value head + reference features"
    assert findings["weighted_minus_majority_at_16"] == round(alone["weighted_at"][8] - alone["majority_at"][8], 4)
    assert findings["deployed_prm_weighted_minus_majority_at_16"] == round(
        deployed["weighted_at"][8] - deployed["majority_at"][8], 4)
    assert findings["deployed_prm_within_question_auroc"] == deployed["within_question_auroc"]
    vh = report["search_value_head"]
    assert set(vh["methods"]) == set(sr["methods"]) and vh["budgets"] == [1, 2, 4]
    assert findings["compute_optimal_efficiency_at_16"] == vh["efficiency"]["oracle"][4]
    assert findings["deployed_prm_compute_optimal_efficiency_at_16"] == sr["efficiency"]["oracle"][4]
    vh_config = json.loads((out / "search-2x4-seed0-value_head" / "config.json").read_text())
    assert vh_config["verifier"] == "value_head" and vh_config["scorer"]["path"] == str(out / "prm")
    assert (out / "compute_optimal_value_head" / "compute_optimal.json").exists()
    assert "scored by the value head alone" in text and "value head + reference features" in text
    assert findings["dvts_minus_bon_at_16"] == vs["dvts"]["overall"][4]["diff"] and len(findings["revision_pass1_by_step"]) == 4
    # the quick run's budgets stop under 16: the report says at which N its *_at_16 keys are read
    assert findings["at_16_keys_read_at"] == {"best_of_n": 8, "search": 4}
    assert report["finding_targets"] == load_targets(repo_root() / "recipes" / "default") and "| < 300 (--quick) |" in text
    assert "read at its largest budget, not 16: the best-of-N rows (weighted minus majority) at N = 8; the search rows" in text
    # every finding a targets.yaml may name is a key of the block
    assert set(NUMBER_FINDINGS + LIST_FINDINGS) == set(findings) - {"policy", "deployed_prm", "at_16_keys_read_at"}
    assert findings["bon_prediction_error"] == pred["accuracy_mae_at_largest_n"] and "## Findings" in text
    assert findings["likelihood_within_question_auroc"] == lik["within_question_auroc"]
    assert findings["likelihood_weighted_minus_majority_at_16"] == round(lik["weighted_at"][8] - lik["majority_at"][8], 4)
    assert (out / "compute_optimal" / "compute_optimal.md").exists() and "Test-time search" in text
    rv = report["revisions"]
    assert rv["data"]["rows"] > 0 and rv["training"]["optimizer_steps"] >= 1 and "## Revisions" in text
    assert set(rv["pass@1_by_revision_step"]) == {0, 1, 2, 3} and rv["num_chains"] == 2 and rv["problems"] == 10
    assert set(rv["curves"]) == {"revisions(L=1)", "revisions(L=2)", "revisions(L=4)"}
    assert set(rv["prm_hierarchical"]) == set(rv["majority"]) and "4x2" in rv["majority"]
    assert rv["selection"] == "hierarchical" and "(hierarchical selection, oracle bins" in text
    assert report["sampling"]["overall"]["pass_at"][8] >= report["sampling"]["overall"]["pass@1"]
    assert report["throughput"]["prompt_tokens_prefilled"] < report["throughput"]["prompt_tokens_requested"]


def test_demo_refuses_an_unknown_revision_selection():
    from ttstrain.pipeline.demo import DemoConfig, demo_stage_configs

    with pytest.raises(ValueError, match="revision_selection must be majority, hierarchical or weighted, got 'vote'"):
        demo_stage_configs(DemoConfig(output_dir="unused", set=["compute_optimal.revision_selection=vote"]))
