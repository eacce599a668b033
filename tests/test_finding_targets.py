"""The findings table's targets and verdicts (ttstrain.reporting.finding_targets)."""

from ttstrain.reporting.finding_targets import finding_rows


def _findings(**kw):
    base = {"policy": "world-v2", "value_head_within_question_auroc": 0.8, "weighted_minus_majority_at_16": 0.02,
            "weighted_minus_majority_at_16_se": 0.01, "revision_pass1_by_step": [0.30, 0.32, 0.35, 0.37],
            "revision_pass1_se": 0.02, "compute_optimal_efficiency_at_16": 2.5,
            "compute_optimal_min_gain_over_bon": -0.01, "demo_seconds": 1200.0}
    return {**base, **kw}


def test_each_target_gets_its_verdict():
    rows = {r[0]: r for r in finding_rows(_findings(), quick=False)}
    assert rows["value_head_within_question_auroc"][3] == "met"
    assert rows["weighted_minus_majority_at_16"][3] == "missed"          # 0.02 < 0.03
    assert rows["revision_pass1_by_step"][3] == "met"                    # rise 0.07 >= 2 * 0.02
    assert "rise +0.070" in rows["revision_pass1_by_step"][1]
    assert rows["compute_optimal_min_gain_over_bon"][3] == "missed"
    assert rows["compute_optimal_efficiency_at_16"][3] == "met" and rows["demo_seconds"][3] == "met"
    assert rows["policy"][2:] == ["-", "-"] and list(rows) == list(_findings())


def test_missing_values_and_quick_limits():
    rows = {r[0]: r for r in finding_rows(_findings(value_head_within_question_auroc=None, revision_pass1_se=None,
                                                    revision_pass1_by_step=[0.3, 0.31], demo_seconds=400.0), quick=True)}
    assert rows["value_head_within_question_auroc"][3] == "-" and rows["revision_pass1_by_step"][3] == "-"
    assert rows["demo_seconds"][2] == "< 300 (--quick)" and rows["demo_seconds"][3] == "missed"
    rows = {r[0]: r for r in finding_rows(_findings(revision_pass1_by_step=[0.30, 0.33], revision_pass1_se=0.02), quick=False)}
    assert rows["revision_pass1_by_step"][3] == "missed"                 # rise 0.03 < 0.04


def test_an_efficiency_that_never_matches_is_a_miss_not_a_missing_stage():
    rows = {r[0]: r for r in finding_rows(_findings(compute_optimal_efficiency_at_16=None), quick=False)}
    assert rows["compute_optimal_efficiency_at_16"][3] == "missed"
    assert rows["compute_optimal_efficiency_at_16"][1].startswith("none (compute-optimal never reaches")
    rows = {r[0]: r for r in finding_rows(_findings(compute_optimal_efficiency_at_16=None,
                                                    compute_optimal_min_gain_over_bon=None), quick=False)}
    assert rows["compute_optimal_efficiency_at_16"][1:] == [None, ">= 2x", "-"]   # search did not run


def test_keys_read_below_16_are_named_under_the_table():
    from ttstrain.reporting.demo_report import findings_section
    full = findings_section(_findings(at_16_keys_read_at={"best_of_n": 16, "search": 16}))
    assert "largest N" not in full and "at_16_keys_read_at" not in full
    small = findings_section(_findings(at_16_keys_read_at={"best_of_n": 16, "search": 8}))
    assert small.endswith("read at its largest budget, not 16: the search rows (compute-optimal efficiency, DVTS "
                          "and SLG minus best-of-N) at N = 8.")
    larger = findings_section(_findings(at_16_keys_read_at={"best_of_n": 16, "search": 64}))   # a GPU recipe's
    assert larger.endswith("not 16: the search rows (compute-optimal efficiency, DVTS and SLG minus best-of-N) at N = 64.")


def test_recipe_folders_state_their_targets():
    from ttstrain.paths import repo_root
    from ttstrain.reporting.finding_targets import DEFAULT_TARGETS, load_targets

    import yaml

    recipes = repo_root() / "recipes"
    assert yaml.safe_load((recipes / "default" / "targets.yaml").read_text()) == DEFAULT_TARGETS
    # the default world's target texts, as the findings table has always printed them
    texts = {r[0]: r[2] for r in finding_rows(_findings(), quick=False)}
    assert [texts[k] for k in DEFAULT_TARGETS] == [">= 0.75", ">= +0.03", "step 4 - step 1 >= 2 SE", ">= 2x",
                                                   ">= 0 (at least best-of-N at every N)", "< 1800"]
    smol = load_targets(recipes / "smollm2-135m")
    # issue #38's: the PRM >= 0.70 and >= the likelihood + 0.05; weighted - majority >= +0.03 and >= 2 SE
    run_of_record = _findings(value_head_within_question_auroc=0.726, likelihood_within_question_auroc=0.655,
                              weighted_minus_majority_at_16=0.008, weighted_minus_majority_at_16_se=0.0055,
                              demo_seconds=2010.0)
    rows = {r[0]: r for r in finding_rows(run_of_record, quick=False, targets=smol)}
    assert rows["value_head_within_question_auroc"][2:] == [
        ">= 0.7 and >= likelihood_within_question_auroc +0.05", "met"]
    assert rows["weighted_minus_majority_at_16"][2:] == [">= +0.03 and >= 2 SE", "missed"]
    assert rows["demo_seconds"][2:] == ["< 7200 (the whole pipeline on 2 CPU cores)", "met"]
    assert rows["compute_optimal_efficiency_at_16"][2:] == ["-", "-"]  # no target of #38's
    close = {**run_of_record, "likelihood_within_question_auroc": 0.70}   # 0.726 < 0.70 + 0.05
    assert {r[0]: r for r in finding_rows(close, False, smol)}["value_head_within_question_auroc"][3] == "missed"
    for diff, se, verdict in [(0.04, 0.01, "met"), (0.04, 0.03, "missed"), (0.02, 0.001, "missed")]:
        f = {**run_of_record, "weighted_minus_majority_at_16": diff, "weighted_minus_majority_at_16_se": se}
        assert {r[0]: r for r in finding_rows(f, False, smol)}["weighted_minus_majority_at_16"][3] == verdict
    for folder in ("qwen2.5-math-1.5b-instruct", "llama-3.2-1b-instruct"):
        assert "demo_seconds" not in load_targets(recipes / folder)


def test_a_malformed_targets_file_names_the_file_and_finding(tmp_path):
    import pytest
    from ttstrain.reporting.finding_targets import load_targets

    (tmp_path / "targets.yaml").write_text("weighted_minus_majority_at_16: {at_leest: 0.03}\n")
    with pytest.raises(ValueError, match=r"targets.yaml: weighted_minus_majority_at_16: unknown condition\(s\) \['at_leest'\]"):
        load_targets(tmp_path)
    (tmp_path / "targets.yaml").write_text("value_head_within_question_auroc: {above: likelihood_within_question_auroc}\n")
    with pytest.raises(ValueError, match="'above' and 'by' go together"):
        load_targets(tmp_path)
    for text, message in [
            ("demo_seconds: 1800\n", "demo_seconds: expected a mapping of conditions"),
            ("demo_seconds: {note: fast}\n", "demo_seconds: expected a mapping of conditions"),
            ("demo_seconds: {below: 1e3}\n", r"demo_seconds: below must be a number, got '1e3' \(YAML reads 1e3 as text"),
            ("demo_seconds: {below_quick: 300}\n", "demo_seconds: below_quick needs below"),
            ("weighted_minus_majority_at16: {at_least: 0.03}\n", "weighted_minus_majority_at16: not a finding with a target"),
            ("value_head_within_question_auroc: {above: likelihood_auroc, by: 0.05}\n",
             "above: 'likelihood_auroc' is not a finding holding a number"),
            ("revision_pass1_by_step: {at_least: 0.3}\n", "a list of pass@1 by step takes rise_standard_errors only"),
            ("demo_seconds: {rise_standard_errors: 2}\n", "rise_standard_errors is read on revision_pass1_by_step only"),
            ("value_head_within_question_auroc: {standard_errors: 2}\n", "there is no value_head_within_question_auroc_se"),
            ("demo_seconds: {below: 10, note: 'a | b'}\n", "note must be text without"),
            ("demo_seconds: {below: [1\n", "targets.yaml: not valid YAML")]:
        (tmp_path / "targets.yaml").write_text(text)
        with pytest.raises(ValueError, match=message):
            load_targets(tmp_path)


def test_one_condition_missed_is_a_miss_though_another_lacks_its_value():
    from ttstrain.reporting.finding_targets import load_targets
    from ttstrain.paths import repo_root

    smol = load_targets(repo_root() / "recipes" / "smollm2-135m")
    no_se = {r[0]: r for r in finding_rows(_findings(weighted_minus_majority_at_16=0.008,
                                                     weighted_minus_majority_at_16_se=None), False, smol)}
    assert no_se["weighted_minus_majority_at_16"][3] == "missed"          # 0.008 < 0.03 whatever its SE
    high = {r[0]: r for r in finding_rows(_findings(weighted_minus_majority_at_16=0.05,
                                                    weighted_minus_majority_at_16_se=None), False, smol)}
    assert high["weighted_minus_majority_at_16"][3] == "-"                # the 2-SE half cannot be judged
    no_lik = {r[0]: r for r in finding_rows(_findings(value_head_within_question_auroc=0.5), False, smol)}
    assert no_lik["value_head_within_question_auroc"][3] == "missed"      # no likelihood run, but 0.5 < 0.70
