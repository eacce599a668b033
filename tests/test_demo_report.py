"""The demo report's verdict lines: what the PRM ranks, and whether a revision chain's pass@1 moves.

Pure functions of measured numbers, so these run in the fast suite (`make fast_test`).
"""

from ttstrain.demo import revision_trend, within_question_line


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
