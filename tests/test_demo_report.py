"""The demo report's verdict lines: what the PRM ranks, and whether a revision chain's pass@1 moves.

Pure functions of measured numbers, so these run in the fast suite (`make fast_test`).
"""

from ttstrain.reporting.demo_report import (answer_bounds_lines, likelihood_baseline_lines, reference_feature_lines,
                                            revision_trend, weighted_vs_majority_line, within_question_line)


def test_within_question_line_names_what_the_prm_ranks():
    flat = within_question_line({"within_question_auroc": 0.49, "within_question_problems": 140, "pooled_auroc": 0.8})
    assert "0.49 within a question" in flat and "140 problems" in flat and "near chance" in flat
    ranks = within_question_line({"within_question_auroc": 0.7, "within_question_problems": 140, "pooled_auroc": 0.8})
    assert "ranks right answers above wrong ones" in ranks and "near chance" not in ranks
    assert "unmeasured" in within_question_line({"within_question_auroc": None, "within_question_problems": 0})


def test_revision_trend_needs_more_than_noise():
    assert revision_trend(0.26, 0.25, 200).startswith("is flat within noise (2 standard errors: 0.087)")
    assert revision_trend(0.20, 0.35, 200) == "rises" and revision_trend(0.35, 0.20, 200) == "falls"
    # no spread to measure (every attempt wrong, or every one right): equal rates are still flat
    assert revision_trend(0.0, 0.0, 200).startswith("is flat") and revision_trend(1.0, 1.0, 200).startswith("is flat")


def test_weighted_vs_majority_line_reads_the_largest_budget_and_its_spread():
    bon = {"weighted_at": {1: 0.3, 16: 0.496}, "majority_at": {1: 0.3, 16: 0.485},
           "weighted_minus_majority_se_at": {1: 0.0, 16: 0.012}}
    assert weighted_vs_majority_line(bon) == ("At N = 16, PRM-weighted best-of-N beats majority by +0.0110 "
                                              "(paired standard error over problems 0.012).")
    below = weighted_vs_majority_line({"weighted_at": {4: 0.40}, "majority_at": {4: 0.41}})
    assert below == "At N = 4, PRM-weighted best-of-N is below majority by -0.0100."
    # N = 16 is the headline where it was measured, whatever larger budgets follow
    at16 = weighted_vs_majority_line({"weighted_at": {16: 0.5, 64: 0.49}, "majority_at": {16: 0.48, 64: 0.5}})
    assert at16.startswith("At N = 16, PRM-weighted best-of-N beats majority by +0.0200")


def test_reference_feature_lines_give_the_combiner_and_the_ablation():
    assert reference_feature_lines({"reference_features": None}) == []
    spec = {"weights": [0.75, 0.37, 10.95], "bias": 0.4, "fitted_rows": 862, "fitted_on": "train",
            "fitted_steps": 3376, "bce_value_head_only": 0.38, "bce_combined": 0.33}
    alone = {"heldout": {"bce": 0.4, "step_auroc": 0.92},
             "best_of_n": {"weighted_at": {16: 0.48}, "majority_at": {16: 0.485}, "within_question_auroc": 0.46,
                           "pooled_auroc": 0.8}}
    text = "\n".join(reference_feature_lines({"reference_features": spec, "value_head_only": alone}))
    assert "0.750 x value-head logit + 0.370 x min + 10.950 x mean" in text and "862 rows of the train split" in text
    assert "weighted best-of-16 0.48 vs majority 0.485" in text and "within a question 0.46" in text
    assert "Not checked on held-out questions" in text
    checked = {**spec, "validation": {"steps": 380, "bce_value_head_only": 0.41, "bce_combined": 0.36},
               "warning": "fitted on 120 steps (fewer than 300)"}
    text = "\n".join(reference_feature_lines({"reference_features": checked}))
    assert "380 steps of the held-out validation questions: BCE 0.41 with the value head alone, 0.36" in text
    assert "Warning: fitted on 120 steps" in text


def test_likelihood_baseline_line_sets_the_value_head_against_the_policy():
    assert likelihood_baseline_lines({"best_of_n": {}}) == []
    lik = {"model": "default", "best_of_n": {"weighted_at": {4: 0.5, 16: 0.61}, "majority_at": {4: 0.5, 16: 0.6},
                                             "weighted_minus_majority_se_at": {16: 0.01},
                                             "within_question_auroc": 0.746, "pooled_auroc": 0.8}}
    prm = {"best_of_n": {"within_question_auroc": 0.7}, "value_head_only": {"best_of_n": {"within_question_auroc": 0.546}},
           "likelihood_baseline": lik}
    text = likelihood_baseline_lines(prm)[0]
    assert "(`default`" in text and "within a question 0.746 (the value head 0.546)" in text
    assert "best-of-16 0.61 vs majority 0.6 (paired standard error 0.01)" in text


def test_answer_bounds_lines_say_when_exclusion_loses():
    spread = {"first_attempt": 0.365, "exclude_previous": 0.168, "keep_or_exclude_oracle": 0.533,
              "questions": 50, "samples_per_question": 64.0}
    line = answer_bounds_lines(spread)[0]
    assert "64 samples" in line and "0.365" in line and "0.168" in line and "0.533" in line
    assert "Exclusion loses here" in line
    concentrated = {**spread, "exclude_previous": 0.4, "keep_or_exclude_oracle": 0.765}
    assert "Exclusion loses" not in answer_bounds_lines(concentrated)[0]
    assert answer_bounds_lines(None) == []
    changed = {"changed_wrong_attempts": 338, "right_after_change": 0.1805, "fresh_sample_excluding_previous": 0.2021}
    assert answer_bounds_lines(spread, changed)[0].endswith(
        "changed a wrong answer (338 times), its new attempt was right 0.180 of the time; a fresh base sample "
        "avoiding the previous answer would be right 0.202.")
    assert "changed a wrong answer" not in answer_bounds_lines(spread, {**changed, "changed_wrong_attempts": 0})[0]


def test_machine_line_says_when_cores_are_hyperthreads(tmp_path):
    from ttstrain.machine_facts import cpu_topology
    from ttstrain.reporting.demo_report import machine_line

    block = ("processor\t: 0\nmodel name\t: Some CPU\ncpu MHz\t\t: 2100.5\nsiblings\t: 2\ncpu cores\t: 1\n"
             "flags\t\t: fpu avx2 fma avx512f\n\nprocessor\t: 1\n")
    (tmp_path / "cpuinfo").write_text(block)
    topo = cpu_topology(str(tmp_path / "cpuinfo"))
    assert topo == {"threads_per_core": 2, "cpu_mhz": 2100.5, "simd": ["avx2", "fma", "avx512f"]}
    assert cpu_topology(str(tmp_path / "missing")) == {}
    facts = {"cpu": "Some CPU", "cpu_count": 2, "torch": "2.13.0+cpu", "blas": "mkl", "torch_cpu_capability": "AVX2",
             "torch_threads": 2, "environment": {}, **topo}
    assert "2 cores (2 threads per core)" in machine_line(facts)
    assert "2 cores;" in machine_line({**facts, "threads_per_core": None})
